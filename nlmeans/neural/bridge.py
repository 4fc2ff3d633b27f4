"""Classical non-local means written as a (fixed, not learned) non-local block.

Buades, Coll and Morel's non-local means is the ancestor of the non-local
neural block: both compute ``y_i = (1/C_i) sum_j f(i, j) g(x_j)``. This module
evaluates the classical filter with torch operations, in the windowed form
of :mod:`nlmeans.neural.block` (a loop over the ``(2d+1)^2`` search offsets
that accumulates a numerator and a denominator), so that it

* runs wherever the tensors are (CPU or CUDA),
* never stores an ``N x N`` affinity matrix, and
* matches the ``"exact"`` method of :func:`nlmeans.denoise` (Gaussian
  weighted patch distance).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ClassicalNonLocalMeans", "classical_non_local_means"]


def _check_parameters(h: object, sigma: object, patch_size: object, patch_distance: object) -> None:
    if isinstance(h, bool) or not isinstance(h, (int, float)) or not math.isfinite(h) or h <= 0:
        raise ValueError(f"h must be a finite number > 0, got {h!r}")
    if (
        isinstance(sigma, bool)
        or not isinstance(sigma, (int, float))
        or not math.isfinite(sigma)
        or sigma < 0
    ):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if (
        isinstance(patch_size, bool)
        or not isinstance(patch_size, int)
        or patch_size < 1
        or patch_size % 2 == 0
    ):
        raise ValueError(f"patch_size must be an odd integer >= 1, got {patch_size!r}")
    if (
        isinstance(patch_distance, bool)
        or not isinstance(patch_distance, int)
        or patch_distance < 0
    ):
        raise ValueError(f"patch_distance must be an integer >= 0, got {patch_distance!r}")


def _reflect_index(n: int, pad: int, device: torch.device) -> Tensor:
    """Indices of ``numpy.pad(..., pad, mode="reflect")`` along an axis of length ``n``.

    Unlike ``F.pad(mode="reflect")`` this allows ``pad >= n`` (repeated
    reflection, as numpy does).
    """
    idx = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= n, period - idx, idx)


def _gaussian_patch_kernel(patch_size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """1-D weights g(k) ~ exp(-k^2 / (2 a^2)), a = (s - 1) / 4, summing to 1."""
    a = (patch_size - 1) / 4.0
    if a == 0:
        return torch.ones(1, dtype=dtype, device=device)
    half = patch_size // 2
    k = torch.arange(-half, half + 1, dtype=torch.float64)
    g = torch.exp(-(k**2) / (2.0 * a * a))
    return (g / g.sum()).to(dtype=dtype, device=device)


def classical_non_local_means(
    x: Tensor,
    *,
    h: float,
    sigma: float = 0.0,
    patch_size: int = 7,
    patch_distance: int = 5,
) -> Tensor:
    """Pixel-wise non-local means with a Gaussian-weighted patch distance.

    Parameters
    ----------
    x : Tensor
        Images of shape ``(B, C, H, W)``, floating point, intensities in
        ``[0, 1]`` (``h`` and ``sigma`` are on that scale). CPU or CUDA.
    h : float
        Filtering strength, ``> 0``.
    sigma : float
        Noise standard deviation subtracted from the distances (``2 sigma^2``),
        ``>= 0``.
    patch_size : int
        Odd side ``s`` of the square patches.
    patch_distance : int
        Search radius ``d``: candidates lie in the ``(2d+1) x (2d+1)`` window
        centred on the pixel, clipped at the image border.

    Returns
    -------
    Tensor
        Denoised images, same shape, dtype and device as ``x``.

    Raises
    ------
    TypeError
        ``x`` is not a floating point tensor.
    ValueError
        ``x`` is not 4-D, or a parameter is out of range.

    Notes
    -----
    For pixel ``i`` and candidate ``j`` (both inside the image),

    .. math::

        d^2(i, j) = \\frac{1}{C} \\sum_c \\sum_k G(k) (P_c(i+k) - P_c(j+k))^2,
        \\qquad w(i, j) = \\exp(-\\max(d^2 - 2\\sigma^2, 0) / h^2),

    and the output is ``sum_j w(i, j) x(j) / sum_j w(i, j)``. ``P`` is ``x``
    padded by reflection (numpy's ``"reflect"``, which is torch's
    ``"reflect"``), ``G(a, b) = g(a) g(b)`` with ``g(k) ~ exp(-k^2 / (2 a^2))``,
    ``a = (s - 1) / 4``, normalised so that ``G`` sums to 1. The pixel's own
    weight comes from the formula (``d^2 = 0``, so ``w = 1``).

    As a non-local block: ``theta(x_i) = phi(x_i)`` is the patch around ``i``
    scaled by ``sqrt(G / C)`` (fixed, not learned), ``g`` is the identity,
    ``f(i, j) = exp(-max(||theta_i - phi_j||^2 - 2 sigma^2, 0) / h^2)``,
    ``C_i = sum_j f(i, j)``, the window is the search window, and there is no
    ``W_z`` and no residual connection. For ``sigma = 0``,
    ``f = exp(2 theta_i^T phi_j / h^2) exp(-||theta_i||^2 / h^2)
    exp(-||phi_j||^2 / h^2)``: the embedded Gaussian with scale ``2 / h^2``
    and a per-key bias (the per-query factor cancels in ``C_i``).

    The loop over the ``(2d+1)^2`` offsets keeps ``O(C H W)`` memory per
    step; no ``N x N`` matrix is formed.

    References
    ----------
    .. [1] A. Buades, B. Coll, J.-M. Morel, "A non-local algorithm for image
       denoising", CVPR 2005.
    .. [2] X. Wang, R. Girshick, A. Gupta, K. He, "Non-local Neural Networks",
       CVPR 2018.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating point tensor in [0, 1], got dtype {x.dtype}")
    if min(x.shape) == 0:
        raise ValueError(f"x must not be empty, got shape {tuple(x.shape)}")
    _check_parameters(h, sigma, patch_size, patch_distance)

    batch, channels, height, width = x.shape
    half = patch_size // 2
    d = patch_distance
    pad = half + d
    device = x.device
    # P(i + k) for every i and every offset up to pad: (B, C, H + 2p, W + 2p)
    rows = _reflect_index(height, pad, device)
    cols = _reflect_index(width, pad, device)
    padded = x.index_select(2, rows).index_select(3, cols)

    g = _gaussian_patch_kernel(patch_size, x.dtype, device)
    g_rows = g.view(1, 1, patch_size, 1)
    g_cols = g.view(1, 1, 1, patch_size)
    h2 = float(h) ** 2
    two_sigma2 = 2.0 * float(sigma) ** 2

    ext_h, ext_w = height + 2 * half, width + 2 * half
    ref = padded[:, :, d : d + ext_h, d : d + ext_w]  # P(i + k): (B, C, H + 2f, W + 2f)
    pos_r = torch.arange(height, device=device).view(height, 1)
    pos_c = torch.arange(width, device=device).view(1, width)

    numerator = torch.zeros_like(x)  # (B, C, H, W)
    denominator = x.new_zeros(batch, 1, height, width)  # (B, 1, H, W)
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            if abs(dy) >= height or abs(dx) >= width:
                continue  # no pixel has this candidate inside the image
            # Candidate j = i + (dy, dx) must lie inside the image.
            valid = (
                (pos_r + dy >= 0) & (pos_r + dy < height) & (pos_c + dx >= 0) & (pos_c + dx < width)
            )  # (H, W)
            cand = padded[:, :, d + dy : d + dy + ext_h, d + dx : d + dx + ext_w]  # P(j + k)
            diff = (ref - cand).square().mean(dim=1, keepdim=True)  # (B, 1, H + 2f, W + 2f)
            dist = F.conv2d(F.conv2d(diff, g_rows), g_cols)  # (B, 1, H, W)
            w = torch.exp(-torch.clamp(dist - two_sigma2, min=0.0) / h2) * valid
            centre = cand[:, :, half : half + height, half : half + width]  # x(j): (B, C, H, W)
            numerator = numerator + w * centre
            denominator = denominator + w
    return numerator / denominator


class ClassicalNonLocalMeans(nn.Module):
    """Classical non-local means as a module with fixed (not learned) embeddings.

    ``ClassicalNonLocalMeans(h, sigma, patch_size, patch_distance)(x)`` is
    :func:`classical_non_local_means` with stored parameters; it has no
    trainable parameters and works on CPU or CUDA tensors of shape
    ``(B, C, H, W)`` with intensities in ``[0, 1]``.

    Parameters
    ----------
    h : float
        Filtering strength, ``> 0``.
    sigma : float
        Noise standard deviation (``2 sigma^2`` is subtracted from the patch
        distances), ``>= 0``.
    patch_size : int
        Odd patch side.
    patch_distance : int
        Search radius; the window is ``(2d+1) x (2d+1)`` clipped at the border.

    Notes
    -----
    Same weights as the ``"exact"`` method of :func:`nlmeans.denoise`; see
    :func:`classical_non_local_means` for the formula and for how it maps
    onto the non-local block (``theta = phi`` = Gaussian-weighted patches,
    ``g`` = identity, ``f = exp(-max(d^2 - 2 sigma^2, 0) / h^2)``,
    ``C = sum_j f``, window = search window, no ``W_z``, no residual).

    References
    ----------
    .. [1] A. Buades, B. Coll, J.-M. Morel, "A non-local algorithm for image
       denoising", CVPR 2005.
    .. [2] X. Wang, R. Girshick, A. Gupta, K. He, "Non-local Neural Networks",
       CVPR 2018.

    Examples
    --------
    >>> import torch
    >>> nlm = ClassicalNonLocalMeans(h=0.1, sigma=0.05, patch_size=5, patch_distance=3)
    >>> y = nlm(torch.rand(1, 1, 16, 16))
    >>> tuple(y.shape)
    (1, 1, 16, 16)
    """

    def __init__(
        self,
        h: float,
        sigma: float = 0.0,
        patch_size: int = 7,
        patch_distance: int = 5,
    ) -> None:
        super().__init__()
        _check_parameters(h, sigma, patch_size, patch_distance)
        self.h = float(h)
        self.sigma = float(sigma)
        self.patch_size = patch_size
        self.patch_distance = patch_distance

    def extra_repr(self) -> str:
        return (
            f"h={self.h}, sigma={self.sigma}, patch_size={self.patch_size}, "
            f"patch_distance={self.patch_distance}"
        )

    def embed(self, x: Tensor) -> Tensor:
        """The fixed embedding ``theta(x_i) = phi(x_i)``: weighted patches.

        Parameters
        ----------
        x : Tensor
            Images ``(B, C, H, W)``.

        Returns
        -------
        Tensor
            ``(B, C * s * s, H, W)``: the ``s x s`` patch around every pixel
            (reflect padding, extracted with :func:`torch.nn.functional.unfold`)
            multiplied by ``sqrt(G(k) / C)``, so that
            ``||embed_i - embed_j||^2`` is the patch distance ``d^2(i, j)``.
            It uses ``s^2`` times the memory of ``x``; :meth:`forward` never
            builds it (it filters the squared differences with the separable
            kernel ``G`` instead, which is the same sum).
        """
        if not isinstance(x, Tensor) or x.ndim != 4 or not x.is_floating_point():
            raise ValueError("x must be a floating point tensor of shape (B, C, H, W)")
        batch, channels, height, width = x.shape
        s = self.patch_size
        half = s // 2
        padded = x.index_select(2, _reflect_index(height, half, x.device)).index_select(
            3, _reflect_index(width, half, x.device)
        )  # (B, C, H + 2f, W + 2f)
        patches = F.unfold(padded, kernel_size=s)  # (B, C * s * s, H * W)
        g = _gaussian_patch_kernel(s, x.dtype, x.device)
        scale = torch.sqrt(torch.outer(g, g).flatten() / channels)  # (s * s,)
        patches = patches.view(batch, channels, s * s, height * width) * scale[:, None]
        return patches.view(batch, channels * s * s, height, width)

    def forward(self, x: Tensor) -> Tensor:
        """Denoise ``x`` of shape ``(B, C, H, W)``; same shape and dtype."""
        return classical_non_local_means(
            x,
            h=self.h,
            sigma=self.sigma,
            patch_size=self.patch_size,
            patch_distance=self.patch_distance,
        )
