"""Reliability: bad input, data safety, properties and concurrency, library and CLI.

One table-driven module for the issue "Reliability: bad input, data safety, and
property tests across library and CLI".

* ``BAD_INPUT``: every row of the bad-input matrix, run through ``nlmeans``
  (in-process, ``typer.testing.CliRunner``) and, where the concept exists,
  through the library. A refused input must give: a non-zero exit status,
  exactly one ``Error: ...`` line on stderr naming the problem (exit 1), or a
  usage error naming the option (exit 2), no traceback, and the folder
  untouched: inputs keep their bytes and mtime and no file or folder appears.
  "stderr" here is everything a user would see on the terminal: the
  CliRunner's stderr, C-level writes to file descriptor 2 (``capfd``), Python
  warnings and log records of level WARNING and above (in a real run both are
  printed on stderr; under pytest they are captured, so they are collected
  here and counted as lines).
* ``SUPPORTED``: inputs that look odd but are legitimate (alpha, 16 bits, a
  JPEG named .png, a 1x1 image with a 1x1 patch, ...): exit 0 and an output
  equal to what the library gives for the same pixels.
* Property tests (hypothesis) over shapes, dtypes, channel counts and
  parameters for every method, including "neural".
* Concurrency: a batch with ``--threads 2`` gives the same bytes as each file
  alone with ``--threads 1``; library calls from several Python threads agree
  with sequential calls.
* SIGINT (subprocesses running the installed ``nlmeans`` script) in the
  middle of a batch and of a training run, and resuming that training run.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import math
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import nlmeans
from nlmeans import io as nio
from nlmeans.io import ImageReadError, ImageWriteError, read_image, write_image
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


class _Evil:
    """Unpickling this creates a marker file, i.e. runs code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _torch_or_skip():
    return pytest.importorskip("torch")


def _tiny_config():
    from nlmeans.neural import DenoiserConfig

    return DenoiserConfig(channels=8, depth=4, blocks=1, window=2)


def _checkpoint_files(tmp: Path) -> dict[str, Path]:
    """Files that are not our checkpoints (and one that is, but holds weights only)."""
    torch = _torch_or_skip()
    import nlmeans.neural as nn_
    from nlmeans.neural import checkpoint as ckpt_mod

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
    torch.save(
        {
            "format": ckpt_mod.CHECKPOINT_FORMAT,
            "format_version": 1,
            "config": model.config.to_dict(),
            "model": model.state_dict(),
            "payload": _Evil(str(marker)),
        },
        files["evil"],
    )
    files["pickle"].write_bytes(pickle.dumps(_Evil(str(marker))))
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


TRAIN = ["--patch-size", "8", "--batch-size", "1", "--steps", "1", "--threads", "1"]


# --------------------------------------------------------------------------- the bad-input matrix


@dataclass(frozen=True)
class Case:
    """One row: ``setup(tmp)`` writes the inputs under ``tmp/in`` and returns the CLI arguments.

    ``library(tmp)`` (after ``setup``) calls the library on the same input and
    must raise ``library_error`` with a message matching ``library_patterns``
    (default: ``patterns``).
    """

    id: str
    setup: Callable[[Path], list]
    patterns: tuple[str, ...]
    exit_code: int = 1
    library: Callable[[Path], Any] | None = None
    library_error: type | tuple[type, ...] = ValueError
    library_patterns: tuple[str, ...] | None = None
    skip_reason: str | None = None
    cli: bool = True  # False: a library-only row (its CLI twin is another row)


def _in(tmp: Path) -> Path:
    folder = tmp / "in"
    folder.mkdir(exist_ok=True)
    return folder


def _gray_file(tmp: Path, name: str = "g.png", shape=(24, 24)) -> Path:
    path = _in(tmp) / name
    if not path.exists():
        write_image(path, _noisy(shape))
    return path


def _bytes_file(name: str, content: Callable[[Path], bytes]):
    def setup(tmp: Path) -> list:
        path = _in(tmp) / name
        path.write_bytes(content(tmp))
        return ["denoise", path, *PARAMS]

    return setup


def _encoded_png(tmp: Path) -> bytes:
    return nio._encode_png(_noisy((32, 32)))


def _truncated_png(tmp: Path) -> bytes:
    data = _encoded_png(tmp)
    return data[: len(data) // 2]


def _png_bad_zlib(tmp: Path) -> bytes:
    body = bytearray(zlib.compress(bytes(33 * 32)))
    body[-4:] = b"\x00\x00\x00\x00"  # wrong Adler-32: "incorrect data check"
    return _png_with_idat(32, 32, bytes(body))


def _png_short_data(tmp: Path) -> bytes:
    return _png_with_idat(32, 32, zlib.compress(bytes(33 * 10)))  # 10 rows of 32


def _jpeg_bytes(tmp: Path) -> bytes:
    scratch = tmp / "scratch.jpg"
    write_image(scratch, _noisy((48, 48, 3)))
    data = scratch.read_bytes()
    scratch.unlink()
    return data


def _tiff_bytes(tmp: Path, pixels: np.ndarray) -> bytes:
    scratch = tmp / "scratch.tif"
    write_image(scratch, pixels)
    data = scratch.read_bytes()
    scratch.unlink()
    return data


def _float_tiff_with(value: float):
    def content(tmp: Path) -> bytes:
        pixels = _noisy((24, 24), np.float32)
        pixels[5, 7] = value
        return _tiff_bytes(tmp, pixels)

    return content


def _lib_read(name: str):
    return lambda tmp: read_image(tmp / "in" / name)


def _lib_denoise_file(name: str, **kwargs):
    return lambda tmp: nlmeans.denoise(
        read_image(tmp / "in" / name).pixels, **{**LIB_PARAMS, **kwargs}
    )


def _setup_missing(tmp: Path) -> list:
    _in(tmp)
    return ["denoise", tmp / "in" / "nope.png", *PARAMS]


def _setup_folder_as_file(tmp: Path) -> list:
    (_in(tmp) / "folder.png").mkdir()
    return ["denoise", tmp / "in" / "folder.png", *PARAMS]


def _setup_output_is_folder(tmp: Path) -> list:
    src = _gray_file(tmp)
    (tmp / "in" / "adir").mkdir()
    return ["denoise", src, "-o", tmp / "in" / "adir", *PARAMS]


def _setup_small(tmp: Path) -> list:
    return [
        "denoise",
        _gray_file(tmp, "small.png", (4, 30)),
        "-p",
        "5",
        "-r",
        "1",
        "--h",
        "0.08",
        "--sigma",
        "0.03",
    ]


def _setup_file_parent(option: str, sub: str | None):
    def setup(tmp: Path) -> list:
        src = _gray_file(tmp)
        blocker = _in(tmp) / "blocker"
        blocker.write_text("a file, not a folder\n")
        target = blocker / sub if sub else blocker
        return ["denoise", src, option, target, *PARAMS]

    return setup


def _setup_readonly(tmp: Path) -> list:
    src = _gray_file(tmp)
    ro = _in(tmp) / "readonly"
    ro.mkdir()
    ro.chmod(0o500)
    return ["denoise", src, "-d", ro, *PARAMS]


def _lib_readonly(tmp: Path):
    return write_image(tmp / "in" / "readonly" / "x.png", _noisy((8, 8)))


def _setup_failing_run_new_outdir(tmp: Path) -> list:
    (_in(tmp) / "empty.png").write_bytes(b"")
    return ["denoise", tmp / "in" / "empty.png", "-d", tmp / "newdir", *PARAMS]


def _setup_output_is_input(variant: str):
    def setup(tmp: Path) -> list:
        src = _gray_file(tmp)
        if variant == "same":
            return ["denoise", src, "-o", src, *PARAMS]
        if variant == "same-force":
            return ["denoise", src, "-o", src, "--force", *PARAMS]
        if variant == "spelling":
            return [
                "denoise",
                src,
                "-o",
                tmp / "in" / ".." / "in" / "." / "g.png",
                "--force",
                *PARAMS,
            ]
        if variant == "symlink":
            (tmp / "in" / "link.png").symlink_to(src)
            return ["denoise", src, "-o", tmp / "in" / "link.png", "--force", *PARAMS]
        if variant == "hardlink":
            os.link(src, tmp / "in" / "hard.png")
            return ["denoise", src, "-o", tmp / "in" / "hard.png", "--force", *PARAMS]
        raise AssertionError(variant)

    return setup


def _lib_write_onto_input(name: str):
    def call(tmp: Path):
        image = read_image(tmp / "in" / "g.png")
        return write_image(tmp / "in" / name, image.pixels, like=image, force=True)

    return call


def _setup_option(*option: str):
    """Parameter out of range: ``denoise g.png -p 3 -r 2 ... OPTION VALUE`` (the last value wins)."""

    def setup(tmp: Path) -> list:
        return ["denoise", _gray_file(tmp), *PARAMS, *option]

    return setup


def _setup_checkpoint(command: str, kind: str):
    def setup(tmp: Path) -> list:
        files = _checkpoint_files(_in(tmp))
        if command == "resume":
            return [
                "train-neural",
                "--data",
                _train_data(tmp / "in"),
                "--resume",
                files[kind],
                "--out",
                tmp / "in" / "new.pt",
                *TRAIN,
            ]
        return [
            "explain",
            _gray_file(tmp),
            "--at",
            "5,5",
            "--weights",
            files[kind],
            "-o",
            tmp / "in" / "e.png",
            "-p",
            "3",
            "-r",
            "2",
        ]

    return setup


def _lib_checkpoint(kind: str, loader: str = "load_checkpoint"):
    def call(tmp: Path):
        import nlmeans.neural as nn_

        name = {
            "evil": "evil.pt",
            "pickle": "evil.pkl",
            "foreign": "foreign.pt",
            "empty": "empty.pt",
            "folder": "folder.pt",
        }[kind]
        return getattr(nn_, loader)(tmp / "in" / name)

    return call


def _setup_train_option(*option: str):
    def setup(tmp: Path) -> list:
        return [
            "train-neural",
            "--data",
            _train_data(_in(tmp)),
            "--out",
            tmp / "in" / "new.pt",
            *TRAIN,
            *option,
        ]

    return setup


BAD_INPUT = [
    # ---- input paths
    Case(
        "missing-path",
        _setup_missing,
        ("nope.png", "no such file"),
        library=_lib_read("nope.png"),
        library_error=ImageReadError,
    ),
    Case(
        "folder-where-image-expected",
        _setup_folder_as_file,
        ("folder.png", "folder holds no"),
        library=_lib_read("folder.png"),
        library_error=ImageReadError,
        library_patterns=("folder.png", "is a folder"),
    ),
    Case(
        "folder-as-output-file",
        _setup_output_is_folder,
        ("--output", "adir", "is a folder"),
        exit_code=2,
    ),
    Case(
        "file-where-training-folder-expected",
        lambda tmp: [
            "train-neural",
            "--data",
            _gray_file(tmp),
            "--out",
            tmp / "in" / "m.pt",
            *TRAIN,
        ],
        ("--data", "not a folder"),
        exit_code=2,
    ),
    # ---- unreadable content
    Case(
        "zero-byte-file",
        _bytes_file("empty.png", lambda tmp: b""),
        ("empty.png", "empty"),
        library=_lib_read("empty.png"),
        library_error=ImageReadError,
    ),
    Case(
        "text-file-named-png",
        _bytes_file("notes.png", lambda tmp: b"just some notes\n"),
        ("notes.png", "not a PNG, TIFF or JPEG", "text"),
        library=_lib_read("notes.png"),
        library_error=ImageReadError,
    ),
    Case(
        "truncated-png",
        _bytes_file("cut.png", _truncated_png),
        ("cut.png", "truncated"),
        library=_lib_read("cut.png"),
        library_error=ImageReadError,
    ),
    Case(
        "png-corrupt-compressed-data",
        _bytes_file("zlib.png", _png_bad_zlib),
        ("zlib.png", "corrupt"),
        library=_lib_read("zlib.png"),
        library_error=ImageReadError,
    ),
    Case(
        "png-missing-rows",
        _bytes_file("short.png", _png_short_data),
        ("short.png", "corrupt"),
        library=_lib_read("short.png"),
        library_error=ImageReadError,
    ),
    Case(
        "truncated-jpeg",
        _bytes_file("cut.jpg", lambda tmp: _jpeg_bytes(tmp)[:700]),
        ("cut.jpg", "JPEG"),
        library=_lib_read("cut.jpg"),
        library_error=ImageReadError,
    ),
    Case(
        "truncated-tiff",
        _bytes_file("cut.tif", lambda tmp: _tiff_bytes(tmp, _noisy((32, 32, 3)))[:1500]),
        ("cut.tif", "TIFF"),
        library=_lib_read("cut.tif"),
        library_error=ImageReadError,
    ),
    Case(
        "float32-tiff-with-nan",
        _bytes_file("nan.tif", _float_tiff_with(float("nan"))),
        ("nan.tif", "NaN or Inf"),
        library=_lib_denoise_file("nan.tif"),
        library_patterns=("NaN or Inf",),
    ),
    Case(
        "float32-tiff-with-inf",
        _bytes_file("inf.tif", _float_tiff_with(float("inf"))),
        ("inf.tif", "NaN or Inf"),
        library=_lib_denoise_file("inf.tif"),
        library_patterns=("NaN or Inf",),
    ),
    # ---- decompression bombs: refused from the header
    Case(
        "huge-png-header",
        _bytes_file("huge.png", lambda tmp: _png_header_only(100_000, 100_000)),
        ("huge.png", "100000x100000", "limit"),
        library=_lib_read("huge.png"),
        library_error=ImageReadError,
    ),
    Case(
        "huge-jpeg-header",
        lambda tmp: ["denoise", _huge_jpeg(_in(tmp)), *PARAMS],
        ("huge.jpg", "65000x65000", "limit"),
        library=_lib_read("huge.jpg"),
        library_error=ImageReadError,
    ),
    Case(
        "huge-tiff-header",
        lambda tmp: ["denoise", _huge_tiff(_in(tmp), True), *PARAMS],
        ("huge.tif", "100000x100000", "limit"),
        library=_lib_read("huge.tif"),
        library_error=ImageReadError,
    ),
    Case(
        "huge-tiff-header-inconsistent-strips",
        lambda tmp: ["denoise", _huge_tiff(_in(tmp), False), *PARAMS],
        ("huge_inconsistent.tif", "limit"),
        library=_lib_read("huge_inconsistent.tif"),
        library_error=ImageReadError,
    ),
    # ---- image too small for the patch
    Case(
        "image-smaller-than-patch",
        _setup_small,
        ("small.png", "smaller than the patch", "patch_size=5"),
        library=lambda tmp: nlmeans.denoise(
            read_image(tmp / "in" / "small.png").pixels,
            patch_size=5,
            patch_distance=1,
            h=0.08,
            sigma=0.03,
        ),
        library_patterns=("smaller than the patch", "patch_size=5"),
    ),
    # ---- unwritable output folder (works as root too: the parent is a file)
    Case(
        "out-dir-below-a-file",
        _setup_file_parent("-d", "sub"),
        ("blocker/sub", "not a directory|not a folder"),
        library=lambda tmp: write_image(tmp / "in" / "blocker" / "x.png", _noisy((8, 8))),
        library_error=ImageWriteError,
        library_patterns=("blocker", "not a folder"),
    ),
    Case(
        "out-dir-is-a-file",
        _setup_file_parent("-d", None),
        ("--out-dir", "blocker", "not a folder"),
        exit_code=2,
    ),
    Case(
        "output-below-a-file",
        _setup_file_parent("-o", "x.png"),
        ("--output", "blocker/x.png"),
        exit_code=2,
    ),
    Case(
        "out-dir-read-only",
        _setup_readonly,
        ("readonly", "permission denied|cannot write"),
        library=_lib_readonly,
        library_error=ImageWriteError,
        library_patterns=("readonly", "permission denied"),
        skip_reason="running as root: permissions do not stop writes" if IS_ROOT else None,
    ),
    Case("failed-run-leaves-no-out-dir", _setup_failing_run_new_outdir, ("empty.png", "empty")),
    # ---- output path equal to the input
    Case("output-is-input", _setup_output_is_input("same"), ("g.png", "input file")),
    Case(
        "output-is-input-force",
        _setup_output_is_input("same-force"),
        ("g.png", "input file"),
        library=_lib_write_onto_input("g.png"),
        library_error=ImageWriteError,
        library_patterns=("input file",),
    ),
    Case(
        "output-is-input-other-spelling",
        _setup_output_is_input("spelling"),
        ("g.png", "input file"),
        library=_lib_write_onto_input("../in/./g.png"),
        library_error=ImageWriteError,
        library_patterns=("input file",),
    ),
    Case(
        "output-is-symlink-to-input",
        _setup_output_is_input("symlink"),
        ("g.png", "input file"),
        library=_lib_write_onto_input("link.png"),
        library_error=ImageWriteError,
        library_patterns=("input file",),
    ),
    Case(
        "output-is-hardlink-to-input",
        _setup_output_is_input("hardlink"),
        ("g.png", "input file"),
        library=_lib_write_onto_input("hard.png"),
        library_error=ImageWriteError,
        library_patterns=("input file",),
    ),
    # ---- parameters out of range (library side: test_library_parameter_out_of_range)
    Case("h-zero", _setup_option("--h", "0"), ("g.png", r"\bh must be positive")),
    Case("h-negative", _setup_option("--h", "-0.1"), ("g.png", r"\bh must be positive")),
    Case("h-nan", _setup_option("--h", "nan"), ("g.png", r"\bh must be finite")),
    Case("h-above-one", _setup_option("--h", "25"), ("--h", "above 1", "divide"), exit_code=2),
    Case("h-infinite", _setup_option("--h", "inf"), ("--h", "above 1"), exit_code=2),
    Case("h-not-a-number", _setup_option("--h", "abc"), ("--h", "number"), exit_code=2),
    Case(
        "sigma-negative", _setup_option("--sigma", "-0.1"), ("g.png", "sigma must be non-negative")
    ),
    Case("sigma-nan", _setup_option("--sigma", "nan"), ("g.png", "sigma must be finite")),
    Case(
        "sigma-above-one",
        _setup_option("--sigma", "25"),
        ("--sigma", "above 1", "divide"),
        exit_code=2,
    ),
    Case(
        "patch-size-zero",
        _setup_option("-p", "0"),
        ("g.png", "patch_size must be an odd positive integer"),
    ),
    Case(
        "patch-size-even",
        _setup_option("-p", "4"),
        ("g.png", "patch_size must be an odd positive integer"),
    ),
    Case(
        "patch-size-negative",
        _setup_option("-p", "-3"),
        ("g.png", "patch_size must be an odd positive integer"),
    ),
    Case(
        "patch-size-not-integer",
        _setup_option("-p", "3.5"),
        ("--patch-size", "integer"),
        exit_code=2,
    ),
    Case(
        "patch-distance-negative",
        _setup_option("-r", "-1"),
        ("g.png", "patch_distance must be a non-negative"),
    ),
    Case(
        "threads-zero",
        _setup_option("--threads", "0"),
        ("--threads", "greater than or equal to 1"),
        exit_code=2,
    ),
    Case(
        "threads-above-maximum",
        _setup_option("--threads", "100000"),
        ("threads must be between 1 and",),
    ),
    Case(
        "unknown-method", _setup_option("--method", "median"), ("--method", "median"), exit_code=2
    ),
    Case("train-lr-zero", _setup_train_option("--lr", "0"), ("lr must be positive",)),
    Case("train-lr-negative", _setup_train_option("--lr", "-1"), ("--lr",), exit_code=2),
    Case("train-steps-zero", _setup_train_option("--steps", "0"), ("--steps",), exit_code=2),
    Case(
        "train-batch-size-zero",
        _setup_train_option("--batch-size", "0"),
        ("--batch-size",),
        exit_code=2,
    ),
    Case(
        "train-patch-size-one",
        _setup_train_option("--patch-size", "1"),
        ("--patch-size",),
        exit_code=2,
    ),
    Case(
        "train-sigma-above-255",
        _setup_train_option("--sigma", "0,300"),
        ("--sigma", "255"),
        exit_code=2,
    ),
    Case("train-unknown-noise", _setup_train_option("--noise", "salt"), ("noise must be one of",)),
    Case("train-unknown-device", _setup_train_option("--device", "tpu"), ("device must be",)),
    # ---- checkpoints that are not ours
    Case(
        "resume-foreign-checkpoint",
        _setup_checkpoint("resume", "foreign"),
        ("foreign.pt", "not a valid nlmeans"),
        library=_lib_checkpoint("foreign"),
    ),
    Case(
        "resume-zero-byte-checkpoint",
        _setup_checkpoint("resume", "empty"),
        ("empty.pt", "not a valid nlmeans"),
        library=_lib_checkpoint("empty"),
    ),
    Case(
        "resume-raw-pickle-with-code",
        _setup_checkpoint("resume", "pickle"),
        ("evil.pkl", "not a valid nlmeans"),
        library=_lib_checkpoint("pickle"),
    ),
    Case(
        "resume-checkpoint-with-pickled-code",
        _setup_checkpoint("resume", "evil"),
        ("evil.pt", "not a valid nlmeans", "code|global"),
        library=_lib_checkpoint("evil"),
    ),
    Case(
        "load-model-with-pickled-code",
        _setup_checkpoint("resume", "evil"),
        ("evil.pt", "code|global"),
        library=_lib_checkpoint("evil", "load_model"),
        cli=False,
    ),
    Case(
        "resume-inference-weights",
        _setup_checkpoint("resume", "weights"),
        ("weights.safetensors", "inference weights only"),
    ),
    Case(
        "resume-folder-as-checkpoint",
        _setup_checkpoint("resume", "folder"),
        ("folder.pt", "is a (folder|directory)|not a (regular )?file"),
        exit_code=2,
        library=_lib_checkpoint("folder"),
        library_error=(ValueError, OSError),
    ),
    Case(
        "explain-foreign-weights",
        _setup_checkpoint("explain", "foreign"),
        ("foreign.pt", "not a valid nlmeans"),
    ),
    Case(
        "explain-weights-with-pickled-code",
        _setup_checkpoint("explain", "evil"),
        ("evil.pt", "not a valid nlmeans"),
    ),
]


def _params(rows, part: str):
    out = []
    for case in rows:
        if (part == "library" and case.library is None) or (part == "cli" and not case.cli):
            continue
        marks = []
        if case.skip_reason:
            marks.append(pytest.mark.skip(reason=case.skip_reason))
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


@pytest.mark.parametrize("case", _params(BAD_INPUT, "cli"))
def test_cli_bad_input(case: Case, tmp_path, capfd, caplog):
    args = case.setup(tmp_path)
    before = _snapshot(tmp_path)
    run = run_cli(args, capfd, caplog)
    assert_refused(run, case.exit_code, case.patterns)
    assert (
        _snapshot(tmp_path) == before
    )  # inputs unchanged (bytes, mtime), nothing new, no temp files
    assert not (tmp_path / "in" / "PWNED").exists()  # no pickled code ran


@pytest.mark.parametrize("case", _params(BAD_INPUT, "library"))
def test_library_bad_input(case: Case, tmp_path):
    case.setup(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(case.library_error) as info:
        case.library(tmp_path)
    message = str(info.value)
    for pattern in case.library_patterns or case.patterns:
        assert re.search(pattern, message, re.IGNORECASE), (pattern, message)
    assert "\x1b" not in message  # plain text, no terminal escape codes
    assert "\n" not in message.strip()
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / "in" / "PWNED").exists()


def test_library_rejects_a_path_string():
    with pytest.raises(TypeError, match="NumPy array"):
        nlmeans.denoise(str(SAMPLES / "camera.png"))


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(h=0.0), ValueError, r"\bh must be positive"),
        (dict(h=-0.1), ValueError, r"\bh must be positive"),
        (dict(h=float("nan")), ValueError, r"\bh must be finite"),
        (dict(h=float("inf")), ValueError, r"\bh must be finite"),
        (dict(h="0.1"), TypeError, r"\bh must be a real number"),
        (dict(sigma=-0.1), ValueError, "sigma must be non-negative"),
        (dict(sigma=float("nan")), ValueError, "sigma must be finite"),
        (dict(sigma=float("inf")), ValueError, "sigma must be finite"),
        (dict(patch_size=0), ValueError, "patch_size"),
        (dict(patch_size=4), ValueError, "patch_size"),
        (dict(patch_size=-3), ValueError, "patch_size"),
        (dict(patch_size=3.0), TypeError, "patch_size"),
        (dict(patch_size=True), TypeError, "patch_size"),
        (dict(patch_distance=-1), ValueError, "patch_distance"),
        (dict(patch_distance=2.0), TypeError, "patch_distance"),
        (dict(threads=0), ValueError, "threads"),
        (dict(threads=100_000), ValueError, "threads"),
        (dict(threads=1.5), TypeError, "threads"),
        (dict(method="median"), ValueError, "method"),
        (dict(channel_axis=3), ValueError, "channel_axis"),
        (dict(method="neural", h=0.1), ValueError, r"\bh does not apply"),
        (dict(method="neural", patch_size=3), ValueError, "patch_size does not apply"),
    ],
    ids=lambda v: "-".join(f"{k}={v[k]!r}" for k in v) if isinstance(v, dict) else None,
)
def test_library_parameter_out_of_range(kwargs, error, pattern):
    image = _noisy((20, 20), np.float32)
    before = image.copy()
    call = {**dict(h=0.08, sigma=0.03, patch_size=3, patch_distance=2), **kwargs}
    if call.get("method") == "neural":
        for name in ("h", "patch_size", "patch_distance"):
            if name not in kwargs:
                call.pop(name)
    with pytest.raises(error, match=pattern):
        nlmeans.denoise(image, **call)
    if "threads" not in kwargs:  # resolve_parameters takes the same arguments but threads
        with pytest.raises(error, match=pattern):
            nlmeans.resolve_parameters(image, **call)
    np.testing.assert_array_equal(image, before)


def test_decompression_bombs_are_refused_without_allocating(tmp_path):
    files = [tmp_path / "huge.png", _huge_jpeg(tmp_path), _huge_tiff(tmp_path, True)]
    files[0].write_bytes(_png_header_only(100_000, 100_000))
    for ext in (".png", ".jpg", ".tif"):  # import the decoders before measuring
        write_image(tmp_path / f"warm{ext}", np.zeros((8, 8), np.uint8))
        read_image(tmp_path / f"warm{ext}")
    for path in files:
        tracemalloc.start()
        try:
            with pytest.raises(ImageReadError, match="limit"):
                read_image(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # Refused from the header: a decoded image would be 10 GB.
        assert peak < 8 << 20, (path.name, peak)


def test_cli_pixel_limit_comes_from_the_environment(tmp_path, monkeypatch, capfd, caplog):
    src = _gray_file(tmp_path)
    monkeypatch.setenv("NLMEANS_MAX_PIXELS", "100")
    before = _snapshot(tmp_path)
    run = run_cli(["denoise", src, *PARAMS], capfd, caplog)
    assert_refused(run, 1, ("g.png", "576 pixels", "limit of 100", "NLMEANS_MAX_PIXELS"))
    assert _snapshot(tmp_path) == before
    monkeypatch.setenv("NLMEANS_MAX_PIXELS", "576")
    run = run_cli(["denoise", src, *PARAMS], capfd, caplog)
    assert run.exit_code == 0, run.stderr


# --------------------------------------------------------------------------- odd but supported inputs


@dataclass(frozen=True)
class Supported:
    id: str
    pixels: Callable[[], np.ndarray]
    name: str = "x.png"
    args: tuple[str, ...] = tuple(PARAMS)
    library_kwargs: dict | None = None  # None: LIB_PARAMS
    disguise: bool = False  # write as JPEG, name as .png


def _black(shape, dtype):
    return lambda: np.zeros(shape, dtype)


SUPPORTED = [
    Supported(
        "rgba-8bit",
        lambda: np.concatenate(
            [
                _noisy((24, 24, 3)),
                np.tile(np.linspace(0, 255, 24).astype(np.uint8), (24, 1))[..., None],
            ],
            axis=2,
        ),
    ),
    Supported(
        "gray-alpha-8bit",
        lambda: np.stack(
            [_noisy((24, 24)), np.tile(np.linspace(0, 255, 24).astype(np.uint8), (24, 1))], axis=2
        ),
    ),
    Supported("gray-16bit", lambda: _noisy((24, 24), np.uint16)),
    Supported("rgb-16bit", lambda: _noisy((24, 24, 3), np.uint16)),
    Supported(
        "rgba-16bit",
        lambda: np.concatenate(
            [_noisy((24, 24, 3), np.uint16), np.full((24, 24, 1), 40000, np.uint16)], axis=2
        ),
    ),
    Supported(
        "gray-alpha-16bit",
        lambda: np.stack([_noisy((24, 24), np.uint16), _noisy((24, 24), np.uint16, 5)], 2),
    ),
    Supported("float32-tiff", lambda: _noisy((24, 24), np.float32), name="x.tif"),
    Supported(
        "float64-rgb-tiff-outside-0-1",
        lambda: _noisy((24, 24, 3), np.float64) * 3 - 1,
        name="x.tif",
    ),
    Supported("jpeg-named-png", lambda: _noisy((24, 24, 3)), disguise=True),
    Supported(
        "one-pixel-patch-one",
        lambda: np.array([[77]], np.uint8),
        args=("-p", "1", "-r", "1", "--h", "0.1", "--sigma", "0"),
        library_kwargs=dict(patch_size=1, patch_distance=1, h=0.1, sigma=0.0),
    ),
    Supported(
        "one-pixel-rgba",
        lambda: np.array([[[10, 20, 30, 40]]], np.uint8),
        args=("-p", "1", "-r", "3", "--h", "0.1", "--sigma", "0"),
        library_kwargs=dict(patch_size=1, patch_distance=3, h=0.1, sigma=0.0),
    ),
    Supported(
        "image-exactly-patch-size",
        lambda: _noisy((3, 3)),
        args=("-p", "3", "-r", "5", "--h", "0.1", "--sigma", "0"),
        library_kwargs=dict(patch_size=3, patch_distance=5, h=0.1, sigma=0.0),
    ),
    Supported(
        "narrow-strip-automatic-sigma",
        lambda: _noisy((30, 3)),
        args=("-p", "3", "-r", "2"),
        library_kwargs=dict(patch_size=3, patch_distance=2),
    ),
    Supported("all-black-8bit-automatic", _black((24, 24), np.uint8), args=(), library_kwargs={}),
    Supported(
        "all-black-float-tiff-automatic",
        _black((24, 24), np.float32),
        name="x.tif",
        args=(),
        library_kwargs={},
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in SUPPORTED])
def test_cli_supported_odd_input(case: Supported, tmp_path, capfd, caplog):
    folder = _in(tmp_path)
    pixels = case.pixels()
    src = folder / case.name
    if case.disguise:
        write_image(folder / "real.jpg", pixels)
        (folder / "real.jpg").rename(src)
    else:
        write_image(src, pixels)
    before = _snapshot(tmp_path)
    run = run_cli(["denoise", src, *case.args], capfd, caplog)
    assert_no_traceback(run)
    assert run.exit_code == 0, run.stderr
    dst = src.with_name(f"{src.stem}_denoised{src.suffix}")
    assert run.stdout.strip() == str(dst)
    assert not re.search(CHATTER, run.stderr), run.stderr
    after = _snapshot(tmp_path)
    new = set(after) - set(before)
    assert new == {dst.relative_to(tmp_path).as_posix()}
    assert {k: after[k] for k in before} == before  # the input is untouched
    # the output is exactly the library's result for the pixels that were read
    image = read_image(src)
    if case.disguise:
        assert image.format == "JPEG" and dst.read_bytes().startswith(b"\x89PNG")
    color, alpha = image.split_alpha()
    kwargs = LIB_PARAMS if case.library_kwargs is None else case.library_kwargs
    expected = nlmeans.denoise(color, channel_axis=-1 if color.ndim == 3 else None, **kwargs)
    out = read_image(dst)
    assert out.pixels.dtype == image.pixels.dtype and out.mode == image.mode
    np.testing.assert_array_equal(out.pixels, nio.merge_alpha(expected, alpha))
    assert np.isfinite(out.pixels.astype(np.float64)).all()


def test_one_pixel_image_with_automatic_parameters(tmp_path, capfd, caplog):
    """Either denoised (the output is the pixel) or refused in one line naming the patch: no chatter."""
    src = _in(tmp_path) / "dot.png"
    write_image(src, np.array([[77]], np.uint8))
    before = _snapshot(tmp_path)
    run = run_cli(["denoise", src], capfd, caplog)
    assert_no_traceback(run)
    if run.exit_code == 0:
        assert not re.search(CHATTER, run.stderr), run.stderr
        assert read_image(src.with_name("dot_denoised.png")).pixels.tolist() == [[77]]
    else:
        assert_refused(run, 1, ("dot.png", "patch"))
        assert _snapshot(tmp_path) == before


def test_explain_all_black_image(tmp_path, capfd, caplog):
    src = _in(tmp_path) / "black.png"
    write_image(src, np.zeros((24, 24), np.uint8))
    run = run_cli(
        ["explain", src, "--at", "3,3", "--no-neural", "-p", "3", "-r", "2"], capfd, caplog
    )
    assert_no_traceback(run)
    assert run.exit_code == 0, run.stderr
    assert not re.search(CHATTER + r"|\bnan\b", run.stderr), run.stderr


# --------------------------------------------------------------------------- numerically extreme but valid


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_all_black_image_library(dtype):
    image = np.zeros((16, 16), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nlmeans.estimate_sigma(image) == 0.0
        for method in ("fast", "exact", "patchwise"):
            out, params = nlmeans.denoise(image, method=method, return_params=True)
            assert math.isfinite(params.sigma) and math.isfinite(params.h)
            np.testing.assert_array_equal(out, image)


def _finite_in_range_or_refused(image, name, **kwargs):
    """Valid parameters: a finite in-range result, or a ValueError naming ``name``. Nothing else."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            out = nlmeans.denoise(image, **kwargs)
        except ValueError as exc:
            assert name in str(exc), exc
            return
    assert np.isfinite(out).all()
    assert out.min() >= image.min() and out.max() <= image.max()


@pytest.mark.parametrize("h", [1e-25, 1e-200, 5e-324])
def test_tiny_h(h):
    image = _noisy((16, 16), np.float64)
    for method in ("fast", "exact", "patchwise"):
        _finite_in_range_or_refused(
            image, "h", h=h, sigma=0.05, patch_size=3, patch_distance=2, method=method
        )


def test_cli_tiny_h_is_not_a_traceback(tmp_path, capfd, caplog):
    src = _gray_file(tmp_path)
    before = _snapshot(tmp_path)
    run = run_cli(
        ["denoise", src, "-p", "3", "-r", "2", "--sigma", "0.05", "--h", "1e-200"], capfd, caplog
    )
    assert_no_traceback(run)
    if run.exit_code == 0:
        assert not re.search(CHATTER, run.stderr), run.stderr
    else:
        assert_refused(run, 1, ("g.png", r"\bh\b"))
        assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("scale", [1e20, 1e30, 3e37])
def test_float_image_of_large_magnitude(scale):
    image = (_noisy((16, 16), np.float64) * scale).astype(np.float32)
    _finite_in_range_or_refused(image, "image", patch_size=3, patch_distance=2)


def test_huge_sigma_is_not_an_overflow_error():
    _finite_in_range_or_refused(
        _noisy((16, 16), np.float64), "sigma", sigma=1e200, h=0.1, patch_size=3, patch_distance=2
    )


def test_huge_patch_distance_costs_no_memory():
    """The window is clipped at the border: a radius beyond the image must cost nothing more."""
    image = _noisy((16, 16), np.float32)
    reference = nlmeans.denoise(image, h=0.1, sigma=0.02, patch_size=3, patch_distance=15)
    tracemalloc.start()
    try:
        out = nlmeans.denoise(image, h=0.1, sigma=0.02, patch_size=3, patch_distance=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(out, reference)
    # today: ~73 MiB for a radius of 500, and `nlmeans denoise x.png -r 1000000` never ends
    assert peak < 20 << 20, f"{peak / 2**20:.0f} MiB for a 16x16 image"


# --------------------------------------------------------------------------- property tests


@pytest.fixture(scope="module")
def neural_weights(tmp_path_factory):
    """The shipped weights if present; else a small random model stands in for them."""
    _torch_or_skip()
    from nlmeans.neural import inference

    if inference.default_weights_path().is_file():
        yield inference.default_weights_path()
        return
    import torch

    from nlmeans.neural import NonLocalDenoiser, save_weights

    torch.manual_seed(0)
    path = save_weights(
        tmp_path_factory.mktemp("weights") / "tiny.safetensors", NonLocalDenoiser(_tiny_config())
    )
    patch = pytest.MonkeyPatch()
    patch.setattr(inference, "default_weights_path", lambda: path)
    yield path
    patch.undo()


def _random_image(rng, shape, dtype, scale):
    if np.dtype(dtype).kind == "u":
        top = np.iinfo(dtype).max
        lo, hi = sorted(rng.integers(0, top, 2, endpoint=True))
        return rng.integers(lo, hi, shape, endpoint=True).astype(dtype)
    return (rng.standard_normal(shape) * scale + rng.uniform(-1, 1) * scale).astype(dtype)


@st.composite
def _layouts(draw, volumes: bool):
    """(shape, channel_axis): gray, channels at any axis, or (classical only) a volume."""
    kinds = ["gray", "channels"] + (["volume"] if volumes else [])
    kind = draw(st.sampled_from(kinds))
    h, w = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    if kind == "gray":
        return (h, w), None
    if kind == "volume":
        return (draw(st.integers(3, 6)), draw(st.integers(3, 7)), draw(st.integers(3, 7))), None
    c = draw(st.integers(1, 5))
    axis = draw(st.sampled_from([0, 2, -1]))
    shape = [h, w]
    shape.insert(axis if axis >= 0 else 2, c)
    return tuple(shape), axis


def _check_properties(image, out):
    assert out.shape == image.shape and out.dtype == image.dtype
    assert np.isfinite(out.astype(np.float64)).all()
    assert out.min() >= image.min() and out.max() <= image.max()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layout=_layouts(volumes=True),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64]),
    method=st.sampled_from(["fast", "exact", "patchwise"]),
    patch_size=st.sampled_from([None, 1, 3, 5]),
    patch_distance=st.one_of(st.none(), st.integers(0, 4)),
    h=st.one_of(st.none(), st.floats(1e-3, 10.0)),
    sigma=st.one_of(st.none(), st.floats(0.0, 0.5)),
    threads=st.sampled_from([None, 1]),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    seed=st.integers(0, 2**16),
)
def test_property_classical(
    layout, dtype, method, patch_size, patch_distance, h, sigma, threads, scale, seed
):
    """Automatic or given parameters, any layout: a valid result or a clear 'smaller than the patch'."""
    shape, axis = layout
    image = _random_image(np.random.default_rng(seed), shape, dtype, scale)
    before = image.copy()
    kwargs = dict(
        method=method,
        patch_size=patch_size,
        patch_distance=patch_distance,
        h=h,
        sigma=sigma,
        channel_axis=axis,
    )
    spatial = [n for i, n in enumerate(shape) if axis is None or i != axis % len(shape)]
    try:
        params = nlmeans.resolve_parameters(image, **kwargs)
    except ValueError as exc:
        assert "smaller than the patch" in str(exc)
        assert patch_size is None or min(spatial) < patch_size
        event("refused: image smaller than the patch")
        with pytest.raises(ValueError, match="smaller than the patch"):
            nlmeans.denoise(image, threads=threads, **kwargs)
        return
    assert min(spatial) >= params.patch_size
    event("denoised")
    out = nlmeans.denoise(image, threads=threads, **kwargs)
    _check_properties(image, out)
    np.testing.assert_array_equal(image, before)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layout=_layouts(volumes=False),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64]),
    sigma=st.one_of(st.none(), st.floats(0.0, 0.3)),
    seed=st.integers(0, 2**16),
)
def test_property_neural(neural_weights, layout, dtype, sigma, seed):
    shape, axis = layout
    image = _random_image(np.random.default_rng(seed), shape, dtype, 1.0)
    before = image.copy()
    out = nlmeans.denoise(image, method="neural", sigma=sigma, channel_axis=axis)
    _check_properties(image, out)
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.uint16])
def test_neural_output_within_input_range(tmp_path, monkeypatch, dtype):
    """Whatever the weights, the wrapper keeps the result within the input's range (as the classical path does).

    The weights here predict a constant noise of 0.05: the raw network output is
    the input minus 0.05, below the input's minimum everywhere.
    """
    torch = _torch_or_skip()
    from nlmeans.neural import NonLocalDenoiser, inference, save_weights

    torch.manual_seed(0)
    model = NonLocalDenoiser(_tiny_config())
    with torch.no_grad():
        model.tail.weight.zero_()
        model.tail.bias.fill_(0.05)
    path = save_weights(tmp_path / "shifting.safetensors", model)
    monkeypatch.setattr(inference, "default_weights_path", lambda: path)
    rng = np.random.default_rng(0)
    if dtype == np.float32:
        image = (0.4 + 0.2 * rng.random((20, 20))).astype(np.float32)
    else:
        top = np.iinfo(dtype).max
        image = rng.integers(int(0.4 * top), int(0.6 * top), (20, 20)).astype(dtype)
    out = nlmeans.denoise(image, method="neural")
    _check_properties(image, out)


# --------------------------------------------------------------------------- concurrency


def test_batch_with_two_threads_gives_the_same_bytes_as_one_file_at_a_time(tmp_path, capfd, caplog):
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has a single thread here")
    folder = _in(tmp_path)
    pixels = [
        _noisy((40, 44), seed=1),
        _noisy((40, 44, 3), seed=2),
        _noisy((33, 41), np.uint16, seed=3),
        _noisy((40, 44, 3), np.uint16, seed=4),
        _noisy((36, 36), np.float32, seed=5),
        np.concatenate([_noisy((40, 44, 3), seed=6), _noisy((40, 44, 1), seed=7)], axis=2),
    ]
    names = ["a.png", "b.png", "c.png", "d.png", "e.tif", "f.png"]
    for name, px in zip(names, pixels):
        write_image(folder / name, px)
    args = ["-m", "patchwise", "-p", "5", "-r", "4", "--h", "0.06", "--sigma", "0.02"]
    batch = run_cli(
        [
            "denoise",
            *[folder / n for n in names],
            "-d",
            tmp_path / "batch",
            "--threads",
            "2",
            *args,
        ],
        capfd,
        caplog,
    )
    assert batch.exit_code == 0, batch.stderr
    for name in names:
        single = run_cli(
            ["denoise", folder / name, "-d", tmp_path / "single", "--threads", "1", *args],
            capfd,
            caplog,
        )
        assert single.exit_code == 0, single.stderr
    outputs = sorted(p.name for p in (tmp_path / "batch").iterdir())
    assert outputs == sorted(p.name for p in (tmp_path / "single").iterdir()) and len(outputs) == 6
    for name in outputs:
        assert (tmp_path / "batch" / name).read_bytes() == (
            tmp_path / "single" / name
        ).read_bytes(), name


def test_library_calls_from_several_threads_agree_with_sequential_calls():
    jobs = [
        (
            _noisy((40, 40), seed=s),
            dict(method=m, patch_size=3, patch_distance=3, h=0.07, sigma=0.02, threads=t),
        )
        for s, (m, t) in enumerate(
            [
                ("fast", 1),
                ("exact", 2),
                ("patchwise", 1),
                ("fast", None),
                ("exact", 1),
                ("patchwise", 2),
                ("fast", 2),
                ("exact", None),
            ]
        )
    ]
    import numba

    jobs = [
        (
            img,
            {
                **kw,
                "threads": min(kw["threads"], numba.config.NUMBA_NUM_THREADS)
                if kw["threads"]
                else None,
            },
        )
        for img, kw in jobs
    ]
    sequential = [nlmeans.denoise(img, **kw) for img, kw in jobs]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda job: nlmeans.denoise(job[0], **job[1]), jobs * 2))
    for i, out in enumerate(parallel):
        np.testing.assert_array_equal(out, sequential[i % len(jobs)])


# --------------------------------------------------------------------------- SIGINT (installed script)


def _script() -> Path:
    if os.name == "nt":
        pytest.skip("SIGINT delivery differs on Windows")
    path = Path(sys.executable).parent / "nlmeans"
    if not path.exists():
        pytest.skip("the nlmeans script is not installed next to this Python")
    return path


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="100")
    env.pop("NLMEANS_MAX_PIXELS", None)
    return env


def _wait_for(predicate, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(
                f"the process ended (status {proc.returncode}) before it could be interrupted:\n{err}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail("timed out waiting for the first output")
        time.sleep(0.01)


#: Run as ``python -c _WITH_DEFAULT_SIGINT PROGRAM ARGS...``: resets SIGINT to
#: its default disposition, then execs PROGRAM. A test run started with SIGINT
#: ignored (``nohup``, a background job of a non-interactive shell, some CI
#: runners) hands SIG_IGN down through fork and exec; Python then installs no
#: KeyboardInterrupt handler in the child and the SIGINT these tests send is
#: dropped. With SIG_DFL at exec, the child's Python installs its handler as
#: under a terminal. (A wrapper, not ``preexec_fn``: that one runs Python code
#: between fork and exec, which is unsafe in this multi-threaded process.)
_WITH_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def _start(args: list, **kwargs) -> subprocess.Popen:
    """``subprocess.Popen(args, **kwargs)``, with SIGINT at its default whatever this process inherited."""
    return subprocess.Popen([sys.executable, "-c", _WITH_DEFAULT_SIGINT, *map(str, args)], **kwargs)


def _interrupt(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the process did not stop within 30 s of SIGINT")


def test_sigint_in_the_middle_of_a_batch(tmp_path):
    script = _script()
    folder = _in(tmp_path)
    pixels = read_image(
        SAMPLES / "camera.png"
    ).pixels  # 256 x 256: ~0.3 s per file with these settings
    write_image(folder / "img00.png", pixels)
    for i in range(1, 30):
        (folder / f"img{i:02d}.png").write_bytes((folder / "img00.png").read_bytes())
    args = [
        "-m",
        "patchwise",
        "-p",
        "7",
        "-r",
        "15",
        "--h",
        "0.05",
        "--sigma",
        "0.02",
        "--threads",
        "1",
    ]
    expected = nlmeans.denoise(
        pixels, method="patchwise", patch_size=7, patch_distance=15, h=0.05, sigma=0.02, threads=1
    )  # also fills the kernel cache the subprocess reads
    before = _snapshot(folder)
    out = tmp_path / "out"
    proc = _start(
        [script, "denoise", folder, "-d", out, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    _wait_for(
        lambda: out.is_dir() and any(p.name.endswith("_denoised.png") for p in out.iterdir()),
        proc,
        120,
    )
    stdout, stderr = _interrupt(proc)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout
    assert stderr.count("Interrupted.") == 1 and "Error" not in stderr, stderr
    done = sorted(out.iterdir())
    assert all(p.name.endswith("_denoised.png") and not p.name.startswith(".") for p in done), (
        done
    )  # no temp files
    assert 1 <= len(done) < 30, "the batch was not interrupted in the middle"
    for path in done:  # every output present is complete
        np.testing.assert_array_equal(read_image(path).pixels, expected)
    assert _snapshot(folder) == before  # inputs untouched


def test_sigint_in_the_middle_of_training_then_resume(tmp_path):
    _torch_or_skip()
    script = _script()
    data = tmp_path / "data"
    data.mkdir()
    camera = read_image(SAMPLES / "camera.png").pixels
    for i in range(
        3
    ):  # 16 x 16 images, patch 16: one step per epoch, so a checkpoint after every step
        write_image(data / f"{i}.png", camera[40 * i : 40 * i + 16, 60:76])
    before = _snapshot(data)
    ckpt = tmp_path / "model.pt"
    total = 60
    common = ["--data", str(data), "--threads", "1"]
    proc = _start(
        [
            script,
            "train-neural",
            *common,
            "--steps",
            str(total),
            "--batch-size",
            "4",
            "--patch-size",
            "16",
            "--out",
            str(ckpt),
            "--seed",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    _wait_for(ckpt.exists, proc, 120)
    stdout, stderr = _interrupt(proc)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout
    message = re.search(
        r"training interrupted at step \d+/60; the last complete checkpoint is \S*model\.pt "
        r"\(step (\d+)\)\. Resume with `nlmeans train-neural --resume",
        stderr,
    )
    assert message, stderr
    saved = int(message.group(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "data",
        "model.pt",
    ]  # no temporary checkpoint left
    import nlmeans.neural as nn_

    state = nn_.load_checkpoint(ckpt)
    assert state["step"] == saved and 1 <= saved < total
    assert [h["step"] for h in state["history"]] == list(range(1, saved + 1))

    resumed = subprocess.run(
        [str(script), "train-neural", *common, "--resume", str(ckpt)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {total}/{total} (done)" in resumed.stdout
    assert f"step {saved + 1}/{total}" in resumed.stderr  # the counter goes on from the checkpoint
    final = nn_.load_checkpoint(ckpt)
    assert final["step"] == total and final["complete"] is True
    assert [h["step"] for h in final["history"]] == list(range(1, total + 1))
    assert _snapshot(data) == before
