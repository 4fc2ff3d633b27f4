"""Signal-dependent noise: a Poisson-Gaussian model, its estimation from one image,
and the generalized Anscombe variance-stabilizing transform.

A :class:`NoiseModel` says how noisy each channel is as a function of the
clean intensity ``y``: ``var[z | y] = a * y + b`` on the image's float scale
([0, 1] for integer images, as everywhere in nlmeans). Additive white
Gaussian noise is the special case ``a = 0``, ``b = sigma**2``.

:func:`estimate_noise` fits that model from a single noisy image;
:func:`generalized_anscombe` maps Poisson-Gaussian data to data whose noise
has unit variance everywhere (so a denoiser made for Gaussian noise applies),
and :func:`inverse_generalized_anscombe` maps a denoised result back without
the bias that the algebraic inverse leaves in dark regions.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np

from ._checks import _check_channel_axis, _check_image, _check_real
from .io import to_unit_float

__all__ = [
    "NOISE_KINDS",
    "NoiseModel",
    "estimate_noise",
    "estimate_sigma",
    "noise_level_sets",
    "plot_noise",
    "generalized_anscombe",
    "inverse_generalized_anscombe",
]

#: The kinds of :class:`NoiseModel`.
NOISE_KINDS = ("gaussian", "poisson-gaussian")
_ESTIMATE_MODELS = ("auto",) + NOISE_KINDS
_INVERSE_METHODS = ("unbiased", "algebraic")

# Standard normal quantile at 3/4: median(|N(0, 1)|).
_MAD_SCALE = 0.6744897501960817
_SQRT_2PI = 2.5066282746310002
# Per level set, details beyond this many robust (MAD) standard deviations
# are outliers; the variance is the mean square of the others.
_CUTOFF = 4.0
# Variance of that estimate in units of v**2 / n: 2 for independent Gaussian
# samples; measured 2.4 for the overlapping samples of the four Haar phases.
_VARIANCE_FACTOR = 2.5
# Smoothness test: window (in coefficients of the first wavelet level) and
# the quantile of the noise-only distribution above which a pixel is texture.
_TEXTURE_WINDOW = 7
_TEXTURE_QUANTILE = 0.8
# Level sets: at most this many bins, at least this many samples in each.
_MAX_BINS = 32
_MIN_PER_BIN = 150
# Clipping: a channel is clipped at its minimum (maximum) when more than this
# fraction of its pixels sit exactly there; places whose local mean lies
# within this many (clipped) standard deviations of that level are left out.
_CLIP_FRACTION = 1e-3
_CLIP_MARGIN = 0.5
# Samples whose texture window holds more than this share of exactly
# constant 2x2 blocks are left out.
_FLAT_SHARE = 0.25
# model="auto": the signal-dependent term must be significant (t statistic),
# change the variance by this factor over the observed intensities, and the
# fit must rest on this many level sets.
_AUTO_MIN_T = 5.0
_AUTO_MIN_RATIO = 1.3
_AUTO_MIN_BINS = 4
_ITERATIONS = 3
# A channel whose transform would sit more than this far from 0 (its offset
# 2 sqrt(b) / a: 1e13 for a fit that finds a ~ 1e-14 on white noise) is
# transformed as Gaussian noise of variance b: at that offset float64 keeps
# no precision for the data, and the Poisson term a z is below 1e-9 sqrt(b)
# for any z up to 1e6 (negligible next to b on any scale an image has).
_LARGEST_OFFSET = 1e9
# estimate_sigma reads volumes thinner than this on the 3-D Haar band.
_THIN_VOLUME = 16
# Noise samples kept per channel (bounds time and memory on large images).
_MAX_SAMPLES = 1 << 21


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------


def _as_parameter_tuple(name: str, value) -> tuple[float, ...]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        values = list(value)
    else:
        values = [value]
    if not values:
        raise ValueError(f"{name} must hold one value per channel, got none")
    out = []
    for i, item in enumerate(values):
        label = f"{name}[{i}]" if len(values) > 1 else name
        if isinstance(item, numbers.Real) and not isinstance(item, bool) and float(item) < 0:
            if name == "a":
                raise ValueError(
                    f"{label} must be non-negative (variance cannot decrease with "
                    f"intensity in this model), got {float(item)}"
                )
            raise ValueError(
                f"{label} must be non-negative: a*y + b would be a negative variance "
                f"at black (y = 0), got {float(item)}"
            )
        value = _check_real(label, item, positive=False)
        if value > _LARGEST_PARAMETER:
            # Squares and sums of such values overflow to inf in the transform.
            raise ValueError(f"{label} must be below {_LARGEST_PARAMETER:g}, got {value:g}")
        out.append(value)
    return tuple(out)


# a and b above this (a variance of 1e100 on the image's scale) mean nothing
# and would overflow in the variance-stabilising transform.
_LARGEST_PARAMETER = 1e100


@dataclass(frozen=True)
class NoiseModel:
    """Noise whose variance is affine in the clean intensity, per channel.

    ``var[z | y] = a[c] * y + b[c]`` for a clean intensity ``y`` of channel
    ``c``, on the image's float scale ([0, 1] for integer images).

    Parameters
    ----------
    kind : {"gaussian", "poisson-gaussian"}
        ``"gaussian"``: signal-independent noise (every ``a`` is 0, ``b`` is
        ``sigma**2``). ``"poisson-gaussian"``: a Poissonian part of gain ``a``
        plus a Gaussian part of variance ``b``.
    a, b : float or sequence of float
        One value per channel (a single number means one channel); ``a`` and
        ``b`` must have the same length. Both must be finite and
        non-negative: ``b < 0`` would make the variance negative at black.
        Stored as tuples of float.

    Raises
    ------
    TypeError, ValueError
        For an unknown ``kind``, non-numbers, NaN/Inf, negative ``a`` or
        ``b``, a Gaussian model with non-zero ``a``, or ``a`` and ``b`` of
        different lengths, each naming the parameter.

    Notes
    -----
    A model with a single channel applies to every channel of an image
    (:meth:`sigma_map`, :func:`generalized_anscombe`); a model with ``C > 1``
    channels needs an image with exactly ``C`` channels.

    Examples
    --------
    >>> from nlmeans.noise import NoiseModel
    >>> m = NoiseModel("gaussian", a=0.0, b=(25 / 255) ** 2)
    >>> round(m.sigma * 255, 6)
    25.0
    >>> pg = NoiseModel("poisson-gaussian", a=(0.01, 0.02, 0.01), b=(1e-4, 1e-4, 2e-4))
    >>> pg.channels
    3
    """

    kind: str
    a: tuple[float, ...]
    b: tuple[float, ...]

    def __post_init__(self):
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(NOISE_KINDS)}; got {self.kind!r}")
        a = _as_parameter_tuple("a", self.a)
        b = _as_parameter_tuple("b", self.b)
        if len(a) != len(b):
            raise ValueError(
                f"a and b must have one value per channel each: a has {len(a)} "
                f"values, b has {len(b)}"
            )
        if self.kind == "gaussian" and any(value != 0.0 for value in a):
            raise ValueError(
                f"a must be 0 for kind='gaussian' (signal-independent noise), got {a}; "
                "use kind='poisson-gaussian'"
            )
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)

    @property
    def channels(self) -> int:
        """Number of channels the model describes."""
        return len(self.b)

    @property
    def sigma(self) -> float:
        """One representative noise standard deviation.

        ``sqrt(mean(b))`` for a Gaussian model; for a Poisson-Gaussian model,
        the standard deviation at mid-range, ``sqrt(a * 0.5 + b)``, averaged
        over channels. On the image's float scale.
        """
        a = np.asarray(self.a)
        b = np.asarray(self.b)
        if self.kind == "gaussian":
            return float(np.sqrt(b.mean()))
        return float(np.sqrt(a * 0.5 + b).mean())

    def _channel_index(self, channel) -> int:
        if channel is None:
            if self.channels != 1:
                raise ValueError(f"channel must be given for a model with {self.channels} channels")
            return 0
        if isinstance(channel, bool) or not isinstance(channel, numbers.Integral):
            raise TypeError(f"channel must be an int or None, got {channel!r}")
        if not -self.channels <= channel < self.channels:
            raise ValueError(
                f"channel={channel} is out of range for a model with {self.channels} channel(s)"
            )
        return int(channel) % self.channels

    def variance(self, y, *, channel=None):
        """Noise variance ``a * y + b`` at clean intensity ``y``.

        Parameters
        ----------
        y : float or array_like
            Clean intensities on the image's float scale.
        channel : int or None
            Which channel's parameters to use; may be None only for a
            one-channel model.

        Returns
        -------
        float or ndarray
            The variance, clipped at 0 (``y`` below ``-b / a`` would give a
            negative value), with the shape of ``y``.
        """
        c = self._channel_index(channel)
        values = np.maximum(self.a[c] * np.asarray(y, dtype=np.float64) + self.b[c], 0.0)
        return float(values) if values.ndim == 0 else values

    def sigma_map(self, image, *, channel_axis=None) -> np.ndarray:
        """Per-pixel noise standard deviation for ``image``.

        The clean intensity is estimated by a light Gaussian smoothing of
        ``image`` (standard deviation 1 pixel along every spatial axis, each
        channel on its own); the map is ``sqrt(max(a * y + b, 0))``.

        Parameters
        ----------
        image : ndarray
            2-D or 3-D image, optionally with a channel axis; integers are
            read on the [0, 1] scale.
        channel_axis : int or None
            Axis of the channels, if any.

        Returns
        -------
        ndarray of float64
            Same shape as ``image``.

        Raises
        ------
        ValueError
            If the image's channel count differs from the model's (unless the
            model has a single channel, which then applies to every channel).
        """
        from scipy.ndimage import gaussian_filter

        image = _check_image(image)
        axis = _check_channel_axis(image, channel_axis)
        floats = to_unit_float(image)
        planes = _channels_first(floats, axis)
        a, b = self._per_channel(planes.shape[0], axis)
        shape = (-1,) + (1,) * (planes.ndim - 1)
        a, b = a.reshape(shape), b.reshape(shape)
        smooth = gaussian_filter(planes, sigma=[0.0] + [1.0] * (planes.ndim - 1), mode="reflect")
        variance = np.maximum(a * smooth + b, 0.0)
        return _channels_back(np.sqrt(variance), axis)

    def _per_channel(self, n_channels: int, axis) -> tuple[np.ndarray, np.ndarray]:
        """``a`` and ``b`` shaped to broadcast over a channel-first array."""
        if self.channels not in (1, n_channels):
            where = (
                f"along channel_axis={axis}"
                if axis is not None
                else "(no channel_axis: one channel)"
            )
            raise ValueError(
                f"the noise model has {self.channels} channels but the image has "
                f"{n_channels} {where}; channel_axis and the model's a and b must agree"
            )
        a = np.asarray(self.a, dtype=np.float64)
        b = np.asarray(self.b, dtype=np.float64)
        if a.size == 1:
            a = np.repeat(a, n_channels)
            b = np.repeat(b, n_channels)
        return a, b

    def as_dict(self) -> dict:
        """``{"kind", "a", "b", "sigma"}`` with lists (JSON-ready).

        ``NoiseModel(d["kind"], d["a"], d["b"])`` rebuilds the model.
        """
        return {"kind": self.kind, "a": list(self.a), "b": list(self.b), "sigma": self.sigma}


def _channels_first(floats: np.ndarray, axis) -> np.ndarray:
    """(C, *spatial) view: a leading axis of one channel when ``axis`` is None."""
    if axis is None:
        return floats[np.newaxis]
    return np.moveaxis(floats, axis, 0)


def _channels_back(planes: np.ndarray, axis) -> np.ndarray:
    if axis is None:
        return planes[0]
    return np.moveaxis(planes, 0, axis)


# --------------------------------------------------------------------------
# Estimation from one image
# --------------------------------------------------------------------------


def _haar_level(x: np.ndarray) -> dict:
    """One level of the orthonormal n-D Haar transform (decimated).

    Returns ``{index: band}`` for every ``index`` in ``{0, 1}**ndim``: 0 along
    a spatial axis means low-pass, 1 high-pass. ``(0, ..., 0)`` is the
    approximation (``2**(ndim/2)`` times the block mean), ``(1, ..., 1)`` the
    diagonal detail. An odd last row / column is dropped.
    """
    nd = x.ndim
    bands = {(): x[tuple(slice(0, n - n % 2) for n in x.shape)]}
    for k in range(nd):
        even = (slice(None),) * k + (slice(0, None, 2),)
        odd = (slice(None),) * k + (slice(1, None, 2),)
        split = {}
        for index, band in bands.items():
            split[index + (0,)] = band[even] + band[odd]
            split[index + (1,)] = band[even] - band[odd]
        bands = split
    norm = 2.0 ** (-nd / 2)
    for band in bands.values():
        band *= norm
    return bands


def _mad_bias(counts: np.ndarray) -> np.ndarray:
    """``E[(|d|_(k) / q)**2] / v`` for the ``k = ceil(n/2)``-th of ``n`` values.

    ``|d|_(k)`` is an order statistic of ``|N(0, v)|`` samples; dividing a
    squared MAD estimate by this factor makes it unbiased for ``v`` (exactly
    for independent Gaussian samples; the factor tends to 1 as ``1 + O(1/n)``).
    """
    from scipy.special import ndtri
    from scipy.stats import beta

    unique, inverse = np.unique(np.asarray(counts, dtype=np.int64), return_inverse=True)
    k = (unique + 1) // 2
    p, weights = _QUADRATURE
    u = beta.ppf(p[:, None], k[None, :], (unique + 1 - k)[None, :])
    q = ndtri((1.0 + u) / 2.0)
    factors = 0.5 * (weights[:, None] * q * q).sum(axis=0) / _MAD_SCALE**2
    return factors[inverse]


# Gauss-Legendre nodes on [0, 1] (p) and weights (summing to 2) for _mad_bias.
_QUADRATURE = (
    0.5 * (np.polynomial.legendre.leggauss(48)[0] + 1.0),
    np.polynomial.legendre.leggauss(48)[1],
)


def _level_sets(y, absd, predicted, n_bins):
    """Mean intensity, variance and count of equal-count bins of sorted ``y``.

    Details are first divided by the predicted standard deviation. Per bin,
    the squared MAD of those (zero-centred, corrected for its small-sample
    bias) gives a robust scale; details beyond :data:`_CUTOFF` times that
    scale are dropped as outliers and the variance is the mean square of the
    rest, divided by its value for a truncated standard normal. Times the
    bin's mean predicted variance, this reads the mean variance of a bin
    that spans a range of intensities (not the MAD of a mixture), and stays
    unbiased for the skewed, heavy-tailed details of low photon counts,
    where a MAD alone reads low.
    """
    from scipy.special import ndtr

    scaled = absd / np.sqrt(predicted)
    edges = np.linspace(0, y.size, n_bins + 1).astype(np.int64)
    counts = np.diff(edges)
    means = np.add.reduceat(y, edges[:-1]) / counts
    mean_predicted = np.add.reduceat(predicted, edges[:-1]) / counts
    c = _CUTOFF
    # E[Z**2 | |Z| <= c] for a standard normal Z.
    truncated = 1.0 - 2.0 * c * np.exp(-0.5 * c * c) / _SQRT_2PI / (2.0 * ndtr(c) - 1.0)
    mad = np.empty(n_bins)
    for i in range(n_bins):  # a few dozen bins, each a vectorised selection
        chunk = scaled[edges[i] : edges[i + 1]]
        kth = (chunk.size - 1) // 2
        mad[i] = np.partition(chunk, kth)[kth]
    robust = (mad / _MAD_SCALE) ** 2 / _mad_bias(counts)
    inside = scaled <= np.repeat(c * np.sqrt(robust), counts)
    squares = np.where(inside, scaled * scaled, 0.0)
    kept = np.add.reduceat(inside.astype(np.float64), edges[:-1])
    variances = np.add.reduceat(squares, edges[:-1]) / np.maximum(kept, 1.0) / truncated
    return means, mean_predicted * variances, counts


def _fit_line(y, v, n, *, slope: bool):
    """Weighted least squares ``v = a y + b``; returns ``(a, b, se_a)``.

    Weights are ``n / (F v_fit**2)`` (the inverse variance of a bin's
    estimate, ``F`` = :data:`_VARIANCE_FACTOR`), refined twice from the
    fitted line. ``a`` is kept >= 0
    and ``b`` >= 0 (a constrained refit on the boundary). ``se_a`` is the
    standard error of ``a``, inflated by the reduced chi-square when the
    scatter exceeds what the sample counts explain (``inf`` without slope).
    """
    scale = float(np.max(v)) if v.size else 0.0
    if scale <= 0.0:
        return 0.0, 0.0, np.inf
    floor = 1e-6 * scale
    fitted = np.full_like(v, np.average(v, weights=n))
    a = 0.0
    b = float(fitted[0])
    se_a = np.inf
    for _ in range(3):
        w = n / (_VARIANCE_FACTOR * np.maximum(fitted, floor) ** 2)
        if slope and y.size >= 3 and np.ptp(y) > 0:
            design = np.stack([y, np.ones_like(y)], axis=1)
            normal = design.T @ (w[:, None] * design)
            a, b = np.linalg.solve(normal, design.T @ (w * v))
            if a < 0:
                a, b = 0.0, float(np.sum(w * v) / np.sum(w))
            elif b < 0:
                a, b = float(np.sum(w * v * y) / np.sum(w * y * y)), 0.0
            residual = v - (a * y + b)
            chi2 = float(np.sum(w * residual**2)) / max(y.size - 2, 1)
            se_a = float(np.sqrt(np.linalg.inv(normal)[0, 0] * max(chi2, 1.0)))
        else:
            a, b = 0.0, float(np.sum(w * v) / np.sum(w))
        fitted = a * y + b
    return float(a), float(b), se_a


class _Clipping:
    """Pixel values clipped to ``[lo, hi]`` (an infinite bound: no clipping there).

    Foi et al.'s model of clipped data: a pixel of clean value ``y`` is
    ``clip(N(y, a y + b), lo, hi)``. What the estimator observes at a smooth
    place is the mean and the variance of that clipped variable; both are
    tabulated over a grid of ``y`` so the variance can be looked up by the
    observed (clipped) mean.
    """

    def __init__(self, lo: float, hi: float, data_lo: float, data_hi: float):
        self.lo = lo
        self.hi = hi
        span = max(data_hi - data_lo, 1e-12)
        self.grid = np.linspace(data_lo - 0.5 * span, data_hi + 0.5 * span, 769)

    def moments(self, mu, var):
        """Mean and variance of ``clip(N(mu, var), lo, hi)``."""
        from scipy.special import ndtr

        s = np.sqrt(np.maximum(var, 0.0))
        tiny = np.where(s > 0, s, 1e-300)
        lo = self.lo if np.isfinite(self.lo) else 0.0
        hi = self.hi if np.isfinite(self.hi) else 0.0
        alpha = np.clip((self.lo - mu) / tiny, -40.0, 40.0)
        beta = np.clip((self.hi - mu) / tiny, -40.0, 40.0)
        pdf_a = np.exp(-0.5 * alpha**2) / _SQRT_2PI
        pdf_b = np.exp(-0.5 * beta**2) / _SQRT_2PI
        below, above = ndtr(alpha), 1.0 - ndtr(beta)
        inside = 1.0 - below - above
        first = mu * inside + s * (pdf_a - pdf_b)
        second = (
            (mu**2 + s**2) * inside
            + 2.0 * mu * s * (pdf_a - pdf_b)
            + s**2 * (alpha * pdf_a - beta * pdf_b)
        )
        mean = lo * below + hi * above + first
        variance = lo**2 * below + hi**2 * above + second - mean**2
        return mean, np.maximum(variance, 0.0)

    def observed_variance(self, means, a: float, b: float):
        """Variance of clipped pixels whose clipped mean is ``means``."""
        mean, variance = self.moments(self.grid, np.maximum(a * self.grid + b, 0.0))
        return np.interp(means, np.maximum.accumulate(mean), variance)


def _fit_clipped(y, v, n, clipping: _Clipping, *, slope: bool, start):
    """:func:`_fit_line` for clipped data: fit ``v`` against the clipped model."""
    from scipy.optimize import least_squares

    scale = float(np.max(v)) if v.size else 0.0
    if scale <= 0.0:
        return 0.0, 0.0, np.inf
    floor = 1e-6 * scale
    slope = slope and y.size >= 3 and np.ptp(y) > 0

    def predict(p):
        a, b = (p[0] * scale, p[1] * scale) if slope else (0.0, p[0] * scale)
        return clipping.observed_variance(y, a, b)

    a0, b0 = start
    p = np.array([a0, b0] if slope else [b0], float) / scale
    p = np.maximum(p, 1e-6)
    se_a = np.inf
    for _ in range(2):
        w = n / (_VARIANCE_FACTOR * np.maximum(predict(p), floor) ** 2)
        root = np.sqrt(w)
        result = least_squares(
            lambda q: root * (v - predict(q)), p, bounds=(0.0, np.inf), xtol=1e-6, ftol=1e-6
        )
        p = result.x
    if slope:
        chi2 = 2.0 * result.cost / max(y.size - 2, 1)
        jac = result.jac
        try:
            cov = np.linalg.inv(jac.T @ jac)
            se_a = float(np.sqrt(max(cov[0, 0], 0.0) * max(chi2, 1.0))) * scale
        except np.linalg.LinAlgError:
            se_a = np.inf
        return float(p[0] * scale), float(p[1] * scale), se_a
    return 0.0, float(p[0] * scale), se_a


@dataclass
class _ChannelFit:
    a: float  # Poisson-Gaussian fit
    b: float
    b_gaussian: float  # the a = 0 fit
    signal_dependent: bool  # what model="auto" says for this channel
    t_statistic: float = 0.0  # a / se(a)
    ratio: float = 1.0  # fitted variance, 95th over 5th intensity percentile
    # The level sets of the final fit: intensity, variance, sample count.
    level_sets: tuple = (np.empty(0), np.empty(0), np.empty(0))


def _wavelet_samples(x: np.ndarray):
    """Noise samples and their context, from the phases of one Haar level.

    Returns flat arrays ``(detail, energy, mean, window_mean, flat)``, sorted
    by ``mean``: the absolute diagonal detail; the mean energy of the other
    detail bands over the texture window; the local mean over 3 blocks per
    axis; the local mean over the texture window; and whether more than
    :data:`_FLAT_SHARE` of the window's blocks are exactly constant.

    Each of the ``2**ndim`` shifted decimated transforms gives a set of
    samples in which the bands are independent for white noise; together
    they hold every block of the image. Large images use fewer phases, then
    a regular subset, so that at most :data:`_MAX_SAMPLES` samples are kept.
    """
    from scipy.ndimage import uniform_filter

    nd = x.ndim
    side = [idx for idx in product((0, 1), repeat=nd) if 0 < sum(idx) < nd]
    # Unshifted and fully shifted first: those two overlap the least.
    shifts = sorted(product((0, 1), repeat=nd), key=lambda s: (0 < sum(s) < nd, s))
    blocks = int(np.prod([n // 2 for n in x.shape]))
    shifts = shifts[: int(np.clip(_MAX_SAMPLES // max(blocks, 1), 1, len(shifts)))]
    stride = max(1, -(-blocks // _MAX_SAMPLES))
    parts = []
    for shift in shifts:
        shifted = x[tuple(slice(s, None) for s in shift)]
        if min(shifted.shape) < 2:
            continue
        bands = _haar_level(shifted)
        detail = np.abs(bands[(1,) * nd])
        # Energy of the other detail bands (independent of the diagonal one
        # for white noise: orthonormal transform) in a window: a texture / edge
        # measure that is ~ the local noise variance on smooth regions.
        raw = sum(bands[idx] ** 2 for idx in side) / len(side)
        energy = uniform_filter(raw, size=_TEXTURE_WINDOW, mode="reflect")
        # Share of exactly constant blocks in the window: a noise-free frame
        # or a saturated area, whose neighbourhood says nothing about noise.
        constant = ((raw == 0) & (detail == 0)).astype(np.float64)
        flat = uniform_filter(constant, size=_TEXTURE_WINDOW, mode="reflect") > _FLAT_SHARE
        block_mean = bands[(0,) * nd] * 2.0 ** (-nd / 2)
        mean = uniform_filter(block_mean, size=3, mode="reflect")
        # The mean over the texture window: the test compares the window's
        # energy with the variance predicted there (not at its centre: on a
        # steep ramp in a dark region the two differ).
        window_mean = uniform_filter(block_mean, size=_TEXTURE_WINDOW, mode="reflect")
        parts.append(
            [values.ravel()[::stride] for values in (detail, energy, mean, window_mean, flat)]
        )
    samples = np.stack([np.concatenate([p[i] for p in parts]) for i in range(5)], axis=1)
    # Sort by local mean once, so that level sets are runs. A 16-bit key
    # (radix sort) is plenty: the order inside a 1/65536 step is irrelevant.
    mean = samples[:, 2]
    lo, hi = float(mean.min()), float(mean.max())
    key = ((mean - lo) * (65535.0 / (hi - lo) if hi > lo else 0.0)).astype(np.uint16)
    samples = samples[np.argsort(key, kind="stable")]
    columns = [np.ascontiguousarray(samples[:, i]) for i in range(5)]
    columns[4] = columns[4] > 0.5
    return tuple(columns)


def _estimate_channel(x: np.ndarray) -> _ChannelFit:
    from scipy.stats import chi2

    nd = x.ndim
    detail, energy, mean, window_mean, flat = _wavelet_samples(x)
    n_side = 2**nd - 2
    dof = n_side * _TEXTURE_WINDOW**nd
    threshold = chi2.ppf(_TEXTURE_QUANTILE, dof) / dof

    lo, hi = float(x.min()), float(x.max())
    clip_lo = lo if np.mean(x == lo) > _CLIP_FRACTION else -np.inf
    clip_hi = hi if np.mean(x == hi) > _CLIP_FRACTION else np.inf
    clipping = None
    if np.isfinite(clip_lo) or np.isfinite(clip_hi):
        clipping = _Clipping(clip_lo, clip_hi, lo, hi)

    def observed(means, a, b):
        if clipping is None:
            return np.maximum(a * means + b, 0.0)
        return clipping.observed_variance(means, a, b)

    # Places in exactly flat surroundings (a noise-free frame, saturated
    # areas) say nothing about the noise (an image flat everywhere reads 0).
    a = 0.0
    b = float((np.median(detail[~flat]) / _MAD_SCALE) ** 2) if not flat.all() else 0.0
    keep = ~flat
    fit = None
    for iteration in range(_ITERATIONS + 1):
        predicted = observed(mean, a, b)
        if iteration > 0:
            keep = (energy <= threshold * observed(window_mean, a, b)) & ~flat
        if clipping is not None:
            # Places (almost) entirely clipped carry no information.
            margin = _CLIP_MARGIN * np.sqrt(predicted)
            keep &= (mean - margin > clip_lo) & (mean + margin < clip_hi)
        n_keep = int(keep.sum())
        n_bins = min(_MAX_BINS, n_keep // _MIN_PER_BIN)
        if n_bins < 1:
            if fit is None:  # too few samples: one robust estimate of everything
                v = float((np.median(detail) / _MAD_SCALE) ** 2) if detail.size else 0.0
                return _ChannelFit(0.0, v, v, False)
            break
        top = float(predicted.max())
        whiten = np.maximum(predicted[keep], 1e-3 * top) if top > 0 else np.ones(n_keep)
        y_bins, v_bins, counts = _level_sets(mean[keep], detail[keep], whiten, n_bins)
        previous = (a, b)
        if clipping is None:
            a, b, se_a = _fit_line(y_bins, v_bins, counts, slope=True)
        else:
            a, b, se_a = _fit_clipped(y_bins, v_bins, counts, clipping, slope=True, start=(a, b))
        fit = (a, b, se_a, y_bins, v_bins, counts)
        if iteration > 1 and np.allclose((a, b), previous, rtol=1e-3, atol=0.0):
            break
    a, b, se_a, y_bins, v_bins, counts = fit
    if clipping is None:
        _, b_gauss, _ = _fit_line(y_bins, v_bins, counts, slope=False)
    else:
        _, b_gauss, _ = _fit_clipped(y_bins, v_bins, counts, clipping, slope=False, start=(0.0, b))
    t_statistic, ratio = 0.0, 1.0
    if a > 0:
        cumulative = np.cumsum(counts) / counts.sum()
        y_lo = y_bins[np.searchsorted(cumulative, 0.05)]
        y_hi = y_bins[min(np.searchsorted(cumulative, 0.95), y_bins.size - 1)]
        ratio = float((a * y_hi + b) / max(a * y_lo + b, 1e-300))
        t_statistic = float(a / se_a)
    signal_dependent = (
        y_bins.size >= _AUTO_MIN_BINS and t_statistic >= _AUTO_MIN_T and ratio >= _AUTO_MIN_RATIO
    )
    return _ChannelFit(
        a, b, b_gauss, bool(signal_dependent), t_statistic, ratio, (y_bins, v_bins, counts)
    )


def estimate_sigma(image, *, channel_axis=None) -> float:
    """Estimate the standard deviation of Gaussian noise in ``image``.

    A thin wrapper of :func:`skimage.restoration.estimate_sigma` (wavelet
    median absolute deviation) that accepts the same inputs as
    :func:`nlmeans.denoise` and averages over channels (leaving out exactly
    constant ones, which hold no noise to read).

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
    fine texture it reads a little above zero. A volume thinner than 16
    voxels along one axis is read on its 3-D Haar all-high-pass band, which
    has no border: scikit-image's 3-D wavelet reads it low (white noise of
    0.1 on 3 x 96 x 96 voxels: 0.073, the Haar band 0.102).

    References
    ----------
    .. [1] D. L. Donoho and I. M. Johnstone, "Ideal spatial adaptation by
       wavelet shrinkage", Biometrika 81(3), 1994.
    """
    from skimage.restoration import estimate_sigma as _sk_estimate_sigma

    image = _check_image(image)
    axis = _check_channel_axis(image, channel_axis)
    floats = to_unit_float(image)
    spatial = [i for i in range(floats.ndim) if i != axis]
    single = [i for i in spatial if floats.shape[i] == 1]
    if len(single) == len(spatial):  # one pixel (per channel): nothing to compare
        return 0.0
    if single:
        # A one-pixel axis holds no wavelet detail (a 1 x N image read about
        # 1e-17 for white noise of 0.1): read the signal along the others.
        floats = np.squeeze(floats, axis=tuple(single))
        if axis is not None:
            axis -= sum(i < axis for i in single)
        spatial = [i for i in range(floats.ndim) if i != axis]
    thinnest = min(floats.shape[i] for i in spatial)
    if len(spatial) == 3 and 2 <= thinnest < _THIN_VOLUME:
        # A thin volume: the borders of scikit-image's 3-D wavelet (db2,
        # symmetric extension) along the thin axis read white noise low
        # (3 x 96 x 96: 0.073 for 0.1). The orthonormal 3-D Haar transform
        # has no border; its all-high-pass band reads 0.102, and it stays a
        # 3-D band, little moved by texture within the slices (which a 2-D
        # reading of each slice would take for noise).
        planes = floats[None] if axis is None else np.moveaxis(floats, axis, 0)
        readings = [
            float(np.median(np.abs(_haar_level(plane)[(1, 1, 1)])) / _MAD_SCALE)
            for plane in planes
            if np.ptp(plane) > 0
        ]
        return float(np.mean(readings)) if readings else 0.0
    with warnings.catch_warnings():
        # Gray images a few pixels wide make scikit-image guess that the last
        # axis holds channels; ours says it does not. A constant image gives
        # an empty wavelet band (NaN, with warnings): its noise is 0.
        warnings.filterwarnings("ignore", message=".*channel_axis.*", category=UserWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        sigmas = _sk_estimate_sigma(floats, channel_axis=axis, average_sigmas=False)
    sigmas = np.atleast_1d(np.asarray(sigmas, dtype=np.float64))
    if axis is not None:
        # An exactly constant channel (an empty channel of a microscope's RGB,
        # a red-only picture) holds no noise to read; averaged in, it would
        # pull the others' estimate down (or, as NaN, to 0).
        planes = np.moveaxis(floats, axis, 0).reshape(floats.shape[axis], -1)
        sigmas = sigmas[np.ptp(planes, axis=1) > 0]
    sigmas = sigmas[np.isfinite(sigmas)]
    return float(np.mean(sigmas)) if sigmas.size else 0.0


def estimate_noise(image, *, channel_axis=None, model="auto") -> NoiseModel:
    """Estimate a Poisson-Gaussian (or Gaussian) noise model from one image.

    Parameters
    ----------
    image : ndarray
        2-D image or 3-D volume, optionally with a channel axis: uint8,
        uint16, float32 or float64 (integers are read on the [0, 1] scale).
    channel_axis : int or None
        Axis of the channels, if any; each channel gets its own ``(a, b)``.
    model : {"auto", "gaussian", "poisson-gaussian"}
        ``"gaussian"``: fit ``a = 0`` and ``b`` the mean noise variance.
        ``"poisson-gaussian"``: fit ``var = a y + b`` (``a, b >= 0``).
        ``"auto"``: the Poisson-Gaussian fit when its signal-dependent term
        is clearly there (see Notes), else the Gaussian one.

    Returns
    -------
    NoiseModel
        On the image's float scale. A constant image gives a Gaussian model
        with ``sigma == 0``.

    Raises
    ------
    TypeError, ValueError
        For an unsupported type or dtype, NaN/Inf, an empty image, a wrong
        ``channel_axis``, an unknown ``model``, or an image less than 2
        pixels wide along a spatial axis, each naming the parameter.

    Notes
    -----
    The method follows Foi et al. [1]_ (wavelet-domain local estimates on
    smooth level sets, a line fit, clipping modelled), with these choices:

    1. Samples: one level of the orthonormal Haar transform per channel
       (2x2 blocks; 2x2x2 in volumes), at every block position (the four
       shifted decimated transforms; fewer, then a regular subset, beyond
       about two million samples). The diagonal detail of white noise of
       variance ``v`` has variance ``v``, and signal varying along one axis
       only (ramps, straight edges along an axis) vanishes in it; it is the
       noise sample. The block mean averaged over 3 blocks per axis is the
       local clean intensity ``y``.
    2. Smooth places: the energy of the other detail bands, averaged over a
       7x7 window of blocks, must stay below the 80 % quantile of its
       noise-only distribution (a scaled chi-square) under the current model.
       For white noise those bands are independent of the diagonal one, so
       the selection does not bias the variances. Places whose window is
       mostly exactly constant (a noise-free frame) are left out.
    3. Level sets: the smooth samples sorted by ``y`` into up to 32 bins of
       equal count. Per bin, a robust scale from the median absolute detail
       (over 0.6745, with its exact small-sample bias for Gaussian samples
       removed, from the order statistic's Beta distribution) discards
       details beyond 4 robust standard deviations; the variance is the mean
       square of the rest over its truncated-normal expectation. Details are
       normalised by the current model first, so a bin spanning a range of
       intensities reads the mean of their variances. (A plain MAD reads
       low on the heavy-tailed details of low photon counts and wastes
       two thirds of the samples' information.)
    4. Fit: weighted least squares ``v = a y + b`` over the bins, weights
       ``n / v**2`` (the inverse variance of each bin's estimate), refined
       from the fitted line, ``a`` and ``b`` kept >= 0. Steps 2-4 repeat up
       to three times, starting from a Gaussian estimate on all samples.
    5. Clipping: when more than 0.1 % of a channel's pixels sit exactly at
       its minimum (or maximum), that value is taken as a clipping level. As
       in [1]_, pixels are then modelled as ``clip(N(y, a y + b))``: the fit
       compares each bin's variance with the variance of that clipped
       normal at the bin's (clipped) mean; samples whose mean is within half
       a standard deviation of the level are left out.

    ``model="auto"`` picks the Poisson-Gaussian fit when, in more than half
    of the channels, (i) ``a`` exceeds 5 of its standard errors (inflated by
    the lack of fit), (ii) the fitted variance changes by at least a factor
    1.3 between the 5th and 95th percentile of the smooth samples'
    intensities, and (iii) at least 4 bins carry the fit. Condition (ii)
    keeps weak trends (texture that changes with intensity, or an image
    with a narrow range of intensities, where the intercept is an
    extrapolation) Gaussian: there the two models differ little anyway.

    Limits: only the finest scale is seen, so spatially correlated noise
    (demosaicked, JPEG-compressed, resized or already filtered images)
    reads far below its true strength, and its ``a``/``b`` split means
    little. Fine texture that survives the smoothness test reads as noise:
    a few percent too much on photographs at low noise, far more on images
    that are texture everywhere (grass, gravel). ``b`` is the intercept of
    a line, so it is the least certain parameter where the image has few
    dark smooth places or ``b`` is small next to ``a``. Quantisation adds
    ``1/12`` of a grey level squared to ``b``. Values are on the image's
    float scale; the thresholds of ``"auto"`` do not depend on it.

    References
    ----------
    .. [1] A. Foi, M. Trimeche, V. Katkovnik, K. Egiazarian, "Practical
       Poissonian-Gaussian noise modeling and fitting for single-image
       raw-data", IEEE Trans. Image Process. 17(10), 1737-1754, 2008.
    .. [2] D. L. Donoho and I. M. Johnstone, "Ideal spatial adaptation by
       wavelet shrinkage", Biometrika 81(3), 1994.

    Examples
    --------
    >>> import numpy as np
    >>> from nlmeans.noise import estimate_noise
    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(np.linspace(0, 1, 256), (256, 1))
    >>> noisy = clean + np.sqrt(0.02 * clean + 1e-4) * rng.standard_normal(clean.shape)
    >>> m = estimate_noise(noisy)
    >>> m.kind
    'poisson-gaussian'
    """
    model, _ = _estimate(image, channel_axis, model)
    return model


def noise_level_sets(image, *, channel_axis=None, model="auto"):
    """The smooth level sets behind :func:`estimate_noise`, and its model.

    Returns ``(model, level_sets)``: the :class:`NoiseModel` that
    :func:`estimate_noise` returns for the same arguments, and per channel a
    tuple ``(y, variance, count)`` of arrays: the mean intensity of each
    level set, the noise variance measured there and its number of samples
    (what a plot of variance against intensity shows; see
    :func:`plot_noise`).
    """
    return _estimate(image, channel_axis, model)


def _estimate(image, channel_axis, model):
    image = _check_image(image)
    axis = _check_channel_axis(image, channel_axis)
    if model not in _ESTIMATE_MODELS:
        raise ValueError(f"model must be one of {', '.join(_ESTIMATE_MODELS)}; got {model!r}")
    planes = _channels_first(to_unit_float(image), axis)
    spatial = planes.shape[1:]
    if min(spatial) < 2:
        raise ValueError(
            f"image of spatial shape {spatial} is too small to estimate noise "
            "(at least 2 pixels along every spatial axis)"
        )
    fits = [_estimate_channel(plane) for plane in planes]
    level_sets = [fit.level_sets for fit in fits]
    return _choose_model(fits, model), level_sets


def _choose_model(fits, model):
    if model == "auto":
        # Channels without noise (exactly constant: a single fluorescence
        # channel saved as RGB) have no say.
        voters = [fit for fit in fits if fit.a or fit.b or fit.b_gaussian] or fits
        votes = sum(fit.signal_dependent for fit in voters)
        model = "poisson-gaussian" if 2 * votes > len(voters) else "gaussian"
    if model == "gaussian":
        return NoiseModel("gaussian", tuple(0.0 for _ in fits), tuple(f.b_gaussian for f in fits))
    return NoiseModel("poisson-gaussian", tuple(f.a for f in fits), tuple(f.b for f in fits))


# --------------------------------------------------------------------------
# Generalized Anscombe transform
# --------------------------------------------------------------------------


def _transform_inputs(name, values, model, channel_axis, *, scale_integers: bool, forward: bool):
    if not isinstance(model, NoiseModel):
        raise TypeError(f"model must be a NoiseModel, got {type(model).__name__}")
    try:
        values = _check_image(values)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from None
    if channel_axis is None:
        axis = None
    else:
        axis = _check_channel_axis(values, channel_axis)
    floats = to_unit_float(values) if scale_integers else values.astype(np.float64)
    planes = _channels_first(floats, axis)
    a, b = model._per_channel(planes.shape[0], axis)
    # A channel without noise (a = b = 0) is left as it is, which is right for
    # an exactly constant one (estimate_noise gives it a = b = 0); for any
    # other channel there is no transform to unit variance.
    empty = np.flatnonzero((a == 0) & (b == 0))
    varying = [int(c) for c in empty if forward and np.ptp(planes[c]) > 0]
    if varying:
        raise ValueError(
            f"model has no noise in channel {varying[0]} (a = b = 0), which is not "
            "constant: the generalized Anscombe transform is undefined there"
        )
    shape = (-1,) + (1,) * (planes.ndim - 1)
    return planes, a.reshape(shape), b.reshape(shape), axis


def _poissonian(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Channels transformed as Poisson-Gaussian: ``a > 0`` and an offset
    ``2 sqrt(b) / a`` within :data:`_LARGEST_OFFSET`."""
    return (a > 0) & (2.0 * np.sqrt(b) <= _LARGEST_OFFSET * a)


def generalized_anscombe(z, model: NoiseModel, *, channel_axis=None) -> np.ndarray:
    """Generalized Anscombe transform: Poisson-Gaussian noise to unit variance.

    ``f(z) = (2 / a) * sqrt(max(a z + 3/8 a**2 + b, 0))`` per channel;
    where ``a = 0``, ``f(z) = z / sqrt(b)`` (and where ``2 sqrt(b) / a >
    1e9``: such an ``a``, a fit's 1e-14 on white noise, changes nothing but
    would leave float64 no precision for the data).

    Parameters
    ----------
    z : ndarray
        Noisy data on the model's scale (integer images are read on the
        [0, 1] scale). Without ``channel_axis``, any shape (one channel).
    model : NoiseModel
        The noise; a one-channel model applies to every channel.
    channel_axis : int or None
        Axis of the channels, if any.

    Returns
    -------
    ndarray of float64
        Same shape as ``z``; its noise has variance about 1 wherever
        ``a y`` is not small next to ``a**2`` (about 1 count).

    Raises
    ------
    TypeError, ValueError
        For a ``model`` that is not a :class:`NoiseModel`, a channel with
        ``a = b = 0`` that is not constant (a constant one is returned as it
        is, and so is it by the inverse), a channel count that does not match the model, a
        wrong ``channel_axis``, or ``z`` with NaN/Inf, no elements or an
        unsupported dtype.

    Notes
    -----
    With ``z = a p + n``, ``p ~ Poisson(y / a)``, ``n ~ N(0, b)``, the
    transform is the one of Starck, Murtagh and Bijaoui, as used in [1]_.
    Arguments of the square root below 0 (possible where ``b > 0``) are set
    to 0, which the unbiased inverse accounts for.

    References
    ----------
    .. [1] M. Makitalo, A. Foi, "Optimal inversion of the generalized
       Anscombe transformation for Poisson-Gaussian noise", IEEE Trans.
       Image Process. 22(1), 91-103, 2013.
    """
    planes, a, b, axis = _transform_inputs(
        "z", z, model, channel_axis, scale_integers=True, forward=True
    )
    poisson = _poissonian(a, b)
    safe_a = np.where(poisson, a, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        stabilised = np.where(
            poisson,
            (2.0 / safe_a) * np.sqrt(np.maximum(safe_a * planes + 0.375 * safe_a**2 + b, 0.0)),
            planes / np.sqrt(np.where(poisson | (b == 0), 1.0, b)),
        )
    return _channels_back(stabilised, axis)


def _closed_form_unbiased(d: np.ndarray) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse for Poisson data.

    Mäkitalo and Foi (2011): ``d**2/4 + sqrt(3/2)/(4 d) - 11/(8 d**2) +
    5 sqrt(3/2)/(8 d**3) - 1/8``. An expectation of the forward transform is
    never below ``2 sqrt(3/8)`` (its value at 0 counts), and below about
    0.9 the expression grows again as ``d`` falls: below ``2 sqrt(3/8)`` the
    inverse is 0 (the expression is about -0.02 there, so this is continuous
    once clipped at 0).
    """
    floor = 2.0 * np.sqrt(0.375)
    safe = np.maximum(d, floor)
    r = np.sqrt(1.5)
    value = 0.25 * safe**2 + 0.25 * r / safe - 1.375 / safe**2 + 0.625 * r / safe**3 - 0.125
    return np.where(d > floor, value, 0.0)


def inverse_generalized_anscombe(d, model: NoiseModel, *, channel_axis=None, method="unbiased"):
    """Map transformed (typically denoised) data back to the model's scale.

    Parameters
    ----------
    d : ndarray
        Data in the domain of :func:`generalized_anscombe`, e.g. the output of
        a Gaussian denoiser applied to the transformed image (float; not
        rescaled).
    model : NoiseModel
        The model the forward transform used.
    channel_axis : int or None
        Axis of the channels, if any.
    method : {"unbiased", "algebraic"}
        ``"unbiased"``: the closed-form approximation of the exact unbiased
        inverse [1]_, which maps ``E[f(z) | y]`` back to ``y`` (what a good
        denoiser estimates). ``"algebraic"``: the plain inverse of ``f``,
        ``a d**2 / 4 - 3 a / 8 - b / a`` (biased low in dark regions).

    Returns
    -------
    ndarray of float64
        Same shape as ``d``. The unbiased inverse is >= 0 where the channel
        is Poissonian (``a > 0``).

    Notes
    -----
    With ``s = sqrt(b) / a`` (the Gaussian part in units of the Poisson
    gain), the unbiased inverse is ``a * max(I(d) - s**2, 0)``, ``I`` the
    closed-form unbiased inverse of the Poisson Anscombe transform of [2]_
    (0 below ``d = 2 sqrt(3/8)``, where that expression stops being
    monotone). Where ``a = 0`` (or ``2 sqrt(b) / a > 1e9``, as in the
    forward transform) both methods are the exact inverse ``sqrt(b) * d``.

    References
    ----------
    .. [1] M. Makitalo, A. Foi, "Optimal inversion of the generalized
       Anscombe transformation for Poisson-Gaussian noise", IEEE Trans.
       Image Process. 22(1), 91-103, 2013.
    .. [2] M. Makitalo, A. Foi, "A closed-form approximation of the exact
       unbiased inverse of the Anscombe variance-stabilizing
       transformation", IEEE Trans. Image Process. 20(9), 2697-2698, 2011.
    """
    if method not in _INVERSE_METHODS:
        raise ValueError(f"method must be one of {', '.join(_INVERSE_METHODS)}; got {method!r}")
    if np.asarray(d).dtype.kind != "f":
        # The transformed domain is float; integers here are most likely an
        # image on its own scale, which the forward transform reads on [0, 1].
        raise TypeError(
            f"d must be float data of the transformed domain, got dtype {np.asarray(d).dtype}"
        )
    planes, a, b, axis = _transform_inputs(
        "d", d, model, channel_axis, scale_integers=False, forward=False
    )
    poisson = _poissonian(a, b)
    safe_a = np.where(poisson, a, 1.0)
    if method == "unbiased":
        s2 = b / safe_a**2
        counts = np.maximum(_closed_form_unbiased(planes) - s2, 0.0)
        poissonian = safe_a * counts
    else:
        poissonian = safe_a * planes**2 / 4.0 - 0.375 * safe_a - b / safe_a
    gaussian = planes * np.sqrt(np.where(poisson | (b == 0), 1.0, b))
    return _channels_back(np.where(poisson, poissonian, gaussian), axis)


# --------------------------------------------------------------------------
# Picture
# --------------------------------------------------------------------------


# The figure formats plot_noise writes, by file suffix.
PLOT_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def plot_noise(
    model: NoiseModel,
    level_sets,
    path,
    *,
    max_value: float = 255.0,
    title=None,
    force=False,
    protect=(),
):
    """Write a plot of measured noise variance against intensity, with the fit.

    Parameters
    ----------
    model : NoiseModel
        The fitted model (a line per channel).
    level_sets : sequence of (y, variance, count)
        Per channel, as returned by :func:`noise_level_sets`.
    path : str or os.PathLike
        The file to write (atomically: a temporary file, then renamed); its
        suffix picks the format: ``.png``, ``.svg`` or ``.pdf``.
    max_value : float
        Axes in gray levels of this scale (255 for 8-bit images, 65535 for
        16-bit, 1 for the float scale).
    title : str, optional
        Title above the plot.
    force : bool
        Replace an existing ``path``.
    protect : sequence of paths
        Files that must never be written, whatever ``force`` says (the
        image the model was fitted on).

    Notes
    -----
    Needs matplotlib (``pip install matplotlib``, or ``nlmeans[plot]``).
    """
    fmt = PLOT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{path}: the plot is written as {', '.join(PLOT_FORMATS)} (by suffix); "
            f"got {Path(path).suffix or 'no suffix'}"
        )
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "the noise plot needs matplotlib: pip install matplotlib (or nlmeans[plot])"
        ) from None
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from .io import atomic_write_bytes

    n = len(level_sets)
    colours = ["#d62728", "#2ca02c", "#1f77b4"] if n == 3 else [None] * n
    names = ["R", "G", "B"] if n == 3 else [f"channel {c}" for c in range(n)]
    if n == 1:
        names = ["gray"]
    figure = Figure(figsize=(6.4, 4.4), dpi=100)
    axes = figure.add_subplot()
    square = max_value * max_value
    # The axis spans [0, 1] of the scale and every level set: dark-subtracted
    # data go below 0, float photon counts far above 1.
    measured = [np.asarray(y, dtype=float) for y, _, _ in level_sets if np.size(y)]
    lowest = min([0.0] + [float(y.min()) for y in measured])
    highest = max([1.0] + [float(y.max()) for y in measured])
    y_line = np.linspace(lowest, highest, 101)
    for c, (y, variance, count) in enumerate(level_sets):
        colour = colours[c] or f"C{c}"
        if np.size(y):
            sizes = 8 + 60 * np.asarray(count) / max(np.max(count), 1)
            axes.scatter(
                np.asarray(y) * max_value,
                np.asarray(variance) * square,
                s=sizes,
                color=colour,
                alpha=0.6,
                label=f"{names[c]}: smooth level sets",
            )
        m = c if model.channels > 1 else 0
        axes.plot(
            y_line * max_value,
            (model.a[m] * y_line + model.b[m]) * square,
            color=colour,
            label=f"{names[c]}: fit {model.a[m] * max_value:.3g} y + {model.b[m] * square:.3g}",
        )
    if max_value != 1:
        axes.set_xlabel(f"intensity y (of {max_value:g})")
    elif lowest < -1.0 or highest > 2.0:
        axes.set_xlabel("intensity y (the data's own values)")
    else:
        axes.set_xlabel("intensity y (of 1, float scale)")
    axes.set_ylabel("noise variance (gray levels²)" if max_value != 1 else "noise variance")
    axes.set_xlim(lowest * max_value, highest * max_value)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    axes.set_title(title or f"{model.kind} noise: variance = a·y + b")
    figure.tight_layout()
    import io as _io

    buffer = _io.BytesIO()
    figure.savefig(buffer, format=fmt)
    atomic_write_bytes(path, buffer.getvalue(), force=force, protect=protect)
