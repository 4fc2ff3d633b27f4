"""Signal-dependent noise: a Poisson-Gaussian model and the generalized Anscombe
variance-stabilizing transform.

A :class:`NoiseModel` says how noisy each channel is as a function of the
clean intensity ``y``: ``var[z | y] = a * y + b`` on the image's float scale
([0, 1] for integer images, as everywhere in nlmeans). Additive white
Gaussian noise is the special case ``a = 0``, ``b = sigma**2``.

:func:`generalized_anscombe` maps Poisson-Gaussian data to data whose noise
has unit variance everywhere (so a denoiser made for Gaussian noise applies),
and :func:`inverse_generalized_anscombe` maps a denoised result back without
the bias that the algebraic inverse leaves in dark regions.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ._denoise import _check_channel_axis, _check_image, _check_real
from .io import to_unit_float

__all__ = [
    "NOISE_KINDS",
    "NoiseModel",
    "generalized_anscombe",
    "inverse_generalized_anscombe",
]

#: The kinds of :class:`NoiseModel`.
NOISE_KINDS = ("gaussian", "poisson-gaussian")
_INVERSE_METHODS = ("unbiased", "algebraic")


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
        if (
            isinstance(item, numbers.Real)
            and not isinstance(item, bool)
            and float(item) < 0
        ):
            if name == "a":
                raise ValueError(
                    f"{label} must be non-negative (variance cannot decrease with "
                    f"intensity in this model), got {float(item)}"
                )
            raise ValueError(
                f"{label} must be non-negative: a*y + b would be a negative variance "
                f"at black (y = 0), got {float(item)}"
            )
        out.append(_check_real(label, item, positive=False))
    return tuple(out)


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
            raise ValueError(
                f"kind must be one of {', '.join(NOISE_KINDS)}; got {self.kind!r}"
            )
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
                raise ValueError(
                    f"channel must be given for a model with {self.channels} channels"
                )
            return 0
        if isinstance(channel, bool) or not isinstance(channel, numbers.Integral):
            raise TypeError(f"channel must be an int or None, got {channel!r}")
        if not -self.channels <= channel < self.channels:
            raise ValueError(
                f"channel={channel} is out of range for a model with {self.channels} "
                "channel(s)"
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
                f"along channel_axis={axis}" if axis is not None
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
# Generalized Anscombe transform
# --------------------------------------------------------------------------


def _transform_inputs(name, values, model, channel_axis, *, scale_integers: bool):
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
    empty = np.flatnonzero((a == 0) & (b == 0))
    if empty.size:
        raise ValueError(
            f"model has no noise in channel {int(empty[0])} (a = b = 0): the "
            "generalized Anscombe transform is undefined there"
        )
    shape = (-1,) + (1,) * (planes.ndim - 1)
    return planes, a.reshape(shape), b.reshape(shape), axis


def generalized_anscombe(z, model: NoiseModel, *, channel_axis=None) -> np.ndarray:
    """Generalized Anscombe transform: Poisson-Gaussian noise to unit variance.

    ``f(z) = (2 / a) * sqrt(max(a z + 3/8 a**2 + b, 0))`` per channel;
    where ``a = 0``, ``f(z) = z / sqrt(b)``.

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
        ``a = b = 0``, a channel count that does not match the model, a
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
    planes, a, b, axis = _transform_inputs("z", z, model, channel_axis, scale_integers=True)
    poisson = a > 0
    safe_a = np.where(poisson, a, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        stabilised = np.where(
            poisson,
            (2.0 / safe_a) * np.sqrt(np.maximum(safe_a * planes + 0.375 * safe_a**2 + b, 0.0)),
            planes / np.sqrt(np.where(poisson, 1.0, b)),
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
    value = (
        0.25 * safe**2 + 0.25 * r / safe - 1.375 / safe**2 + 0.625 * r / safe**3 - 0.125
    )
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
        Same shape as ``d``. The unbiased inverse is >= 0 where ``a > 0``.

    Notes
    -----
    With ``s = sqrt(b) / a`` (the Gaussian part in units of the Poisson
    gain), the unbiased inverse is ``a * max(I(d) - s**2, 0)``, ``I`` the
    closed-form unbiased inverse of the Poisson Anscombe transform of [2]_
    (0 below ``d = 2 sqrt(3/8)``, where that expression stops being
    monotone). Where ``a = 0`` both methods are the exact inverse
    ``sqrt(b) * d``.

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
        raise ValueError(
            f"method must be one of {', '.join(_INVERSE_METHODS)}; got {method!r}"
        )
    planes, a, b, axis = _transform_inputs("d", d, model, channel_axis, scale_integers=False)
    poisson = a > 0
    safe_a = np.where(poisson, a, 1.0)
    if method == "unbiased":
        s2 = b / safe_a**2
        counts = np.maximum(_closed_form_unbiased(planes) - s2, 0.0)
        poissonian = safe_a * counts
    else:
        poissonian = safe_a * planes**2 / 4.0 - 0.375 * safe_a - b / safe_a
    gaussian = planes * np.sqrt(np.where(poisson, 1.0, b))
    return _channels_back(np.where(poisson, poissonian, gaussian), axis)
