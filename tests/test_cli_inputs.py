"""The CLI (and, where the concept exists, the library) on bad and on odd but supported input.

* ``BAD_INPUT``: every row of the bad-input matrix, run through ``nlmeans``
  and through the library. A refused input must give: a non-zero exit status,
  exactly one ``Error: ...`` line on stderr naming the problem (exit 1), or a
  usage error naming the option (exit 2), no traceback, and the folder
  untouched: inputs keep their bytes and mtime and no file or folder appears.
  "stderr" is everything a user would see on the terminal (see cli_harness).
* ``SUPPORTED``: inputs that look odd but are legitimate (alpha, 16 bits, a
  JPEG named .png, a 1x1 image with a 1x1 patch, ...): exit 0 and an output
  equal to what the library gives for the same pixels.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from cli_harness import (
    CHATTER,
    IS_ROOT,
    LIB_PARAMS,
    PARAMS,
    _checkpoint_files,
    _huge_jpeg,
    _huge_tiff,
    _in,
    _noisy,
    _png_header_only,
    _png_with_idat,
    _snapshot,
    _train_data,
    assert_no_traceback,
    assert_refused,
    run_cli,
)

import nlmeans
from nlmeans import io as nio
from nlmeans.io import ImageReadError, ImageWriteError, read_image, write_image

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
    Case("h-infinite", _setup_option("--h", "inf"), ("--h", "finite number"), exit_code=2),
    Case(
        "sigma-huge",
        _setup_option("--sigma", "1e300"),
        ("--sigma", "above 1", r"1e\+300/255 = 3\.922e\+297"),
        exit_code=2,
    ),
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
