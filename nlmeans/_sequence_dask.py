"""``denoise_sequence`` on a ``dask.array.Array``: long clips, lazily, chunk by chunk in time.

The clip is split along time: each task reads its frames plus ``k`` frames
of context on each side (the temporal radius; clipped at the clip's ends)
and denoises them with the in-memory code, keeping its own frames. Frames
are whole in every task (spatial chunks are joined first): a frame's
result depends on the frames of its window only, and the parameters and the
float scale (the first frame's range) are resolved once for the whole clip,
so the result equals the in-memory one bit for bit, for any chunking.
"""

from __future__ import annotations

import numpy as np

from ._sequence import (
    ESTIMATE_FRAMES,
    _normalise_axis,
    _run,
    resolve_sequence_parameters,
    sequence_scale,
)


def denoise_sequence_dask(frames, *, time_axis, channel_axis, n_threads, options):
    """The lazy result of :func:`nlmeans.denoise_sequence` for a Dask array, and its parameters."""
    from .bigdata import require_dask

    da = require_dask()
    import dask

    if frames.ndim not in (3, 4):
        raise ValueError(
            f"frames must be a 3-D (t, y, x) or 4-D (with channels) array, got {frames.ndim}-D"
        )
    t_axis = _normalise_axis("time_axis", time_axis, frames.ndim)
    c_axis = None
    if channel_axis is not None:
        c_axis = _normalise_axis("channel_axis", channel_axis, frames.ndim)
        if c_axis == t_axis:
            raise ValueError("channel_axis and time_axis must differ")
    elif frames.ndim == 4:
        raise ValueError("a 4-D array needs channel_axis (frames are 2-D)")
    moved = da.moveaxis(frames, t_axis, 0)
    frame_axis = None if c_axis is None else c_axis - (c_axis > t_axis)
    n = moved.shape[0]
    if n == 0:
        raise ValueError("the sequence holds no frame")
    # Whole frames in every chunk; time chunks as given.
    moved = moved.rechunk({i: -1 for i in range(1, moved.ndim)})
    first = moved[:ESTIMATE_FRAMES].compute()  # the noise estimate and the float scale
    params = resolve_sequence_parameters(
        list(first), n_frames=n, channel_axis=frame_axis, **options
    )
    k = params.temporal_radius
    scale = sequence_scale(first[0])

    pieces = []
    start = 0
    for size in moved.chunks[0]:
        stop = start + size
        lo, hi = max(0, start - k), min(n, stop + k)
        task = dask.delayed(_denoise_frames, pure=True)(
            moved[lo:hi], start - lo, stop - lo, params, frame_axis, n_threads, scale
        )
        pieces.append(da.from_delayed(task, shape=(size,) + moved.shape[1:], dtype=moved.dtype))
        start = stop
    result = da.concatenate(pieces, axis=0) if len(pieces) > 1 else pieces[0]
    result = da.moveaxis(result, 0, t_axis).rechunk(frames.chunks)
    return result, params


def _denoise_frames(block, keep_lo, keep_hi, params, axis, n_threads, scale) -> np.ndarray:
    """Frames ``keep_lo:keep_hi`` of ``block`` denoised with their context around them."""
    if params.method == "neural":
        from ._sequence_neural import load_spacetime_model, run_neural

        model = load_spacetime_model(params.weights)
        # Mirroring happens only past the clip's true ends: a kept frame's
        # window lies inside the block (it holds k frames of context).
        results = run_neural(iter(block), model, params.sigma, axis, n_threads)
    else:
        results = _run(iter(block), params, axis, n_threads, scale=scale)
    out = np.empty((keep_hi - keep_lo,) + block.shape[1:], block.dtype)
    for i, frame in enumerate(results):
        if i >= keep_hi:
            break
        if i >= keep_lo:
            out[i - keep_lo] = frame
    return out
