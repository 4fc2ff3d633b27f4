"""Shared by the CLI tests: a CliRunner harness that sees everything a terminal would, and input files.

``run_cli`` runs ``nlmeans`` in-process (``typer.testing.CliRunner``); its
"stderr" is everything a user would see on the terminal: the CliRunner's
stderr, C-level writes to file descriptor 2 (``capfd``), Python warnings and
log records of level WARNING and above (in a real run both are printed on
stderr; under pytest they are captured, so they are collected here and
counted as lines). ``assert_refused`` is what a refused input must give: a
non-zero exit status, exactly one ``Error: ...`` line naming the problem (exit
1) or a usage error naming the option (exit 2), and no traceback.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from nlmeans.io import read_image, write_image
from nlmeans_cli.main import app

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
PARAMS = [
    "-p",
    "3",
    "-r",
    "2",
    "--h",
    "0.08",
    "--sigma",
    "0.03",
]  # explicit: the library can redo it
LIB_PARAMS = dict(patch_size=3, patch_distance=2, h=0.08, sigma=0.03)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
CHATTER = r"Error|Warning|warning:|libpng|Traceback"  # none of it on a successful run

runner = CliRunner()

# --------------------------------------------------------------------------- helpers


def _noisy(shape, dtype=np.uint8, seed=0, sigma=0.08) -> np.ndarray:
    """A crop of camera.png (channels repeated/shifted), with Gaussian noise, in ``dtype``."""
    base = read_image(SAMPLES / "camera.png").pixels.astype(np.float64) / 255.0
    h, w = shape[:2]
    img = base[60 : 60 + h, 100 : 100 + w]
    if len(shape) == 3:
        img = np.stack([np.roll(img, 3 * c, axis=1) for c in range(shape[2])], axis=-1)
    img = img + np.random.default_rng(seed).normal(0, sigma, img.shape)
    img = np.clip(img, 0, 1)
    if np.dtype(dtype).kind == "f":
        return img.astype(dtype)
    top = np.iinfo(dtype).max
    return np.rint(img * top).astype(dtype)


def _in(tmp: Path) -> Path:
    """``tmp/in``, the folder the inputs go in."""
    folder = tmp / "in"
    folder.mkdir(exist_ok=True)
    return folder


def _snapshot(root: Path) -> dict[str, Any]:
    """Every file, folder and link under ``root``: content hash and mtime for files."""
    state: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            st_ = path.lstat()
            if path.is_symlink():
                state[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                state[rel] = ("dir",)
            else:
                state[rel] = (
                    "file",
                    hashlib.sha256(path.read_bytes()).hexdigest(),
                    st_.st_mtime_ns,
                )
    return state


@dataclass
class CliRun:
    exit_code: int
    stdout: str
    stderr: str  # CliRunner stderr plus what else a terminal would show (see module docstring)
    exception: BaseException | None

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    @property
    def flat(self) -> str:
        """stderr on one line, without Rich's box drawing."""
        text = self.stderr
        for ch in "│╭╰╮╯─":
            text = text.replace(ch, " ")
        return " ".join(text.split())


def run_cli(args, capfd, caplog) -> CliRun:
    capfd.readouterr()
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # wide "terminal": Rich must not fold long paths inside its error boxes
        result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "500"})
    extra = [f"{w.category.__name__}: {w.message}" for w in caught]
    extra += [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    extra += capfd.readouterr().err.splitlines()
    stderr = result.stderr + "".join(line + "\n" for line in extra)
    return CliRun(result.exit_code, result.stdout, stderr, result.exception)


def assert_no_traceback(run: CliRun) -> None:
    # CliRunner keeps an unhandled exception instead of printing its traceback.
    assert run.exception is None or isinstance(run.exception, SystemExit), repr(run.exception)
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout


def assert_refused(run: CliRun, exit_code: int, patterns) -> None:
    assert_no_traceback(run)
    assert run.exit_code == exit_code, (run.exit_code, run.stderr)
    assert run.stdout == ""
    if exit_code == 1:
        assert len(run.lines) == 1, run.lines
        text = run.lines[0]
        assert text.startswith("Error: "), text
    else:
        assert "Error" in run.stderr and "Usage" in run.stderr, run.stderr
        text = run.flat
    for pattern in patterns:
        assert re.search(pattern, text, re.IGNORECASE), (pattern, text)


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    crc = zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", crc)


def _png_chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def _png_with_idat(width: int, height: int, idat: bytes) -> bytes:
    """A gray 8-bit PNG with valid chunks (and checksums) around any IDAT payload."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _tiff_tag_value_offset(data: bytes, tag: int) -> int:
    """Byte offset of the (inline) value of ``tag`` in the first IFD of a little-endian TIFF."""
    assert data[:4] == b"II*\x00"
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if struct.unpack("<H", data[entry : entry + 2])[0] == tag:
            return entry + 8
    raise KeyError(tag)


def _huge_tiff(tmp: Path, consistent: bool) -> Path:
    """A 16x16 uint8 TIFF whose header is edited to claim 100000 x 100000 pixels."""
    import tifffile

    small = tmp / "small_for_bomb.tif"
    tifffile.imwrite(small, np.zeros((16, 16), np.uint8), photometric="minisblack", metadata=None)
    data = bytearray(small.read_bytes())
    small.unlink()
    tags = (256, 257, 278) if consistent else (256, 257)  # width, length (, rows per strip)
    for tag in tags:
        at = _tiff_tag_value_offset(bytes(data), tag)
        data[at : at + 4] = struct.pack("<I", 100_000)
    path = tmp / ("huge.tif" if consistent else "huge_inconsistent.tif")
    path.write_bytes(bytes(data))
    return path


def _huge_jpeg(tmp: Path) -> Path:
    write_image(tmp / "small.jpg", np.zeros((16, 16, 3), np.uint8))
    data = bytearray((tmp / "small.jpg").read_bytes())
    (tmp / "small.jpg").unlink()
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)
    path = tmp / "huge.jpg"
    path.write_bytes(bytes(data))
    return path


def _torch_or_skip():
    return pytest.importorskip("torch")


def _tiny_config():
    from nlmeans.neural import DenoiserConfig

    return DenoiserConfig(channels=8, depth=4, blocks=1, window=2)


def _checkpoint_files(tmp: Path) -> dict[str, Path]:
    """Files that are not our checkpoints (and one that is, but holds weights only)."""
    torch = _torch_or_skip()
    from neural_helpers import Evil, save_evil_checkpoint

    import nlmeans.neural as nn_

    torch.manual_seed(0)
    model = nn_.NonLocalDenoiser(_tiny_config())
    marker = tmp / "PWNED"
    files = {
        "evil": tmp / "evil.pt",
        "pickle": tmp / "evil.pkl",
        "foreign": tmp / "foreign.pt",
        "empty": tmp / "empty.pt",
        "weights": tmp / "weights.safetensors",
        "folder": tmp / "folder.pt",
    }
    save_evil_checkpoint(model, files["evil"], marker)
    files["pickle"].write_bytes(pickle.dumps(Evil(str(marker))))
    torch.save({"state_dict": {"w": torch.zeros(3)}}, files["foreign"])
    files["empty"].write_bytes(b"")
    nn_.save_weights(files["weights"], model)
    files["folder"].mkdir()
    return files


def _train_data(tmp: Path) -> Path:
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    write_image(data / "a.png", _noisy((24, 24)))
    return data
