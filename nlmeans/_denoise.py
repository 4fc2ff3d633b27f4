"""Validating Python front end of the non-local means kernels."""

from __future__ import annotations

import json
import logging
import numbers
import threading
import warnings
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np

from .io import from_unit_float, to_unit_float

logger = logging.getLogger("nlmeans")

METHODS = ("fast", "exact", "patchwise", "neural")
_CLASSICAL = ("fast", "exact", "patchwise")
_SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)
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
    images). ``sigma_estimated`` says whether ``sigma`` came from
    :func:`estimate_sigma`; ``automatic`` lists the parameters that were
    chosen by the shipped table rather than given by the caller.
    """

    method: str
    sigma: float
    h: float | None
    patch_size: int | None
    patch_distance: int | None
    sigma_estimated: bool
    automatic: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------


def _check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        if isinstance(image, (list, tuple)):
            image = np.asarray(image)
        else:
            raise TypeError(
                f"image must be a NumPy array, got {type(image).__name__}"
            )
    if image.dtype.type not in _SUPPORTED_DTYPES:
        raise TypeError(
            f"image has unsupported dtype {image.dtype}; "
            "use uint8, uint16, float32 or float64"
        )
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ValueError("image contains NaN or Inf values")
    return image


def _check_channel_axis(image: np.ndarray, channel_axis) -> int | None:
    if channel_axis is None:
        if image.ndim not in (2, 3):
            raise ValueError(
                f"image must be 2-D (gray) or 3-D (volume), got {image.ndim}-D; "
                "pass channel_axis for an image with channels"
            )
        return None
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
        raise TypeError(f"channel_axis must be an int or None, got {channel_axis!r}")
    if not -image.ndim <= channel_axis < image.ndim:
        raise ValueError(
            f"channel_axis={channel_axis} is out of range for a {image.ndim}-D image"
        )
    if image.ndim not in (3, 4):
        raise ValueError(
            f"with channel_axis the image must be 3-D or 4-D, got {image.ndim}-D"
        )
    return int(channel_axis) % image.ndim


def _check_positive_odd(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an odd positive integer, got {value!r}")
    if value < 1 or value % 2 == 0:
        raise ValueError(f"{name} must be an odd positive integer, got {value}")
    return int(value)


def _check_distance(value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"patch_distance must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"patch_distance must be a non-negative integer, got {value}")
    return int(value)


def _check_real(name: str, value, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value}")
    return value


def _spatial_shape(image: np.ndarray, axis: int | None) -> tuple[int, ...]:
    return tuple(n for i, n in enumerate(image.shape) if i != axis)


def _check_fits_patch(image: np.ndarray, axis: int | None, patch_size: int) -> None:
    spatial = _spatial_shape(image, axis)
    if min(spatial) < patch_size:
        hint = ""
        if image.ndim == 3 and axis is None and min(image.shape) <= 4:
            hint = "; for a colour image pass channel_axis=-1"
        raise ValueError(
            f"image of spatial shape {spatial} is smaller than the patch "
            f"(patch_size={patch_size}){hint}"
        )


def check_threads(threads) -> int:
    import numba

    available = numba.config.NUMBA_NUM_THREADS
    if threads is None:
        return available
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
        raise TypeError(f"threads must be a positive integer, got {threads!r}")
    if not 1 <= threads <= available:
        raise ValueError(f"threads must be between 1 and {available}, got {threads}")
    return int(threads)


# --------------------------------------------------------------------------
# Automatic parameters
# --------------------------------------------------------------------------


def _parameter_table() -> dict:
    text = resources.files("nlmeans").joinpath("data/parameters.json").read_text()
    return json.loads(text)


_TABLE: dict | None = None


def _table_row(method: str, sigma: float) -> dict:
    """Row of the shipped table for ``sigma`` (on the [0, 1] scale)."""
    global _TABLE
    if _TABLE is None:
        _TABLE = _parameter_table()
    rows = _TABLE["methods"][method]
    sigma255 = sigma * 255.0
    for row in rows:
        if sigma255 <= row["sigma_max"]:
            return row
    return rows[-1]


def estimate_sigma(image, *, channel_axis=None) -> float:
    """Estimate the standard deviation of Gaussian noise in ``image``.

    A thin wrapper of :func:`skimage.restoration.estimate_sigma` (wavelet
    median absolute deviation) that accepts the same inputs as
    :func:`denoise` and averages over channels.

    Parameters
    ----------
    image : ndarray
        2-D or 3-D image, optionally with a channel axis.
    channel_axis : int or None, optional
        Axis of the channels, if any.

    Returns
    -------
    float
        Noise standard deviation on the image's float scale (integer images
        are mapped to [0, 1] first, so 25 gray levels of a uint8 image read
        as ``25 / 255``).

    Notes
    -----
    The estimate assumes additive white Gaussian noise; on clean images with
    fine texture it reads a little above zero.

    References
    ----------
    .. [1] D. L. Donoho and I. M. Johnstone, "Ideal spatial adaptation by
       wavelet shrinkage", Biometrika 81(3), 1994.
    """
    from skimage.restoration import estimate_sigma as _sk_estimate_sigma

    image = _check_image(image)
    axis = _check_channel_axis(image, channel_axis)
    floats = to_unit_float(image)
    with warnings.catch_warnings():
        # Gray images a few pixels wide make scikit-image guess that the last
        # axis holds channels; ours says it does not. A constant image gives
        # an empty wavelet band (NaN, with warnings): its noise is 0.
        warnings.filterwarnings("ignore", message=".*channel_axis.*", category=UserWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        sigma = _sk_estimate_sigma(floats, channel_axis=axis, average_sigmas=True)
    sigma = float(sigma)
    return sigma if np.isfinite(sigma) else 0.0


def resolve_parameters(
    image,
    *,
    h=None,
    sigma=None,
    patch_size=None,
    patch_distance=None,
    method="fast",
    channel_axis=None,
) -> NLMeansParameters:
    """Fill in every parameter of :func:`denoise` left as ``None``.

    ``sigma`` is estimated with :func:`estimate_sigma`; ``patch_size``,
    ``patch_distance`` and ``h`` come from a table fitted on the Train400
    images (``benchmarks/fit_parameters.py``) by noise level and method.
    Takes the same arguments as :func:`denoise` and validates them the same
    way. Returns an :class:`NLMeansParameters`.
    """
    image = _check_image(image)
    axis = _check_channel_axis(image, channel_axis)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    automatic = []
    if sigma is None:
        sigma_value = estimate_sigma(image, channel_axis=axis)
        automatic.append("sigma")
    else:
        sigma_value = _check_real("sigma", sigma, positive=False)
    if method == "neural":
        for name, value in (
            ("h", h), ("patch_size", patch_size), ("patch_distance", patch_distance)
        ):
            if value is not None:
                raise ValueError(f"{name} does not apply to method='neural'")
        return NLMeansParameters(
            method, sigma_value, None, None, None, sigma is None, tuple(automatic)
        )
    row = _table_row(method, max(sigma_value, _MIN_AUTO_SIGMA))
    spatial_ndim = image.ndim - (axis is not None)
    if patch_size is None:
        patch_size = row["patch_size"]
        if spatial_ndim == 3:
            patch_size = min(patch_size, _VOLUME_MAX_PATCH_SIZE)
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
        h = row["h_over_sigma"] * max(sigma_value, _MIN_AUTO_SIGMA)
        automatic.append("h")
    else:
        h = _check_real("h", h, positive=True)
    return NLMeansParameters(
        method, sigma_value, float(h), int(patch_size), int(patch_distance),
        sigma is None, tuple(automatic),
    )


# --------------------------------------------------------------------------
# Denoising
# --------------------------------------------------------------------------


def denoise(
    image,
    *,
    h=None,
    sigma=None,
    patch_size=None,
    patch_distance=None,
    method="fast",
    channel_axis=None,
    threads=None,
    return_params=False,
):
    """Denoise an image with non-local means.

    Every pixel becomes a weighted mean of the pixels of its search window,
    weighted by how much their surrounding patches look alike:
    ``w = exp(-max(d2 - 2 sigma**2, 0) / h**2)``, ``d2`` the mean squared
    difference between the two patches over patch pixels and channels.

    Parameters
    ----------
    image : ndarray
        2-D gray image, 2-D image with channels (see ``channel_axis``), or a
        3-D volume (optionally with channels). uint8, uint16, float32 or
        float64; integers are read on a [0, 1] scale like
        :func:`skimage.util.img_as_float`.
    h : float, optional
        Filtering strength on the image's float scale: the same ``h`` as
        :func:`skimage.restoration.denoise_nl_means`. Automatic when None.
    sigma : float, optional
        Noise standard deviation on the image's float scale, subtracted in
        the weights. Estimated with :func:`estimate_sigma` when None.
    patch_size : int, optional
        Odd width of the (square or cubic) patches. Automatic when None.
    patch_distance : int, optional
        Search radius: the window is ``2 * patch_distance + 1`` pixels wide
        per axis, clipped at the image border. Automatic when None.
    method : {"fast", "exact", "patchwise", "neural"}
        ``"fast"``: pixel-wise NLM with uniform patch weights and box-sum
        distances. ``"exact"``: Buades et al. (2005) pixel-wise NLM with
        Gaussian patch weights. ``"patchwise"``: IPOL 2011 patch-wise NLM.
        ``"neural"``: the shipped non-local network (:mod:`nlmeans.neural`;
        imports torch).
    channel_axis : int or None
        Axis holding the channels. Channels share one weight (joint
        distance averaged over channels).
    threads : int, optional
        Number of threads (all of Numba's by default). The result is
        bit-identical for any value.
    return_params : bool
        Also return the :class:`NLMeansParameters` used.

    Returns
    -------
    ndarray or (ndarray, NLMeansParameters)
        The denoised image, with the input's shape and dtype (integers
        rounded and clipped).

    Raises
    ------
    TypeError, ValueError
        For an unsupported dtype or type, NaN/Inf, an empty image, a wrong
        ``channel_axis``, an even or non-positive ``patch_size``, a negative
        ``patch_distance``, a non-positive ``h``, a negative ``sigma``, or an
        image smaller than a patch, each naming the parameter.

    Notes
    -----
    Weights and sums are computed in float32 (float64 input is converted and
    the result converted back). Every method's result is clipped to the
    input's [min, max], which a weighted mean can only leave by rounding (the
    network, by overshoot).

    Patches at the border use reflect padding (NumPy ``mode="reflect"``);
    candidate pixels are restricted to the image. The centre pixel weighs 1
    in ``"fast"`` and ``"exact"``; in ``"patchwise"`` it weighs the largest
    of the other weights (IPOL 2011).

    Deliberate differences from :func:`skimage.restoration.denoise_nl_means`:

    * ``"fast"`` compares full ``s x s`` patches; scikit-image's fast mode
      sums over ``(s - 1) x (s - 1)`` pixels while dividing by ``s**2``, so
      its distances are ``((s-1)/s)**2`` of ours for the same ``h``.
    * scikit-image's fast mode approximates ``exp`` (Schraudolph, about 3 %
      error) and drops pairs whose distance exceeds ``5 h**2``; ours is
      accurate to 2e-6 and drops only weights below ``exp(-30)``.
    * scikit-image's slow mode stops accumulating a patch distance once it
      exceeds a cut-off and searches a window clipped differently near the
      border; ``"exact"`` always computes the full Gaussian-weighted distance.

    References
    ----------
    .. [1] A. Buades, B. Coll, J.-M. Morel, "A non-local algorithm for image
       denoising", CVPR 2005.
    .. [2] A. Buades, B. Coll, J.-M. Morel, "Non-Local Means Denoising",
       Image Processing On Line 1 (2011), doi:10.5201/ipol.2011.bcm_nlm.
    .. [3] J. Darbon, A. Cunha, T. F. Chan, S. Osher, G. J. Jensen, "Fast
       nonlocal filtering applied to electron cryomicroscopy", ISBI 2008.

    Examples
    --------
    >>> import numpy as np, nlmeans
    >>> rng = np.random.default_rng(0)
    >>> noisy = np.clip(0.5 + 0.1 * rng.standard_normal((64, 64)), 0, 1)
    >>> out, params = nlmeans.denoise(noisy, return_params=True)
    >>> out.shape, out.dtype, params.method
    ((64, 64), dtype('float64'), 'fast')
    """
    image = _check_image(image)
    params = resolve_parameters(
        image, h=h, sigma=sigma, patch_size=patch_size,
        patch_distance=patch_distance, method=method, channel_axis=channel_axis,
    )
    n_threads = check_threads(threads)
    axis = _check_channel_axis(image, channel_axis)
    logger.info("nlmeans parameters: %s", params)

    if method == "neural":
        result = _denoise_neural(
            image, axis, params.sigma if sigma is not None else None, n_threads
        )
    else:
        result = _denoise_classical(image, axis, params, n_threads)
    # A weighted mean stays within the input's [min, max]: clip away float32
    # rounding (and, for the network, overshoot) with the input's own bounds.
    np.clip(result, image.min(), image.max(), out=result)
    return (result, params) if return_params else result


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


def _denoise_classical(image, axis, params: NLMeansParameters, n_threads: int):
    from . import kernels

    floats = to_unit_float(image)
    # Work on (u - lo) / scale: float32 squares of large intensities would
    # overflow, and h and sigma scale with the data, so weights are unchanged.
    lo, hi = float(floats.min()), float(floats.max())
    scale = hi - lo if hi > lo else 1.0
    data = _to_kernel_layout((floats - lo) / scale, axis)
    n_channels, n_z, n_y, n_x = data.shape
    volume = len(_spatial_shape(image, axis)) == 3
    s = params.patch_size
    f = s // 2
    fz = f if volume else 0
    # A search radius beyond the image changes nothing (the window is clipped
    # at the border) but would cost a list of (d+1)(2d+1) offsets.
    d = min(params.patch_distance, max(n_y, n_x, n_z) - 1)
    dz = d if volume else 0

    padded = np.pad(data, ((0, 0), (fz, fz), (f, f), (f, f)), mode="reflect")
    two_sigma2, inv_h2 = _weight_constants(params.sigma / scale, params.h / scale)
    kind = "gaussian" if params.method == "exact" else "uniform"
    weights_y = kernels.patch_weights(s, kind)
    weights_z = kernels.patch_weights(2 * fz + 1, kind)
    if kind == "uniform":
        norm = np.float32(1.0 / (n_channels * (2 * fz + 1) * s * s))
    else:
        norm = np.float32(1.0 / n_channels)

    numerator = np.zeros_like(data)
    denominator = np.zeros(data.shape[1:], np.float32)
    track_max = params.method == "patchwise"
    max_weight = np.zeros(data.shape[1:] if track_max else (1, 1, 1), np.float32)
    with _threads_lock:
        import numba

        previous = numba.get_num_threads()
        numba.set_num_threads(n_threads)
        try:
            kernels.pixelwise_accumulate(
                data, padded, kernels.half_window_shifts(dz, d), dz, d,
                weights_z, weights_y, weights_y, kind == "uniform", norm,
                two_sigma2, inv_h2, numerator, denominator, max_weight, track_max,
            )
            if params.method == "patchwise":
                centre = np.where(max_weight > 0, max_weight, np.float32(1.0))
                normaliser = denominator + centre
                out_numerator = np.zeros_like(data)
                kernels.patchwise_aggregate(
                    data, padded, kernels.full_window_shifts(dz, d), dz, d, f, fz,
                    two_sigma2, inv_h2, norm, centre, normaliser, out_numerator,
                )
                result = out_numerator / _patch_coverage(data.shape[1:], f, fz)
            else:
                result = (numerator + data) / (denominator + np.float32(1.0))
        finally:
            numba.set_num_threads(previous)

    result = _from_kernel_layout(result.astype(np.float64) * scale + lo, floats.shape, axis)
    return from_unit_float(result, image.dtype)


def _weight_constants(sigma: float, h: float) -> tuple[np.float32, np.float32]:
    """``2 sigma**2`` and ``1 / h**2`` as float32, saturated instead of overflowing.

    A saturated ``1 / h**2`` keeps the limit h -> 0 exact: a zero excess still
    gives weight 1 and any positive excess weight 0 (inf would make 0 * inf
    a NaN).
    """
    big = float(np.finfo(np.float32).max) / 4
    two_sigma2 = 2.0 * sigma * sigma if sigma < 1e18 else big
    inv_h2 = 1.0 / (h * h) if h > 1e-18 else big
    return np.float32(min(two_sigma2, big)), np.float32(min(inv_h2, big))


def _patch_coverage(shape, f: int, fz: int) -> np.ndarray:
    """How many in-image patch centres cover each pixel (separable counts)."""
    counts = []
    for n, radius in zip(shape, (fz, f, f)):
        idx = np.arange(n)
        counts.append(
            (np.minimum(idx + radius, n - 1) - np.maximum(idx - radius, 0) + 1)
            .astype(np.float32)
        )
    return counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]


def _denoise_neural(image, axis, sigma, n_threads):
    try:
        from . import neural
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        raise ImportError(
            "method='neural' needs torch: pip install torch==2.13.0"
        ) from exc
    floats = to_unit_float(image).astype(np.float32)
    if axis is not None:
        floats = np.moveaxis(floats, axis, -1)
    if floats.ndim == 3 and axis is None:
        raise ValueError("method='neural' supports 2-D images (gray or with channels)")
    result = neural.denoise(floats, sigma=sigma, threads=n_threads)
    if axis is not None:
        result = np.moveaxis(result, -1, axis)
    return from_unit_float(np.asarray(result, np.float32), image.dtype)
