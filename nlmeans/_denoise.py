"""Validating Python front end of the non-local means kernels."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, replace
from importlib import resources

import numpy as np

from ._checks import (
    METHODS,
    UNIT_SCALE_LIMITS,
    _check_channel_axis,
    _check_distance,
    _check_fits_patch,
    _check_image,
    _check_positive_odd,
    _check_real,
    _looks_like_colour_without_channel_axis,
    _spatial_shape,
    check_ensemble,
    check_sigma_scale,
    check_threads,
    numba_runtime,
)
from ._color import OPPONENT
from .io import from_unit_float, to_unit_float
from .noise import (
    NoiseModel,
    estimate_noise,
    estimate_sigma,
    generalized_anscombe,
    inverse_generalized_anscombe,
)
from .noise_level import estimate_noise_level

logger = logging.getLogger("nlmeans")

COLOR_SPACES = ("auto", "rgb", "opponent")
# Volumes cost (2d+1)**3 shifts per voxel: their automatic settings are capped.
_VOLUME_MAX_PATCH_SIZE = 5
_VOLUME_MAX_PATCH_DISTANCE = 3
# Never let an automatic h reach 0 on a noise-free image (sigma estimate 0).
_MIN_AUTO_SIGMA = 1e-3
_threads_lock = threading.Lock()


@dataclass(frozen=True)
class NLMeansParameters:
    """The parameters a call of :func:`denoise` used.

    ``sigma`` and ``h`` are on the image's float scale ([0, 1] for integer
    images). ``sigma_estimated`` says whether ``sigma`` was estimated
    (:func:`nlmeans.estimate_noise_level`); ``automatic`` lists the parameters that were
    chosen by the shipped table rather than given by the caller.
    ``color_space`` is ``"gray"`` for images without channels, else
    ``"rgb"`` (channels compared jointly, as given) or ``"opponent"``
    (luminance and chrominance, see :func:`denoise`); ``h_chroma`` is the
    chrominance ``h`` of the opponent path (None otherwise).
    ``noise_model`` is the :class:`nlmeans.noise.NoiseModel` of a
    Poisson-Gaussian denoising (None for Gaussian noise); ``sigma``, ``h``
    and ``h_chroma`` are then on the scale of the stabilised image (see
    :func:`denoise`). ``device`` is where :func:`denoise` ran, ``"cpu"`` or
    ``"cuda"`` (what ``device="auto"`` chose). ``correlated_noise`` is
    :attr:`nlmeans.NoiseLevel.correlated` of an estimated sigma: 0 for white
    noise, up to 1 for spatially correlated (camera) noise, whose ``sigma``
    was then read at the coarser scale (see :func:`estimate_noise_level`).
    ``ensemble``: the network's outputs were averaged over the 8 flips and
    rotations of the image.
    """

    method: str
    sigma: float
    h: float | None
    patch_size: int | None
    patch_distance: int | None
    sigma_estimated: bool
    automatic: tuple[str, ...] = ()
    color_space: str = "gray"
    h_chroma: float | None = None
    noise_model: object | None = None
    device: str = "cpu"
    correlated_noise: float = 0.0
    ensemble: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    def denoise_kwargs(self) -> dict:
        """Keyword arguments that make :func:`denoise` use exactly these parameters.

        ``denoise(image, channel_axis=..., **params.denoise_kwargs())`` gives
        the result of the call that resolved them, on the same image. The
        classical methods get every value, estimates included, and estimate
        nothing again. The network does not get an estimated sigma: the call
        estimates it again (the same estimate on the same image) and with it
        whether the noise is a camera's, which picks the model (a sigma
        given explicitly always runs the colour model). So for the network,
        parameters that a Dask array's sampled chunks gave are not
        reproduced on the whole image in memory.
        """
        kwargs = {"method": self.method}
        if self.noise_model is not None:
            kwargs["noise"] = self.noise_model
        elif self.method != "neural" or not self.sigma_estimated:
            kwargs["sigma"] = self.sigma
        elif self.correlated_noise == 0:
            # The network's map stayed one white sigma: the call again must
            # not fit a Poisson-Gaussian map (what it does with noise=None).
            kwargs["noise"] = "white"
        if self.method != "neural":
            kwargs.update(h=self.h, patch_size=self.patch_size, patch_distance=self.patch_distance)
        if self.color_space != "gray":
            kwargs["color_space"] = self.color_space
        if self.h_chroma is not None:
            kwargs["h_chroma"] = self.h_chroma
        if self.device != "cpu":
            kwargs["device"] = self.device
        if self.ensemble:
            kwargs["ensemble"] = True
        return kwargs


# --------------------------------------------------------------------------
# Automatic parameters
# --------------------------------------------------------------------------


def _parameter_table() -> dict:
    text = resources.files("nlmeans").joinpath("data/parameters.json").read_text()
    return json.loads(text)


_TABLE: dict | None = None


def table_scale(image: np.ndarray, sigma: float, value_range=None) -> tuple[float, float]:
    """``(unit, floor)`` for reading the parameter table on ``image``.

    ``unit``: the white level the table should assume: 1, or for float data
    off the [0, 1] scale (beyond :data:`UNIT_SCALE_LIMITS`, which noisy data
    on [0, 1] stay within, as the network takes them) the span of the
    signal. That span is the data's maximum minus minimum less what the
    noise adds to the extremes: about ``sqrt(2 ln n)`` sigma on each side for
    ``n`` pixels (the expected largest of ``n`` Gaussian draws), at most half
    the span. Without it, sigma = 50 on 0-255 data (a span near 700) read the
    table's sigma = 18 row.

    ``floor``: the smallest sigma ``h`` is computed from, on the data's
    scale: ``_MIN_AUTO_SIGMA`` times the unit, or times the span of float
    data spanning less than 1 (values of 1e-3 and less would otherwise get
    an ``h`` of the size of the whole image's contrast).
    """
    if image.dtype.kind != "f":
        return 1.0, _MIN_AUTO_SIGMA  # integers are read on [0, 1]
    if value_range is None:
        value_range = (float(image.min()), float(image.max()))
    low, high = (float(v) for v in value_range)
    span = high - low
    if not span > 0:
        return 1.0, _MIN_AUTO_SIGMA  # a constant image: nothing to scale
    extreme = np.sqrt(2.0 * np.log(max(image.size, 2))) * sigma
    on_unit_scale = (low >= UNIT_SCALE_LIMITS[0] and high <= UNIT_SCALE_LIMITS[1]) or (
        # strong noise on [0, 1] (sigma 0.3, not clipped) reaches past the
        # limits: the signal, without the noise's extremes, does not
        low + extreme >= -0.5 and high - extreme <= 1.5
    )
    if on_unit_scale:
        return 1.0, _MIN_AUTO_SIGMA * min(1.0, span)
    unit = max(span - 2.0 * extreme, 0.5 * span)
    return unit, _MIN_AUTO_SIGMA * unit


def _table_row(method: str, sigma: float, *, color: bool = False) -> dict:
    """Row of the shipped table for ``sigma`` (on the [0, 1] scale).

    ``color`` picks the rows fitted on colour photographs for the opponent
    path; otherwise the rows fitted on gray images.
    """
    global _TABLE
    if _TABLE is None:
        _TABLE = _parameter_table()
    rows = (_TABLE["color"] if color else _TABLE)["methods"][method]
    sigma255 = sigma * 255.0
    for row in rows:
        if sigma255 <= row["sigma_max"]:
            return row
    return rows[-1]


def _check_color_space(image: np.ndarray, axis: int | None, color_space) -> str:
    """Resolve ``color_space`` for this image: "gray", "rgb" or "opponent"."""
    if not isinstance(color_space, str) or color_space not in COLOR_SPACES:
        raise ValueError(
            f"color_space must be one of {', '.join(COLOR_SPACES)}; got {color_space!r}"
        )
    if axis is None:
        if color_space == "opponent":
            raise ValueError(
                "color_space='opponent' needs an image with 3 colour channels; this one is "
                "gray (no channel_axis)"
            )
        return "gray"
    n_channels = image.shape[axis]
    if color_space == "auto":
        return "opponent" if n_channels == 3 else "rgb"
    if color_space == "opponent" and n_channels != 3:
        raise ValueError(
            f"color_space='opponent' needs 3 colour channels, the image has {n_channels}"
        )
    return color_space


def resolve_parameters(
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
    value_range=None,
) -> NLMeansParameters:
    """Fill in every parameter of :func:`denoise` left as ``None``.

    ``sigma`` is estimated with :func:`nlmeans.estimate_noise_level`
    (:func:`estimate_sigma` for white noise or with ``noise="white"``; the
    coarser scale for spatially correlated camera noise); ``patch_size``,
    ``patch_distance`` and ``h`` come from a table fitted by noise level and
    method (``benchmarks/fit_parameters.py``): on Train400 gray images, and
    for the opponent colour path on the CBSD432 colour photographs.
    Takes the same arguments as :func:`denoise` and validates them the same
    way. Returns an :class:`NLMeansParameters`.

    The table is indexed by sigma on the [0, 1] scale. Float data off that
    scale (beyond [-1, 2]: raw counts, 0-255 values) are looked up with
    sigma divided by their span (maximum minus minimum), and ``h`` comes back
    on the data's own scale. ``value_range``: the data's ``(min, max)``, for
    an ``image`` that only stands in for data held elsewhere (a Dask array's
    shape and dtype); read from ``image`` by default.
    """
    image = _check_image(image)
    axis = _check_channel_axis(image, channel_axis)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    space = _check_color_space(image, axis, color_space)
    automatic = []
    correlated = 0.0
    model, level = _resolve_noise(image, axis, noise, sigma)
    if model is not None and model.kind == "poisson-gaussian":
        # Parameters are chosen for the stabilised image (unit noise variance,
        # rescaled to [0, 1]), on which the Gaussian table applies.
        _, _, spread = _stabilise(image, axis, model)
        sigma_value = 1.0 / spread
        if isinstance(noise, str):
            automatic.append("noise")
    elif model is not None:  # a Gaussian NoiseModel given by the caller
        sigma_value = model.sigma
        if method != "neural":
            # The classical methods take one sigma; the network takes each
            # channel's b as its map, so it keeps the model (and
            # denoise_kwargs() replays it).
            model = None
    elif sigma is None and noise == "white":
        sigma_value = estimate_sigma(image, channel_axis=axis)
        automatic.append("sigma")
    elif sigma is None:
        level = level or estimate_noise_level(image, channel_axis=axis)
        sigma_value, correlated = level.sigma, level.correlated
        automatic.append("sigma")
    else:
        sigma_value = check_sigma_scale(_check_real("sigma", sigma, positive=False), image.dtype)
    estimated = sigma is None and not isinstance(noise, NoiseModel)
    if method == "neural":
        for name, value in (
            ("h", h),
            ("patch_size", patch_size),
            ("patch_distance", patch_distance),
            ("h_chroma", h_chroma),
        ):
            if value is not None:
                raise ValueError(f"{name} does not apply to method='neural'")
        if color_space not in ("auto", "rgb"):
            raise ValueError("color_space does not apply to method='neural'")
        if (
            sigma is None
            and model is None
            and noise is None  # "gaussian" and "white" asked for one sigma
            and correlated == 0
            and min(_spatial_shape(image, axis)) >= 2  # what estimate_noise needs
            and _neural_takes_noise_map(image, axis)
        ):
            # A network that takes a noise map is only as good as its map: one
            # global sigma misleads it on signal-dependent noise (Set12, sigma
            # 5 -> 40 gray levels: 27.97 dB against 29.57 with the fitted
            # map), where the blind model it replaced adapted by itself. So its
            # map is estimated with model="auto"; white noise keeps the
            # constant map of estimate_sigma, exactly as before.
            found = estimate_noise(image, channel_axis=axis, model="auto")
            if found.kind == "poisson-gaussian" and any(found.a + found.b):
                model = found
                automatic.append("noise")
        return NLMeansParameters(
            method,
            sigma_value,
            None,
            None,
            None,
            estimated,
            tuple(automatic),
            "gray" if axis is None else "rgb",
            None,
            model,
            correlated_noise=correlated,
        )
    opponent = space == "opponent"
    if h_chroma is not None and not opponent:
        raise ValueError("h_chroma applies only to color_space='opponent' (3 colour channels)")
    needs_table = None in (patch_size, patch_distance, h) or (opponent and h_chroma is None)
    # The stabilised image of the Poisson-Gaussian path is on [0, 1] already.
    unit, floor = (
        table_scale(image, sigma_value, value_range)
        if needs_table and model is None
        else (1.0, _MIN_AUTO_SIGMA)
    )
    row = (
        _table_row(method, max(sigma_value / unit, _MIN_AUTO_SIGMA), color=opponent)
        if needs_table
        else {}
    )
    spatial_ndim = image.ndim - (axis is not None)
    if patch_size is None:
        patch_size = row["patch_size"]
        if spatial_ndim == 3:
            patch_size = min(patch_size, _VOLUME_MAX_PATCH_SIZE)
        # An image narrower than the table's patch gets the largest odd patch
        # it holds (an error only for a size the caller chose, and for what
        # looks like a colour image without channel_axis: the error says so).
        if not _looks_like_colour_without_channel_axis(image, axis):
            narrowest = min(_spatial_shape(image, axis))
            patch_size = max(1, min(patch_size, narrowest - (narrowest + 1) % 2))
        automatic.append("patch_size")
    else:
        patch_size = _check_positive_odd("patch_size", patch_size)
    if patch_distance is None:
        patch_distance = row["patch_distance"]
        if spatial_ndim == 3:
            patch_distance = min(patch_distance, _VOLUME_MAX_PATCH_DISTANCE)
        automatic.append("patch_distance")
    else:
        patch_distance = _check_distance(patch_distance)
    _check_fits_patch(image, axis, patch_size)
    if h is None:
        h = row["h_over_sigma"] * max(sigma_value, floor)
        automatic.append("h")
    else:
        h = _check_real("h", h, positive=True)
    if opponent:
        if h_chroma is None:
            # The chrominance h follows the luminance h, given or automatic.
            h_chroma = row["h_chroma_over_h"] * h
            automatic.append("h_chroma")
        else:
            h_chroma = _check_real("h_chroma", h_chroma, positive=True)
        h_chroma = float(h_chroma)
    return NLMeansParameters(
        method,
        sigma_value,
        float(h),
        int(patch_size),
        int(patch_distance),
        estimated,
        tuple(automatic),
        space,
        h_chroma,
        model,
        correlated_noise=correlated,
    )


NOISE_OPTIONS = ("gaussian", "white", "poisson-gaussian", "auto")


def _resolve_noise(image, axis, noise, sigma):
    """``(model, level)``: the :class:`NoiseModel` that ``noise`` asks for (None
    for the Gaussian path), and the :class:`NoiseLevel` measured on the way
    (None if none was needed), so that it is not measured twice."""
    if noise is None or (isinstance(noise, str) and noise in ("gaussian", "white")):
        return None, None
    if not isinstance(noise, NoiseModel) and not (
        isinstance(noise, str) and noise in NOISE_OPTIONS
    ):
        raise ValueError(
            f"noise must be one of {', '.join(NOISE_OPTIONS)} or a NoiseModel; got {noise!r}"
        )
    if sigma is not None:
        raise ValueError(
            "sigma cannot be combined with a noise model (noise="
            f"{noise if isinstance(noise, str) else 'NoiseModel'}); give the model's a and b instead"
        )
    if isinstance(noise, NoiseModel):
        noise._per_channel(1 if axis is None else image.shape[axis], axis)  # channel count
        return noise, None
    level = estimate_noise_level(image, channel_axis=axis) if noise == "auto" else None
    if level is not None and level.correlated > 0:
        # Spatially correlated (camera) noise: the finest-scale Poisson-Gaussian
        # fit reads a fraction of it, so its a and b mean little; take the
        # Gaussian path, whose sigma is read at the coarser scale.
        return None, level
    model = estimate_noise(image, channel_axis=axis, model=noise)
    # "auto" that finds white noise takes exactly the Gaussian path (sigma
    # from estimate_sigma), so that white-noise results do not change; so
    # does an image in which no noise was found at all (a constant image).
    if model.kind != "poisson-gaussian" or not any(model.a + model.b):
        return None, level
    return model, level


def _stabilise(image, axis, model):
    """Generalized Anscombe transform of ``image``, rescaled to [0, 1].

    Returns ``(scaled, offset, spread)`` with ``scaled = (f(image) - offset)
    / spread``, whose noise has standard deviation ``1 / spread``. ``offset``
    is each channel's own minimum (shaped to broadcast against the image):
    the transform puts the channels at offsets ``2 sqrt(b) / a`` apart,
    which for a small ``a`` would leave each channel a sliver of [0, 1] in
    the float32 kernels. ``spread`` is the largest channel range, one scale
    for all, so that the noise stays the same in every channel.
    """
    stabilised = generalized_anscombe(to_unit_float(image), model, channel_axis=axis)
    offset, spread = _stabilised_range(stabilised.min, stabilised.max, stabilised.ndim, axis)
    return (stabilised - offset) / spread, offset, spread


def _stabilised_range(minimum, maximum, ndim: int, axis):
    """``(offset, spread)`` of :func:`_stabilise` from the image's reductions.

    ``minimum`` / ``maximum`` are the ``min`` / ``max`` methods of the
    stabilised image (NumPy or Dask, so that a Dask array gives exactly the
    in-memory values); ``offset`` is a float64 array of the image's ``ndim``
    with one value per channel, ``spread`` a float.
    """
    spatial = tuple(i for i in range(ndim) if axis is None or i != axis % ndim)
    lo, hi = minimum(axis=spatial, keepdims=True), maximum(axis=spatial, keepdims=True)
    if hasattr(lo, "compute"):
        import dask

        lo, hi = dask.compute(lo, hi)
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    widest = float(np.max(hi - lo))
    return lo, widest if widest > 0 else 1.0


# --------------------------------------------------------------------------
# Denoising
# --------------------------------------------------------------------------


def denoise_array(
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
    device="cpu",
    ensemble=False,
    return_params=False,
):
    """In-memory body of :func:`nlmeans.denoise` (see there); ``image`` is a NumPy array."""
    options = dict(
        h=h,
        sigma=sigma,
        patch_size=patch_size,
        patch_distance=patch_distance,
        method=method,
        channel_axis=channel_axis,
        color_space=color_space,
        h_chroma=h_chroma,
        noise=noise,
    )
    image = _check_image(image)
    ensemble = check_ensemble(ensemble, method)
    axis = _check_channel_axis(image, channel_axis)
    # The range, read once: the parameter table's scale, the output's bounds.
    if axis is None:
        low, high, constant = image.min(), image.max(), None
    else:
        spatial = _spatial_axes(image, axis)
        channel_min, channel_max = image.min(axis=spatial), image.max(axis=spatial)
        low, high, constant = channel_min.min(), channel_max.max(), channel_min == channel_max
    params = resolve_parameters(image, value_range=(low, high), **options)
    n_threads = check_threads(threads)
    from .device import choose_device

    volume = image.ndim - (axis is not None) == 3
    params = replace(params, device=choose_device(device, params, volume), ensemble=ensemble)
    logger.info("nlmeans parameters: %s", params)

    if (
        method == "neural"
        and (isinstance(noise, NoiseModel) or params.noise_model is not None)
        and _neural_takes_noise_map(image, axis)
    ):
        # A non-blind network takes the noise model's per-pixel sigma map
        # directly, without the variance-stabilising transform.
        result = _denoise_neural(
            image,
            axis,
            None,
            n_threads,
            params.device,
            noise=params.noise_model or noise,
            ensemble=params.ensemble,
            constant=constant,
        )
    elif params.noise_model is not None:
        result = _denoise_stabilised(image, axis, params, n_threads)
    elif method == "neural":
        # The network estimates white noise itself; an estimate that found
        # correlated noise (read at the coarser scale) is handed to it, with
        # the camera model when the noise is mostly correlated.
        given = sigma is not None or params.correlated_noise > 0
        result = _denoise_neural(
            image,
            axis,
            params.sigma if given else None,
            n_threads,
            params.device,
            camera=uses_camera_model(params),
            ensemble=params.ensemble,
            constant=constant,
        )
    else:
        result = _denoise_classical(image, axis, params, n_threads)
    # A weighted mean stays within the input's [min, max]: clip away float32
    # rounding (and, for the network, overshoot) with the input's own bounds.
    np.clip(result, low, high, out=result)
    if axis is not None:
        keep_constant_channels(result, axis, channel_min, channel_max)
    return (result, params) if return_params else result


def _spatial_axes(image, axis) -> tuple[int, ...]:
    return tuple(i for i in range(image.ndim) if i != axis % image.ndim)


def keep_constant_channels(result, axis, channel_min, channel_max) -> None:
    """Give the channels that are exactly constant in the input (``channel_min
    == channel_max``, the input's per-channel range) their value back, in place.

    An empty channel (a microscope's unused colour, a red-only picture) has no
    noise; the opponent path's chrominance smoothing, or the colour network,
    would otherwise leak the other channels into it.
    """
    for c in np.flatnonzero(np.asarray(channel_min) == np.asarray(channel_max)):
        np.moveaxis(result, axis, 0)[c] = channel_min[c]


def _denoise_stabilised(image, axis, params: NLMeansParameters, n_threads: int):
    """Poisson-Gaussian noise: stabilise, denoise as Gaussian noise, invert.

    The inverse is the exact unbiased one (Makitalo and Foi 2013): a denoiser
    estimates the mean of the stabilised data, which the algebraic inverse
    would map too low in dark regions.
    """
    model = params.noise_model
    floats = to_unit_float(image)
    scaled, offset, spread = _stabilise(image, axis, model)
    if params.method == "neural":
        out = _denoise_neural(
            scaled, axis, None, n_threads, params.device, ensemble=params.ensemble
        )
    else:
        out = _denoise_classical(scaled, axis, params, n_threads)
    result = inverse_generalized_anscombe(out * spread + offset, model, channel_axis=axis)
    np.clip(result, floats.min(), floats.max(), out=result)
    return from_unit_float(result, image.dtype)


def _to_kernel_layout(floats: np.ndarray, axis: int | None) -> np.ndarray:
    """(C, Z, Y, X) float32 C-contiguous view of the image."""
    if axis is not None:
        floats = np.moveaxis(floats, axis, 0)
    else:
        floats = floats[np.newaxis]
    if floats.ndim == 3:  # (C, Y, X) -> (C, 1, Y, X)
        floats = floats[:, np.newaxis]
    return np.ascontiguousarray(floats, dtype=np.float32)


def _from_kernel_layout(result: np.ndarray, shape, axis: int | None) -> np.ndarray:
    if axis is None:
        return result.reshape(shape)
    spatial = tuple(n for i, n in enumerate(shape) if i != axis)
    return np.moveaxis(result.reshape((shape[axis],) + spatial), 0, axis)


def _kernel_correction(data, params, n_threads: int, h, scale, one_pass):
    """The correction of ``data`` (kernel layout) in ``params.color_space``, on ``n_threads``.

    ``one_pass(values, guide, h)`` gives the correction of ``values`` with
    weights from the patches of ``guide``; ``h`` is on the kernels' scale and
    ``params.h_chroma / scale`` is the chrominance's. Shared by whole images
    and by :mod:`nlmeans._sequence`'s blocks of frames.
    """
    numba = numba_runtime()
    with _threads_lock:
        previous = numba.get_num_threads()
        numba.set_num_threads(n_threads)
        try:
            if params.color_space == "opponent":
                # Luminance/chrominance (colour BM3D, OpenCV's coloured NLM).
                # The luminance is weighted by luminance patches alone, where
                # the signal is strongest and the chrominance adds only noise
                # to the distance. The chrominance is weighted by whole-colour
                # patches (isoluminant edges stay) with its own, stronger h:
                # it holds little detail. Measured on CBSD432 against
                # luminance weights for both: +0.04 to +0.11 dB.
                opponent = np.ascontiguousarray(
                    np.tensordot(OPPONENT.astype(np.float32), data, axes=1)
                )
                luma = np.ascontiguousarray(opponent[:1])
                chroma = np.ascontiguousarray(opponent[1:])
                fix_luma = one_pass(luma, luma, h)
                fix_chroma = one_pass(chroma, opponent, params.h_chroma / scale)
                return np.tensordot(
                    OPPONENT.T, np.concatenate([fix_luma, fix_chroma]).astype(np.float64), axes=1
                )
            return one_pass(data, data, h)
        finally:
            numba.set_num_threads(previous)


def _denoise_classical(
    image, axis, params: NLMeansParameters, n_threads: int, *, bounds=None, window=None
):
    """Classical non-local means of a whole image.

    ``bounds`` and ``window`` let :mod:`nlmeans.bigdata` denoise one block
    (with its halo) of a larger image exactly as the whole image would be:
    ``bounds`` is the whole image's ``(min, max)`` on the float scale, and
    ``window`` is ``(offset, shape)`` of the block within the whole image,
    both in kernel layout ``(Z, Y, X)``.
    """
    floats = to_unit_float(image)  # float64
    # The kernels work in float32 on (u - lo) / scale: float32 squares of
    # large intensities would overflow, and h and sigma scale with the data,
    # so weights are unchanged. They give each pixel's correction (weighted
    # mean minus the pixel), added to the float64 input: a pixel that is not
    # averaged comes back at its own precision.
    lo, hi = (float(floats.min()), float(floats.max())) if bounds is None else bounds
    scale = hi - lo if hi > lo else 1.0
    data = _to_kernel_layout((floats - lo) / scale, axis)
    volume = len(_spatial_shape(image, axis)) == 3
    sigma, h = params.sigma / scale, params.h / scale
    if params.device == "cuda":
        if window is not None:
            raise ValueError("device='cuda' does not take Dask arrays yet: use device='cpu'")
        from ._cuda import nlm_pass as gpu_pass

        def nlm_pass(values, guide, params, volume, sigma, h, window):
            return gpu_pass(values, guide, params, volume, sigma, h)
    else:
        nlm_pass = _nlm_pass
    correction = _kernel_correction(
        data,
        params,
        n_threads,
        h,
        scale,
        lambda values, guide, h: nlm_pass(values, guide, params, volume, sigma, h, window),
    )
    correction = _from_kernel_layout(correction.astype(np.float64), floats.shape, axis)
    return from_unit_float(floats + correction * scale, image.dtype)


def _nlm_pass(values, guide, params: NLMeansParameters, volume: bool, sigma, h, window=None):
    """One non-local means pass in kernel layout ``(C, Z, Y, X)``.

    Patch distances are measured on ``guide`` (averaged over its channels)
    and the weights average ``values``; the two are the same array except on
    the opponent colour path. Returns the correction (float32): the weighted
    mean minus ``values``. ``window``: see :func:`_denoise_classical`.
    """
    from . import kernels

    n_channels, n_z, n_y, n_x = guide.shape
    offset, full_shape = window if window is not None else ((0, 0, 0), guide.shape[1:])
    s = params.patch_size
    f = s // 2
    fz = f if volume else 0
    # A search radius beyond the image changes nothing (the window is clipped
    # at the border) but would cost a list of (d+1)(2d+1) offsets.
    d = min(params.patch_distance, max(full_shape) - 1)
    dz = d if volume else 0

    pad = ((0, 0), (fz, fz), (f, f), (f, f))
    padded = np.pad(guide, pad, mode="reflect")
    two_sigma2, inv_h2, uniform, weights_y, norm = kernels.pass_constants(
        params.method, s, n_channels, sigma, h, fz
    )
    # 2-D patches have one plane: weight 1 along z, for either kind.
    weights_z = weights_y if fz else np.ones(1, np.float32)

    numerator = np.zeros_like(values)
    denominator = np.zeros(values.shape[1:], np.float32)
    track_max = params.method == "patchwise"
    max_weight = np.zeros(values.shape[1:] if track_max else (1, 1, 1), np.float32)
    kernels.pixelwise_accumulate(
        values,
        padded,
        kernels.half_window_shifts(dz, d),
        dz,
        d,
        weights_z,
        weights_y,
        weights_y,
        uniform,
        norm,
        two_sigma2,
        inv_h2,
        numerator,
        denominator,
        max_weight,
        track_max,
    )
    if params.method != "patchwise":
        return numerator / (denominator + np.float32(1.0))
    centre, normaliser = _centre_weights(max_weight, denominator)
    out_numerator = np.zeros_like(values)
    padded_values = padded if values is guide else np.pad(values, pad, mode="reflect")
    kernels.patchwise_aggregate(
        values,
        padded,
        padded_values,
        kernels.full_window_shifts(dz, d),
        dz,
        d,
        f,
        fz,
        two_sigma2,
        inv_h2,
        norm,
        centre,
        normaliser,
        out_numerator,
    )
    return out_numerator / _patch_coverage(values.shape[1:], f, fz, offset, full_shape)


def _centre_weights(max_weight: np.ndarray, denominator: np.ndarray):
    """The centre weight of patch-wise NLM and each centre's normaliser (IPOL 2011).

    A patch weighs itself as much as its best match (1 when it has none),
    and its normaliser is that plus the sum of the other weights.
    """
    centre = np.where(max_weight > 0, max_weight, np.float32(1.0))
    return centre, denominator + centre


def _patch_coverage(shape, f: int, fz: int, offset=(0, 0, 0), full_shape=None) -> np.ndarray:
    """How many in-image patch centres cover each pixel (separable counts).

    ``offset`` and ``full_shape`` place a block of ``shape`` within a larger
    image, whose borders are the ones that count.
    """
    full_shape = shape if full_shape is None else full_shape
    counts = []
    for n, start, total, radius in zip(shape, offset, full_shape, (fz, f, f)):
        idx = np.arange(start, start + n)
        counts.append(
            (np.minimum(idx + radius, total - 1) - np.maximum(idx - radius, 0) + 1).astype(
                np.float32
            )
        )
    return counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]


def _import_neural():
    try:
        from . import neural
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        raise ImportError("method='neural' needs torch: pip install torch==2.13.0") from exc
    return neural


def _neural_takes_noise_map(image, axis) -> bool:
    """Whether the shipped network for this image is non-blind."""
    return _import_neural().uses_noise_level(1 if axis is None else image.shape[axis])


# Noise that estimate_noise_level judges at least this correlated goes to the
# camera model (the colour network trained on simulated camera noise).
_CAMERA_MODEL_FROM = 0.5


def uses_camera_model(params: NLMeansParameters) -> bool:
    """Whether ``method="neural"`` with these parameters asks for the camera
    model: an estimate found the noise mostly spatially correlated. Only
    3-channel images have one (when it is shipped); others keep their model."""
    return params.method == "neural" and params.correlated_noise >= _CAMERA_MODEL_FROM


NEURAL_IMAGES_ONLY = (
    "method='neural' supports 2-D images (gray or with channels: an (H, W, 3) colour "
    "image needs channel_axis=-1); denoise volumes with method='fast', 'exact' or "
    "'patchwise'"
)


def neural_gray_per_channel(constant) -> bool:
    """Whether the network path denoises a colour image channel by channel with
    the gray model: 3 channels, one or two of them exactly constant
    (``constant``: one flag per channel, from the whole image).

    An empty channel (a two-colour micrograph saved as RGB, a red-only
    picture) is nothing the colour and camera models saw in training: on
    McMaster with blue emptied and sigma = 25 in red and green, the gray
    model on each of those gained 0.75 dB over the colour model (30.89
    against 30.14 dB; ``benchmarks/empty_channel.py``).
    """
    constant = np.asarray(constant, dtype=bool)
    return constant.size == 3 and 0 < int(constant.sum()) < 3


def constant_channels(image, axis) -> np.ndarray:
    """One flag per channel of ``image`` (NumPy or Dask; ``axis``: its channel
    axis): whether the channel is exactly constant."""
    spatial = _spatial_axes(image, axis)
    low, high = image.min(axis=spatial), image.max(axis=spatial)
    if hasattr(low, "compute"):
        import dask

        low, high = dask.compute(low, high)
    return np.asarray(low) == np.asarray(high)


def _denoise_neural(
    image,
    axis,
    sigma,
    n_threads,
    device="cpu",
    noise=None,
    camera=False,
    ensemble=False,
    constant=None,
):
    """The network on ``image``; ``constant``: which channels of the whole
    image are exactly constant (None: none, or no channel axis)."""
    neural = _import_neural()
    floats = to_unit_float(image).astype(np.float32)
    if axis is not None:
        floats = np.moveaxis(floats, axis, -1)
    if floats.ndim - (axis is not None) != 2:
        raise ValueError(NEURAL_IMAGES_ONLY)
    options = dict(threads=n_threads, camera=camera, ensemble=ensemble)
    if device == "cuda":
        from .device import neural_tile_size

        options.update(device="cuda", tile_size=neural_tile_size(*floats.shape[:2]))
    if constant is not None and neural_gray_per_channel(constant):
        result = floats.copy()  # the constant channels stay as they are
        if noise is not None:
            levels = noise.sigma_map(floats, channel_axis=-1).astype(np.float32)
        elif sigma is None:
            sigma = float(estimate_sigma(floats, channel_axis=-1))
        for c in np.flatnonzero(~np.asarray(constant, dtype=bool)):
            level = dict(sigma=sigma) if noise is None else dict(noise_map=levels[..., c])
            result[..., c] = neural.denoise(floats[..., c], **level, **options)
    else:
        result = neural.denoise(floats, sigma=sigma, noise=noise, **options)
    if axis is not None:
        result = np.moveaxis(result, -1, axis)
    return from_unit_float(np.asarray(result, np.float32), image.dtype)
