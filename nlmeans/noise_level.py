"""How strong the noise of one image is, white or spatially correlated.

:func:`nlmeans.estimate_sigma` reads the finest wavelet scale, which is right
for white noise. Photographs from cameras carry noise that demosaicking,
in-camera filtering and JPEG have made spatially correlated: most of its
energy sits at coarser scales, and the finest scale reads it an order of
magnitude too weak, so the automatic path denoised real photographs hardly
at all. :func:`estimate_noise_level` measures the noise at two scales and
the correlation of the residual in the flattest parts of the image, tells
white from correlated noise, and gives the sigma that the automatic
parameters use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from ._checks import _check_channel_axis, _check_image
from .io import to_unit_float
from .noise import estimate_sigma

__all__ = ["NoiseLevel", "estimate_noise_level"]

# Flat tiles: side, the share of tiles kept (the flattest), at least this
# many, and the smoothing (pixels) of the gradient that ranks them.
_TILE = 16
_FLAT_SHARE = 0.1
_MIN_TILES = 8
_RANK_SMOOTHING = 2.0
# Correlated noise is declared between these bounds of the two tests, with a
# linear ramp in between so that sigma changes continuously with the image:
# the lag-1 correlation of the flat tiles' residual (white noise at sigma >= 15
# reads <= 0.14 on Set12, McMaster and CBSD432; demosaicked + JPEG noise
# 0.36-0.73), and the coarse-to-fine ratio of the wavelet estimates (white
# noise at sigma >= 5: <= 1.6 but for texture everywhere; camera noise 2.8-7).
_CORRELATION_RAMP = (0.25, 0.35)
_RATIO_RAMP = (2.0, 3.0)
# Correlated noise is denoised with sigma = _COARSE_SCALE * coarse_sigma:
# the multiple with which ``fast`` did best on CBSD432 photographs put through
# two simulated cameras (benchmarks/fit_correlated.py: pooled PSNR 33.33,
# 33.48, 33.06 dB at 0.5, 0.75, 1.0). Fitted there, never on evaluation images.
_COARSE_SCALE = 0.75


@dataclass(frozen=True)
class NoiseLevel:
    """The noise strength of one image, as :func:`estimate_noise_level` found it.

    All values are standard deviations on the image's float scale ([0, 1]
    for integer images), except the two unitless diagnostics.

    Attributes
    ----------
    sigma : float
        The sigma that automatic parameters use: ``white_sigma`` for white
        noise, 0.75 ``coarse_sigma`` for correlated noise (the multiple
        fitted on simulated cameras, see Notes), and the geometric
        interpolation of the two in between.
    white_sigma : float
        :func:`nlmeans.estimate_sigma`: the finest wavelet scale.
    coarse_sigma : float
        The same estimate on the image averaged over 2x2 blocks, times 2, so
        that white noise reads the same at both scales. Colour images (3
        channels) are read on their orthonormal luminance
        ``(R + G + B) / sqrt(3)``, see Notes.
    flat_correlation : float
        Lag-1 correlation of what is left of the flattest 16x16 tiles after
        a plane fit: near 0 for white noise.
    correlated : float
        How far the image was judged to hold correlated noise, from 0
        (white: ``sigma == white_sigma``) to 1.
    """

    sigma: float
    white_sigma: float
    coarse_sigma: float
    flat_correlation: float
    correlated: float

    def as_dict(self) -> dict:
        return asdict(self)


def _ramp(value: float, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(np.clip((value - lo) / (hi - lo), 0.0, 1.0))


def _block_mean(planes: np.ndarray) -> np.ndarray:
    """Average over 2x2 blocks of the two spatial axes (channels first)."""
    h, w = planes.shape[1] // 2 * 2, planes.shape[2] // 2 * 2
    p = planes[:, :h, :w]
    return 0.25 * (p[:, 0::2, 0::2] + p[:, 1::2, 0::2] + p[:, 0::2, 1::2] + p[:, 1::2, 1::2])


def _flat_correlation(luminance: np.ndarray) -> float:
    """Lag-1 correlation of the plane-fit residual of the flattest tiles."""
    t = _TILE
    rows, cols = luminance.shape[0] // t, luminance.shape[1] // t
    gy, gx = np.gradient(ndi.gaussian_filter(luminance, _RANK_SMOOTHING))
    energy = (gx * gx + gy * gy)[: rows * t, : cols * t]
    score = energy.reshape(rows, t, cols, t).mean(axis=(1, 3)).ravel()
    keep = max(_MIN_TILES, int(_FLAT_SHARE * score.size))
    order = np.argsort(score, kind="stable")[:keep]
    tiles = luminance[: rows * t, : cols * t].reshape(rows, t, cols, t).transpose(0, 2, 1, 3)
    tiles = tiles.reshape(-1, t * t)[order]
    # Residual after the least-squares plane a + b*y + c*x of each tile.
    yy, xx = np.mgrid[0:t, 0:t] / (t - 1) - 0.5
    design = np.stack([np.ones(t * t), yy.ravel(), xx.ravel()], axis=1)
    residual = (tiles - tiles @ np.linalg.pinv(design).T @ design.T).reshape(-1, t, t)
    power = float(np.mean(residual * residual))
    if power <= 0.0:
        return 0.0
    lag = 0.5 * (
        np.mean(residual[:, :, 1:] * residual[:, :, :-1])
        + np.mean(residual[:, 1:, :] * residual[:, :-1, :])
    )
    return float(lag / power)


def estimate_noise_level(image, *, channel_axis=None) -> NoiseLevel:
    """Estimate the noise sigma of one image, white or spatially correlated.

    Parameters
    ----------
    image : ndarray
        2-D image, optionally with a channel axis (3-D volumes: see Notes),
        uint8, uint16, float32 or float64.
    channel_axis : int or None, optional
        Axis of the channels, if any.

    Returns
    -------
    NoiseLevel
        ``sigma`` is what :func:`nlmeans.denoise` uses when no sigma is
        given; the other fields say how it was found.

    Raises
    ------
    TypeError, ValueError
        For the inputs :func:`nlmeans.denoise` rejects, each naming the
        parameter.

    Notes
    -----
    Two tests must both say "correlated":

    1. The coarse-to-fine ratio of the wavelet estimates, averaged over
       the channels (for colour images, the luminance reading of
       ``coarse_sigma`` serves only the strength, see below). White noise
       reads the same at both scales (ratio 1; up to 1.6 at sigma 5 on
       photographs, where texture adds to the coarse scale). Demosaicked and
       JPEG-compressed noise keeps most of its energy below the finest
       scale: the ratio is 3 to 7 on real camera photographs.
    2. The lag-1 correlation of the residual (after a plane fit) of the 10 %
       flattest 16x16 tiles of the luminance: at most 0.14 for white noise
       at sigma >= 15, 0.36 to 0.73 for camera noise.

    Each test ramps linearly between two bounds; their product is
    ``correlated``, and ``sigma = white_sigma ** (1 - c) * (0.75 *
    coarse_sigma) ** c``.

    Colour images are read on the luminance because camera noise lives
    there: demosaicking and in-camera chroma smoothing move R, G and B
    together. On the PolyU photographs [2]_ the shot minus the reference
    has 6.01 grey levels of luminance noise against 2.40 and 2.21 in the
    two chrominance channels (``benchmarks/real_noise_strength.py``).

    The multiple 0.75 was fitted on CBSD432 photographs put through two
    simulated cameras (Poisson-Gaussian raw noise, RGGB demosaicking, JPEG
    at quality 75 to 97; the second with white balance, a colour matrix and
    the sRGB curve, after Brooks et al. [3]_), where ``fast`` does best at
    0.75 ``coarse_sigma`` (``benchmarks/fit_correlated.py``). How much of
    the noise the 2x2 scale reads depends on its spectrum and on the
    image's texture: on those simulations ``coarse_sigma`` is 1.58 times
    the true luminance noise, on PolyU 0.71 times, while ``fast`` does best
    at 0.97 and 1.2 times the true luminance noise. So the automatic path
    still under-smooths real photographs (PolyU: 37.17 dB automatic against
    37.81 with 1.2 times each photograph's true noise); a given ``sigma``
    does better.

    Limits: a clean photograph that is fine texture everywhere (foliage,
    gravel), already JPEG-compressed, can pass both tests and read as
    correlated noise of a few grey levels; give ``sigma`` (or
    ``noise="white"`` in :func:`nlmeans.denoise`) to override. Noise
    correlated over more than a few pixels (heavily resized images) is
    measured only as far as the 2x2 scale sees it. Images smaller than
    32x32 pixels and 3-D volumes are taken as white noise
    (``sigma == white_sigma``).

    References
    ----------
    .. [1] D. L. Donoho and I. M. Johnstone, "Ideal spatial adaptation by
       wavelet shrinkage", Biometrika 81(3), 1994.
    .. [2] J. Xu, H. Li, Z. Liang, D. Zhang and L. Zhang, "Real-world noisy
       image denoising: a new benchmark", arXiv:1804.02603, 2018.
    .. [3] T. Brooks, B. Mildenhall, T. Xue, J. Chen, D. Sharlet and J. T.
       Barron, "Unprocessing images for learned raw denoising", CVPR 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from nlmeans import estimate_noise_level
    >>> rng = np.random.default_rng(0)
    >>> noisy = 0.5 + 0.1 * rng.standard_normal((128, 128))
    >>> level = estimate_noise_level(noisy)
    >>> level.correlated, round(level.sigma, 2)
    (0.0, 0.1)
    """
    image = _check_image(image)
    axis = _check_channel_axis(image, channel_axis)
    white = estimate_sigma(image, channel_axis=axis)
    floats = to_unit_float(image)
    planes = floats[None] if axis is None else np.moveaxis(floats, axis, 0)
    if planes.ndim != 3 or min(planes.shape[1:]) < 2 * _TILE or white <= 0.0:
        return NoiseLevel(white, white, white, 0.0, 0.0)
    coarse = 2.0 * estimate_sigma(_block_mean(planes), channel_axis=0)
    correlation = _flat_correlation(planes.mean(axis=0))
    weight = _ramp(correlation, _CORRELATION_RAMP) * _ramp(coarse / white, _RATIO_RAMP)
    if planes.shape[0] == 3:
        # Colour: the strength of correlated noise is read on the orthonormal
        # luminance (R + G + B) / sqrt(3). White noise of equal strength in
        # R, G and B reads the same there as in each channel. Demosaicking and
        # in-camera chroma smoothing make camera noise move R, G and B
        # together: most of it is luminance noise, up to sqrt(3) times the
        # per-channel strength, and the luminance is what the opponent path
        # weighs its patches on; the per-channel mean read about 0.6 of it
        # on PolyU. The tests above stay per channel: texture, which R, G and B share, weighs
        # sqrt(3) times more on the luminance and would read as noise there.
        luminance = planes.sum(axis=0)[None] / np.sqrt(3.0)
        coarse = 2.0 * estimate_sigma(_block_mean(luminance), channel_axis=0)
    sigma = white if weight == 0.0 else white ** (1 - weight) * (_COARSE_SCALE * coarse) ** weight
    return NoiseLevel(float(sigma), white, float(coarse), correlation, weight)
