"""Spatio-temporal non-local means: :func:`denoise_sequence`.

A pixel of frame ``t`` is averaged over the pixels of frames ``t - k .. t +
k`` within ``+-d`` pixels, weighted by 2-D patch similarity: the same object
in the neighbouring frames is usually the most similar patch, and no motion
is estimated. Frames are processed in blocks of a few frames plus ``k``
frames of context on each side, so a sequence of any length needs memory for
one block only, and an iterator of frames is denoised as it arrives. Volumes
over time (3-D + t) work the same way with 3-D patches and a 4-D window.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from ._checks import (
    CLASSICAL_METHODS,
    _check_distance,
    _check_image,
    _check_positive_odd,
    _check_real,
    check_flag,
    check_sigma_scale,
    check_threads,
    unmasked,
)
from ._denoise import (
    _MIN_AUTO_SIGMA,
    _centre_weights,
    _check_color_space,
    _kernel_correction,
    _parameter_table,
    _patch_coverage,
    _table_row,
    table_scale,
)
from .io import from_unit_float, to_unit_float
from .noise_level import estimate_noise_level

logger = logging.getLogger("nlmeans")

#: Frames whose noise estimates (median) give an automatic sigma.
ESTIMATE_FRAMES = 5
#: Frame data (floats) per block that sets how many frames are denoised at once.
_BLOCK_VALUES = 1 << 23
_MAX_CHUNK = 8
#: Automatic parameters of volumes over time (3-D patches), per method, for
#: every sigma. Fitted by ``python benchmarks/bench_volume_sequence.py --fit
#: --methods ...`` on volume series made from Train400 images
#: (make_volume_sequence; sigma 15, 25, 50), among windows costing at most 3x
#: a volume-by-volume `fast` (5 x 5**3 shifts against its 7**3: 1.8x): 3-D
#: patches of 125 voxels tell patches apart better than 2-D ones, so h is
#: lower than the 2-D rows'. The same window won for `fast` and `patchwise`
#: at every sigma (benchmarks/results/volume_sequence_fit*.txt); patchwise's
#: h = 0.35 sigma won at 15 and 25 and was 0.03 dB behind 0.4 sigma at 50.
#: ``exact`` (the IPOL weights, which subtract 2 sigma^2 from the distance)
#: wants a higher h that grows with sigma: 0.8 sigma won at 15, 1.0 at 25
#: and 1.4 at 50 (benchmarks/results/volume_sequence_fit_exact.txt); one
#: row for every sigma, 1.0 has the best mean over the three.
VOLUME_PARAMETERS = {
    "fast": {"temporal_radius": 2, "patch_size": 5, "patch_distance": 2, "h_over_sigma": 0.5},
    "exact": {"temporal_radius": 2, "patch_size": 5, "patch_distance": 2, "h_over_sigma": 1.0},
    "patchwise": {"temporal_radius": 2, "patch_size": 5, "patch_distance": 2, "h_over_sigma": 0.35},
}


@dataclass(frozen=True)
class SequenceParameters:
    """The parameters a :func:`denoise_sequence` call used, resolved once per sequence.

    ``sigma``, ``h`` and ``h_chroma`` are on the frames' float scale ([0, 1]
    for integer frames); ``temporal_radius`` is ``k`` (the window spans ``2k
    + 1`` frames); ``automatic`` lists what came from the shipped table or
    an estimate; ``color_space`` is ``"gray"``, ``"rgb"`` or ``"opponent"``.
    For ``method="neural"`` ``h``, ``patch_size`` and ``patch_distance`` are
    None, ``temporal_radius`` is the spacetime network's (half its frames)
    and ``weights`` names its file.
    """

    method: str
    sigma: float
    h: float | None
    patch_size: int | None
    patch_distance: int | None
    temporal_radius: int
    sigma_estimated: bool
    automatic: tuple[str, ...] = ()
    color_space: str = "gray"
    h_chroma: float | None = None
    weights: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def denoise_kwargs(self) -> dict:
        """Keyword arguments that make :func:`denoise_sequence` use exactly these parameters."""
        kwargs = dict(
            method=self.method,
            sigma=self.sigma,
            h=self.h,
            patch_size=self.patch_size,
            patch_distance=self.patch_distance,
            temporal_radius=self.temporal_radius,
            weights=self.weights,
        )
        if self.color_space != "gray" and self.method != "neural":
            kwargs["color_space"] = self.color_space
        if self.h_chroma is not None:
            kwargs["h_chroma"] = self.h_chroma
        return {key: value for key, value in kwargs.items() if value is not None}


def _sequence_row(method: str, sigma: float) -> dict:
    """Row of the shipped table's ``"sequence"`` section for ``sigma`` (on [0, 1])."""
    rows = _parameter_table()["sequence"]["methods"][method]
    for row in rows:
        if sigma * 255.0 <= row["sigma_max"]:
            return row
    return rows[-1]


def _frame_axis(frame: np.ndarray, channel_axis) -> int | None:
    """The channel axis of one frame, checked: a 2-D image or a 3-D volume, gray or with channels."""
    if channel_axis is None:
        if frame.ndim not in (2, 3):
            raise ValueError(
                f"frames must be 2-D images or 3-D volumes, got a {frame.ndim}-D frame; "
                "pass channel_axis for frames with channels"
            )
        return None
    if frame.ndim not in (3, 4):
        raise ValueError(
            f"with channel_axis every frame must be 3-D (an image with channels) or 4-D "
            f"(a volume with channels), got {frame.ndim}-D"
        )
    if not -frame.ndim <= channel_axis < frame.ndim:
        raise ValueError(f"channel_axis={channel_axis} is out of range for a {frame.ndim}-D frame")
    return int(channel_axis) % frame.ndim


def _is_volume(frame: np.ndarray, axis) -> bool:
    """Whether the frames are 3-D volumes (3-D patches) rather than 2-D images."""
    return frame.ndim - (axis is not None) == 3


def _check_temporal_radius(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"temporal_radius must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"temporal_radius must be a non-negative integer, got {value}")
    return int(value)


def resolve_sequence_parameters(
    frames,
    *,
    n_frames: int | None = None,
    temporal_radius=None,
    channel_axis=None,
    method="fast",
    h=None,
    sigma=None,
    patch_size=None,
    patch_distance=None,
    color_space="auto",
    h_chroma=None,
    weights=None,
) -> SequenceParameters:
    """Fill in every parameter of :func:`denoise_sequence` left as ``None``.

    ``frames``: the first frames, any iterable of them (each 2-D, with ``channel_axis``
    within a frame); at most :data:`ESTIMATE_FRAMES` are used. ``sigma`` is
    the median of :func:`nlmeans.estimate_noise_level` over them
    (:func:`nlmeans.estimate_sigma` for white noise); ``patch_size``,
    ``patch_distance``, ``h`` and ``temporal_radius`` come from the
    ``"sequence"`` section of the shipped table (fitted on synthetic
    sequences with motion, ``benchmarks/fit_sequence_parameters.py``).
    ``n_frames``, when known, caps an automatic ``temporal_radius`` at
    ``n_frames - 1`` and refuses a given one that reaches beyond the clip.
    ``method="neural"``: the spacetime network (``weights``, default the
    shipped one) fixes the temporal radius; only ``sigma`` is resolved.
    """
    methods = CLASSICAL_METHODS + ("neural",)
    if not isinstance(method, str) or method not in methods:
        raise ValueError(f"method must be one of {', '.join(methods)}; got {method!r}")
    if weights is not None and method != "neural":
        raise ValueError("weights applies only to method='neural'")
    sample = [_check_image(f) for f in itertools.islice(frames, ESTIMATE_FRAMES)]
    if not sample:
        raise ValueError("the sequence holds no frame")
    axis = _frame_axis(sample[0], channel_axis)
    volume = _is_volume(sample[0], axis)
    if volume and method == "neural":
        raise ValueError(
            "method='neural' takes 2-D frames; volumes over time (3-D + t) are denoised "
            "with method='fast', 'exact' or 'patchwise'"
        )
    space = _check_color_space(sample[0], axis, color_space)
    automatic = []
    if sigma is None:
        # As for images: white noise read at the finest scale, camera
        # (compressed, demosaicked) noise at the coarser one.
        levels = [estimate_noise_level(f, channel_axis=axis).sigma for f in sample]
        sigma_value = float(np.median(levels))
        automatic.append("sigma")
    else:
        sigma_value = check_sigma_scale(
            _check_real("sigma", sigma, positive=False), sample[0].dtype
        )
    if method == "neural":
        return _neural_parameters(
            sigma_value,
            sigma is None,
            temporal_radius,
            space,
            weights,
            automatic,
            h=h,
            patch_size=patch_size,
            patch_distance=patch_distance,
            h_chroma=h_chroma,
            color_space=color_space,
        )
    needs_row = None in (h, patch_size, patch_distance, temporal_radius)
    # Float frames off the [0, 1] scale: the table is read with sigma on it
    # (as for images; from the sampled frames, so arrays, iterators and Dask agree).
    unit, floor = table_scale(
        sample[0],
        sigma_value,
        (min(float(f.min()) for f in sample), max(float(f.max()) for f in sample)),
    )
    if volume:
        row = VOLUME_PARAMETERS[method]
    else:
        row = _sequence_row(method, max(sigma_value / unit, _MIN_AUTO_SIGMA)) if needs_row else {}
    if temporal_radius is None:
        k = int(row["temporal_radius"])
        if n_frames is not None:
            k = min(k, n_frames - 1)
        automatic.append("temporal_radius")
    else:
        k = _check_temporal_radius(temporal_radius)
        if n_frames is not None and k >= n_frames:
            raise ValueError(
                f"temporal_radius={k} is larger than the clip allows: {n_frames} frame(s) "
                f"take a radius of at most {n_frames - 1}"
            )
    spatial = tuple(n for i, n in enumerate(sample[0].shape) if i != axis)
    if patch_size is None:
        patch_size = int(row["patch_size"])
        if volume:
            # Thin stacks (a few slices) take the largest odd patch they hold.
            depth = spatial[0]
            patch_size = max(1, min(patch_size, depth - (1 - depth % 2)))
        automatic.append("patch_size")
    else:
        patch_size = _check_positive_odd("patch_size", patch_size)
    if patch_distance is None:
        patch_distance = int(row["patch_distance"])
        automatic.append("patch_distance")
    else:
        patch_distance = _check_distance(patch_distance)
    if min(spatial) < patch_size:
        raise ValueError(
            f"frames of shape {spatial} are smaller than the patch (patch_size={patch_size})"
            + (
                "; without channel_axis 3-D frames are volumes (z, y, x): pass channel_axis "
                "for 2-D frames with channels"
                if volume and axis is None
                else ""
            )
        )
    if h is None:
        h = float(row["h_over_sigma"]) * max(sigma_value, floor)
        automatic.append("h")
    else:
        h = _check_real("h", h, positive=True)
    if space == "opponent":
        if h_chroma is None:
            # The chrominance follows the luminance by the factor fitted on
            # colour images (the table's colour rows).
            h_chroma = _table_row(method, max(sigma_value / unit, _MIN_AUTO_SIGMA), color=True)[
                "h_chroma_over_h"
            ] * float(h)
            automatic.append("h_chroma")
        else:
            h_chroma = _check_real("h_chroma", h_chroma, positive=True)
        h_chroma = float(h_chroma)
    elif h_chroma is not None:
        raise ValueError("h_chroma applies only to color_space='opponent' (3 colour channels)")
    return SequenceParameters(
        method,
        sigma_value,
        float(h),
        int(patch_size),
        int(patch_distance),
        k,
        sigma is None,
        tuple(automatic),
        space,
        h_chroma,
    )


def _neural_parameters(
    sigma, estimated, temporal_radius, space, weights, automatic, *, color_space, **unused
) -> SequenceParameters:
    """The parameters of ``method="neural"``: sigma, and the network's radius."""
    from ._sequence_neural import load_spacetime_model

    for name, value in unused.items():
        if value is not None:
            raise ValueError(f"{name} does not apply to method='neural'")
    if not estimated and sigma > 1:  # the network works on [0, 1] (frames off it are refused)
        raise ValueError(
            f"sigma is on the frames' [0, 1] scale and must be <= 1 for method='neural', "
            f"got {sigma:g}"
        )
    if color_space not in ("auto", "rgb"):
        raise ValueError(
            "color_space does not apply to method='neural' (colour frames go through the "
            "gray spacetime network one channel at a time)"
        )
    model = load_spacetime_model(weights)
    k = model.config.frames // 2
    if temporal_radius is None:
        automatic.append("temporal_radius")
    elif _check_temporal_radius(temporal_radius) != k:
        raise ValueError(
            f"the spacetime network takes {2 * k + 1} frames: temporal_radius must be {k} "
            f"(or None) for method='neural', got {temporal_radius}"
        )
    if weights is None:
        from .neural import default_weights_path

        weights = default_weights_path(spacetime=True)
    return SequenceParameters(
        "neural",
        sigma,
        None,
        None,
        None,
        k,
        estimated,
        tuple(automatic),
        "gray" if space == "gray" else "rgb",  # channels one at a time: no opponent path
        None,
        str(weights),
    )


def denoise_sequence(
    frames,
    *,
    time_axis=0,
    temporal_radius=None,
    channel_axis=None,
    method="fast",
    h=None,
    sigma=None,
    patch_size=None,
    patch_distance=None,
    color_space="auto",
    h_chroma=None,
    weights=None,
    threads=None,
    return_params=False,
):
    """Denoise a sequence of frames (video, time-lapse, burst) with spatio-temporal non-local means.

    Every pixel of frame ``t`` becomes a weighted mean of the pixels of
    frames ``t - k .. t + k`` (clipped to the sequence) within ``+-d``
    pixels of it, weighted by how much their 2-D patches look alike, with
    the weight of :func:`nlmeans.denoise`. Moving objects need no motion
    estimate: their patches are found wherever they went within the window.

    Parameters
    ----------
    frames : ndarray, dask.array.Array or iterable of ndarray
        An array holding the frames along ``time_axis`` (uint8, uint16,
        float32 or float64), or any other iterable of frames (2-D images or
        3-D volumes, gray or with channels along ``channel_axis``), which is
        then denoised as it
        is consumed: the call returns a generator of denoised frames, in
        order, and holds only a few frames at a time. A Dask array gives a
        lazy Dask array of the same shape, chunks and dtype, equal to the
        in-memory result bit for bit: it is denoised by time chunks, each
        with ``k`` frames of context on either side and whole frames
        (spatial chunks are joined), so memory follows the time chunk size
        (``pip install "nlmeans[dask]"``). A list or tuple of frames is
        stacked and denoised as an array (the result is an array); its
        frames must share shape and sample type, and ``channel_axis`` is
        counted in a frame, as for iterables.
    time_axis : int
        Axis of the frames in an array input (0 for a list: ignored for
        other iterables).
    temporal_radius : int, optional
        ``k``: the search window spans ``2k + 1`` frames. 0 denoises every
        frame on its own (bit-identical to :func:`nlmeans.denoise` when the
        frames share their [min, max]). Automatic when None (capped at the
        number of frames minus one); a given radius must be smaller than the
        number of frames.
    channel_axis : int or None
        Axis of the channels, counted in the input array (or in a frame, for
        iterables). Channels share one weight.
    method : {"fast", "exact", "patchwise", "neural"}
        As in :func:`nlmeans.denoise`, with 2-D patches compared across
        frames; ``"neural"``: the shipped spacetime network (a
        ``NonLocalBlock3d`` over 5 frames, so ``temporal_radius`` 2), given
        the noise level ``sigma``; colour frames go through it one channel
        at a time, and at the clip's ends the end frame stands in for the
        frames beyond it (as in the network's training).
    h, sigma, patch_size, patch_distance, color_space, h_chroma
        As in :func:`nlmeans.denoise`, resolved once for the whole sequence:
        ``sigma`` from the median noise estimate of the first
        :data:`ESTIMATE_FRAMES` frames, the others from the table's
        ``"sequence"`` rows (the network takes only ``sigma``).
    weights : str or path, optional
        ``method="neural"`` only: another spacetime network's weights
        (``nlmeans train-neural --frames 5`` checkpoint or export).
    threads : int, optional
        Number of threads; the result is bit-identical for any value.
    return_params : bool
        Also return the :class:`SequenceParameters` used.

    Returns
    -------
    ndarray or generator, or (that, SequenceParameters)
        For an array, the denoised frames with the input's shape and dtype;
        for an iterable, a generator yielding each denoised frame (the
        frame's shape and dtype).

    Raises
    ------
    TypeError, ValueError
        As :func:`nlmeans.denoise` for the parameters and frames; also for
        frames that change shape or dtype, a ``temporal_radius`` the clip
        cannot hold (or, for ``method="neural"``, other than the network's).

    Notes
    -----
    A block of ``m`` frames is denoised together with ``k`` frames of context
    on each side; pairs of pixels are visited once and their weight serves
    both pixels when both are being denoised (the symmetric trick of
    Darbon et al. 2008 extended over time), and only pairs that touch a
    frame being denoised are computed. The result does not depend on ``m``.
    A frame is compared with ``2k + 1`` frames, so the cost grows about as
    ``(2k + 1) (2d + 1)**2`` per pixel; the fitted table trades a smaller
    spatial window for the temporal one.

    All frames share one float scale (from the first frame's range), so
    that patch distances between frames are meaningful; each output frame
    is clipped to the [min, max] of the frames in its window.

    Volumes over time (3-D + t: a 4-D array ``(t, z, y, x)`` without
    ``channel_axis``, or 3-D frames) take 3-D patches and a window over
    ``+-k`` time points and ``+-d`` voxels along z, y and x, each volume
    padded on its own; methods ``"fast"``, ``"exact"`` and ``"patchwise"``.
    Their automatic parameters are :data:`VOLUME_PARAMETERS` (patch 5,
    search radius 2, k = 2 for every method and sigma; h = 0.5 sigma for
    ``fast``, 1.0 sigma for ``exact``, 0.35 sigma for ``patchwise``; a
    stack thinner than 5 slices takes a smaller patch).

    References
    ----------
    .. [1] A. Buades, B. Coll, J.-M. Morel, "Denoising image sequences does
       not require motion estimation", IEEE AVSS 2005.
    .. [2] X. Wang, R. Girshick, A. Gupta, K. He, "Non-local Neural
       Networks", CVPR 2018 (the spacetime picture: no optical flow).
    .. [3] J. Darbon, A. Cunha, T. F. Chan, S. Osher, G. J. Jensen, "Fast
       nonlocal filtering applied to electron cryomicroscopy", ISBI 2008.

    Examples
    --------
    >>> import numpy as np, nlmeans
    >>> rng = np.random.default_rng(0)
    >>> clip = np.clip(0.5 + 0.1 * rng.standard_normal((6, 32, 32)), 0, 1)
    >>> out = nlmeans.denoise_sequence(clip, temporal_radius=1)
    >>> out.shape, out.dtype
    ((6, 32, 32), dtype('float64'))
    """
    options = dict(
        temporal_radius=temporal_radius,
        method=method,
        h=h,
        sigma=sigma,
        patch_size=patch_size,
        patch_distance=patch_distance,
        color_space=color_space,
        h_chroma=h_chroma,
        weights=weights,
    )
    n_threads = check_threads(threads)
    return_params = check_flag("return_params", return_params)
    from ._front import _is_dask_array

    if _is_dask_array(frames):
        result, params = _denoise_dask(
            frames,
            time_axis=time_axis,
            channel_axis=channel_axis,
            n_threads=n_threads,
            options=options,
        )
        return (result, params) if return_params else result
    if isinstance(frames, (list, tuple)):
        frames, channel_axis = _stack_frames(frames, time_axis, channel_axis)
    if isinstance(frames, np.ndarray):
        array = _check_image(frames)
        t_axis, frame_axis = _array_axes(array.ndim, time_axis, channel_axis)
        moved = np.moveaxis(array, t_axis, 0)
        first = list(moved[:ESTIMATE_FRAMES])
        params = resolve_sequence_parameters(
            first, n_frames=moved.shape[0], channel_axis=frame_axis, **options
        )
        logger.info("nlmeans sequence parameters: %s", params)
        out = np.empty_like(moved)
        for i, frame in enumerate(_runner(params)(iter(moved), params, frame_axis, n_threads)):
            out[i] = frame
        result = np.moveaxis(out, 0, t_axis)
        return (result, params) if return_params else result

    iterator = iter(frames)
    first = []
    for frame in itertools.islice(iterator, ESTIMATE_FRAMES):
        first.append(_check_image(np.asarray(unmasked(frame))))
    n_known = len(first) if len(first) < ESTIMATE_FRAMES else None
    params = resolve_sequence_parameters(
        first, n_frames=n_known, channel_axis=channel_axis, **options
    )
    axis = _frame_axis(first[0], channel_axis)
    logger.info("nlmeans sequence parameters: %s", params)
    generator = _runner(params)(itertools.chain(first, iterator), params, axis, n_threads)
    return (generator, params) if return_params else generator


def _runner(params: SequenceParameters):
    """The generator that denoises frames with ``params``: the kernels or the network."""
    if params.method != "neural":
        return _run

    def run_network(frames, params, axis, n_threads):
        from ._sequence_neural import load_spacetime_model, run_neural

        model = load_spacetime_model(params.weights)
        return run_neural(frames, model, params.sigma, axis, n_threads)

    return run_network


def _stack_frames(frames, time_axis, channel_axis):
    """A list or tuple of frames as one array along a new first axis, and
    ``channel_axis`` (counted in a frame, as for iterables) in that array.

    Frames that differ in shape or sample type are refused as a stream's
    are: stacked, a uint8 frame kept its 0-255 values among float frames on
    [0, 1].
    """
    if time_axis != 0:
        raise ValueError(
            "time_axis applies to an array; a list of frames is in time order already "
            f"(leave time_axis at 0), got {time_axis!r}"
        )
    items = [np.asarray(unmasked(frame)) for frame in frames]
    if not items:
        raise ValueError("the sequence holds no frame")
    first = items[0]
    for i, frame in enumerate(items[1:], 1):
        if frame.shape != first.shape or frame.dtype != first.dtype:
            raise ValueError(
                f"frame {i} has shape {frame.shape} and dtype {frame.dtype}, the first frame "
                f"{first.shape} and {first.dtype}: all frames of a sequence must match"
            )
    if channel_axis is not None:
        axis = _normalise_axis("channel_axis", channel_axis, first.ndim)
        channel_axis = axis + 1  # behind the new time axis
    return np.stack(items), channel_axis


def _array_axes(ndim: int, time_axis, channel_axis) -> tuple[int, int | None]:
    """``(time axis, channel axis within a frame)`` of a clip array, checked.

    Without ``channel_axis`` a 3-D array is ``(t, y, x)`` and a 4-D one
    volumes over time ``(t, z, y, x)``; with it, 4-D and 5-D arrays are
    those with channels.
    """
    allowed = (3, 4) if channel_axis is None else (4, 5)
    if ndim not in allowed:
        kinds = (
            "3-D (t, y, x) or 4-D (t, z, y, x)"
            if channel_axis is None
            else "4-D (images with channels) or 5-D (volumes with channels)"
        )
        raise ValueError(f"frames must be a {kinds} array, got {ndim}-D")
    t_axis = _normalise_axis("time_axis", time_axis, ndim)
    if channel_axis is None:
        return t_axis, None
    c_axis = _normalise_axis("channel_axis", channel_axis, ndim)
    if c_axis == t_axis:
        raise ValueError("channel_axis and time_axis must differ")
    return t_axis, c_axis - (c_axis > t_axis)


def _normalise_axis(name: str, value, ndim: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not -ndim <= value < ndim:
        raise ValueError(f"{name}={value} is out of range for a {ndim}-D array")
    return int(value) % ndim


@dataclass
class _Frame:
    original: np.ndarray  # as given (dtype kept)
    floats: np.ndarray  # float64 [0, 1] scale, frame layout
    data: np.ndarray  # float32 (C, Y, X), rescaled to the sequence's scale
    lo: float
    hi: float


def _run(
    frames: Iterator, params: SequenceParameters, axis, n_threads, scale=None
) -> Iterator[np.ndarray]:
    """Denoise ``frames`` block by block; yields denoised frames in order.

    ``scale``: the ``(lo, hi - lo)`` float scale of the whole sequence
    (default: from the first frame seen, which is the sequence's own first
    frame unless a piece of a longer sequence is given).
    """
    k = params.temporal_radius
    buffer: deque[_Frame] = deque()
    first_index = 0  # sequence index of buffer[0]
    next_out = 0  # next frame to denoise
    shape = dtype = None
    chunk = 1
    exhausted = False
    n_read = 0
    while True:
        # Read until the block [next_out - k, next_out + chunk + k) is in.
        while not exhausted and first_index + len(buffer) < next_out + chunk + k:
            try:
                raw = next(frames)
            except StopIteration:
                exhausted = True
                break
            frame = _check_image(np.asarray(unmasked(raw)))
            if shape is None:
                shape, dtype = frame.shape, frame.dtype
                if scale is None:
                    scale = sequence_scale(frame)
                n_values = frame.size
                chunk = int(max(1, min(_MAX_CHUNK, _BLOCK_VALUES // n_values - 2 * k)))
            if frame.shape != shape:
                raise ValueError(
                    f"frame {n_read} has shape {frame.shape}, the first frame {shape}: "
                    "all frames of a sequence must have the same size"
                )
            if frame.dtype != dtype:
                raise ValueError(
                    f"frame {n_read} has dtype {frame.dtype}, the first frame {dtype}: "
                    "all frames of a sequence must have the same sample type"
                )
            buffer.append(_prepare(frame, axis, scale))
            n_read += 1
        if exhausted and n_read <= k:
            raise ValueError(
                f"temporal_radius={k} is larger than the clip allows: {n_read} frame(s) "
                f"take a radius of at most {max(n_read - 1, 0)}"
            )
        available = first_index + len(buffer)
        if next_out >= available:
            return
        out_hi = min(next_out + chunk, available if exhausted else available - k)
        block = list(buffer)
        lo_index = first_index
        corrections = _denoise_block(
            block, next_out - lo_index, out_hi - lo_index, params, scale, n_threads
        )
        for i, t in enumerate(range(next_out, out_hi)):
            item = block[t - lo_index]
            window = block[max(0, t - k - lo_index) : t + k + 1 - lo_index]
            correction = _from_kernel(corrections[:, i], axis)
            result = from_unit_float(item.floats + correction * scale[1], dtype)
            np.clip(
                result,
                min(f.lo for f in window),
                max(f.hi for f in window),
                out=result,
            )
            yield result
        next_out = out_hi
        while buffer and first_index < next_out - k:
            buffer.popleft()
            first_index += 1


def sequence_scale(first_frame: np.ndarray) -> tuple[float, float]:
    """The float scale ``(lo, hi - lo)`` every frame is mapped by: the first frame's range."""
    floats = to_unit_float(first_frame)
    lo, hi = float(floats.min()), float(floats.max())
    return lo, hi - lo if hi > lo else 1.0


def _prepare(frame: np.ndarray, axis, scale) -> _Frame:
    floats = to_unit_float(frame)
    lo, hi = scale
    data = floats if axis is None else np.moveaxis(floats, axis, 0)
    data = ((data - lo) / hi).astype(np.float32)
    if axis is None:
        data = data[np.newaxis]
    return _Frame(frame, floats, np.ascontiguousarray(data), frame.min(), frame.max())


def _from_kernel(correction: np.ndarray, axis) -> np.ndarray:
    """(C, Y, X) float32 correction -> frame layout, float64."""
    correction = correction.astype(np.float64)
    if axis is None:
        return correction[0]
    return np.moveaxis(correction, 0, axis)


def _denoise_block(block, out_lo, out_hi, params: SequenceParameters, scale, n_threads):
    """Corrections ``(C, out_hi - out_lo, Y, X)`` (float32) of the block's output frames."""
    data = np.ascontiguousarray(np.stack([f.data for f in block], axis=1))  # (C, Z, Y, X)
    sigma, h = params.sigma / scale[1], params.h / scale[1]
    return _kernel_correction(
        data,
        params,
        n_threads,
        h,
        scale[1],
        lambda values, guide, h: _pass(values, guide, params, out_lo, out_hi, sigma, h),
    )


def _pass(values, guide, params: SequenceParameters, out_lo, out_hi, sigma, h):
    """One spatio-temporal pass in kernel layout; the correction of the output frames."""
    from . import kernels

    if guide.ndim == 5:
        return _volume_pass(values, guide, params, out_lo, out_hi, sigma, h)
    from ._sequence_kernels import frames_accumulate, frames_patchwise_aggregate

    n_channels, n_z, n_y, n_x = guide.shape
    n_out = out_hi - out_lo
    s = params.patch_size
    f = s // 2
    d = min(params.patch_distance, max(n_y, n_x) - 1)
    k = params.temporal_radius
    pad = ((0, 0), (0, 0), (f, f), (f, f))
    padded = np.pad(guide, pad, mode="reflect")
    two_sigma2, inv_h2, uniform, weights, norm = kernels.pass_constants(
        params.method, s, n_channels, sigma, h
    )
    numerator = np.zeros((values.shape[0], n_out, n_y, n_x), np.float32)
    denominator = np.zeros((n_out, n_y, n_x), np.float32)
    track_max = params.method == "patchwise"
    max_weight = np.zeros((n_out, n_y, n_x) if track_max else (1, 1, 1), np.float32)
    frames_accumulate(
        values,
        padded,
        kernels.half_window_shifts(k, d),
        d,
        out_lo,
        out_hi,
        weights,
        weights,
        uniform,
        norm,
        two_sigma2,
        inv_h2,
        numerator,
        denominator,
        max_weight,
        track_max,
    )
    if not track_max:
        return numerator / (denominator + np.float32(1.0))
    centre, normaliser = _centre_weights(max_weight, denominator)
    out_numerator = np.zeros_like(numerator)
    padded_values = padded if values is guide else np.pad(values, pad, mode="reflect")
    frames_patchwise_aggregate(
        values,
        padded,
        padded_values,
        kernels.full_window_shifts(k, d),
        d,
        f,
        out_lo,
        out_hi,
        two_sigma2,
        inv_h2,
        norm,
        centre,
        normaliser,
        out_numerator,
    )
    return out_numerator / _patch_coverage((n_out, n_y, n_x), f, 0)


def _volume_pass(values, guide, params: SequenceParameters, out_lo, out_hi, sigma, h):
    """:func:`_pass` for volumes over time: ``(C, T, Z, Y, X)`` in, ``(C, out, Z, Y, X)`` out.

    Patches are 3-D (``patch_size`` along z too) and the window spans ``+-k``
    time points and ``+-d`` voxels along z, y and x; every volume is padded
    on its own, so a patch never reaches into another time point.
    """
    from . import kernels
    from ._sequence_kernels import (
        volume_full_window_shifts,
        volume_half_window_shifts,
        volumes_accumulate,
        volumes_patchwise_aggregate,
    )

    n_channels, n_t, n_z, n_y, n_x = guide.shape
    n_out = out_hi - out_lo
    f = params.patch_size // 2
    d = min(params.patch_distance, max(n_y, n_x) - 1)
    dz = min(params.patch_distance, n_z - 1)
    two_sigma2, inv_h2, uniform, weights, norm = kernels.pass_constants(
        params.method, params.patch_size, n_channels, sigma, h, f
    )
    # Time in front, so that one time point is a contiguous (C, Z, Y, X) volume.
    by_time = np.ascontiguousarray(np.moveaxis(guide, 1, 0))
    padded = np.pad(by_time, ((0, 0), (0, 0), (f, f), (f, f), (f, f)), mode="reflect")
    # The values differ from the guide for the chrominance of color_space="opponent".
    value_volumes = by_time if values is guide else np.ascontiguousarray(np.moveaxis(values, 1, 0))
    numerator = np.zeros((values.shape[0], n_out * n_z, n_y, n_x), np.float32)
    denominator = np.zeros((n_out * n_z, n_y, n_x), np.float32)
    track_max = params.method == "patchwise"
    max_weight = np.zeros((n_out * n_z, n_y, n_x) if track_max else (1, 1, 1), np.float32)
    volumes_accumulate(
        value_volumes,
        padded,
        volume_half_window_shifts(params.temporal_radius, dz, d),
        d,
        out_lo,
        out_hi,
        weights,
        weights,
        weights,
        uniform,
        norm,
        two_sigma2,
        inv_h2,
        numerator,
        denominator,
        max_weight,
        track_max,
    )
    shape = (values.shape[0], n_out, n_z, n_y, n_x)
    if not track_max:
        return (numerator / (denominator + np.float32(1.0))).reshape(shape)
    # Patch-wise, as in denoise: every voxel averages the estimates of the
    # patches of its own volume that cover it.
    centre, normaliser = _centre_weights(max_weight, denominator)
    out_numerator = np.zeros_like(numerator)
    padded_values = (
        padded
        if value_volumes is by_time
        else np.pad(value_volumes, ((0, 0), (0, 0), (f, f), (f, f), (f, f)), mode="reflect")
    )
    volumes_patchwise_aggregate(
        value_volumes,
        padded,
        padded_values,
        volume_full_window_shifts(params.temporal_radius, dz, d),
        f,
        out_lo,
        out_hi,
        two_sigma2,
        inv_h2,
        norm,
        centre,
        normaliser,
        out_numerator,
    )
    return out_numerator.reshape(shape) / _patch_coverage((n_z, n_y, n_x), f, f)


# --------------------------------------------------------------------------
# Dask arrays
# --------------------------------------------------------------------------


def _denoise_dask(frames, *, time_axis, channel_axis, n_threads, options):
    """The lazy result of :func:`denoise_sequence` for a Dask array, and its parameters.

    The clip is split along time: each task reads its frames plus ``k``
    frames of context on each side (clipped at the clip's ends) and denoises
    them with the in-memory code, keeping its own frames. Frames are whole
    in every task (spatial chunks are joined first): a frame's result
    depends on the frames of its window only, and the parameters and the
    float scale (the first frame's range) are resolved once for the whole
    clip, so the result equals the in-memory one bit for bit, for any
    chunking.
    """
    from .bigdata import require_dask

    da = require_dask()
    import dask

    t_axis, frame_axis = _array_axes(frames.ndim, time_axis, channel_axis)
    moved = da.moveaxis(frames, t_axis, 0)
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
