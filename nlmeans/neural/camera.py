"""Camera noise for training: clean sRGB patches through a simulated camera, in torch.

The noise of a photograph is not the white Gaussian noise networks are
usually trained on. It starts as Poisson-Gaussian noise on the sensor's
colour mosaic, and the camera's processing shapes it: demosaicking spreads
it over neighbouring pixels and channels, white balance and the colour
matrix amplify and mix it, the tone curve compresses it in bright areas,
in-camera noise reduction removes its finest grain (its chrominance most),
and JPEG quantises what is left. :func:`camera_noise` runs that chain on a
batch of clean patches, with random settings per patch, so that a network
learns noise with the spectra and signal dependence of real cameras
(the approach of Brooks et al. 2019 and Guo et al. 2019, written here for
batches on the training device, driven by one ``torch.Generator``).

References
----------
.. [1] T. Brooks, B. Mildenhall, T. Xue, J. Chen, D. Sharlet, J. T. Barron,
       "Unprocessing Images for Learned Raw Denoising", CVPR 2019.
.. [2] S. Guo, Z. Yan, K. Zhang, W. Zuo, L. Zhang, "Toward Convolutional
       Blind Denoising of Real Photographs", CVPR 2019.
.. [3] ITU-T Recommendation T.81 (JPEG), Annex K: the example quantisation
       tables; the quality scaling is libjpeg's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._color import OPPONENT

__all__ = ["camera_noise", "jpeg"]

# A typical camera-RGB -> linear sRGB matrix (rows sum to 1, so grey stays grey).
_CAM_TO_RGB = ((1.75, -0.55, -0.20), (-0.25, 1.60, -0.35), (0.05, -0.55, 1.50))
# Raw Poisson-Gaussian noise, variance a * raw + b on the [0, 1] raw scale:
# a log-uniform in [1e-4, 1e-2] (ISO ~100 to ~6400 on a typical sensor), b a
# log-uniform 10^-2.5 to 10^-1 share of a (read noise below shot noise).
_LOG10_A = (-4.0, -2.0)
_LOG10_B_OVER_A = (-2.5, -1.0)
# In-camera noise reduction, as a Gaussian blur of the noise: up to 2 pixels
# on the luminance, up to 3 on the chrominance (cameras smooth colour noise
# harder than grain). Blurs from none to strong cover the range of real
# cameras: the luminance noise of neighbouring pixels correlates 0 to 0.8
# (lag 1) across these settings.
_NR_LUMA = 2.0
_NR_CHROMA = 3.0
_JPEG_SHARE = 0.75  # patches that are JPEG-compressed, at quality 70-98
_JPEG_QUALITY = (70.0, 98.0)

_LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
) + ((99,) * 8,) * 4


def camera_noise(
    clean: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy versions of clean sRGB patches, as a simulated camera makes them.

    Parameters
    ----------
    clean : Tensor
        ``(B, 3, H, W)`` float sRGB patches in [0, 1], on ``generator``'s device.
    generator : torch.Generator
        Source of every random draw (settings and noise).

    Returns
    -------
    noisy : Tensor
        ``(B, 3, H, W)``, in [0, 1] and on the 8-bit grid, as a camera JPEG.
    level : Tensor
        ``(B,)``: the standard deviation of each patch's noise ``noisy -
        clean`` on the orthonormal luminance ``(R + G + B) / sqrt(3)``, the
        channel :func:`nlmeans.estimate_noise_level` reads camera noise on
        (for white noise of one sigma on every channel it is that sigma).

    Notes
    -----
    Per patch: the patch is "unprocessed" to linear camera RGB (inverse sRGB
    curve, inverse colour matrix: a random mix of the identity and a typical
    camera matrix; inverse white balance, red gain 1.6-2.4 and blue gain
    1.3-2.0), sampled on an RGGB mosaic, given raw noise of variance
    ``a * raw + b``, demosaicked (bilinear) and processed back. The noise is
    the difference between the processed noisy and noise-free mosaics, so
    the target stays the clean patch. In-camera noise reduction is a
    Gaussian blur of that noise, sigma uniform in [0, 2] pixels on its
    luminance and [0, 3] on its chrominance; three patches in four are then
    JPEG-compressed (4:2:0, quality 70-98), all are rounded to 8 bits.
    """
    if clean.ndim != 4 or clean.shape[1] != 3:
        raise ValueError(f"camera noise needs (B, 3, H, W) RGB patches, got {tuple(clean.shape)}")
    g, dev = generator, clean.device
    b = clean.shape[0]
    clean = clean.float()

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand((b, *shape), generator=g, device=dev)

    eye = torch.eye(3, device=dev)
    to_rgb = eye + uniform(0, 1, 1, 1) * (torch.tensor(_CAM_TO_RGB, device=dev) - eye)
    gains = torch.stack([uniform(1.6, 2.4), torch.ones(b, device=dev), uniform(1.3, 2.0)], dim=1)[
        ..., None, None
    ]
    linear = _srgb_to_linear(clean)
    camera_rgb = torch.einsum("bij,bjhw->bihw", torch.linalg.inv(to_rgb), linear) / gains
    raw = _mosaic(camera_rgb.clamp(0, 1))
    a = 10 ** uniform(*_LOG10_A)
    read = a * 10 ** uniform(*_LOG10_B_OVER_A)
    variance = a[:, None, None, None] * raw + read[:, None, None, None]
    raw_noise = variance.sqrt() * torch.randn(raw.shape, generator=g, device=dev)

    def develop(mosaic: torch.Tensor) -> torch.Tensor:
        rgb = torch.einsum("bij,bjhw->bihw", to_rgb, _demosaic(mosaic) * gains)
        return _linear_to_srgb(rgb)

    noise = develop(raw + raw_noise) - develop(raw)
    noise = _noise_reduction(noise, uniform(0, _NR_LUMA), uniform(0, _NR_CHROMA))
    noisy = (clean + noise).clamp(0, 1)
    compressed = jpeg(noisy, uniform(*_JPEG_QUALITY))
    keep = torch.rand(b, generator=g, device=dev) < _JPEG_SHARE
    noisy = torch.where(keep[:, None, None, None], compressed, torch.round(noisy * 255) / 255)
    level = ((noisy - clean).sum(dim=1) / math.sqrt(3.0)).flatten(1).std(dim=1)
    return noisy, level


def jpeg(rgb: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG compression and decompression of ``(B, 3, H, W)`` sRGB in [0, 1].

    Baseline JPEG as libjpeg does it at ``quality`` (``(B,)``, 1-100, rounded
    to an integer): YCbCr,
    chrominance subsampled 2x2 (4:2:0), 8x8 DCT, the Annex K tables scaled
    by quality, rounding to 8 bits at the end. Chrominance is upsampled
    bilinearly. Images whose sides are not multiples of 16 are padded by
    repeating their last row and column for the blocks, and cropped back.
    """
    b, _, h, w = rgb.shape
    pad_h, pad_w = -h % 16, -w % 16
    # Edge replication, as libjpeg fills partial blocks.
    x = F.pad(rgb.float(), (0, pad_w, 0, pad_h), mode="replicate") * 255
    r, gr, bl = x.unbind(1)
    y = 0.299 * r + 0.587 * gr + 0.114 * bl
    cb = -0.168736 * r - 0.331264 * gr + 0.5 * bl
    cr = 0.5 * r - 0.418688 * gr - 0.081312 * bl
    chroma = F.avg_pool2d(torch.stack([cb, cr], dim=1), 2)
    q = torch.round(quality.float()).clamp(1, 100)  # libjpeg's quality is an integer
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)[:, None, None]
    tables = []
    for table in (_LUMA_TABLE, _CHROMA_TABLE):
        t = torch.tensor(table, dtype=torch.float32, device=rgb.device)
        tables.append(torch.floor((t * scale + 50) / 100).clamp(1, 255))
    y = _quantise_blocks(y - 128, tables[0]) + 128
    chroma = torch.stack([_quantise_blocks(c, tables[1]) for c in chroma.unbind(1)], dim=1)
    cb, cr = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False).unbind(1)
    out = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=1)
    return (torch.round(out).clamp(0, 255) / 255)[..., :h, :w]


def _quantise_blocks(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """8x8 DCT of ``(B, H, W)``, rounded to multiples of ``table`` (``(B, 8, 8)``), inverted."""
    b, h, w = plane.shape
    n = torch.arange(8, device=plane.device, dtype=torch.float32)
    # Orthonormal DCT-II: for 8x8 blocks it is exactly JPEG's forward DCT.
    dct = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    dct[0] /= math.sqrt(2)
    blocks = plane.reshape(b, h // 8, 8, w // 8, 8).transpose(2, 3)
    coef = dct @ blocks @ dct.T
    step = table[:, None, None]
    coef = torch.round(coef / step) * step
    return (dct.T @ coef @ dct).transpose(2, 3).reshape(b, h, w)


def _srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    # Odd-symmetric below zero, so that noise around black is not clipped
    # before the end of the chain.
    m = x.abs()
    curve = torch.where(
        m <= 0.0031308, 12.92 * m, 1.055 * m.clamp_min(0.0031308) ** (1 / 2.4) - 0.055
    )
    return torch.sign(x) * curve


def _bayer_masks(h: int, w: int, device) -> torch.Tensor:
    """``(1, 3, h, w)`` 0/1 masks of the R, G and B sites of an RGGB mosaic."""
    yy = torch.arange(h, device=device)[:, None] % 2
    xx = torch.arange(w, device=device)[None, :] % 2
    red = (yy == 0) & (xx == 0)
    blue = (yy == 1) & (xx == 1)
    return torch.stack([red, ~(red | blue), blue]).float()[None]


def _mosaic(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb * _bayer_masks(*rgb.shape[-2:], rgb.device)).sum(dim=1, keepdim=True)


def _demosaic(raw: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaicking of an RGGB mosaic ``(B, 1, H, W)``, as normalised
    convolution (each channel: the mean of its nearest sites, border included)."""
    masks = _bayer_masks(*raw.shape[-2:], raw.device)
    # Red and blue: their sites form a 2x2 lattice, so the nearest are up to
    # diagonal neighbours. Green: its sites form a quincunx, so only the four
    # edge neighbours count (a green site's diagonal neighbours are green
    # too, and must not be averaged into its own measurement).
    red_blue = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]])
    green = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]])
    kernels = torch.stack([red_blue, green, red_blue])[:, None].to(raw.device)
    sums = F.conv2d(raw * masks, kernels, padding=1, groups=3)
    weights = F.conv2d(masks, kernels, padding=1, groups=3)
    return sums / weights


def _noise_reduction(noise: torch.Tensor, luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of the noise's luminance (sigma ``luma``) and of its two
    chrominance channels (sigma ``chroma``), per patch, in an orthonormal
    opponent basis."""
    basis = torch.as_tensor(OPPONENT, dtype=torch.float32, device=noise.device)
    opponent = torch.einsum("ij,bjhw->bihw", basis, noise)
    sigmas = torch.stack([luma, chroma, chroma], dim=1)  # (B, 3)
    blurred = _gaussian_blur(opponent, sigmas, max(_NR_LUMA, _NR_CHROMA))
    return torch.einsum("ji,bjhw->bihw", basis, blurred)


def _gaussian_blur(x: torch.Tensor, sigmas: torch.Tensor, largest: float) -> torch.Tensor:
    """Separable Gaussian blur of each ``(b, c)`` plane with its own sigma
    (pixels; 0 leaves the plane as it is), reflecting at the borders. The
    kernels reach 3 x ``largest`` (no sigma above it), a bound known without
    reading ``sigmas`` back from the device."""
    b, c, h, w = x.shape
    radius = max(1, math.ceil(3 * largest))
    radius = min(radius, h - 1, w - 1)
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    s = sigmas.reshape(-1, 1).clamp_min(1e-3)
    taps = torch.exp(-0.5 * (offsets / s) ** 2)
    taps = taps / taps.sum(dim=1, keepdim=True)  # (b*c, 2r+1)
    planes = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="reflect")
    planes = F.conv2d(planes, taps[:, None, :, None], groups=b * c)
    planes = F.conv2d(planes, taps[:, None, None, :], groups=b * c)
    return planes.reshape(b, c, h, w)
