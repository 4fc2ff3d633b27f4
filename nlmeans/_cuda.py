"""CUDA kernels for the classical methods (Numba's CUDA target, numba-cuda).

:func:`nlm_pass` is the GPU twin of :func:`nlmeans._denoise._nlm_pass`: the
same arguments, the same formula (see :mod:`nlmeans.kernels`), the same result
to float32 rounding. Import this module only after
:func:`nlmeans.device.cuda_unavailable_reason` returned None: it imports
``numba.cuda`` (numba-cuda's, through its redirect, when that is installed).

Design
------
One CUDA thread per output pixel; a block owns a tile of pixels and walks the
search offsets ``t`` in the same order for every pixel, keeping its sums in
registers (no atomics: every pixel's sums happen in one fixed order, so the
result is deterministic). For each offset the block computes the patch
distances of its whole tile at once, separably, in shared memory:

1. squared differences ``sum_c (P_c(q) - P_c(q + t))**2`` over the tile plus
   a halo of ``f`` pixels (each read of the padded guide is shared by the
   ``s**ndim`` patches that contain it);
2. a weighted sum of ``s`` neighbours along x, 3. along y, 4. along z (2-D
   images: a single term), each pass one ``syncthreads`` apart;
5. the weight and its contribution to the pixel's sums.

That is O(s) shared-memory reads per pixel and offset instead of the
O(s**ndim) of a direct patch comparison, and nothing but the image and the
result touches global memory: the ``(2d+1)**2`` distance maps never exist.
A batched torch version that materialises them (box distances by
``avg_pool2d``) is bound by memory traffic (105 ms for 2048 x 2048 on an H100,
issue 9); fusing the five steps is what this kernel is for. Uniform
(``"fast"``) and Gaussian (``"exact"``) patch weights run the same code with
different 1-D weights. ``"patchwise"`` runs one kernel for the centre weight
and normaliser of every pixel, then one that, per offset, turns the distances
of the tile's patch centres (tile plus a halo of ``f``) into normalised
weights and box-sums them over the patch, as
:func:`nlmeans.kernels.patchwise_aggregate` does.

The CPU kernels visit each unordered pair once and credit both pixels; on a
GPU that would need atomic adds (whose order, hence rounding, varies from run
to run), so here every pixel visits its whole window: twice the distance
work, and no write conflicts.

Why numba-cuda: the kernels stay in the project's language and compiler, are
specialised (tile, patch size, channel counts are compile-time constants, so
the patch loops unroll) and run under Numba's CUDA simulator in CI, where
there is no GPU. Triton's block programming model has no shared-memory
separable passes with ``syncthreads`` and CuPy's RawKernel means CUDA C
strings; either would be worth it only where measured clearly faster.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda

__all__ = ["nlm_pass", "choose_tile", "SHARED_BYTES"]

#: Static shared memory a block may use without opting in (every CUDA GPU).
SHARED_BYTES = 48 * 1024
#: Tile shapes ``(TX, TY, TZ)`` tried in order; the first whose shared memory
#: fits is used. 32 columns keep global reads of a row coalesced.
TILES_2D = ((32, 16, 1), (32, 8, 1), (16, 8, 1), (8, 8, 1), (8, 4, 1))
TILES_3D = ((8, 8, 8), (8, 8, 4), (8, 4, 4), (4, 4, 4), (4, 4, 2), (4, 2, 2), (2, 2, 2))
#: Value channels summed per launch (registers); more channels take more launches.
MAX_VALUE_CHANNELS = 4
_EXP_CUTOFF = 30.0  # as nlmeans.kernels.EXP_CUTOFF


def _shared_floats(kind: str, tile, f: int, fz: int) -> int:
    tx, ty, tz = tile
    if kind == "pixelwise":
        rx, ry, rz = tx + 2 * f, ty + 2 * f, tz + 2 * fz
        return rz * ry * rx + rz * ry * tx + rz * ty * tx
    wx, wy, wz = tx + 2 * f, ty + 2 * f, tz + 2 * fz
    dx, dy, dz = tx + 4 * f, ty + 4 * f, tz + 4 * fz
    return dz * dy * dx + dz * dy * wx + wz * wy * wx + wz * ty * tx


def choose_tile(volume: bool, f: int, fz: int, patchwise: bool):
    """The first tile of :data:`TILES_2D` / :data:`TILES_3D` whose shared memory fits.

    None when even the smallest does not (very large patches).
    """
    kinds = ("pixelwise", "patchwise") if patchwise else ("pixelwise",)
    for tile in TILES_3D if volume else TILES_2D:
        if all(4 * _shared_floats(k, tile, f, fz) <= SHARED_BYTES for k in kinds):
            return tile
    return None


# --------------------------------------------------------------------------
# Kernels (built per tile, patch radius and channel counts, then cached)
# --------------------------------------------------------------------------


@cuda.jit
def _reflect_pad(src, dst, fz, f):
    """``dst = numpy.pad(src, ((0, 0), (fz, fz), (f, f), (f, f)), mode="reflect")``."""
    x, y, z = cuda.grid(3)
    n_c, pz, py, px = dst.shape
    if x >= px or y >= py or z >= pz:
        return
    nz, ny, nx = src.shape[1], src.shape[2], src.shape[3]
    sz, sy, sx = z - fz, y - f, x - f
    # NumPy "reflect" mirrors about the edge pixel without repeating it; the
    # pad never exceeds the image (patches fit), so one reflection suffices.
    if sz < 0:
        sz = -sz
    elif sz >= nz:
        sz = 2 * nz - 2 - sz
    if sy < 0:
        sy = -sy
    elif sy >= ny:
        sy = 2 * ny - 2 - sy
    if sx < 0:
        sx = -sx
    elif sx >= nx:
        sx = 2 * nx - 2 - sx
    for c in range(n_c):
        dst[c, z, y, x] = src[c, sz, sy, sx]


@cuda.jit(device=True, inline="always", fastmath=True)
def _unravel(idx, ny, nx):
    """``(z, y, x)`` of the flat index ``idx`` of a C-ordered ``(*, ny, nx)`` box."""
    rz = idx // (ny * nx)
    rem = idx - rz * (ny * nx)
    ry = rem // nx
    rx = rem - ry * nx
    return rz, ry, rx


@cuda.jit(device=True, inline="always", fastmath=True)
def _box_sums(src, dst, n, tid, nt, out_y, out_x, src_y, src_x, step, size):
    """This thread's share of ``dst[i] = sum_k src[base(i) + k * step]`` for ``k < size``.

    ``dst`` holds ``n`` values of a C-ordered ``(*, out_y, out_x)`` box and
    ``src`` a ``(*, src_y, src_x)`` box; ``base(i)`` is the index in ``src``
    of ``dst``'s ``(z, y, x)``. ``step = 1`` sums along x, ``step = src_x``
    along y. Thread ``tid`` of ``nt`` takes every ``nt``-th value.
    """
    zero = np.float32(0.0)
    for idx in range(tid, n, nt):
        rz, ry, rx = _unravel(idx, out_y, out_x)
        base = (rz * src_y + ry) * src_x + rx
        total = zero
        for k in range(size):
            total += src[base + k * step]
        dst[idx] = total


@cuda.jit(device=True, inline="always", fastmath=True)
def _weight(d2, norm, two_sigma2, inv_h2):
    """``exp(-max(d2 * norm - 2 sigma**2, 0) / h**2)``, 0 beyond the cut-off."""
    zero = np.float32(0.0)
    excess = max(d2 * norm - two_sigma2, zero) * inv_h2
    if excess <= np.float32(_EXP_CUTOFF):
        return math.exp(-excess)
    return zero


@functools.lru_cache(maxsize=None)
def _pixelwise_kernel(tile, f: int, fz: int, n_guide: int, n_values: int):
    """Sums over the search window, one thread per pixel.

    ``n_values > 0``: writes ``out[c0 + v] = sum w (u_j - u_i) / (sum w + 1)``
    for ``v < n_values`` (the ``"fast"``/``"exact"`` correction).
    ``n_values == 0``: writes the patchwise centre weight (largest other
    weight, 1 if none) to ``out`` and ``sum w + centre`` to ``out2``.
    """
    TX, TY, TZ = tile
    S, SZ = 2 * f + 1, 2 * fz + 1
    RX, RY, RZ = TX + 2 * f, TY + 2 * f, TZ + 2 * fz
    N_DIFF, N_HX, N_HY = RZ * RY * RX, RZ * RY * TX, RZ * TY * TX
    NT = TX * TY * TZ
    NV = max(n_values, 1)
    STATS = n_values == 0
    NG = n_guide
    F, FZ = f, fz

    @cuda.jit(fastmath=True)
    def kernel(padded, values, c0, shifts, wz, wy, wx, norm, two_sigma2, inv_h2, out, out2):
        diff = cuda.shared.array(N_DIFF, np.float32)
        hx = cuda.shared.array(N_HX, np.float32)
        hy = cuda.shared.array(N_HY, np.float32)
        acc = cuda.local.array(NV, np.float32)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tz = cuda.threadIdx.z
        tid = tx + TX * (ty + TY * tz)
        x0 = cuda.blockIdx.x * TX
        y0 = cuda.blockIdx.y * TY
        z0 = cuda.blockIdx.z * TZ
        pz_n, py_n, px_n = padded.shape[1], padded.shape[2], padded.shape[3]
        nz, ny, nx = pz_n - 2 * FZ, py_n - 2 * F, px_n - 2 * F
        x, y, z = x0 + tx, y0 + ty, z0 + tz
        inside = x < nx and y < ny and z < nz
        zero = np.float32(0.0)
        for v in range(NV):
            acc[v] = zero
        den = zero
        mx = zero
        for s in range(shifts.shape[0]):
            sz = shifts[s, 0]
            sy = shifts[s, 1]
            sx = shifts[s, 2]
            # Whole-block test (uniform, so the syncthreads below stay
            # collective): does any pixel of the tile have its partner inside?
            if (
                max(z0, -sz) >= min(z0 + TZ, nz, nz - sz)
                or max(y0, -sy) >= min(y0 + TY, ny, ny - sy)
                or max(x0, -sx) >= min(x0 + TX, nx, nx - sx)
            ):
                continue
            # 1. Squared differences over the tile and its halo (padded
            #    coordinates start at the tile origin).
            for idx in range(tid, N_DIFF, NT):
                rz, ry, rx = _unravel(idx, RY, RX)
                pz, py, px = z0 + rz, y0 + ry, x0 + rx
                qz, qy, qx = pz + sz, py + sy, px + sx
                total = zero
                if (
                    pz < pz_n
                    and py < py_n
                    and px < px_n
                    and 0 <= qz < pz_n
                    and 0 <= qy < py_n
                    and 0 <= qx < px_n
                ):
                    for c in range(NG):
                        d = padded[c, pz, py, px] - padded[c, qz, qy, qx]
                        total += d * d
                diff[idx] = total
            cuda.syncthreads()
            # 2. Along x.
            for idx in range(tid, N_HX, NT):
                rz, ry, rx = _unravel(idx, RY, TX)
                base = (rz * RY + ry) * RX + rx
                total = zero
                for k in range(S):
                    total += wx[k] * diff[base + k]
                hx[idx] = total
            cuda.syncthreads()
            # 3. Along y.
            for idx in range(tid, N_HY, NT):
                rz, ry, rx = _unravel(idx, TY, TX)
                base = (rz * RY + ry) * TX + rx
                total = zero
                for k in range(S):
                    total += wy[k] * hx[base + k * TX]
                hy[idx] = total
            cuda.syncthreads()
            # 4. Along z, then this thread's weight. (The next offset first
            #    writes diff and hx, two barriers before hy: no race.)
            jz, jy, jx = z + sz, y + sy, x + sx
            if inside and 0 <= jz < nz and 0 <= jy < ny and 0 <= jx < nx:
                d2 = zero
                for k in range(SZ):
                    d2 += wz[k] * hy[((tz + k) * TY + ty) * TX + tx]
                w = _weight(d2, norm, two_sigma2, inv_h2)
                den += w
                mx = max(mx, w)
                if not STATS:
                    for v in range(NV):
                        acc[v] += w * (values[c0 + v, jz, jy, jx] - values[c0 + v, z, y, x])
        if inside:
            if STATS:
                centre = mx if mx > zero else np.float32(1.0)
                out[z, y, x] = centre
                out2[z, y, x] = den + centre
            else:
                for v in range(NV):
                    out[c0 + v, z, y, x] = acc[v] / (den + np.float32(1.0))

    return kernel


@functools.lru_cache(maxsize=None)
def _patchwise_kernel(tile, f: int, fz: int, n_guide: int, n_values: int):
    """Second pass of patch-wise NLM (see :func:`nlmeans.kernels.patchwise_aggregate`).

    Writes ``out[c0 + v](p) = sum_t sum_k W_t(p - k) (P(p + t) - u(p)) / n(p)``,
    ``n(p)`` the number of in-image patch centres covering ``p``. The last
    row of ``shifts`` must be the zero offset (the centre weight).
    """
    TX, TY, TZ = tile
    S, SZ = 2 * f + 1, 2 * fz + 1
    WX, WY, WZ = TX + 2 * f, TY + 2 * f, TZ + 2 * fz  # patch centres of the tile
    DX, DY, DZ = TX + 4 * f, TY + 4 * f, TZ + 4 * fz  # pixels of their patches
    N_A = DZ * DY * DX  # differences, then sums along y
    N_B = DZ * DY * WX  # sums along x, then box sums of weights along x
    N_W = WZ * WY * WX  # normalised weights of the centres
    N_C = WZ * TY * TX  # box sums of weights along y
    N_HY = DZ * WY * WX
    N_BX = WZ * WY * TX
    NT = TX * TY * TZ
    NV = n_values
    NG = n_guide
    F, FZ = f, fz

    @cuda.jit(fastmath=True)
    def kernel(
        padded, padded_values, values, c0, shifts, norm, two_sigma2, inv_h2, centre, normaliser, out
    ):
        buf_a = cuda.shared.array(N_A, np.float32)
        buf_b = cuda.shared.array(N_B, np.float32)
        buf_w = cuda.shared.array(N_W, np.float32)
        buf_c = cuda.shared.array(N_C, np.float32)
        acc = cuda.local.array(NV, np.float32)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tz = cuda.threadIdx.z
        tid = tx + TX * (ty + TY * tz)
        x0 = cuda.blockIdx.x * TX
        y0 = cuda.blockIdx.y * TY
        z0 = cuda.blockIdx.z * TZ
        pz_n, py_n, px_n = padded.shape[1], padded.shape[2], padded.shape[3]
        nz, ny, nx = pz_n - 2 * FZ, py_n - 2 * F, px_n - 2 * F
        x, y, z = x0 + tx, y0 + ty, z0 + tz
        inside = x < nx and y < ny and z < nz
        zero = np.float32(0.0)
        for v in range(NV):
            acc[v] = zero
        # Image coordinates of the first patch centre of the region; padded
        # coordinates of the first pixel of its patch are the same numbers.
        cz0, cy0, cx0 = z0 - FZ, y0 - F, x0 - F
        n_shifts = shifts.shape[0]
        for s in range(n_shifts):
            sz = shifts[s, 0]
            sy = shifts[s, 1]
            sx = shifts[s, 2]
            is_centre = s == n_shifts - 1
            if (
                max(cz0, 0, -sz) >= min(cz0 + WZ, nz, nz - sz)
                or max(cy0, 0, -sy) >= min(cy0 + WY, ny, ny - sy)
                or max(cx0, 0, -sx) >= min(cx0 + WX, nx, nx - sx)
            ):
                continue  # no centre of the region has its partner inside
            if not is_centre:
                # 1. Squared differences over every patch of the region.
                for idx in range(tid, N_A, NT):
                    rz, ry, rx = _unravel(idx, DY, DX)
                    pz, py, px = cz0 + rz, cy0 + ry, cx0 + rx
                    qz, qy, qx = pz + sz, py + sy, px + sx
                    total = zero
                    if (
                        0 <= pz < pz_n
                        and 0 <= py < py_n
                        and 0 <= px < px_n
                        and 0 <= qz < pz_n
                        and 0 <= qy < py_n
                        and 0 <= qx < px_n
                    ):
                        for c in range(NG):
                            d = padded[c, pz, py, px] - padded[c, qz, qy, qx]
                            total += d * d
                    buf_a[idx] = total
                cuda.syncthreads()
                # 2. Box sums along x.
                _box_sums(buf_a, buf_b, N_B, tid, NT, DY, WX, DY, DX, 1, S)
                cuda.syncthreads()
                # 3. Along y (over the differences, no longer needed).
                _box_sums(buf_b, buf_a, N_HY, tid, NT, WY, WX, DY, WX, WX, S)
                cuda.syncthreads()
            # 4. Normalised weight of every centre of the region (0 outside).
            for idx in range(tid, N_W, NT):
                rz, ry, rx = _unravel(idx, WY, WX)
                iz, iy, ix = cz0 + rz, cy0 + ry, cx0 + rx
                w = zero
                if (
                    0 <= iz < nz
                    and 0 <= iy < ny
                    and 0 <= ix < nx
                    and 0 <= iz + sz < nz
                    and 0 <= iy + sy < ny
                    and 0 <= ix + sx < nx
                ):
                    if is_centre:
                        w = centre[iz, iy, ix] / normaliser[iz, iy, ix]
                    else:
                        d2 = zero
                        for k in range(SZ):
                            d2 += buf_a[((rz + k) * WY + ry) * WX + rx]
                        w = _weight(d2, norm, two_sigma2, inv_h2) / normaliser[iz, iy, ix]
                buf_w[idx] = w
            cuda.syncthreads()
            # 5. Box sums of the weights over the patch: along x ...
            _box_sums(buf_w, buf_b, N_BX, tid, NT, WY, TX, WY, WX, 1, S)
            cuda.syncthreads()
            # 6. ... along y ...
            _box_sums(buf_b, buf_c, N_C, tid, NT, TY, TX, WY, TX, TX, S)
            cuda.syncthreads()
            # 7. ... along z, and the pixel's share of P(p + t). (buf_c is
            #    next written after four more barriers.)
            if inside:
                b = zero
                for k in range(SZ):
                    b += buf_c[((tz + k) * TY + ty) * TX + tx]
                qz, qy, qx = z + FZ + sz, y + F + sy, x + F + sx
                if b != zero and 0 <= qz < pz_n and 0 <= qy < py_n and 0 <= qx < px_n:
                    for v in range(NV):
                        acc[v] += b * (padded_values[c0 + v, qz, qy, qx] - values[c0 + v, z, y, x])
        if inside:
            # In-image patch centres covering the pixel, per axis.
            count = np.float32(
                (min(z + FZ, nz - 1) - max(z - FZ, 0) + 1)
                * (min(y + F, ny - 1) - max(y - F, 0) + 1)
                * (min(x + F, nx - 1) - max(x - F, 0) + 1)
            )
            for v in range(NV):
                out[c0 + v, z, y, x] = acc[v] / count

    return kernel


# --------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------


def _grid(shape, tile):
    nz, ny, nx = shape
    tx, ty, tz = tile
    return ((nx + tx - 1) // tx, (ny + ty - 1) // ty, (nz + tz - 1) // tz)


def _pad_on_device(d_src, fz: int, f: int):
    n_c, nz, ny, nx = d_src.shape
    d_dst = cuda.device_array((n_c, nz + 2 * fz, ny + 2 * f, nx + 2 * f), np.float32)
    block = (32, 8, 1)
    grid = _grid(d_dst.shape[1:], block)
    _reflect_pad[grid, block](d_src, d_dst, fz, f)
    return d_dst


def nlm_pass(values, guide, params, volume: bool, sigma, h, *, tile=None) -> np.ndarray:
    """One non-local means pass on the GPU, in kernel layout ``(C, Z, Y, X)``.

    Same arguments and result (the float32 correction: weighted mean minus
    ``values``) as :func:`nlmeans._denoise._nlm_pass`, to float32 rounding.
    ``tile`` overrides :func:`choose_tile` (tests use small tiles to cover
    several blocks on tiny images).
    """
    from . import kernels
    from .kernels import weight_constants

    n_guide, n_z, n_y, n_x = guide.shape
    n_values = values.shape[0]
    s = params.patch_size
    f = s // 2
    fz = f if volume else 0
    d = min(params.patch_distance, max(n_y, n_x, n_z) - 1)
    dz = d if volume else 0
    patchwise = params.method == "patchwise"
    if tile is None:
        tile = choose_tile(volume, f, fz, patchwise)
        if tile is None:
            raise ValueError(
                f"patch_size={s} is too large for the CUDA kernels' shared memory "
                f"({'volume' if volume else '2-D'}); use device='cpu'"
            )
    two_sigma2, inv_h2 = weight_constants(sigma, h)
    kind = "gaussian" if params.method == "exact" else "uniform"
    norm = kernels.distance_norm(kind, n_guide, s, fz)

    d_guide = cuda.to_device(np.ascontiguousarray(guide, np.float32))
    d_values = d_guide if values is guide else cuda.to_device(np.ascontiguousarray(values))
    d_padded = _pad_on_device(d_guide, fz, f)
    shifts = kernels.full_window_shifts(dz, d).astype(np.int32)
    grid = _grid((n_z, n_y, n_x), tile)
    chunks = [
        (c0, min(MAX_VALUE_CHANNELS, n_values - c0))
        for c0 in range(0, n_values, MAX_VALUE_CHANNELS)
    ]
    d_out = cuda.device_array(values.shape, np.float32)

    if not patchwise:
        d_shifts = cuda.to_device(shifts)
        d_wy = cuda.to_device(kernels.patch_weights(s, kind))
        d_wz = cuda.to_device(kernels.patch_weights(2 * fz + 1, kind))
        for c0, count in chunks:
            kernel = _pixelwise_kernel(tile, f, fz, n_guide, count)
            kernel[grid, tile](
                d_padded, d_values, c0, d_shifts, d_wz, d_wy, d_wy, norm, two_sigma2, inv_h2,
                d_out, d_out,
            )  # fmt: skip
        return d_out.copy_to_host()

    # Patchwise: the centre weight and normaliser of every pixel (uniform
    # distances, as the CPU path), then the aggregation.
    d_shifts = cuda.to_device(shifts)
    ones = np.ones(s, np.float32)
    d_ones = cuda.to_device(ones)
    d_ones_z = cuda.to_device(np.ones(2 * fz + 1, np.float32))
    d_centre = cuda.device_array((n_z, n_y, n_x), np.float32)
    d_normaliser = cuda.device_array((n_z, n_y, n_x), np.float32)
    stats = _pixelwise_kernel(tile, f, fz, n_guide, 0)
    stats[grid, tile](
        d_padded, d_values, 0, d_shifts, d_ones_z, d_ones, d_ones, norm, two_sigma2, inv_h2,
        d_centre, d_normaliser,
    )  # fmt: skip
    with_centre = np.concatenate([shifts, np.zeros((1, 3), np.int32)])
    d_shifts_c = cuda.to_device(with_centre)
    d_padded_values = d_padded if values is guide else _pad_on_device(d_values, fz, f)
    for c0, count in chunks:
        kernel = _patchwise_kernel(tile, f, fz, n_guide, count)
        kernel[grid, tile](
            d_padded, d_padded_values, d_values, c0, d_shifts_c, norm, two_sigma2, inv_h2,
            d_centre, d_normaliser, d_out,
        )  # fmt: skip
    return d_out.copy_to_host()
