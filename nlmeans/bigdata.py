"""Non-local means on Dask arrays: images larger than memory, on a laptop or a cluster.

:func:`nlmeans.denoise` hands a ``dask.array.Array`` to :func:`denoise_dask`,
which returns a lazy array of the same shape, chunks and dtype. Every output
chunk is computed from its input chunk plus a halo of exactly what the result
depends on (:func:`halo`), by the same kernels as the in-memory path, with the
parameters resolved once for the whole image: the result equals the in-memory
one bit for bit for the classical methods, and to float rounding (about 1e-6)
for the network, whatever the chunking.

Needs the ``dask`` extra: ``pip install "nlmeans[dask]"``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._checks import (
    CLASSICAL_METHODS,
    METHODS,
    SUPPORTED_DTYPES,
    _check_channel_axis,
    _check_real,
    check_ensemble,
    check_threads,
    check_unit_scale,
)
from ._denoise import (
    NEURAL_IMAGES_ONLY,
    NOISE_OPTIONS,
    NLMeansParameters,
    _denoise_classical,
    _denoise_neural,
    _neural_takes_noise_map,
    _stabilised_range,
    estimate_sigma,
    keep_constant_channels,
    resolve_parameters,
    uses_camera_model,
)
from .io import from_unit_float, to_unit_float
from .noise import NoiseModel, estimate_noise, generalized_anscombe, inverse_generalized_anscombe
from .noise_level import estimate_noise_level

__all__ = [
    "DEFAULT_SAMPLE_CHUNKS",
    "denoise_dask",
    "halo",
    "require_dask",
    "resolve_dask_parameters",
    "sample_blocks",
]

#: Chunks read to estimate the noise when it is not given.
DEFAULT_SAMPLE_CHUNKS = 8
#: Chunks narrower than this are not sampled for the noise (see :func:`sample_blocks`).
MIN_SAMPLE_SIDE = 32

DASK_HINT = 'pip install "nlmeans[dask]"'


def require_dask():
    """``dask.array``, or an ImportError that says what to install."""
    try:
        import dask.array as da
    except ImportError as exc:
        raise ImportError(
            f"images larger than memory (Dask arrays, Zarr) need the dask extra: {DASK_HINT}"
        ) from exc
    return da


# --------------------------------------------------------------------------
# How far a result pixel looks
# --------------------------------------------------------------------------


def _effective_distance(params: NLMeansParameters, spatial_shape) -> int:
    # The kernels clip the search radius to the image (nlmeans._denoise._nlm_pass).
    return min(params.patch_distance, max(spatial_shape) - 1)


def _neural_config():
    from .neural.inference import get_model

    return get_model().config


def halo(params: NLMeansParameters, spatial_shape) -> int:
    """How many pixels away from a pixel its denoised value can depend on.

    ``patch_distance + patch_size // 2`` for ``"fast"`` and ``"exact"`` (a
    candidate's patch), ``patch_distance + 2 * (patch_size // 2)`` for
    ``"patchwise"`` (every patch that covers the pixel, and its candidates'
    patches), the receptive radius of the network for ``"neural"``
    (:attr:`nlmeans.neural.DenoiserConfig.receptive_radius`). A chunk must be
    at least this wide for the chunked result to be exact; the Dask path
    reads this much (plus a little alignment) around every chunk.

    Raises
    ------
    ValueError
        For a network whose attention covers the whole image (no finite
        receptive field).
    """
    if params.method == "neural":
        config = _neural_config()
        radius = config.receptive_radius
        if radius is None:
            raise ValueError(
                "the network attends to the whole image (window=None): its result depends on "
                "every pixel, so it cannot be computed chunk by chunk"
            )
        return int(radius)
    f = params.patch_size // 2
    d = _effective_distance(params, spatial_shape)
    return d + (2 * f if params.method == "patchwise" else f)


# --------------------------------------------------------------------------
# Parameters, once for the whole image
# --------------------------------------------------------------------------


def sample_blocks(image, channel_axis, count: int = DEFAULT_SAMPLE_CHUNKS) -> list[tuple]:
    """Index tuples (slices) of up to ``count`` chunks spread evenly over the image.

    Deterministic: the chunks at evenly spaced positions in the chunk grid
    (C order), each with all its channels. Slivers (chunks narrower than
    :data:`MIN_SAMPLE_SIDE` pixels where the image is wider) are passed over
    while there are other chunks: a noise estimate needs some area.
    """
    spatial = [i for i in range(image.ndim) if i != channel_axis]
    grids = [np.cumsum((0,) + image.chunks[i]) for i in spatial]
    blocks = []
    for index in np.ndindex(*[len(g) - 1 for g in grids]):
        slices = [slice(None)] * image.ndim
        for axis, grid, i in zip(spatial, grids, index):
            slices[axis] = slice(int(grid[i]), int(grid[i + 1]))
        blocks.append(tuple(slices))
    wide = [
        b
        for b in blocks
        if all(b[a].stop - b[a].start >= min(MIN_SAMPLE_SIDE, image.shape[a]) for a in spatial)
    ]
    blocks = wide or blocks
    picks = np.unique(np.linspace(0, len(blocks) - 1, min(count, len(blocks))).round().astype(int))
    return [blocks[i] for i in picks]


def _sampled_chunks(image, channel_axis, count):
    import dask

    return dask.compute(*[image[s] for s in sample_blocks(image, channel_axis, count)])


def _sample_noise(chunks, axis, noise):
    """The noise model of the whole image from sampled chunks (None: white noise)."""
    fits = [estimate_noise(chunk, channel_axis=axis, model=noise) for chunk in chunks]
    poisson = [m for m in fits if m.kind == "poisson-gaussian"]
    # "auto" takes the Poisson-Gaussian path when most samples find
    # signal-dependent noise; a forced model always does.
    if not poisson or (noise == "auto" and 2 * len(poisson) <= len(fits)):
        return None
    a = tuple(float(v) for v in np.median([m.a for m in poisson], axis=0))
    b = tuple(float(v) for v in np.median([m.b for m in poisson], axis=0))
    if not any(np.add(a, b)):
        return None
    return NoiseModel("poisson-gaussian", a, b)


def _check_dask_image(image, channel_axis):
    if np.dtype(image.dtype).type not in SUPPORTED_DTYPES:
        raise TypeError(
            f"image has unsupported dtype {image.dtype}; use uint8, uint16, float32 or float64"
        )
    if any(n == 0 for n in image.shape) or image.ndim == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if any(np.isnan(n) for c in image.chunks for n in c):
        raise ValueError("image has unknown chunk sizes; call image.compute_chunk_sizes() first")
    return _check_channel_axis(image, channel_axis)


def _stabilised_bounds(image, axis, model) -> tuple[np.ndarray, float]:
    """``(offset, spread)`` of the whole image's stabilised values, per channel
    as in :func:`nlmeans._denoise._stabilise`."""
    stabilised = image.map_blocks(
        lambda block: generalized_anscombe(to_unit_float(block), model, channel_axis=axis),
        dtype=np.float64,
    )
    return _stabilised_range(stabilised.min, stabilised.max, stabilised.ndim, axis)


# --------------------------------------------------------------------------
# Denoising
# --------------------------------------------------------------------------


def resolve_dask_parameters(
    image,
    *,
    h=None,
    sigma=None,
    patch_size=None,
    patch_distance=None,
    method="fast",
    channel_axis=None,
    color_space="auto",
    h_chroma=None,
    noise=None,
    sample_chunks=DEFAULT_SAMPLE_CHUNKS,
) -> NLMeansParameters:
    """The parameters :func:`denoise_dask` would use for ``image``, nothing else computed.

    Reads only what an estimate needs (``sample_chunks`` chunks; the range of
    the stabilised image for Poisson-Gaussian noise).
    """
    return _resolve(
        image,
        dict(
            h=h,
            sigma=sigma,
            patch_size=patch_size,
            patch_distance=patch_distance,
            method=method,
            channel_axis=channel_axis,
            color_space=color_space,
            h_chroma=h_chroma,
            noise=noise,
        ),
        sample_chunks,
    )[0]


def _channel_ranges(image, axis):
    """Per channel minimum and maximum (over the spatial axes), read now."""
    import dask

    spatial = tuple(i for i in range(image.ndim) if i != axis)
    return dask.compute(image.min(axis=spatial), image.max(axis=spatial))


def _resolve(image, kwargs, sample_chunks):
    """``(params, axis, stabilised range or None, channel ranges or None)`` for
    :func:`denoise_dask`.

    A float image off the [0, 1] scale reads the parameter table with sigma
    on that scale (see :func:`nlmeans.resolve_parameters`): its range is read
    here then, per channel (:func:`_channel_ranges`), and handed on so that
    :func:`denoise_dask` does not read it again.
    """
    ranges = None
    h, sigma, patch_size = kwargs["h"], kwargs["sigma"], kwargs["patch_size"]
    patch_distance, method = kwargs["patch_distance"], kwargs["method"]
    color_space, h_chroma, noise = kwargs["color_space"], kwargs["h_chroma"], kwargs["noise"]
    axis = _check_dask_image(image, kwargs["channel_axis"])
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    spatial_axes = [i for i in range(image.ndim) if i != axis]
    if method == "neural" and len(spatial_axes) == 3:
        raise ValueError(NEURAL_IMAGES_ONLY)
    if isinstance(sample_chunks, bool) or not isinstance(sample_chunks, int) or sample_chunks < 1:
        raise ValueError(f"sample_chunks must be a positive integer, got {sample_chunks!r}")

    # A zero-stride stand-in of the image's shape and sample type (one value in
    # memory): resolve_parameters validates the options against it (a sigma in
    # gray levels is refused for integer images only) and applies the table
    # without touching data.
    stand_in = np.broadcast_to(np.zeros((), image.dtype.newbyteorder("=")), image.shape)
    options = dict(
        h=h,
        patch_size=patch_size,
        patch_distance=patch_distance,
        method=method,
        channel_axis=axis,
        color_space=color_space,
        h_chroma=h_chroma,
    )
    model, stabilised = None, None
    automatic: tuple[str, ...] = ()
    sampled_levels = None  # the NoiseLevel of each sampled chunk, when measured
    if noise is not None and not isinstance(noise, NoiseModel) and noise not in NOISE_OPTIONS:
        raise ValueError(
            f"noise must be one of {', '.join(NOISE_OPTIONS)} or a NoiseModel; got {noise!r}"
        )
    if noise is not None and noise not in ("gaussian", "white") and sigma is not None:
        raise ValueError(
            "sigma cannot be combined with a noise model (noise="
            f"{noise if isinstance(noise, str) else 'NoiseModel'}); give the model's a and b instead"
        )
    if isinstance(noise, NoiseModel):
        noise._per_channel(1 if axis is None else image.shape[axis], axis)  # channel count
        if noise.kind == "poisson-gaussian" and any(noise.a + noise.b):
            model = noise
        else:
            sigma = noise.sigma  # the network keeps the model as its map (below)
    elif noise in ("poisson-gaussian", "auto"):
        chunks = _sampled_chunks(image, axis, sample_chunks)
        if noise == "auto":
            levels = [estimate_noise_level(c, channel_axis=axis) for c in chunks]
        if noise == "auto" and 2 * sum(level.correlated > 0 for level in levels) > len(levels):
            # As in memory: spatially correlated (camera) noise takes the
            # Gaussian path, its sigma read at the coarser scale.
            sampled_levels = levels
            automatic = ("sigma",)
        else:
            model = _sample_noise(chunks, axis, noise)
            automatic = ("noise",) if model is not None else ("sigma",)
    elif sigma is None and noise != "white":
        # As in memory: white noise read at the finest scale, camera
        # (correlated) noise at the coarser one (estimate_noise_level).
        chunks = _sampled_chunks(image, axis, sample_chunks)
        sampled_levels = [estimate_noise_level(c, channel_axis=axis) for c in chunks]
    if model is not None:
        stabilised = _stabilised_bounds(image, axis, model)
        spread = stabilised[1]
        # The stabilised image is float whatever the input: its sigma may exceed 1.
        stabilised_stand_in = np.broadcast_to(np.zeros((), np.float64), image.shape)
        params = resolve_parameters(
            stabilised_stand_in, sigma=1.0 / spread, value_range=(0.0, 1.0), **options
        )
        params = dataclasses.replace(
            params,
            noise_model=model,
            # As in memory: a model estimated from the image, not one given.
            sigma_estimated=not isinstance(noise, NoiseModel),
            automatic=automatic + params.automatic,
        )
    else:
        estimated = sigma is None
        correlated = 0.0
        if estimated and sampled_levels is not None:
            sigma = float(np.median([level.sigma for level in sampled_levels]))
            correlated = float(np.median([level.correlated for level in sampled_levels]))
            automatic = automatic or ("sigma",)
        elif estimated:  # noise="white": the finest-scale estimate
            chunks = _sampled_chunks(image, axis, sample_chunks)
            sigma = float(np.median([estimate_sigma(c, channel_axis=axis) for c in chunks]))
            automatic = automatic or ("sigma",)
        else:
            sigma = _check_real("sigma", sigma, positive=False)
        value_range = None
        needs_table = None in (h, patch_size, patch_distance) or (
            axis is not None and h_chroma is None
        )
        if image.dtype.kind == "f" and method != "neural" and needs_table:
            ranges = _channel_ranges(image, axis)
            value_range = (float(np.min(ranges[0])), float(np.max(ranges[1])))
        params = resolve_parameters(stand_in, sigma=sigma, value_range=value_range, **options)
        params = dataclasses.replace(
            params,
            sigma_estimated=estimated and not isinstance(noise, NoiseModel),
            automatic=automatic + params.automatic,
            correlated_noise=correlated,
        )
        if (
            method == "neural"
            and estimated
            and noise is None  # "gaussian" and "white" asked for one sigma
            and correlated == 0
            and _neural_takes_noise_map(image, axis)
        ):
            # As in memory (nlmeans._denoise.resolve_parameters): a network
            # that takes a noise map gets the Poisson-Gaussian map when the
            # samples find signal-dependent noise; the map is evaluated pixel
            # by pixel, so every chunk sees the same model.
            found = _sample_noise(_sampled_chunks(image, axis, sample_chunks), axis, "auto")
            if found is not None:
                params = dataclasses.replace(
                    params, noise_model=found, automatic=params.automatic + ("noise",)
                )

    if method == "neural" and isinstance(noise, NoiseModel) and params.noise_model is None:
        # As in memory: a Gaussian model gives the network each channel's sigma.
        params = dataclasses.replace(params, noise_model=noise)
    return params, axis, stabilised, ranges


def denoise_dask(
    image,
    *,
    h=None,
    sigma=None,
    patch_size=None,
    patch_distance=None,
    method="fast",
    channel_axis=None,
    color_space="auto",
    h_chroma=None,
    noise=None,
    threads=None,
    ensemble=False,
    return_params=False,
    sample_chunks=DEFAULT_SAMPLE_CHUNKS,
):
    """Denoise a ``dask.array.Array`` chunk by chunk; a lazy array comes back.

    Takes the arguments of :func:`nlmeans.denoise` (which calls this for a
    Dask array) and returns a lazy array of the input's shape, chunks and
    dtype, equal to ``nlmeans.denoise(image.compute(), **params.denoise_kwargs())``:
    bit for bit for the classical methods, to float rounding for
    ``"neural"``.

    Parameters
    ----------
    image : dask.array.Array
        As :func:`nlmeans.denoise`; any chunking (channels may be split too).
    sample_chunks : int
        How many chunks, spread evenly over the image, estimate the noise
        (``sigma``, or the Poisson-Gaussian model) when it is not given.
    (other parameters)
        As :func:`nlmeans.denoise`.

    Returns
    -------
    dask.array.Array or (dask.array.Array, NLMeansParameters)

    Notes
    -----
    Parameters are resolved once for the whole image, never per chunk:
    ``sigma`` (or the noise model) from ``sample_chunks`` chunks (the median
    of their estimates), then ``h``, ``patch_size`` and ``patch_distance``
    from the shipped table as in memory. Estimating reads those chunks now.

    The image's minimum and maximum (the kernels' float scale and the final
    clip) are also read now, in one pass over the data (a Poisson-Gaussian
    model adds the range of the stabilised image, a second pass); the
    denoising is lazy. Computed inside the denoising graph instead, the
    range held chunks in memory: every chunk became ready at once when the
    reduction finished, and Dask's threaded scheduler loaded them before
    denoising them (measured: a 128 MB image peaked at 1.18 GB, against
    0.27 GB with the range read first).

    Each output chunk is denoised from the input region around it: :func:`halo`
    pixels on every side (clipped at the image's borders), with the region's
    first row moved up to a multiple of :data:`nlmeans.kernels.STRIP_ROWS`
    (and ``2 * STRIP_ROWS`` more rows above) so that the kernels' row strips,
    hence the order of every floating-point sum, are those of the whole
    image. The kernels' own border rule (reflection, a search window clipped
    to the image) then applies where the region meets the image's true
    borders, and the region's other edges are far enough not to reach the
    kept chunk. For the network, region origins are multiples of its
    pixel-unshuffle factor, so every region sees the pixel grid of the whole
    image.
    """
    da = require_dask()

    n_threads = check_threads(threads)
    ensemble = check_ensemble(ensemble, method)
    params, axis, stabilised, ranges = _resolve(
        image,
        dict(
            h=h,
            sigma=sigma,
            patch_size=patch_size,
            patch_distance=patch_distance,
            method=method,
            channel_axis=channel_axis,
            color_space=color_space,
            h_chroma=h_chroma,
            noise=noise,
        ),
        sample_chunks,
    )
    params = dataclasses.replace(params, ensemble=ensemble)
    spatial_axes = [i for i in range(image.ndim) if i != axis]
    spatial_shape = tuple(image.shape[i] for i in spatial_axes)
    reach = halo(params, spatial_shape)
    if method in CLASSICAL_METHODS:
        from .kernels import STRIP_ROWS

        f = params.patch_size // 2
        # Rows: see Notes (the strips of the first rows of a region see
        # reflected rows instead of their real neighbours; 2 strips and a
        # patch more keep them away from the kept chunk).
        before = {a: reach for a in spatial_axes}
        before[spatial_axes[-2]] = reach + f + 2 * STRIP_ROWS
        align = {spatial_axes[-2]: STRIP_ROWS}
    else:
        grid = _neural_config().alignment
        before = {a: reach + 2 * grid for a in spatial_axes}
        align = {spatial_axes[-2]: grid, spatial_axes[-1]: grid}
    after = {a: before[a] if method == "neural" else reach for a in spatial_axes}

    # The image's range, read now (see Notes: in the graph it cost memory).
    # Per channel (to give exactly constant channels back as they are, as in
    # memory); the whole image's range is theirs.
    channel_min, channel_max = _channel_ranges(image, axis) if ranges is None else ranges
    bounds = (float(np.min(channel_min)), float(np.max(channel_max)))
    if not all(np.isfinite(bounds)):
        raise ValueError("image contains NaN or Inf values")
    if method == "neural" and stabilised is None:
        # Refused now rather than in the first chunk (as in memory).
        check_unit_scale(*(float(v) for v in to_unit_float(np.array(bounds, image.dtype))))
    channel_range = (channel_min, channel_max) if axis is not None else None
    # The network gets the one sigma resolved for the whole image (never an
    # estimate per chunk), or the noise model's per-pixel map.
    neural_sigma = params.sigma
    neural_map = (
        method == "neural"
        and params.noise_model is not None
        and _neural_takes_noise_map(image, axis)
    )

    # One task per output chunk, in one graph layer: it receives the input
    # chunks that its region overlaps (keys of ``image``), joins them and cuts
    # the region out. (Slicing the Dask array once per chunk would cost time
    # quadratic in the number of chunks.)
    from functools import partial

    from dask.highlevelgraph import HighLevelGraph
    from dask.tokenize import tokenize

    edges = [np.cumsum((0,) + c) for c in image.chunks]
    name = "nlmeans-denoise-" + tokenize(image, bounds, params, n_threads, stabilised)
    graph = {}
    for index in np.ndindex(*image.numblocks):
        region, core, offset, blocks = [], [], [], []
        for ax, i in enumerate(index):
            start, stop = int(edges[ax][i]), int(edges[ax][i + 1])
            if ax == axis:
                lo, hi = 0, image.shape[ax]
            else:
                lo = max(0, start - before[ax])
                lo -= lo % align.get(ax, 1)
                hi = min(image.shape[ax], stop + after[ax])
                offset.append(lo)
            first = int(np.searchsorted(edges[ax], lo, side="right")) - 1
            last = int(np.searchsorted(edges[ax], hi, side="left"))
            blocks.append(range(first, last))
            region.append(slice(lo - int(edges[ax][first]), hi - int(edges[ax][first])))
            core.append(slice(start - lo, stop - lo))
        keys = np.empty([len(b) for b in blocks], dtype=object)
        for local in np.ndindex(*keys.shape):
            keys[local] = (image.name,) + tuple(b[k] for b, k in zip(blocks, local))
        task = partial(
            _denoise_region,
            params=params,
            axis=axis,
            region=tuple(region),
            core=tuple(core),
            window=(_zyx(offset, 0), _zyx(spatial_shape, 1)),
            n_threads=n_threads,
            neural_sigma=neural_sigma,
            neural_map=neural_map,
            stabilised=stabilised,
            bounds=bounds,
            channel_range=channel_range,
            out_dtype=image.dtype,
        )
        graph[(name,) + index] = (task, keys.tolist())
    layer = HighLevelGraph.from_collections(name, graph, dependencies=[image])
    result = da.Array(layer, name, chunks=image.chunks, dtype=image.dtype)
    return (result, params) if return_params else result


def _zyx(values, fill) -> tuple:
    """Spatial values in kernel layout ``(Z, Y, X)`` (2-D images: Z first)."""
    values = tuple(int(v) for v in values)
    return values if len(values) == 3 else (fill,) + values


def _denoise_region(
    blocks,
    *,
    bounds,
    params,
    axis,
    region,
    core,
    window,
    n_threads,
    neural_sigma,
    neural_map,
    stabilised,
    channel_range,
    out_dtype,
):
    """Denoise one region (a chunk and its halo) as part of the whole image; return the chunk.

    ``blocks``: the nested list of input chunks that the region overlaps;
    ``region`` cuts it out of them, ``core`` the chunk out of the region;
    ``bounds``: the whole image's minimum and maximum; ``channel_range``:
    its per-channel minima and maxima (None without a channel axis);
    ``out_dtype``: the image's dtype, byte order included (joining the chunks
    and the kernels give native order).
    """
    region = np.block(blocks)[region] if isinstance(blocks, list) else np.asarray(blocks)[region]
    # The whole image's constant channels (a region's own could differ).
    constant = None if channel_range is None else channel_range[0] == channel_range[1]
    lo_raw, hi_raw = bounds
    dtype = region.dtype
    # The whole image's range, on the float scale and in its own dtype.
    lo, hi = (float(v) for v in to_unit_float(np.array([lo_raw, hi_raw]).astype(dtype)))
    image_min, image_max = np.array([lo_raw, hi_raw]).astype(dtype)
    if neural_map:
        # nlmeans._denoise.denoise: the network takes the model's sigma map.
        result = _denoise_neural(
            region,
            axis,
            None,
            n_threads,
            noise=params.noise_model,
            ensemble=params.ensemble,
            constant=constant,
        )
    elif params.noise_model is not None:
        # nlmeans._denoise._denoise_stabilised with the whole image's ranges.
        model = params.noise_model
        offset, spread = stabilised
        scaled = (
            generalized_anscombe(to_unit_float(region), model, channel_axis=axis) - offset
        ) / spread
        if params.method == "neural":
            out = _denoise_neural(scaled, axis, None, n_threads, ensemble=params.ensemble)
        else:
            # In memory the scaled image spans exactly [0, 1]: each channel
            # starts at 0, the widest ends at 1.
            out = _denoise_classical(
                scaled, axis, params, n_threads, bounds=(0.0, 1.0), window=window
            )
        result = inverse_generalized_anscombe(out * spread + offset, model, channel_axis=axis)
        np.clip(result, lo, hi, out=result)
        result = from_unit_float(result, dtype)
    elif params.method == "neural":
        result = _denoise_neural(
            region,
            axis,
            neural_sigma,
            n_threads,
            camera=uses_camera_model(params),
            ensemble=params.ensemble,
            constant=constant,
        )
    else:
        result = _denoise_classical(region, axis, params, n_threads, bounds=(lo, hi), window=window)
    np.clip(result, image_min, image_max, out=result)
    if channel_range is not None:
        keep_constant_channels(result, axis, *channel_range)
    return np.ascontiguousarray(result[core], dtype=out_dtype)
