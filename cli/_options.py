"""Option types and checks that several commands share.

Nothing here imports NumPy, Numba or torch (the library is imported inside
the checks, when they run).
"""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer

ImagesArgument = Annotated[
    list[str],
    typer.Argument(
        metavar="IMAGE", help="Image files, folders or glob patterns.", show_default=False
    ),
]
PatchSizeOption = Annotated[
    Optional[int],
    typer.Option(
        "--patch-size", "-p", help="Odd patch width (default: automatic).", show_default=False
    ),
]
ThreadsOption = Annotated[
    Optional[int],
    typer.Option("--threads", "-j", min=1, help="Number of threads (default: all cores)."),
]
ForceOption = Annotated[
    bool, typer.Option("--force", "-f", help="Overwrite existing output files (never the input).")
]


def unit_scale(name: str):
    """Callback refusing values above 1 on the [0, 1] intensity scale."""

    def check(value: Optional[float]) -> Optional[float]:
        if value is not None and math.isinf(value):  # NaN: the library's check says so
            raise typer.BadParameter(f"{name} must be a finite number, got {value:g}")
        if value is not None and value > 1:
            raise typer.BadParameter(
                f"{value:g} is above 1, but {name} is on the [0, 1] intensity scale. "
                f"For 8-bit images divide gray levels by 255 ({value:g}/255 = {value / 255:.4g}); "
                f"for 16-bit images by 65535 ({value:g}/65535 = {value / 65535:.4g})."
            )
        return value

    return check


def check_threads_option(threads: Optional[int]) -> None:
    """Refuse a --threads value above what Numba offers, once for the whole run."""
    if threads is None:
        return
    from nlmeans import check_threads

    try:
        check_threads(threads)
    except ValueError as exc:  # name the option as the user typed it
        raise ValueError(f"--{exc}") from None
