"""Sequences on the command line: ``denoise`` and ``compare`` for videos, TIFF stacks, frame folders.

``nlmeans denoise`` and ``nlmeans compare`` hand their inputs here when one of
them is a sequence (a video file, a multi-page TIFF, or a folder given with
``--sequence``): frames are streamed from the input through
:func:`nlmeans.denoise_sequence` into the output, with a progress bar per
frame. Nothing here imports NumPy at import time.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from ._common import (
    VIDEO_SUFFIXES,
    InputFiles,
    check_output_is_not_an_input,
    error,
    note,
    progress_bar,
    stderr_console,
    stdout_console,
    warn,
)


def is_sequence_input(item: str, *, folders: bool) -> bool:
    """A video file name, a multi-page TIFF, or (``folders``) a folder."""
    path = Path(item)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return True
    if folders and path.is_dir():
        return True
    if path.suffix.lower() in (".tif", ".tiff") and path.is_file():
        from nlmeans.video import is_sequence_file

        return is_sequence_file(path)
    return False


def _output_for(src: Path, output: Optional[Path], out_dir: Optional[Path], lossless: bool) -> Path:
    if output is not None:
        return output
    if src.is_dir():
        name = f"{src.name}_denoised"
    else:
        suffix = ".mkv" if lossless and src.suffix.lower() in VIDEO_SUFFIXES else src.suffix
        name = f"{src.stem}_denoised{suffix}"
    return (out_dir / name) if out_dir is not None else src.with_name(name)


def _describe(params, top: float, volume: bool = False) -> str:
    scale = f" = {params.sigma * top:.2f}/{top:g}" if top != 1 else ""
    how = "estimated" if params.sigma_estimated else "given"
    colour = {"opponent": ", opponent colour", "rgb": ", joint RGB"}.get(params.color_space, "")
    k = params.temporal_radius
    if params.method == "neural":
        return (
            f"method neural (spacetime network, {2 * k + 1} frames), sigma {params.sigma:.5f}"
            f"{scale} ({how}){', one channel at a time' if params.color_space != 'gray' else ''}"
        )
    dims = 3 if volume else 2
    patch = "x".join([str(params.patch_size)] * dims)
    search = "x".join([str(2 * params.patch_distance + 1)] * dims)
    return (
        f"method {params.method}, sigma {params.sigma:.5f}{scale} ({how}), h {params.h:.5f}, "
        f"patch {patch}, search {search} "
        f"over {2 * k + 1} frame{'s' if k else ''} (temporal radius {k}){colour}"
    )


def denoise_sequences(
    inputs: list[str],
    *,
    output: Optional[Path],
    out_dir: Optional[Path],
    options: dict,
    lossless: bool,
    threads: Optional[int],
    force: bool,
    claimed: Optional[dict] = None,
    every_input: Optional[InputFiles] = None,
) -> int:
    """Denoise each sequence of ``inputs`` into its output; returns how many failed.

    ``claimed`` maps each output already promised (resolved path) to its input:
    a second input with the same output is refused, not written over it.
    ``every_input``: all inputs of the run (images too); none is an output.
    """
    console = stderr_console()
    failures = 0
    claimed = {} if claimed is None else claimed
    for item in inputs:
        src = Path(item)
        try:
            dst = _output_for(src, output, out_dir, lossless)
            key = str(dst.resolve())
            if key in claimed:
                raise ValueError(
                    f"{src}: its output {dst} would also be written for {claimed[key]}"
                )
            if every_input is not None:
                check_output_is_not_an_input(src, dst, every_input)
            claimed[key] = src
            _denoise_one(src, dst, out_dir, options, lossless, threads, force, console)
        except (ValueError, TypeError, OSError) as exc:
            from ._common import describe_exception

            failures += 1
            message = describe_exception(exc)
            error(message if str(src) in message else f"{src}: {message}")
            continue
        typer.echo(str(dst))
    return failures


def sequence_inputs(items: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The inputs of ``--sequence``: folders of frames, videos and TIFF stacks,
    glob patterns expanded; ``(paths, problems)`` as ``expand_inputs`` gives them."""
    import glob as globbing

    from ._common import has_glob

    paths, problems = [], []
    for item in items:
        path = Path(item)
        if not path.exists() and has_glob(item):
            matches = sorted(Path(m) for m in globbing.glob(item, recursive=True))
            found = [m for m in matches if m.is_dir() or is_sequence_input(str(m), folders=False)]
            if not found:
                problems.append((item, "no folder, video or TIFF stack matches this pattern"))
            paths.extend(found)
        elif not path.exists():
            problems.append((item, "no such file or folder"))
        elif path.is_dir() or is_sequence_input(item, folders=False):
            paths.append(path)
        else:
            problems.append(
                (item, "not a sequence: --sequence takes folders of frames, videos and TIFF stacks")
            )
    return paths, problems


def _denoise_one(src, dst, out_dir, options, lossless, threads, force, console) -> None:
    import nlmeans
    from nlmeans.io import max_value
    from nlmeans.video import ESTIMATE_FRAMES, SequenceWriter, open_sequence, output_kind

    source = open_sequence(src)
    axis = -1 if source.is_color else None
    frames = source.frames()
    first = list(itertools.islice(frames, ESTIMATE_FRAMES))
    params = nlmeans.resolve_sequence_parameters(
        first, n_frames=source.n_frames, channel_axis=axis, **options
    )
    output_kind(dst)  # a name no sequence can be written as: refused before out_dir is made
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    # The writer refuses what it cannot write (existing output, a container
    # that cannot hold the codec) before any frame is denoised.
    with SequenceWriter(dst, like=source, lossless=lossless, force=force) as writer:
        console.print(
            f"{src} ({source.describe()}): "
            f"{_describe(params, max_value(source.dtype), source.depth is not None)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        if source.has_audio:
            warn(f"{src}: the audio track is not copied")
        start = time.perf_counter()
        denoised = nlmeans.denoise_sequence(
            itertools.chain(first, frames),
            channel_axis=axis,
            threads=threads,
            **params.denoise_kwargs(),
        )
        with progress_bar("denoise", console) as bar:
            task = bar.add_task(src.name, total=source.n_frames)
            for frame in denoised:
                writer.write(frame)
                bar.advance(task)
    seconds = time.perf_counter() - start
    console.print(
        f"  -> {dst} ({source.n_frames} {'time points' if source.depth else 'frames'}, "
        f"{seconds:.2f} s)",
        markup=False,
        highlight=False,
    )


def compare_sequences(
    *,
    clean_items: list[str],
    noisy_items: Optional[list[str]],
    sigma: Optional[str],
    methods: Optional[str],
    seed: Optional[int],
    json_output: bool,
    threads: Optional[int],
) -> None:
    """``nlmeans compare`` on sequences: one clean clip (+ noise) or --noisy/--clean clips."""
    import json

    import numpy as np

    from nlmeans import sequence_evaluation as sev
    from nlmeans.io import to_unit_float
    from nlmeans.video import open_sequence

    def method_list(volumes: bool) -> list[str]:
        default = "noisy,spacetime,frames" + ("" if volumes else ",opencv-multi")
        try:
            return sev.parse_sequence_methods(methods or default, volumes=volumes)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--methods") from None

    method_list(False)  # a bad --methods is refused before any file is read
    if noisy_items is not None and len(noisy_items) != len(clean_items):
        raise typer.BadParameter(
            "give as many --noisy as --clean sequences", param_hint="--noisy/--clean"
        )
    if noisy_items is None:
        try:
            levels = [float(s) for s in (sigma or "25").split(",")]
        except ValueError:
            raise typer.BadParameter(f"{sigma!r} is not a list of numbers", param_hint="--sigma")
        if any(s <= 0 or s > 255 for s in levels):
            raise typer.BadParameter(
                "noise levels are 8-bit gray levels in (0, 255]", param_hint="--sigma"
            )
    console = stderr_console()
    results = []
    for i, clean_item in enumerate(clean_items):
        clean_src = open_sequence(clean_item)
        clean = np.stack([to_unit_float(f) for f in clean_src.frames()])
        axis = -1 if clean_src.is_color else None
        chosen = method_list(clean_src.depth is not None)
        if noisy_items is not None:
            noisy_src = open_sequence(noisy_items[i])
            if (noisy_src.n_frames, noisy_src.frame_shape) != (
                clean_src.n_frames,
                clean_src.frame_shape,
            ):
                raise ValueError(
                    f"{noisy_items[i]} ({noisy_src.describe()}) and {clean_item} "
                    f"({clean_src.describe()}) differ in frame count or size"
                )
            noisy = np.stack([to_unit_float(f) for f in noisy_src.frames()])
            cases = [(None, noisy)]
        else:
            cases = []
            for level in levels:
                rng = np.random.default_rng((seed or 0) + i)
                cases.append((level, clean + rng.normal(0.0, level / 255.0, clean.shape)))
        for level, noisy in cases:
            with progress_bar("compare", console) as bar:
                task = bar.add_task("", total=len(chosen))

                def progress(method):
                    bar.update(task, description=f"{Path(clean_item).name} {method}")

                records = sev.compare_sequence(
                    clean,
                    noisy,
                    sigma=None if level is None else level / 255.0,
                    methods=chosen,
                    channel_axis=axis,
                    threads=threads,
                    progress=lambda m: (progress(m), bar.advance(task)),
                )
            results.append((clean_item, level, records))
    if json_output:
        payload = [
            {"sequence": item, "sigma": level, "records": [r.as_dict() for r in records]}
            for item, level, records in results
        ]
        typer.echo(json.dumps(payload, indent=1))
        return
    _print_tables(results)
    note(
        "PSNR/SSIM: mean over frames of the output clipped to [0, 1]; flicker: mean absolute "
        "frame-to-frame change of the error, in 8-bit gray levels"
    )


def _print_tables(results) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = stdout_console()
    for item, level, records in results:
        title = f"{escape(item)}" + (f", sigma = {level:g}/255" if level is not None else "")
        table = Table(title=title, title_justify="left")
        for name, justify in (
            ("method", "left"),
            ("PSNR (dB)", "right"),
            ("SSIM", "right"),
            ("flicker", "right"),
            ("time (s)", "right"),
            ("settings", "left"),
        ):
            table.add_column(name, justify=justify)
        best_psnr = max(r.psnr for r in records)
        for r in records:
            psnr = f"{r.psnr:.2f}"
            if r.psnr == best_psnr:
                psnr = f"[bold green]{psnr}[/bold green]"
            settings = ""
            if "h_levels" in r.params:
                settings = f"h {r.params['h_levels']:.1f} (best of grid)"
            elif "temporal_radius" in r.params:
                # the network has no patch or search window: only its frames
                parts = [("k", "temporal_radius"), ("patch", "patch_size"), ("d", "patch_distance")]
                settings = ", ".join(
                    f"{label} {r.params[key]}"
                    for label, key in parts
                    if r.params.get(key) is not None
                )
            table.add_row(
                r.method,
                psnr,
                f"{r.ssim:.4f}",
                f"{r.flicker * 255:.2f}",
                f"{r.seconds:.2f}",
                settings,
            )
        console.print(table)
    sys.stdout.flush()
