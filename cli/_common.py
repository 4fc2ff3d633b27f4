"""Helpers shared by the commands: error handling, consoles, input lists, files.

Nothing here imports NumPy, Numba or torch.
"""

from __future__ import annotations

import functools
import glob
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import typer

#: Extensions looked for when a folder is given (same as nlmeans.io.IMAGE_EXTENSIONS).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
#: Video files (same as nlmeans.video.VIDEO_SUFFIXES, without importing it).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov")

F = TypeVar("F", bound=Callable[..., Any])


def error(message: str) -> None:
    """One line on stderr: ``Error: message``."""
    text = " ".join(str(message).split("\n")[0:1]) if message else "unknown error"
    typer.echo(typer.style("Error:", fg="red", bold=True) + " " + text, err=True)


def warn(message: str) -> None:
    typer.echo(typer.style("Warning:", fg="yellow", bold=True) + " " + str(message), err=True)


def note(message: str) -> None:
    typer.echo(str(message), err=True)


def user_errors_of() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "bad input", shown as one line without traceback.

    ValueError covers nlmeans.io.ImageReadError; OSError covers ImageWriteError,
    FileNotFoundError and permission problems.
    """
    return (ValueError, TypeError, OSError)


def handle_errors(func: F) -> F:
    """Turn library errors into ``Error: ...`` on stderr and exit status 1.

    KeyboardInterrupt becomes "Interrupted." and exit status 130. Typer's own
    exits and usage errors pass through unchanged. Anything else is a bug and
    keeps its traceback.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except KeyboardInterrupt:
            typer.echo("Interrupted.", err=True)
            raise typer.Exit(130) from None
        except user_errors_of() as exc:
            error(describe_exception(exc))
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def describe_exception(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    if not text:
        return type(exc).__name__
    return text.splitlines()[0]


def for_each_file(
    files: Iterable[Path], problems: Iterable[tuple[str, str]], work: Callable[[Path], None]
) -> None:
    """Run ``work(path)`` for every file; a failing file costs one ``Error:`` line, not the rest.

    ``problems`` (inputs that named no readable file) are reported first.
    Exits with status 1 at the end if anything failed.
    """
    failures = 0
    for item, why in problems:
        failures += 1
        error(f"{item}: {why}")
    for path in files:
        try:
            work(path)
        except (ValueError, TypeError, OSError, ImportError) as exc:
            failures += 1
            message = describe_exception(exc)
            error(message if str(path) in message else f"{path}: {message}")
    if failures:
        raise typer.Exit(1)


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def progress_bar(label: str, console):
    """The commands' transient progress bar: label, bar, n/total, item, elapsed time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        # Not on a terminal (a log, a pipe, CI) a bar only leaves a blank line.
        disable=not console.is_terminal,
    )


def stdout_console():
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=120)
    return console


def has_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def expand_inputs(
    items: Iterable[str],
    *,
    skip_suffix: str | None = None,
    videos: bool = False,
    unique: bool = True,
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders (their image files, sorted) and glob patterns -> paths.

    Returns ``(paths, problems)``; ``problems`` lists ``(item, reason)`` for
    items that name nothing. Files given by name are kept whatever their
    extension (the content decides); in folders and globs only image
    extensions count (and video ones with ``videos``). ``skip_suffix``: in
    folders, leave out files whose stem ends with it (earlier outputs such as
    ``*_denoised.png``). ``unique``: a file named twice is kept once (for the
    references of paired inputs, ``unique=False`` keeps every mention).
    """
    suffixes = IMAGE_SUFFIXES + (VIDEO_SUFFIXES if videos else ())
    kinds = "PNG, TIFF, JPEG or video" if videos else "PNG, TIFF or JPEG"
    paths: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(path: Path) -> None:
        key = os.path.normcase(os.path.abspath(path))
        if key not in seen or not unique:
            seen.add(key)
            paths.append(path)

    def is_image_name(path: Path) -> bool:
        return path.suffix.lower() in suffixes and not path.name.startswith(".")

    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                (p for p in path.iterdir() if p.is_file() and is_image_name(p)),
                key=lambda p: p.name,
            )
            if skip_suffix:
                found = [p for p in found if not p.stem.endswith(skip_suffix)]
            if not found:
                problems.append((item, f"folder holds no {kinds} file"))
            for p in found:
                add(p)
        elif path.exists():
            add(path)
        elif has_glob(item):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True))
            files = [m for m in matches if m.is_file() and is_image_name(m)]
            if not files:
                problems.append(
                    (
                        item,
                        f"no {'image or video' if videos else 'image'} file matches this pattern",
                    )
                )
            for p in files:
                add(p)
        else:
            problems.append((item, "no such file or folder"))
    return paths, problems


def parse_pair(text: str, name: str, kind=float) -> tuple:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise typer.BadParameter(
            f"expected two comma-separated numbers, got {text!r}", param_hint=name
        )
    try:
        return tuple(kind(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(
            f"expected two comma-separated numbers, got {text!r}", param_hint=name
        ) from None


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` are the same file: same path, symbolic or hard link
    (:func:`nlmeans.io.same_file`, imported only when a command needs it)."""
    from nlmeans.io import same_file as _same_file

    return _same_file(a, b)


class InputFiles:
    """The inputs of one run, looked up by file identity (device and inode:
    hard and symbolic links included) in constant time: a batch of 30,000
    files compares each output with all of them."""

    def __init__(self, paths: Iterable[Path]):
        self._by_identity: dict[tuple[int, int], Path] = {}
        for path in paths:
            try:
                stat = os.stat(path)
            except OSError:  # unreadable inputs fail on their own
                continue
            self._by_identity.setdefault((stat.st_dev, stat.st_ino), Path(path))

    def get(self, path: Path) -> Path | None:
        """The input that ``path`` is (the same file), or None."""
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return self._by_identity.get((stat.st_dev, stat.st_ino))


def check_output_is_not_an_input(src: Path, dst: Path, inputs: InputFiles) -> None:
    """Refuse ``dst`` when it is one of this run's ``inputs`` (a link to one
    included): with ``--force`` it would be replaced before it is read."""
    other = inputs.get(dst)
    if other is None:
        return
    if same_file(dst, src):
        raise ValueError(f"{src}: refusing to write onto the input file")
    raise ValueError(
        f"{src}: its output {dst} is another input of this run ({other}); "
        "choose another --out-dir or --output"
    )


def describe_noise(model, top: float, value_range=None) -> str:
    """One line: a fitted noise model (nlmeans.NoiseModel) in gray levels of the file's scale.

    ``value_range``: a float image's ``(min, max)``. Float data off the [0, 1]
    scale (photon counts) have no black and white at 0 and 1: sigma is given
    at their darkest and brightest values instead.
    """
    from nlmeans._checks import UNIT_SCALE_LIMITS

    off_scale = (
        top == 1
        and value_range is not None
        and not (UNIT_SCALE_LIMITS[0] <= value_range[0] and value_range[1] <= UNIT_SCALE_LIMITS[1])
    )
    if off_scale and model.kind != "gaussian":
        lo, hi = (float(v) for v in value_range)
        parts = ", ".join(f"{a:.4g} Y + {b:.4g}" for a, b in zip(model.a, model.b))
        low = ", ".join(f"{max(a * lo + b, 0.0) ** 0.5:.4g}" for a, b in zip(model.a, model.b))
        high = ", ".join(f"{max(a * hi + b, 0.0) ** 0.5:.4g}" for a, b in zip(model.a, model.b))
        return (
            f"poisson-gaussian, variance = {parts} (Y on the data's own scale); "
            f"sigma from {low} (at {lo:.4g}, the darkest) to {high} (at {hi:.4g}, the brightest)"
        )
    unit = f"/{top:g}" if top != 1 else ""
    # Gray levels: two decimals; a float image's [0, 1] scale needs four
    # significant digits (0.002 is not 0.00).
    level = "{:.2f}" if top != 1 else "{:.4g}"
    if model.kind == "gaussian":
        sigmas = ", ".join(level.format(b**0.5 * top) + unit for b in model.b)
        return f"gaussian, sigma = {sigmas}"
    # var = a y + b on [0, 1] is (a top) Y + (b top^2) for Y in gray levels.
    parts = ", ".join(f"{a * top:.4g} Y + {b * top * top:.4g}" for a, b in zip(model.a, model.b))
    low = ", ".join(level.format((b**0.5) * top) for b in model.b)
    high = ", ".join(level.format(((a + b) ** 0.5) * top) for a, b in zip(model.a, model.b))
    scale = f"Y in gray levels{unit}" if top != 1 else "Y on the [0, 1] scale"
    return (
        f"poisson-gaussian, variance = {parts} ({scale}); "
        f"sigma from {low} (black) to {high} (white)"
    )


def flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # pragma: no cover - closed pipe
            pass
