"""Parallel Numba kernels for non-local means.

These are the compiled building blocks behind :func:`nlmeans.denoise`. They do
no validation and no padding: call them yourself only if you prepare the inputs
exactly as described here (that is what :mod:`nlmeans._denoise` does).

Array conventions (shared by every kernel)
------------------------------------------
``image``
    float32, C-contiguous, shape ``(C, Z, Y, X)``: channels first, then depth,
    rows and columns. A 2-D image has ``Z = 1``.
``padded``
    ``image`` padded by ``(0, fz, f, f)`` with NumPy's ``mode="reflect"``,
    where ``f = patch_size // 2`` and ``fz = f`` for volumes, ``0`` for 2-D.
``weights_z, weights_y, weights_x``
    float32 1-D patch weights of lengths ``2 fz + 1``, ``2 f + 1``, ``2 f + 1``.
    :func:`patch_weights` builds them for the ``"fast"`` (uniform) and
    ``"exact"`` (Gaussian) definitions.
``shifts``
    int64 array ``(n, 3)`` of search offsets ``(dz, dy, dx)`` from
    :func:`half_window_shifts` (half of the window: each unordered pair of
    pixels is visited once) or :func:`full_window_shifts`.

The patch distance between pixels ``i`` and ``j`` is::

    d2(i, j) = (1 / C) * sum_c sum_k Wz(kz) Wy(ky) Wx(kx) (P_c(i + k) - P_c(j + k))**2

and the weight ``w = exp(-max(d2 - 2 sigma**2, 0) / h**2)``. Candidates ``j``
are restricted to the image (the search window is clipped at the border).

Parallelism and determinism
---------------------------
Rows are cut into strips of :data:`STRIP_ROWS` rows, independent of the thread
count. Each strip accumulates into private buffers (with a halo of ``d`` rows
for the symmetric partner of every pair), and the buffers are summed in strip
order. Every floating-point sum therefore happens in the same order whatever
the number of threads, so results are bit-identical for any ``threads``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._checks import numba_runtime

numba_runtime()  # a fork-safe threading layer before any kernel runs

__all__ = [
    "STRIP_ROWS",
    "EXP_CUTOFF",
    "patch_weights",
    "half_window_shifts",
    "full_window_shifts",
    "exp_neg",
    "pixelwise_accumulate",
    "patchwise_aggregate",
]

#: Rows per work unit. Fixed (not derived from the thread count) so that the
#: order of every floating-point sum, hence the output, never depends on it.
STRIP_ROWS = 32

#: Weights with ``max(d2 - 2 sigma**2, 0) / h**2`` above this are set to 0
#: (``exp(-30) ~ 1e-13``: far below float32 resolution of any sum they join).
EXP_CUTOFF = 30.0

# ``fastmath`` without "nnan"/"ninf": inputs are validated for NaN/Inf in
# Python, and keeping those flags off keeps max()/comparisons meaningful.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
_JIT = dict(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")


def patch_weights(patch_size: int, kind: str) -> np.ndarray:
    """1-D patch weights whose outer product weighs a patch.

    Parameters
    ----------
    patch_size : int
        Odd patch width ``s``.
    kind : {"uniform", "gaussian"}
        ``"uniform"``: all ones (the ``"fast"`` method divides by ``s**ndim``
        itself). ``"gaussian"``: ``exp(-k**2 / (2 a**2))`` with
        ``a = (s - 1) / 4`` normalised to sum 1 (Buades et al. 2005; the
        ``"exact"`` method); ``s = 1`` gives ``[1]``.
    """
    if kind == "uniform":
        return np.ones(patch_size, dtype=np.float32)
    radius = patch_size // 2
    a = (patch_size - 1) / 4.0
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    if a == 0:
        g = np.ones(1)
    else:
        g = np.exp(-(k**2) / (2.0 * a * a))
    return (g / g.sum()).astype(np.float32)


def half_window_shifts(dz: int, d: int) -> np.ndarray:
    """Offsets ``(sz, sy, sx)`` covering each unordered pixel pair once.

    ``sy >= 0`` always (the partner of a pixel is never on an earlier row),
    which is what lets a strip keep its partners in a halo below it.
    The zero offset is excluded.
    """
    out = []
    for sy in range(0, d + 1):
        for sz in range(-dz, dz + 1):
            for sx in range(-d, d + 1):
                if sy == 0 and (sz < 0 or (sz == 0 and sx <= 0)):
                    continue
                out.append((sz, sy, sx))
    return np.array(out, dtype=np.int64).reshape(-1, 3)


def full_window_shifts(dz: int, d: int) -> np.ndarray:
    """All non-zero offsets of the ``(2dz+1) x (2d+1) x (2d+1)`` window."""
    out = [
        (sz, sy, sx)
        for sz in range(-dz, dz + 1)
        for sy in range(-d, d + 1)
        for sx in range(-d, d + 1)
        if (sz, sy, sx) != (0, 0, 0)
    ]
    return np.array(out, dtype=np.int64).reshape(-1, 3)


def weight_constants(sigma: float, h: float) -> tuple[np.float32, np.float32]:
    """``2 sigma**2`` and ``1 / h**2`` as float32, saturated instead of overflowing.

    A saturated ``1 / h**2`` keeps the limit h -> 0 exact: a zero excess still
    gives weight 1 and any positive excess weight 0 (inf would make 0 * inf
    a NaN).
    """
    big = float(np.finfo(np.float32).max) / 4
    two_sigma2 = 2.0 * sigma * sigma if sigma < 1e18 else big
    inv_h2 = 1.0 / (h * h) if h > 1e-18 else big
    return np.float32(min(two_sigma2, big)), np.float32(min(inv_h2, big))


def distance_norm(kind: str, n_channels: int, patch_size: int, fz: int = 0) -> np.float32:
    """The ``norm`` that makes the kernels' weighted sums of squares ``d2``.

    ``kind`` as :func:`patch_weights`: uniform weights are all ones, so the
    sum is divided by the patch's pixel count and the channel count; Gaussian
    weights already sum to 1, so only by the channel count. ``fz`` is the
    patch's half depth (0 for 2-D patches).
    """
    if kind == "uniform":
        return np.float32(1.0 / (n_channels * (2 * fz + 1) * patch_size * patch_size))
    return np.float32(1.0 / n_channels)


def pass_constants(method: str, patch_size: int, n_channels: int, sigma, h, fz: int = 0):
    """What one pass of ``method`` hands the kernels, on the kernels' scale.

    Returns ``(two_sigma2, inv_h2, uniform, weights, norm)``: the weight
    constants (:func:`weight_constants`), whether the patch weights are
    uniform (``"fast"``, ``"patchwise"``) or Gaussian (``"exact"``), the 1-D
    patch weights along an axis of ``patch_size`` and the distance ``norm``
    for a patch of half depth ``fz`` (0 for 2-D patches).
    """
    kind = "gaussian" if method == "exact" else "uniform"
    two_sigma2, inv_h2 = weight_constants(sigma, h)
    weights = patch_weights(patch_size, kind)
    return (
        two_sigma2,
        inv_h2,
        kind == "uniform",
        weights,
        distance_norm(kind, n_channels, patch_size, fz),
    )


@njit(inline="always", **_JIT)
def exp_neg(x):
    """``exp(-x)`` for ``0 <= x`` in float32.

    Relative error below 5e-7 for ``x <= 4`` and 2e-6 up to the cut-off (the
    float32 rounding of ``x * log2(e)`` dominates for large ``x``).

    ``x`` is split as ``x * log2(e) = n - r`` with ``|r| <= 1/2``; ``2**-r``
    comes from a degree-7 polynomial and ``2**n`` is assembled in the exponent
    bits. Unlike ``math.exp`` (a libm call here: no SVML), this vectorises.
    Arguments above :data:`EXP_CUTOFF` return 0.
    """
    t = x * np.float32(-1.4426950408889634)
    t = max(t, np.float32(-126.0))
    n = np.floor(t + np.float32(0.5))
    y = (t - n) * np.float32(0.6931471805599453)
    # Taylor series of exp(y) for |y| <= ln(2)/2: truncation error < 6e-9.
    p = np.float32(1.0 / 5040.0)
    p = p * y + np.float32(1.0 / 720.0)
    p = p * y + np.float32(1.0 / 120.0)
    p = p * y + np.float32(1.0 / 24.0)
    p = p * y + np.float32(1.0 / 6.0)
    p = p * y + np.float32(0.5)
    p = p * y + np.float32(1.0)
    p = p * y + np.float32(1.0)
    scale = np.int32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)
    if x > np.float32(EXP_CUTOFF):
        return np.float32(0.0)
    return p * scale


@njit(**_JIT)
def _shift_distances(
    padded,
    partner,
    sz,
    sy,
    sx,
    zlo,
    zhi,
    ylo,
    yhi,
    xlo,
    xhi,
    weights_z,
    weights_y,
    weights_x,
    uniform,
    norm,
    row_ring,
    column_sums,
    plane_ring,
    out,
):
    """Patch distances of pixels ``(z, y, x)`` to ``(z+sz, y+sy, x+sx)``.

    The patches of ``(z, y, x)`` are read in ``padded``, those of the partner
    pixels in ``partner``: the same array for pairs within one image, another
    time point's volume for :mod:`nlmeans._sequence_kernels`' volumes over
    time. Fills ``out[z, y - ylo, x - xlo]`` for ``z`` in ``[zlo, zhi)``, ``y`` in
    ``[ylo, yhi)``, ``x`` in ``[xlo, xhi)`` (image coordinates) with ``d2``
    (already multiplied by ``norm``).

    The squared differences of one padded row are computed once and kept in
    ``row_ring`` (``s`` rows). Along y, uniform weights use a running sum
    (O(1) per pixel); Gaussian weights a weighted sum over the ring. Along x a
    weighted sum over ``s`` neighbours, which vectorises. Along z, completed
    2-D planes wait in ``plane_ring`` and are combined; 2-D images
    (one plane) skip that step.

    Every innermost loop runs over 0-based views (``for k in range(n)``): with
    offsets inside the subscript Numba cannot rule out negative indices, and
    its wraparound check stops LLVM from vectorising the loop.
    """
    n_channels = padded.shape[0]
    size_z = weights_z.shape[0]
    size = weights_y.shape[0]
    n = xhi - xlo
    width = n + size - 1  # padded columns touched by the patches
    sums = column_sums[:width]
    for zp in range(zlo, zhi + size_z - 1):  # padded plane index
        if size_z == 1:
            plane = out[zp]
            scale = norm * weights_z[0]
        else:
            plane = plane_ring[zp % size_z]
            scale = np.float32(1.0)
        for yp in range(ylo, yhi + size - 1):  # padded row index
            ring_row = row_ring[yp % size, :width]
            if uniform and yp >= ylo + size:
                # Running sum: drop the row leaving the patch before the ring
                # slot is overwritten by the row entering it.
                for k in range(width):
                    sums[k] -= ring_row[k]
            for k in range(width):
                ring_row[k] = 0.0
            for c in range(n_channels):
                src = padded[c, zp, yp, xlo : xlo + width]
                dst = partner[c, zp + sz, yp + sy, xlo + sx : xlo + sx + width]
                for k in range(width):
                    diff = src[k] - dst[k]
                    ring_row[k] += diff * diff
            if uniform:
                if yp == ylo:
                    for k in range(width):
                        sums[k] = ring_row[k]
                else:
                    for k in range(width):
                        sums[k] += ring_row[k]
            if yp < ylo + size - 1:
                continue
            y = yp - (size - 1)  # image row whose patch ends at padded row yp
            if not uniform:
                for k in range(width):
                    sums[k] = 0.0
                for ky in range(size):
                    wy = weights_y[ky]
                    src_row = row_ring[(y + ky) % size, :width]
                    for k in range(width):
                        sums[k] += wy * src_row[k]
            dst_row = plane[y - ylo, :n]
            for k in range(n):
                dst_row[k] = 0.0
            for kx in range(size):
                wx = weights_x[kx] * scale
                part = sums[kx : kx + n]
                for k in range(n):
                    dst_row[k] += wx * part[k]
        if size_z == 1 or zp < zlo + size_z - 1:
            continue
        z = zp - (size_z - 1)
        for y in range(ylo, yhi):
            out_row = out[z, y - ylo, :n]
            for k in range(n):
                out_row[k] = 0.0
            for kz in range(size_z):
                wz = weights_z[kz] * norm
                src_row = plane_ring[(z + kz) % size_z, y - ylo, :n]
                for k in range(n):
                    out_row[k] += wz * src_row[k]


@njit(inline="always", **_JIT)
def _reduce_strips_row(
    row, num_private, den_private, max_private, numerator, denominator, max_weight, track_max
):
    """Add the private sums of the strips that hold image row ``row``, strips in order.

    ``num_private`` is ``(strips, C, Z, halo, X)``, ``den_private`` and
    ``max_private`` ``(strips, Z, halo, X)``: strip ``k`` holds rows ``[k *
    STRIP_ROWS, k * STRIP_ROWS + halo)``. The outputs are ``(C, Z, Y, X)`` and
    ``(Z, Y, X)``. Called once per row of a ``prange``; the order of the sums
    does not depend on the thread count.
    """
    n_channels = num_private.shape[1]
    n_z = num_private.shape[2]
    halo = num_private.shape[3]
    n_x = num_private.shape[4]
    last = row // STRIP_ROWS
    for k in range(last + 1):
        offset = row - k * STRIP_ROWS
        if offset >= halo:
            continue
        for zi in range(n_z):
            for c in range(n_channels):
                for x in range(n_x):
                    numerator[c, zi, row, x] += num_private[k, c, zi, offset, x]
            for x in range(n_x):
                denominator[zi, row, x] += den_private[k, zi, offset, x]
            if track_max:
                for x in range(n_x):
                    max_weight[zi, row, x] = max(
                        max_weight[zi, row, x], max_private[k, zi, offset, x]
                    )


@njit(inline="always", **_JIT)
def _normalised_weight_row(wrow, drow, crow, nrow, centre, two_sigma2, inv_h2):
    """``wrow = w / nrow`` from the distances ``drow``, or ``crow / nrow`` for the centre."""
    n = wrow.shape[0]
    if not centre:
        for k in range(n):
            excess = max(drow[k] - two_sigma2, np.float32(0.0))
            wrow[k] = exp_neg(excess * inv_h2) / nrow[k]
    else:
        for k in range(n):
            wrow[k] = crow[k] / nrow[k]


@njit(inline="always", **_JIT)
def _box_sum_2d(wbuf, box_x, box_xy, size, n_rows):
    """Sum ``wbuf`` (``(rows, X + size - 1)``) over ``size x size`` boxes: x, then y.

    ``box_x`` (``(rows, X)``) receives the sums along x; the first ``n_rows``
    rows of ``box_xy`` the sums of ``size`` rows of ``box_x``.
    """
    rows, n_x = box_x.shape
    for r in range(rows):
        dst = box_x[r]
        for x in range(n_x):
            dst[x] = 0.0
        for k in range(size):
            src = wbuf[r, k : k + n_x]
            for x in range(n_x):
                dst[x] += src[x]
    for r in range(n_rows):
        dst = box_xy[r]
        for x in range(n_x):
            dst[x] = 0.0
        for k in range(size):
            src = box_x[r + k]
            for x in range(n_x):
                dst[x] += src[x]


@njit(inline="always", **_JIT)
def _add_box_terms(out_row, box_xy, plane, n_planes, r, lo, hi, src, centre):
    """``out_row += box * (src - centre)``, the box summed over ``n_planes`` planes from ``plane``.

    The last step of every patch-wise aggregation: ``box_xy[plane + kz, r,
    lo:hi]`` are the normalised weights of the patch centres covering the
    pixels of the row, ``src`` the values at ``p + t`` and ``centre`` those
    at ``p``. Planes are added one after another, in order.
    """
    m = hi - lo
    for kz in range(n_planes):
        brow = box_xy[plane + kz, r, lo:hi]
        for k in range(m):
            out_row[k] += brow[k] * (src[k] - centre[k])


@njit(parallel=True, **_JIT)
def pixelwise_accumulate(
    image,
    padded,
    shifts,
    dz,
    d,
    weights_z,
    weights_y,
    weights_x,
    uniform,
    norm,
    two_sigma2,
    inv_h2,
    numerator,
    denominator,
    max_weight,
    track_max,
):
    """Sum ``w(i, j) (u(j) - u(i))`` and ``w(i, j)`` over all ``j != i`` in the window.

    Each pair is visited once (``shifts`` from :func:`half_window_shifts`) and
    its weight serves both pixels. On return ``numerator`` (``(C, Z, Y, X)``),
    ``denominator`` and, when ``track_max``, ``max_weight`` (``(Z, Y, X)``)
    hold the sums and the largest weight over ``j != i``; they must be zeroed
    by the caller. The weighted mean with centre weight ``c`` (1 for Buades'
    pixelwise rule) is ``u(i) + numerator / (denominator + c)``. The sums hold
    differences from the centre so that a pixel with no similar neighbour (or
    only identical ones) comes back exactly, and the caller can add the
    correction to the input at the input's own precision.
    """
    n_channels, n_z, n_y, n_x = image.shape
    size_z = weights_z.shape[0]
    size = weights_y.shape[0]
    n_strips = (n_y + STRIP_ROWS - 1) // STRIP_ROWS
    halo = STRIP_ROWS + d
    # Private accumulators, one set per strip: rows [y0, y0 + STRIP_ROWS + d).
    num_private = np.zeros((n_strips, n_channels, n_z, halo, n_x), np.float32)
    den_private = np.zeros((n_strips, n_z, halo, n_x), np.float32)
    if track_max:
        max_private = np.zeros((n_strips, n_z, halo, n_x), np.float32)
    else:
        max_private = np.zeros((n_strips, 1, 1, 1), np.float32)
    padded_width = padded.shape[3]
    for strip in prange(n_strips):
        y0 = np.int64(strip) * STRIP_ROWS  # prange indices may be unsigned
        y1 = min(n_y, y0 + STRIP_ROWS)
        row_ring = np.empty((size, padded_width), np.float32)
        column_sums = np.empty(padded_width, np.float32)
        plane_ring = np.empty((size_z, STRIP_ROWS, n_x), np.float32)
        dist = np.empty((n_z, STRIP_ROWS, n_x), np.float32)
        num = num_private[strip]
        den = den_private[strip]
        mx = max_private[strip]
        for s in range(shifts.shape[0]):
            sz = shifts[s, 0]
            sy = shifts[s, 1]
            sx = shifts[s, 2]
            ylo = y0
            yhi = min(y1, n_y - sy)
            zlo = max(0, -sz)
            zhi = min(n_z, n_z - sz)
            xlo = max(0, -sx)
            xhi = min(n_x, n_x - sx)
            if ylo >= yhi or zlo >= zhi or xlo >= xhi:
                continue
            _shift_distances(
                padded,
                padded,
                sz,
                sy,
                sx,
                zlo,
                zhi,
                ylo,
                yhi,
                xlo,
                xhi,
                weights_z,
                weights_y,
                weights_x,
                uniform,
                norm,
                row_ring,
                column_sums,
                plane_ring,
                dist,
            )
            n = xhi - xlo
            for z in range(zlo, zhi):
                for y in range(ylo, yhi):
                    r = y - y0
                    wrow = dist[z, y - ylo, :n]  # distances, then weights
                    den_a = den[z, r, xlo:xhi]
                    den_b = den[z + sz, r + sy, xlo + sx : xhi + sx]
                    for k in range(n):
                        excess = max(wrow[k] - two_sigma2, np.float32(0.0))
                        w = exp_neg(excess * inv_h2)
                        wrow[k] = w
                        den_a[k] += w
                    for k in range(n):
                        den_b[k] += wrow[k]
                    for c in range(n_channels):
                        num_a = num[c, z, r, xlo:xhi]
                        num_b = num[c, z + sz, r + sy, xlo + sx : xhi + sx]
                        u_a = image[c, z, y, xlo:xhi]
                        u_b = image[c, z + sz, y + sy, xlo + sx : xhi + sx]
                        for k in range(n):
                            num_a[k] += wrow[k] * (u_b[k] - u_a[k])
                        for k in range(n):
                            num_b[k] += wrow[k] * (u_a[k] - u_b[k])
                    if track_max:
                        mx_a = mx[z, r, xlo:xhi]
                        mx_b = mx[z + sz, r + sy, xlo + sx : xhi + sx]
                        for k in range(n):
                            mx_a[k] = max(mx_a[k], wrow[k])
                            mx_b[k] = max(mx_b[k], wrow[k])

    # Deterministic reduction: every output row adds its strips in order.
    for row in prange(n_y):
        _reduce_strips_row(
            row,
            num_private,
            den_private,
            max_private,
            numerator,
            denominator,
            max_weight,
            track_max,
        )


@njit(parallel=True, **_JIT)
def patchwise_aggregate(
    image,
    padded,
    padded_values,
    shifts,
    dz,
    d,
    f,
    fz,
    two_sigma2,
    inv_h2,
    norm,
    centre_weight,
    normaliser,
    out_numerator,
):
    """Second pass of patch-wise non-local means (IPOL 2011).

    With ``W_t(i) = w(i, i + t) / normaliser(i)`` (``centre_weight(i) /
    normaliser(i)`` for ``t = 0``), every pixel ``p`` receives::

        out_numerator(p) = sum_t (P(p + t) - u(p)) * sum_{k in patch} W_t(p - k)

    where ``i = p - k`` runs over patch centres inside the image. The weights
    come from the patches of ``padded`` (the guide, as in
    :func:`pixelwise_accumulate`); ``P`` is ``padded_values``, the values
    ``image`` padded the same way (pass ``padded`` again when the guide is the
    image itself), and ``u`` is ``image``. As ``sum_t W_t(i) = 1`` for every
    centre, the patch-wise estimate is ``u(p) + out_numerator(p) / n(p)``,
    ``n(p)`` the number of centres covering ``p``: the caller divides. Sums
    of differences from ``u(p)`` make a pixel whose patches found no similar
    patch come back exactly. ``shifts`` must come from
    :func:`full_window_shifts`; ``normaliser`` is ``sum_j w(i, j)`` including
    the centre weight (first pass, :func:`pixelwise_accumulate`).
    """
    n_channels, n_z, n_y, n_x = image.shape
    size = 2 * f + 1
    size_z = 2 * fz + 1
    ones_z = np.ones(size_z, np.float32)
    ones = np.ones(size, np.float32)
    n_strips = (n_y + STRIP_ROWS - 1) // STRIP_ROWS
    rows = STRIP_ROWS + 2 * f  # patch centres whose patches reach the strip
    padded_width = padded.shape[3]
    for strip in prange(n_strips):
        y0 = np.int64(strip) * STRIP_ROWS  # prange indices may be unsigned
        y1 = min(n_y, y0 + STRIP_ROWS)
        row_ring = np.empty((size, padded_width), np.float32)
        column_sums = np.empty(padded_width, np.float32)
        plane_ring = np.empty((size_z, rows, n_x), np.float32)
        dist = np.empty((n_z, rows, n_x), np.float32)
        # Normalised weights of the centres, zero outside the image, laid out
        # with the padding of P so that box sums need no bounds checks.
        wbuf = np.zeros((n_z + 2 * fz, rows, n_x + 2 * f), np.float32)
        box_x = np.empty((n_z + 2 * fz, rows, n_x), np.float32)
        box_xy = np.empty((n_z + 2 * fz, STRIP_ROWS, n_x), np.float32)
        for s in range(shifts.shape[0] + 1):
            if s < shifts.shape[0]:
                sz = shifts[s, 0]
                sy = shifts[s, 1]
                sx = shifts[s, 2]
            else:
                sz = 0
                sy = 0
                sx = 0
            # Centres i with rows [y0 - f, y1 + f) whose partner i + t is inside.
            ylo = max(y0 - f, 0, -sy)
            yhi = min(y1 + f, n_y, n_y - sy)
            zlo = max(0, -sz)
            zhi = min(n_z, n_z - sz)
            xlo = max(0, -sx)
            xhi = min(n_x, n_x - sx)
            wbuf[:] = 0.0
            if ylo < yhi and zlo < zhi and xlo < xhi:
                if s < shifts.shape[0]:
                    _shift_distances(
                        padded,
                        padded,
                        sz,
                        sy,
                        sx,
                        zlo,
                        zhi,
                        ylo,
                        yhi,
                        xlo,
                        xhi,
                        ones_z,
                        ones,
                        ones,
                        True,
                        norm,
                        row_ring,
                        column_sums,
                        plane_ring,
                        dist,
                    )
                n = xhi - xlo
                for z in range(zlo, zhi):
                    for y in range(ylo, yhi):
                        r = y - (y0 - f)
                        _normalised_weight_row(
                            wbuf[z + fz, r, xlo + f : xhi + f],
                            dist[z, y - ylo, :n],
                            centre_weight[z, y, xlo:xhi],
                            normaliser[z, y, xlo:xhi],
                            s == shifts.shape[0],
                            two_sigma2,
                            inv_h2,
                        )
            else:
                continue
            # Box sum of the normalised weights over the patch: x, then y, then z.
            for zz in range(n_z + 2 * fz):
                _box_sum_2d(wbuf[zz], box_x[zz], box_xy[zz], size, y1 - y0)
            # Only pixels p whose p + t lies inside the padded image can have
            # a non-zero box weight; the others would read outside P.
            pz_lo = max(0, -fz - sz)
            pz_hi = min(n_z, n_z + fz - sz)
            py_lo = max(y0, -f - sy)
            py_hi = min(y1, n_y + f - sy)
            px_lo = max(0, -f - sx)
            px_hi = min(n_x, n_x + f - sx)
            m = px_hi - px_lo
            if m <= 0:
                continue
            for z in range(pz_lo, pz_hi):
                for y in range(py_lo, py_hi):
                    r = y - y0
                    for c in range(n_channels):
                        # P(p + t) in padded coordinates.
                        src = padded_values[
                            c, z + fz + sz, y + f + sy, px_lo + f + sx : px_hi + f + sx
                        ]
                        _add_box_terms(
                            out_numerator[c, z, y, px_lo:px_hi],
                            box_xy,
                            z,
                            size_z,
                            r,
                            px_lo,
                            px_hi,
                            src,
                            image[c, z, y, px_lo:px_hi],
                        )
