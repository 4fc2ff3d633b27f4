"""Files larger than memory: lazy TIFF/BigTIFF, Zarr and OME-Zarr in, chunk-by-chunk out.

:func:`open_big_image` gives a lazy ``dask.array.Array`` of a file with its
axes and physical pixel sizes; :func:`write_big_image` computes a lazy result
chunk by chunk into Zarr, OME-Zarr (pyramid rebuilt) or BigTIFF, recording
each chunk as done only once it is completely written, so that an interrupted
run can be resumed and a finished output appears under its name only when
complete.

Needs the ``dask`` extra: ``pip install "nlmeans[dask]"``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .bigdata import require_dask
from .io import holds

__all__ = [
    "BigImage",
    "BigImageError",
    "open_big_image",
    "output_kind",
    "partial_path",
    "with_alpha",
    "write_big_image",
]

#: Suffixes read and written as TIFF (BigTIFF when written).
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
#: Folder of done-markers inside a store being written (one empty file per chunk).
DONE_DIR = ".nlmeans-done"
#: The attribute that says how a store was made and whether it is complete.
ATTRIBUTE = "nlmeans"
#: Tile side of the BigTIFF files written.
TIFF_TILE = 256
#: OME-Zarr names its units as UDUNITS-2 does; ImageJ and OME-TIFF abbreviate.
_NGFF_UNITS = {
    "µm": "micrometer",
    "\u03bcm": "micrometer",
    "um": "micrometer",
    "micron": "micrometer",
    "nm": "nanometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
}


class BigImageError(ValueError):
    """A big image could not be read or written; the message says which and why."""


@dataclass
class BigImage:
    """A lazily read image and what must travel with it to the output.

    ``axes`` names every axis of ``array`` (letters of "CZYX"; "C" for
    channels); ``scale`` and ``units`` give the physical pixel size per axis
    letter where the file says it; ``levels`` is the number of pyramid levels
    of an OME-Zarr input (1 otherwise); ``alpha``: the last channel is an
    alpha channel (a TIFF of 2 or 4 samples per pixel, as the in-memory
    reader takes it, or an nlmeans output of one), to be passed through.
    """

    array: object
    axes: str
    kind: str
    scale: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)
    levels: int = 1
    level_shapes: list = field(default_factory=list)
    alpha: bool = False

    @property
    def channel_axis(self) -> int | None:
        return self.axes.index("C") if "C" in self.axes else None

    def color(self):
        """``(array, channel_axis)`` of the channels to denoise: without the
        alpha channel, and a gray image (gray+alpha) without a channel axis,
        as :func:`nlmeans.io.split_alpha` gives them in memory. Put the alpha
        channel back with :func:`with_alpha`."""
        if not self.alpha:
            return self.array, self.channel_axis
        axis = self.channel_axis
        keep = [slice(None)] * self.array.ndim
        if self.array.shape[axis] == 2:
            keep[axis] = 0
            return self.array[tuple(keep)], None
        keep[axis] = slice(0, -1)
        return self.array[tuple(keep)], axis


def with_alpha(denoised, image: BigImage):
    """``denoised`` (the result for ``image.color()``) with ``image``'s alpha
    channel put back, untouched; ``denoised`` as it is without one."""
    if not image.alpha:
        return denoised
    da = require_dask()
    axis = image.channel_axis
    if denoised.ndim < image.array.ndim:
        denoised = da.expand_dims(denoised, axis)
    last = tuple(slice(-1, None) if i == axis else slice(None) for i in range(image.array.ndim))
    joined = da.concatenate([denoised, image.array[last].astype(denoised.dtype)], axis=axis)
    return joined.rechunk({axis: -1})  # channels whole, as every chunk is written


def output_kind(path) -> str:
    """``"ome-zarr"``, ``"zarr"`` or ``"tiff"`` from the name of ``path``."""
    name = Path(path).name.lower()
    if name.endswith(".ome.zarr"):
        return "ome-zarr"
    if name.endswith(".zarr"):
        return "zarr"
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    raise BigImageError(
        f"{path}: unknown output format; name it .zarr, .ome.zarr or .tif (BigTIFF)"
    )


# What marks a folder as a Zarr store (version 3, version 2 group or array).
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")


def check_replaceable(path, source=None) -> None:
    """Refuse (:class:`BigImageError`) to replace an existing output ``path``
    that is not what this output is: a folder that holds ``source`` (the
    input) or is not a Zarr store, for a ``.zarr`` / ``.ome.zarr`` output, or
    a folder, for a ``.tif`` one. Replacing removes the old output whole, so
    the input and files that are not a Zarr store must never go with it (an
    empty folder may go)."""
    path = Path(path)
    if not path.exists():
        return
    if source is not None and holds(path, source):
        raise BigImageError(f"{path}: the input {source} is inside it; refusing to replace it")
    if output_kind(path) == "tiff":
        if path.is_dir():
            raise BigImageError(f"{path} is a folder, not a TIFF file; refusing to replace it")
        return
    if path.is_dir() and not any(path.iterdir()):
        return  # an empty folder: nothing to lose
    if not path.is_dir() or not any((path / name).is_file() for name in _ZARR_MARKERS):
        raise BigImageError(
            f"{path} exists and is not a Zarr store; refusing to replace it, even with "
            "--force: name another output"
        )


def partial_path(path) -> Path:
    """Where the output ``path`` is written until it is complete."""
    path = Path(path)
    name = path.name + ".partial" + (".zarr" if output_kind(path) == "tiff" else "")
    return path.with_name(name)


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def _default_chunks(shape, axes, chunk_size) -> tuple:
    return tuple(n if a == "C" else min(n, chunk_size) for n, a in zip(shape, axes))


def _read_region(path: str, kind: str, key: str | None, block_info=None):
    """One chunk of the file at ``path``, opened in the task (workers get paths, not handles)."""
    import zarr

    location = block_info[None]["array-location"]
    region = tuple(slice(a, b) for a, b in location)
    try:
        if kind == "tiff":
            import tifffile

            # The first series at full resolution: a pyramidal file's store
            # holds every level (and no array at its root) otherwise.
            with tifffile.imread(path, aszarr=True, series=0, level=0) as store:
                return np.asarray(zarr.open_array(store, mode="r")[region])
        group = zarr.open(path, mode="r")
        array = group[key] if key is not None else group
        return np.asarray(array[region])
    except Exception as exc:  # codec, I/O or format errors of any library
        where = ", ".join(f"{a}:{b}" for a, b in location)
        raise BigImageError(f"{path}: cannot read the chunk [{where}]: {exc}") from None


def _lazy(path, kind, key, shape, dtype, chunks):
    da = require_dask()
    from dask.array.core import normalize_chunks

    chunks = normalize_chunks(chunks, shape)
    return da.map_blocks(
        _read_region,
        str(path),
        kind,
        key,
        chunks=chunks,
        dtype=dtype,
        meta=np.empty((0,) * len(shape), dtype),
        name=f"nlmeans-read-{abs(hash((str(path), key, chunks)))}",
    )


def _tiff_axes(series_axes: str, shape) -> str:
    axes = series_axes.replace("S", "C")
    if set(axes) - set("CZYX") or len(set(axes)) != len(axes):
        raise BigImageError(f"TIFF axes {series_axes!r} are not supported (use Y, X, Z, C or S)")
    return axes


def _plain_axes(shape) -> str:
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3:
        return "YXC" if shape[-1] in (3, 4) else "ZYX"
    if len(shape) == 4:
        return "ZYXC"
    raise BigImageError(f"arrays of shape {shape} are not supported (2-D, 3-D or 4-D)")


def open_big_image(path, *, chunk_size: int = 2048) -> BigImage:
    """Open a TIFF/BigTIFF, Zarr array or OME-Zarr image lazily.

    The image is cut into chunks of ``chunk_size`` pixels along every spatial
    axis (channels whole). Nothing is read but the metadata; every chunk is
    read by its own task, which opens the file by its path (so that worker
    processes of a cluster can read it too).

    Raises
    ------
    BigImageError
        For a missing or unreadable file, or an unsupported layout.
    """
    import zarr

    path = Path(path)
    if not path.exists():
        raise BigImageError(f"{path}: no such file or folder")
    name = path.name.lower()
    scale, units, levels, level_shapes, alpha = {}, {}, 1, [], False
    if path.is_file() and name.endswith(TIFF_SUFFIXES):
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape, dtype = series.shape, series.dtype
                axes = _tiff_axes(series.axes, shape)
                page = tif.pages[0]
                scale, units = _tiff_physical(tif, page, axes)
                # Samples per pixel: 2 or 4 hold an alpha channel (gray+alpha,
                # RGBA), as nlmeans.io reads TIFF files that fit in memory.
                samples = shape[series.axes.index("S")] if "S" in series.axes else 1
                alpha = samples in (2, 4) or (bool(page.extrasamples) and samples > 1)
        except BigImageError:
            raise
        except Exception as exc:
            raise BigImageError(f"{path}: not a readable TIFF file ({exc})") from None
        kind, key = "tiff", None
    elif path.is_dir():
        try:
            node = zarr.open(path, mode="r")
        except Exception as exc:
            raise BigImageError(f"{path}: not a readable Zarr store ({exc})") from None
        attrs = dict(node.attrs)
        if attrs.get(ATTRIBUTE, {}).get("complete") is False:
            raise BigImageError(f"{path}: an unfinished nlmeans output; it cannot be an input")
        multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        if multiscales:
            kind = "ome-zarr"
            alpha = bool(attrs.get(ATTRIBUTE, {}).get("alpha", False))
            meta = multiscales[0]
            axes = "".join(a["name"] if isinstance(a, dict) else a for a in meta["axes"]).upper()
            if set(axes) - set("CZYX"):
                raise BigImageError(
                    f"{path}: OME-Zarr axes {axes.lower()!r} are not supported (c, z, y, x)"
                )
            datasets = meta["datasets"]
            key = datasets[0]["path"]
            levels = len(datasets)
            level_shapes = [tuple(node[d["path"]].shape) for d in datasets]
            for t in datasets[0].get("coordinateTransformations", []):
                if t.get("type") == "scale":
                    scale = dict(zip(axes, t["scale"]))
            for a in meta["axes"]:
                if isinstance(a, dict) and a.get("unit"):
                    units[a["name"].upper()] = a["unit"]
            array = node[key]
        elif isinstance(node, zarr.Array):
            kind, key, array = "zarr", None, node
            axes = attrs.get(ATTRIBUTE, {}).get("axes") or _plain_axes(node.shape)
            alpha = bool(attrs.get(ATTRIBUTE, {}).get("alpha", False))
            scale = attrs.get(ATTRIBUTE, {}).get("scale", {})
            units = attrs.get(ATTRIBUTE, {}).get("units", {})
        else:
            raise BigImageError(f"{path}: a Zarr group without OME-Zarr multiscales metadata")
        shape, dtype = tuple(array.shape), array.dtype
    else:
        raise BigImageError(f"{path}: not a TIFF file, Zarr array or OME-Zarr image")
    if axes.count("Y") != 1 or axes.count("X") != 1:
        raise BigImageError(f"{path}: axes {axes!r} have no Y and X")
    chunks = _default_chunks(shape, axes, int(chunk_size))
    array = _lazy(path, kind, key, shape, np.dtype(dtype), chunks)
    alpha = alpha and "C" in axes and shape[axes.index("C")] > 1
    return BigImage(array, axes, kind, scale, units, levels, level_shapes, alpha)


def _tiff_physical(tif, page, axes) -> tuple[dict, dict]:
    """Pixel sizes from the resolution tags (and ImageJ's z spacing)."""
    scale, units = {}, {}
    try:
        x_res, y_res = page.get_resolution()
        unit = {2: "inch", 3: "centimeter"}.get(int(page.resolutionunit))
    except Exception:
        return scale, units
    ij = tif.imagej_metadata or (tif.shaped_metadata or [{}])[0] or {}
    # ImageJ (and nlmeans' own BigTIFF) keep a unit such as "um" in their
    # metadata, with no TIFF resolution unit.
    unit = unit or (ij.get("unit") or None)
    if unit and x_res and y_res:
        scale.update(X=1.0 / x_res, Y=1.0 / y_res)
        units.update(X=unit, Y=unit)
    if "Z" in axes and ij.get("spacing"):
        scale["Z"] = float(ij["spacing"])
        if ij.get("unit"):
            units["Z"] = ij["unit"]
    ome_scale, ome_units = _ome_physical(tif, axes)
    scale.update(ome_scale)
    units.update(ome_units)
    return scale, units


def _ome_physical(tif, axes) -> tuple[dict, dict]:
    """Pixel sizes of an OME-TIFF: its OME-XML ``Pixels`` element's
    ``PhysicalSizeX/Y/Z`` (and their units, micrometres by default), which
    OME writers keep there rather than in the resolution tags."""
    import xml.etree.ElementTree as ElementTree

    scale, units = {}, {}
    text = getattr(tif, "ome_metadata", None) if getattr(tif, "is_ome", False) else None
    if not text:
        return scale, units
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return scale, units
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return scale, units
    for axis in "XYZ":
        value = pixels.get(f"PhysicalSize{axis}")
        if axis not in axes or value is None:
            continue
        try:
            size = float(value)
        except ValueError:
            continue
        if size > 0 and np.isfinite(size):
            scale[axis] = size
            units[axis] = pixels.get(f"PhysicalSize{axis}Unit", "µm")
    return scale, units


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _regular_chunks(array) -> tuple[int, ...]:
    for axis, sizes in enumerate(array.chunks):
        if len(set(sizes[:-1])) > 1 or (len(sizes) > 1 and sizes[-1] > sizes[0]):
            raise BigImageError(f"chunks along axis {axis} are not regular: {sizes}")
    return tuple(sizes[0] for sizes in array.chunks)


def _marker(store: Path, index) -> Path:
    return store / DONE_DIR / ".".join(str(i) for i in index)


def _store_chunk(block, store: str, key: str | None, region, index):
    """Write one chunk, then (only then) its done-marker, atomically."""
    import zarr

    root = zarr.open(store, mode="r+")
    array = root[key] if key is not None else root
    array[region] = block
    marker = _marker(Path(store), index)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_bytes(b"")
    os.replace(tmp, marker)
    return index


def _fingerprint(array, fingerprint) -> dict:
    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "chunks": list(_regular_chunks(array)),
        "run": fingerprint,
    }


def write_big_image(
    result,
    path,
    *,
    like: BigImage,
    fingerprint: dict | None = None,
    resume: bool = False,
    force: bool = False,
    client=None,
    workers: int | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_chunk: Callable[[], None] | None = None,
) -> Path:
    """Compute the lazy ``result`` chunk by chunk into ``path``.

    ``path`` ends in ``.zarr``, ``.ome.zarr`` or ``.tif`` (written as
    BigTIFF). The chunks are written into :func:`partial_path` with a
    done-marker for every chunk, created (atomically) only after the chunk is
    completely written; ``resume=True`` continues such a store, computing only
    the chunks without a marker (refused if the store was made for another
    input, shape or set of parameters: ``fingerprint``). Once every chunk is
    in, the pyramid (OME-Zarr) or the BigTIFF is built, and the finished
    output is renamed to ``path``: an output under its own name is always
    complete.

    ``like`` gives the axes and physical pixel sizes to keep (an OME-Zarr
    output stores the channel axis first, as NGFF requires). ``client``: a
    ``dask.distributed.Client`` to compute on (else the local threaded
    scheduler with ``workers`` threads). ``on_start(done, total)`` is called
    once before computing, ``on_chunk()`` after every written chunk.
    """
    import dask
    import zarr

    path = Path(path)
    kind = output_kind(path)
    store = partial_path(path)
    if path.exists() and not force:
        raise BigImageError(f"{path} already exists (use --force to overwrite)")
    check_replaceable(path)
    if kind == "ome-zarr" and "C" in like.axes[1:]:
        # NGFF: the channel axis comes before the space axes (readers such as
        # ome-zarr's refuse y, x, c); the array is stored channels first.
        da = require_dask()
        result = da.moveaxis(result, like.axes.index("C"), 0)
        like = replace(like, axes="C" + like.axes.replace("C", ""))
    chunks = _regular_chunks(result)
    key = "0" if kind == "ome-zarr" else None
    state = _fingerprint(result, fingerprint or {})
    if store.exists() and resume:
        try:
            attrs = dict(zarr.open(store, mode="r").attrs).get(ATTRIBUTE, {})
        except Exception as exc:
            raise BigImageError(
                f"{store}: cannot resume, not a readable Zarr store ({exc})"
            ) from None
        if attrs.get("state") != state:
            raise BigImageError(
                f"{store}: cannot resume, it was started with another input, chunking or "
                "parameters; remove it or run without --resume and with --force"
            )
    elif store.exists() and not force:
        raise BigImageError(
            f"{store}: an unfinished earlier run; finish it with --resume or start over with --force"
        )
    else:
        if store.exists():
            shutil.rmtree(store)
        attrs = {"complete": False, "state": state, "axes": like.axes}
        attrs.update(scale=like.scale, units=like.units, alpha=like.alpha)
        if kind == "ome-zarr":
            group = zarr.open_group(store, mode="w", zarr_format=2)
            group.create_array("0", shape=result.shape, chunks=chunks, dtype=result.dtype)
            group.attrs[ATTRIBUTE] = attrs
        else:
            array = zarr.open_array(
                store, mode="w", shape=result.shape, chunks=chunks, dtype=result.dtype
            )
            array.attrs[ATTRIBUTE] = attrs
        (store / DONE_DIR).mkdir()

    edges = [np.cumsum((0,) + c) for c in result.chunks]
    todo, total = [], 0
    for index in np.ndindex(*result.numblocks):
        total += 1
        if _marker(store, index).exists():
            continue
        region = tuple(slice(int(e[i]), int(e[i + 1])) for e, i in zip(edges, index))
        todo.append(
            dask.delayed(_store_chunk, pure=False)(
                result.blocks[index], str(store), key, region, index
            )
        )
    if on_start is not None:
        on_start(total - len(todo), total)
    _compute(todo, client, workers, on_chunk)
    return _finish(store, path, kind, like, force)


def _compute(tasks, client, workers, on_chunk) -> None:
    import dask

    if not tasks:
        return
    if client is not None:
        from distributed import as_completed

        futures = client.compute(tasks)
        try:
            for future in as_completed(futures):
                future.result()  # raises the task's error here
                if on_chunk is not None:
                    on_chunk()
        finally:
            client.cancel(futures)
        return
    from dask.callbacks import Callback

    keys = {task.key for task in tasks}

    class _Progress(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if key in keys and on_chunk is not None:
                on_chunk()

    with _Progress():
        dask.compute(*tasks, scheduler="threads", num_workers=workers)


def _finish(store: Path, path: Path, kind: str, like: BigImage, force: bool) -> Path:
    import zarr

    if kind == "ome-zarr":
        _write_pyramid(store, like)
    node = zarr.open(store, mode="r+")
    attrs = dict(node.attrs)[ATTRIBUTE]
    if kind == "tiff":
        tmp = path.with_name(path.name + ".partial")
        _write_bigtiff(zarr.open_array(store, mode="r"), tmp, like)
        if path.exists() and force:
            _remove(path)
        os.replace(tmp, path)
        shutil.rmtree(store)
        return path
    shutil.rmtree(store / DONE_DIR)
    attrs["complete"] = True
    node.attrs[ATTRIBUTE] = attrs
    if path.exists() and force:
        _remove(path)
    os.replace(store, path)
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _write_pyramid(store: Path, like: BigImage) -> None:
    """OME-Zarr (NGFF 0.4) multiscales: level 0 as written, then 2x means in Y and X."""
    import zarr

    da = require_dask()
    group = zarr.open_group(store, mode="r+")
    axes = like.axes
    base = da.from_zarr(group["0"])
    levels = max(1, like.levels)
    spatial = {axes.index("Y"), axes.index("X")}
    datasets, level = [], base
    for k in range(levels):
        if k:
            factors = {
                i: (2 if i in spatial and level.shape[i] >= 2 else 1) for i in range(level.ndim)
            }
            mean = da.coarsen(np.mean, level.astype(np.float64), factors, trim_excess=True)
            if np.dtype(base.dtype).kind in "ui":
                mean = da.round(mean)
            chunks = tuple(min(c, n) for c, n in zip(group["0"].chunks, mean.shape))
            level = mean.astype(base.dtype).rechunk(chunks)
            level.to_zarr(
                zarr.create_array(
                    store,
                    name=str(k),
                    shape=level.shape,
                    chunks=chunks,
                    dtype=level.dtype,
                    zarr_format=2,
                    overwrite=True,
                )
            )
            level = da.from_zarr(group[str(k)])
        step = [base.shape[i] / level.shape[i] for i in range(len(axes))]
        scale = [float(like.scale.get(a, 1.0)) * s for a, s in zip(axes, step)]
        datasets.append(
            {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    kinds = {"C": "channel", "Z": "space", "Y": "space", "X": "space"}
    ome_axes = []
    for a in axes:
        entry = {"name": a.lower(), "type": kinds[a]}
        if a in like.units:
            entry["unit"] = _NGFF_UNITS.get(like.units[a], like.units[a])
        ome_axes.append(entry)
    group.attrs["multiscales"] = [
        {"version": "0.4", "name": "denoised", "axes": ome_axes, "datasets": datasets}
    ]


def _write_bigtiff(array, path: Path, like: BigImage) -> None:
    """A tiled BigTIFF written tile by tile from the Zarr ``array`` (never all in memory)."""
    import tifffile

    axes = like.axes
    shape = array.shape
    y, x = axes.index("Y"), axes.index("X")
    channel = like.channel_axis
    # Pages run over every axis but Y, X and the channels (samples, last).
    leading = [i for i in range(len(axes)) if i not in (y, x, channel)]
    order = leading + [y, x] + ([channel] if channel is not None else [])
    out_axes = "".join(axes[i] for i in order).replace("C", "S")
    side = TIFF_TILE

    def tiles():
        for lead in np.ndindex(*[shape[i] for i in leading]):
            for y0 in range(0, shape[y], side):
                for x0 in range(0, shape[x], side):
                    index = [slice(None)] * len(shape)
                    for i, v in zip(leading, lead):
                        index[i] = v
                    index[y] = slice(y0, min(shape[y], y0 + side))
                    index[x] = slice(x0, min(shape[x], x0 + side))
                    block = np.asarray(array[tuple(index)])
                    rest = [i for i in range(len(shape)) if i not in leading]
                    block = np.transpose(block, [rest.index(i) for i in order[len(leading) :]])
                    pad = [(0, side - block.shape[0]), (0, side - block.shape[1])]
                    yield np.pad(block, pad + [(0, 0)] * (block.ndim - 2))

    kwargs = {}
    unit = like.units.get("X")
    metadata = {"axes": out_axes}
    if {"X", "Y"} <= set(like.scale):
        kwargs["resolution"] = (1.0 / like.scale["X"], 1.0 / like.scale["Y"])
        if unit in ("inch", "centimeter"):
            kwargs["resolutionunit"] = {"inch": 2, "centimeter": 3}[unit]
        else:  # a unit TIFF has no code for (um, nm), or none: NONE (tifffile would write inch)
            kwargs["resolutionunit"] = 1
            if unit:  # in the metadata, as ImageJ does
                metadata["unit"] = unit
    if "Z" in like.scale:
        metadata.update(spacing=like.scale["Z"], unit=like.units.get("Z", metadata.get("unit", "")))
    out_shape = tuple(shape[i] for i in order)
    colour = out_shape[-1] - like.alpha if out_axes.endswith("S") else 1
    if like.alpha:
        kwargs["extrasamples"] = ["unassalpha"]
    tifffile.imwrite(
        path,
        tiles(),
        shape=out_shape,
        dtype=array.dtype,
        tile=(side, side),
        bigtiff=True,
        photometric="rgb" if out_axes.endswith("S") and colour == 3 else "minisblack",
        planarconfig="contig" if channel is not None else None,
        metadata=metadata,
        **kwargs,
    )


def describe_axes(image: BigImage) -> str:
    parts = [f"{a}={n}" for a, n in zip(image.axes, image.array.shape)]
    text = f"{image.kind}, {' '.join(parts)}, {image.array.dtype}"
    if image.scale:
        text += ", pixel " + json.dumps({a: image.scale[a] for a in image.scale})
    return text
