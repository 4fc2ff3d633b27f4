"""``nlmeans denoise`` for images larger than memory: Dask chunks, Zarr/OME-Zarr/BigTIFF out.

A thin layer over :mod:`nlmeans.bigdata` and :mod:`nlmeans.bigio`: parse the
big-data options, open the input lazily, resolve the parameters once, then
write the result chunk by chunk with a progress bar. Imported only when a
big-data option (or a Zarr path) is used.
"""

from __future__ import annotations

import dataclasses
import errno
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import typer

from ._common import error, progress_bar, same_file, stderr_console

#: Default chunk side (pixels per spatial axis) for 2-D images and for volumes.
DEFAULT_CHUNK_2D = 2048
DEFAULT_CHUNK_3D = 128
#: Local runs compute this many chunks at a time (the kernels use every core
#: for each chunk; a second one overlaps reading and writing).
LOCAL_CONCURRENCY = 2
#: Working memory per pixel of a chunk region and channel, in bytes (float64
#: copies and the kernels' float32 buffers), for --memory.
BYTES_PER_PIXEL = 64
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(?:([kmgt]i?)?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def uses_big_data(inputs, output, chunk_size, memory, workers, scheduler, resume) -> bool:
    """Whether this ``nlmeans denoise`` call takes the big-data path."""
    if any(v is not None for v in (chunk_size, memory, workers, scheduler)) or resume:
        return True
    names = [str(output)] if output is not None else []
    names += list(inputs)
    return any(name.rstrip("/").lower().endswith(".zarr") for name in names)


def parse_memory(text: str) -> int:
    """``"2GB"``, ``"512M"``, ``"1.5GiB"`` -> bytes."""
    match = _SIZE.match(text)
    if not match:
        raise typer.BadParameter(
            f"{text!r} is not a size such as 2GB or 512MB", param_hint="--memory"
        )
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    factor = _UNITS[unit[:1]] * (1.024 ** ("kmgt".index(unit[0]) + 1) if "i" in unit else 1)
    return int(number * factor)


def chunk_side_for_memory(budget: int, spatial_dims: int, channels: int, reach: int) -> int:
    """The largest chunk side (a multiple of 16) whose regions (chunk and halo)
    fit ``budget`` bytes; 0 or less when not even 16 pixels fit."""
    per_region = budget / (LOCAL_CONCURRENCY * BYTES_PER_PIXEL * max(1, channels))
    side = int(per_region ** (1.0 / spatial_dims)) - 2 * reach - (64 if spatial_dims else 0)
    return side - side % 16


def run(
    *,
    inputs: list[str],
    output: Optional[Path],
    chunk_size: Optional[int],
    memory: Optional[str],
    workers: Optional[int],
    scheduler: Optional[str],
    resume: bool,
    force: bool,
    threads: Optional[int],
    method: str,
    options: dict,
    describe,
    ensemble: bool = False,
) -> None:
    """The whole big-data run; raises ValueError/OSError for bad input (one line, exit 1)."""
    if len(inputs) != 1:
        raise typer.BadParameter(
            f"images larger than memory are denoised one at a time, got {len(inputs)} inputs",
            param_hint="IN",
        )
    if output is None:
        raise typer.BadParameter(
            "give the output with -o (name.zarr, name.ome.zarr or name.tif)", param_hint="--output"
        )
    if chunk_size is not None and memory is not None:
        raise typer.BadParameter(
            "give either --chunk-size or --memory, not both", param_hint="--memory"
        )
    if workers is not None and scheduler is not None:
        raise typer.BadParameter(
            "give either --workers (a local cluster) or --scheduler, not both",
            param_hint="--workers",
        )
    if workers is not None and workers < 1:  # now, not after a pass over the image
        raise typer.BadParameter(
            f"--workers must be at least 1, got {workers}", param_hint="--workers"
        )
    budget = parse_memory(memory) if memory is not None else None
    try:
        from nlmeans import bigdata, bigio
    except ImportError as exc:
        raise ImportError(str(exc)) from None
    try:
        bigdata.require_dask()
        import zarr  # noqa: F401
    except ImportError:
        raise OSError(
            f"images larger than memory need the dask extra: {bigdata.DASK_HINT}"
        ) from None

    src = Path(inputs[0])
    bigio.output_kind(output)  # a name we cannot write: refused before anything is read
    if output.exists() and src.exists() and same_file(output, src):
        raise ValueError(f"{src}: refusing to write onto the input")
    from nlmeans.io import holds

    if src.is_dir() and holds(src, output):
        # a node added inside a Zarr store changes the input
        raise ValueError(f"{output}: refusing to write inside the input store {src}")
    if output.exists() and not force:
        raise FileExistsError(f"{output} already exists (use --force to overwrite)")
    bigio.check_replaceable(output, src)
    if not output.absolute().parent.is_dir():
        raise typer.BadParameter(f"the folder of {output} does not exist", param_hint="--output")

    import nlmeans

    probe = bigio.open_big_image(src, chunk_size=1 << 30)  # metadata only
    spatial_dims = sum(a in "ZYX" for a in probe.axes)
    channels = probe.array.shape[probe.channel_axis] if probe.channel_axis is not None else 1
    channels -= probe.alpha  # the colour channels: an alpha channel is passed through
    given = options.get("noise")
    if hasattr(given, "channels") and given.channels not in (1, channels):
        # As for files that fit in memory: the file, not the option, is at odds.
        raise ValueError(
            f"--noise-params gives {given.channels} channel(s) but {src} has {channels}"
        )
    side = chunk_size or (DEFAULT_CHUNK_2D if spatial_dims == 2 else DEFAULT_CHUNK_3D)
    image = bigio.open_big_image(src, chunk_size=side)
    color, color_axis = image.color()
    # Parameters once for the whole image (an estimate reads a few chunks),
    # then the chunk size they allow, then the lazy result with exactly them.
    params = bigdata.resolve_dask_parameters(
        color, method=method, channel_axis=color_axis, **options
    )
    params = dataclasses.replace(params, ensemble=ensemble)
    spatial = [n for a, n in zip(image.axes, image.array.shape) if a != "C"]
    reach = bigdata.halo(params, spatial)
    if budget is not None:
        side = chunk_side_for_memory(budget, spatial_dims, channels, reach)
        if side < max(reach, 16):
            raise ValueError(
                f"--memory {memory} is too small: chunks would be narrower than "
                + (f"the halo ({reach} pixels) of these parameters" if reach > 16 else "16 pixels")
            )
        image = bigio.open_big_image(src, chunk_size=side)
        color, color_axis = image.color()
    elif side < reach and side < min(spatial):
        raise ValueError(
            f"--chunk-size {side} is smaller than the halo ({reach} pixels) that every chunk "
            f"needs with these parameters; use at least {reach}"
        )
    lazy = nlmeans.denoise(
        color, channel_axis=color_axis, threads=threads, **params.denoise_kwargs()
    )
    if image.alpha:
        lazy = bigio.with_alpha(lazy, image)
    client = _client(workers, scheduler)
    console = stderr_console()
    # What the parameter description reads of an image.
    summary = SimpleNamespace(max_value=max_value(image.array.dtype), color_channels=channels)
    if method == "neural" and channels == 3:
        # Which model runs depends on constant channels (nlmeans._denoise.
        # neural_gray_per_channel): one more pass over the data, small next
        # to the network's.
        from nlmeans._denoise import constant_channels

        summary.constant_channels = constant_channels(color, color_axis)
    try:
        console.print(
            f"{src} ({bigio.describe_axes(image)}; chunks of {side} px): "
            f"{describe(params, summary)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        stat = src.stat()
        fingerprint = {
            "input": str(src.resolve()),
            # a file replaced at the same path must not be resumed into
            "input_size": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns,
            "chunk": side,
            "params": _jsonable(params.as_dict()),
        }
        start = time.perf_counter()
        progress = {"done": 0, "total": 0}
        with progress_bar("denoise", console) as bar:
            task = bar.add_task("chunks", total=None)

            def on_start(done: int, total: int) -> None:
                progress.update(done=done, total=total)
                bar.update(task, total=total, completed=done)

            def on_chunk() -> None:
                progress["done"] += 1
                bar.advance(task)

            try:
                dst = bigio.write_big_image(
                    lazy,
                    output,
                    like=image,
                    fingerprint=fingerprint,
                    resume=resume,
                    force=force,
                    client=client,
                    workers=LOCAL_CONCURRENCY if client is None else None,
                    on_start=on_start,
                    on_chunk=on_chunk,
                )
            except KeyboardInterrupt:
                bar.stop()
                error(
                    f"interrupted: {progress['done']} of {progress['total']} chunks are written in "
                    f"{bigio.partial_path(output)}; run the same command with --resume to finish"
                )
                raise typer.Exit(130) from None
            except OSError as exc:
                if exc.errno != errno.ENOSPC and "requested and" not in str(exc):
                    raise
                # A full disk (tifffile says "N requested and M written"): the
                # finished chunks are kept, and the run can go on.
                bar.stop()
                error(
                    f"{output}: the disk is full after {progress['done']} of "
                    f"{progress['total']} chunks (kept in {bigio.partial_path(output)}); free "
                    "space and run the same command with --resume to finish"
                )
                raise typer.Exit(1) from None
        console.print(f"  -> {dst} ({time.perf_counter() - start:.2f} s)", markup=False)
        typer.echo(str(dst))
    finally:
        if client is not None:
            cluster = getattr(client, "_nlmeans_cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()


def max_value(dtype) -> float:
    import numpy as np

    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind == "u" else 1.0


def _jsonable(value):
    import json

    return json.loads(json.dumps(value, default=lambda v: getattr(v, "as_dict", lambda: str(v))()))


def _client(workers: Optional[int], scheduler: Optional[str]):
    """A dask.distributed client: a local cluster of worker processes, or a scheduler's."""
    if workers is None and scheduler is None:
        return None
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise OSError(
            '--workers and --scheduler need dask.distributed: pip install "nlmeans[dask]"'
        ) from None
    if scheduler is not None:
        try:
            return Client(scheduler, timeout="10s")
        except Exception as exc:  # OSError, TimeoutError, ValueError for a bad address
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    if workers < 1:
        raise typer.BadParameter(
            f"--workers must be at least 1, got {workers}", param_hint="--workers"
        )
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    client._nlmeans_cluster = cluster
    return client
