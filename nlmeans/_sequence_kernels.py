"""Numba kernels for spatio-temporal non-local means (frames of a sequence).

The layout is :mod:`nlmeans.kernels`' ``(C, Z, Y, X)`` with ``Z`` the frames
of a block of consecutive frames: patches are 2-D (``fz = 0``), the search
window spans ``+-k`` frames and ``+-d`` pixels, and candidates are restricted
to the block. A block holds ``k`` frames of context on each side of the
frames being denoised (``out_lo <= z < out_hi``); these kernels compute only
the pairs that touch an output frame and return sums for the output frames
alone, so that a long sequence is denoised one block at a time in bounded
memory without recomputing the context frames' own sums.

Each output pixel receives exactly the same terms, added in the same order,
as :func:`nlmeans.kernels.pixelwise_accumulate` /
:func:`nlmeans.kernels.patchwise_aggregate` would give it on the whole
sequence: results do not depend on how the sequence is cut into blocks, nor
on the number of threads, and with one frame of window (``k = 0``) they are
bit-identical to the image kernels on each frame.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernels import (
    _JIT,
    STRIP_ROWS,
    _add_box_terms,
    _box_sum_2d,
    _normalised_weight_row,
    _reduce_strips_row,
    _shift_distances,
    exp_neg,
)

__all__ = [
    "frames_accumulate",
    "frames_patchwise_aggregate",
    "volume_full_window_shifts",
    "volume_half_window_shifts",
    "volumes_accumulate",
    "volumes_patchwise_aggregate",
]


def volume_half_window_shifts(k: int, dz: int, d: int) -> np.ndarray:
    """Offsets ``(st, sz, sy, sx)`` of a ``+-k`` x ``+-dz`` x ``+-d`` x ``+-d`` window, each pair once.

    As :func:`nlmeans.kernels.half_window_shifts` with time in front:
    ``sy >= 0`` always (a strip's partners lie in the halo below it), and
    for ``sy == 0`` only ``(st, sz, sx)`` after zero in lexicographic order.
    """
    out = []
    for sy in range(0, d + 1):
        for st in range(-k, k + 1):
            for sz in range(-dz, dz + 1):
                for sx in range(-d, d + 1):
                    if sy == 0 and (st, sz, sx) <= (0, 0, 0):
                        continue
                    out.append((st, sz, sy, sx))
    return np.array(out, dtype=np.int64).reshape(-1, 4)


def volume_full_window_shifts(k: int, dz: int, d: int) -> np.ndarray:
    """All non-zero offsets ``(st, sz, sy, sx)`` of the ``+-k`` x ``+-dz`` x ``+-d`` x ``+-d`` window.

    In lexicographic order, so that with ``k = 0`` they are
    :func:`nlmeans.kernels.full_window_shifts` in its order (the patch-wise
    sums of one volume are then added exactly as :func:`nlmeans.denoise`
    adds them).
    """
    out = [
        (st, sz, sy, sx)
        for st in range(-k, k + 1)
        for sz in range(-dz, dz + 1)
        for sy in range(-d, d + 1)
        for sx in range(-d, d + 1)
        if (st, sz, sy, sx) != (0, 0, 0, 0)
    ]
    return np.array(out, dtype=np.int64).reshape(-1, 4)


@njit(parallel=True, **_JIT)
def frames_accumulate(
    image,
    padded,
    shifts,
    d,
    out_lo,
    out_hi,
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
    """:func:`nlmeans.kernels.pixelwise_accumulate` for the frames ``[out_lo, out_hi)``.

    ``image`` is a block ``(C, Z, Y, X)`` of frames, ``padded`` its 2-D
    reflect padding ``(0, 0, f, f)``; ``shifts`` come from
    ``half_window_shifts(k, d)``. ``numerator`` is ``(C, out_hi - out_lo, Y,
    X)``, ``denominator`` and (when ``track_max``) ``max_weight`` ``(out_hi -
    out_lo, Y, X)``, zeroed by the caller: the sums of frame ``out_lo + i``
    land in plane ``i``. A pair is computed when either of its pixels lies
    in an output frame, and its weight serves both when both do.
    """
    n_channels, n_z, n_y, n_x = image.shape
    n_out = out_hi - out_lo
    size = weights_y.shape[0]
    weights_z = np.ones(1, np.float32)
    n_strips = (n_y + STRIP_ROWS - 1) // STRIP_ROWS
    halo = STRIP_ROWS + d
    num_private = np.zeros((n_strips, n_channels, n_out, halo, n_x), np.float32)
    den_private = np.zeros((n_strips, n_out, halo, n_x), np.float32)
    if track_max:
        max_private = np.zeros((n_strips, n_out, halo, n_x), np.float32)
    else:
        max_private = np.zeros((n_strips, 1, 1, 1), np.float32)
    padded_width = padded.shape[3]
    for strip in prange(n_strips):
        y0 = np.int64(strip) * STRIP_ROWS
        y1 = min(n_y, y0 + STRIP_ROWS)
        row_ring = np.empty((size, padded_width), np.float32)
        column_sums = np.empty(padded_width, np.float32)
        plane_ring = np.empty((1, STRIP_ROWS, n_x), np.float32)
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
            xlo = max(0, -sx)
            xhi = min(n_x, n_x - sx)
            # Frames z whose pair (z, z + sz) touches an output frame:
            # [out_lo, out_hi) (z is one) and [out_lo - sz, out_hi - sz)
            # (z + sz is one). One range where they meet, else two, visited
            # in increasing z (the order of pixelwise_accumulate).
            lo0, hi0 = min(out_lo, out_lo - sz), min(out_hi, out_hi - sz)
            lo1, hi1 = max(out_lo, out_lo - sz), max(out_hi, out_hi - sz)
            if hi0 >= lo1:
                hi0 = hi1
                lo1 = hi1
            for part in range(2):
                zlo = max(0, -sz, lo0 if part == 0 else lo1)
                zhi = min(n_z, n_z - sz, hi0 if part == 0 else hi1)
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
                    a_out = out_lo <= z < out_hi
                    b_out = out_lo <= z + sz < out_hi
                    if not (a_out or b_out):
                        continue
                    za = z - out_lo
                    zb = z + sz - out_lo
                    for y in range(ylo, yhi):
                        r = y - y0
                        wrow = dist[z, y - ylo, :n]
                        for k in range(n):
                            excess = max(wrow[k] - two_sigma2, np.float32(0.0))
                            wrow[k] = exp_neg(excess * inv_h2)
                        if a_out:
                            den_a = den[za, r, xlo:xhi]
                            for k in range(n):
                                den_a[k] += wrow[k]
                        if b_out:
                            den_b = den[zb, r + sy, xlo + sx : xhi + sx]
                            for k in range(n):
                                den_b[k] += wrow[k]
                        for c in range(n_channels):
                            u_a = image[c, z, y, xlo:xhi]
                            u_b = image[c, z + sz, y + sy, xlo + sx : xhi + sx]
                            if a_out:
                                num_a = num[c, za, r, xlo:xhi]
                                for k in range(n):
                                    num_a[k] += wrow[k] * (u_b[k] - u_a[k])
                            if b_out:
                                num_b = num[c, zb, r + sy, xlo + sx : xhi + sx]
                                for k in range(n):
                                    num_b[k] += wrow[k] * (u_a[k] - u_b[k])
                        if track_max:
                            if a_out:
                                mx_a = mx[za, r, xlo:xhi]
                                for k in range(n):
                                    mx_a[k] = max(mx_a[k], wrow[k])
                            if b_out:
                                mx_b = mx[zb, r + sy, xlo + sx : xhi + sx]
                                for k in range(n):
                                    mx_b[k] = max(mx_b[k], wrow[k])

    # Deterministic reduction, strips in order (as pixelwise_accumulate).
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
def frames_patchwise_aggregate(
    image,
    padded,
    padded_values,
    shifts,
    d,
    f,
    out_lo,
    out_hi,
    two_sigma2,
    inv_h2,
    norm,
    centre_weight,
    normaliser,
    out_numerator,
):
    """:func:`nlmeans.kernels.patchwise_aggregate` (2-D patches) for the frames ``[out_lo, out_hi)``.

    With 2-D patches every pixel ``p`` of frame ``z`` is covered only by
    patch centres of frame ``z``, whose candidates ``i + t`` lie in frames
    ``z - k .. z + k``: the output frames need ``centre_weight`` and
    ``normaliser`` of the output frames only (``(out_hi - out_lo, Y, X)``,
    from :func:`frames_accumulate`). ``shifts`` come from
    ``full_window_shifts(k, d)``; ``out_numerator`` is ``(C, out_hi - out_lo,
    Y, X)``, zeroed by the caller, divided by the patch coverage afterwards.
    """
    n_channels, n_z, n_y, n_x = image.shape
    n_out = out_hi - out_lo
    size = 2 * f + 1
    ones_z = np.ones(1, np.float32)
    ones = np.ones(size, np.float32)
    n_strips = (n_y + STRIP_ROWS - 1) // STRIP_ROWS
    rows = STRIP_ROWS + 2 * f
    padded_width = padded.shape[3]
    for strip in prange(n_strips):
        y0 = np.int64(strip) * STRIP_ROWS
        y1 = min(n_y, y0 + STRIP_ROWS)
        row_ring = np.empty((size, padded_width), np.float32)
        column_sums = np.empty(padded_width, np.float32)
        plane_ring = np.empty((1, rows, n_x), np.float32)
        dist = np.empty((n_z, rows, n_x), np.float32)
        wbuf = np.zeros((n_out, rows, n_x + 2 * f), np.float32)
        box_x = np.empty((n_out, rows, n_x), np.float32)
        box_xy = np.empty((n_out, STRIP_ROWS, n_x), np.float32)
        for s in range(shifts.shape[0] + 1):
            if s < shifts.shape[0]:
                sz = shifts[s, 0]
                sy = shifts[s, 1]
                sx = shifts[s, 2]
            else:
                sz = 0
                sy = 0
                sx = 0
            ylo = max(y0 - f, 0, -sy)
            yhi = min(y1 + f, n_y, n_y - sy)
            zlo = max(out_lo, -sz)
            zhi = min(out_hi, n_z - sz)
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
                    zo = z - out_lo
                    for y in range(ylo, yhi):
                        r = y - (y0 - f)
                        _normalised_weight_row(
                            wbuf[zo, r, xlo + f : xhi + f],
                            dist[z, y - ylo, :n],
                            centre_weight[zo, y, xlo:xhi],
                            normaliser[zo, y, xlo:xhi],
                            s == shifts.shape[0],
                            two_sigma2,
                            inv_h2,
                        )
            else:
                continue
            # Box sum of the normalised weights over the 2-D patch: x, then y.
            for zo in range(zlo - out_lo, zhi - out_lo):
                _box_sum_2d(wbuf[zo], box_x[zo], box_xy[zo], size, y1 - y0)
            py_lo = max(y0, -f - sy)
            py_hi = min(y1, n_y + f - sy)
            px_lo = max(0, -f - sx)
            px_hi = min(n_x, n_x + f - sx)
            m = px_hi - px_lo
            if m <= 0:
                continue
            for z in range(zlo, zhi):
                zo = z - out_lo
                for y in range(py_lo, py_hi):
                    r = y - y0
                    for c in range(n_channels):
                        src = padded_values[c, z + sz, y + f + sy, px_lo + f + sx : px_hi + f + sx]
                        _add_box_terms(
                            out_numerator[c, zo, y, px_lo:px_hi],
                            box_xy,
                            zo,
                            1,
                            r,
                            px_lo,
                            px_hi,
                            src,
                            image[c, z, y, px_lo:px_hi],
                        )


@njit(parallel=True, **_JIT)
def volumes_accumulate(
    image,
    padded,
    shifts,
    d,
    out_lo,
    out_hi,
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
    """:func:`frames_accumulate` for volumes over time (3-D patches, 4-D window).

    ``image`` is a block ``(T, C, Z, Y, X)`` of volumes and ``padded`` each
    volume's own reflect padding ``(T, C, Z + 2fz, Y + 2f, X + 2f)``, so a
    patch never reads another time point; ``shifts`` come from
    :func:`volume_half_window_shifts`. ``numerator`` is ``(C, (out_hi -
    out_lo) * Z, Y, X)`` and ``denominator`` ``((out_hi - out_lo) * Z, Y,
    X)``, and (when ``track_max``) ``max_weight`` as ``denominator``, zeroed
    by the caller: the sums of plane ``z`` of volume ``out_lo + i`` land in
    plane ``i * Z + z``. A pair is computed when either of its
    voxels lies in an output volume, and its weight serves both when both
    do. Every output voxel receives its terms in the same order (shift, then
    time) whatever the block and the thread count.
    """
    n_t, n_channels, n_z, n_y, n_x = image.shape
    n_out = out_hi - out_lo
    size_z = weights_z.shape[0]
    size = weights_y.shape[0]
    n_strips = (n_y + STRIP_ROWS - 1) // STRIP_ROWS
    halo = STRIP_ROWS + d
    num_private = np.zeros((n_strips, n_channels, n_out * n_z, halo, n_x), np.float32)
    den_private = np.zeros((n_strips, n_out * n_z, halo, n_x), np.float32)
    if track_max:
        max_private = np.zeros((n_strips, n_out * n_z, halo, n_x), np.float32)
    else:
        max_private = np.zeros((n_strips, 1, 1, 1), np.float32)
    padded_width = padded.shape[4]
    for strip in prange(n_strips):
        y0 = np.int64(strip) * STRIP_ROWS
        y1 = min(n_y, y0 + STRIP_ROWS)
        row_ring = np.empty((size, padded_width), np.float32)
        column_sums = np.empty(padded_width, np.float32)
        plane_ring = np.empty((size_z, STRIP_ROWS, n_x), np.float32)
        dist = np.empty((n_z, STRIP_ROWS, n_x), np.float32)
        num = num_private[strip]
        den = den_private[strip]
        mx = max_private[strip]
        for s in range(shifts.shape[0]):
            st = shifts[s, 0]
            sz = shifts[s, 1]
            sy = shifts[s, 2]
            sx = shifts[s, 3]
            ylo = y0
            yhi = min(y1, n_y - sy)
            zlo = max(0, -sz)
            zhi = min(n_z, n_z - sz)
            xlo = max(0, -sx)
            xhi = min(n_x, n_x - sx)
            if ylo >= yhi or zlo >= zhi or xlo >= xhi:
                continue
            n = xhi - xlo
            for t in range(max(0, -st), min(n_t, n_t - st)):
                a_out = out_lo <= t < out_hi
                b_out = out_lo <= t + st < out_hi
                if not (a_out or b_out):
                    continue
                _shift_distances(
                    padded[t],
                    padded[t + st],
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
                plane_a = (t - out_lo) * n_z
                plane_b = (t + st - out_lo) * n_z + sz
                for z in range(zlo, zhi):
                    for y in range(ylo, yhi):
                        r = y - y0
                        wrow = dist[z, y - ylo, :n]
                        for k in range(n):
                            excess = max(wrow[k] - two_sigma2, np.float32(0.0))
                            wrow[k] = exp_neg(excess * inv_h2)
                        if a_out:
                            den_a = den[plane_a + z, r, xlo:xhi]
                            for k in range(n):
                                den_a[k] += wrow[k]
                        if b_out:
                            den_b = den[plane_b + z, r + sy, xlo + sx : xhi + sx]
                            for k in range(n):
                                den_b[k] += wrow[k]
                        for c in range(n_channels):
                            u_a = image[t, c, z, y, xlo:xhi]
                            u_b = image[t + st, c, z + sz, y + sy, xlo + sx : xhi + sx]
                            if a_out:
                                num_a = num[c, plane_a + z, r, xlo:xhi]
                                for k in range(n):
                                    num_a[k] += wrow[k] * (u_b[k] - u_a[k])
                            if b_out:
                                num_b = num[c, plane_b + z, r + sy, xlo + sx : xhi + sx]
                                for k in range(n):
                                    num_b[k] += wrow[k] * (u_a[k] - u_b[k])
                        if track_max:
                            if a_out:
                                mx_a = mx[plane_a + z, r, xlo:xhi]
                                for k in range(n):
                                    mx_a[k] = max(mx_a[k], wrow[k])
                            if b_out:
                                mx_b = mx[plane_b + z, r + sy, xlo + sx : xhi + sx]
                                for k in range(n):
                                    mx_b[k] = max(mx_b[k], wrow[k])

    # Deterministic reduction, strips in order (as pixelwise_accumulate).
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
def volumes_patchwise_aggregate(
    image,
    padded,
    padded_values,
    shifts,
    f,
    out_lo,
    out_hi,
    two_sigma2,
    inv_h2,
    norm,
    centre_weight,
    normaliser,
    out_numerator,
):
    """:func:`nlmeans.kernels.patchwise_aggregate` for volumes over time.

    ``image`` is a block ``(T, C, Z, Y, X)`` of volumes, ``padded`` and
    ``padded_values`` each volume's own reflect padding (the guide and the
    values, the same array when they are one), ``shifts`` come from
    :func:`volume_full_window_shifts`. A voxel of volume ``t`` is covered
    only by patch centres of volume ``t`` (a patch never reaches into
    another time point), whose candidates lie in volumes ``t - k .. t + k``:
    the output volumes need ``centre_weight`` and ``normaliser`` of the
    output volumes only (``((out_hi - out_lo) * Z, Y, X)``, from
    :func:`volumes_accumulate` with ``track_max``). ``out_numerator`` is
    ``(C, (out_hi - out_lo) * Z, Y, X)``, zeroed by the caller, divided by
    the patch coverage afterwards. Each output voxel receives its terms in
    the order of ``shifts`` (then the centre), whatever the block and the
    thread count.
    """
    n_t, n_channels, n_z, n_y, n_x = image.shape
    size = 2 * f + 1
    ones = np.ones(size, np.float32)
    n_strips = (n_y + STRIP_ROWS - 1) // STRIP_ROWS
    rows = STRIP_ROWS + 2 * f  # patch centres whose patches reach the strip
    padded_width = padded.shape[4]
    for strip in prange(n_strips):
        y0 = np.int64(strip) * STRIP_ROWS
        y1 = min(n_y, y0 + STRIP_ROWS)
        row_ring = np.empty((size, padded_width), np.float32)
        column_sums = np.empty(padded_width, np.float32)
        plane_ring = np.empty((size, rows, n_x), np.float32)
        dist = np.empty((n_z, rows, n_x), np.float32)
        # One volume's normalised centre weights, laid out with the padding
        # of P so that the box sums need no bounds checks.
        wbuf = np.zeros((n_z + 2 * f, rows, n_x + 2 * f), np.float32)
        box_x = np.empty((n_z + 2 * f, rows, n_x), np.float32)
        box_xy = np.empty((n_z + 2 * f, STRIP_ROWS, n_x), np.float32)
        for s in range(shifts.shape[0] + 1):
            centre_pass = s == shifts.shape[0]
            if not centre_pass:
                st = shifts[s, 0]
                sz = shifts[s, 1]
                sy = shifts[s, 2]
                sx = shifts[s, 3]
            else:
                st = 0
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
            if ylo >= yhi or zlo >= zhi or xlo >= xhi:
                continue
            n = xhi - xlo
            # Voxels p whose p + t lies inside the padded volume.
            pz_lo = max(0, -f - sz)
            pz_hi = min(n_z, n_z + f - sz)
            py_lo = max(y0, -f - sy)
            py_hi = min(y1, n_y + f - sy)
            px_lo = max(0, -f - sx)
            px_hi = min(n_x, n_x + f - sx)
            m = px_hi - px_lo
            for t in range(max(out_lo, -st), min(out_hi, n_t - st)):
                plane = (t - out_lo) * n_z
                wbuf[:] = 0.0
                if not centre_pass:
                    _shift_distances(
                        padded[t],
                        padded[t + st],
                        sz,
                        sy,
                        sx,
                        zlo,
                        zhi,
                        ylo,
                        yhi,
                        xlo,
                        xhi,
                        ones,
                        ones,
                        ones,
                        True,
                        norm,
                        row_ring,
                        column_sums,
                        plane_ring,
                        dist,
                    )
                for z in range(zlo, zhi):
                    for y in range(ylo, yhi):
                        r = y - (y0 - f)
                        _normalised_weight_row(
                            wbuf[z + f, r, xlo + f : xhi + f],
                            dist[z, y - ylo, :n],
                            centre_weight[plane + z, y, xlo:xhi],
                            normaliser[plane + z, y, xlo:xhi],
                            centre_pass,
                            two_sigma2,
                            inv_h2,
                        )
                # Box sum of the normalised weights over the patch: x, then y, then z.
                for zz in range(n_z + 2 * f):
                    _box_sum_2d(wbuf[zz], box_x[zz], box_xy[zz], size, y1 - y0)
                if m <= 0:
                    continue
                for z in range(pz_lo, pz_hi):
                    for y in range(py_lo, py_hi):
                        r = y - y0
                        for c in range(n_channels):
                            # P(p + t) in padded coordinates.
                            src = padded_values[
                                t + st, c, z + f + sz, y + f + sy, px_lo + f + sx : px_hi + f + sx
                            ]
                            _add_box_terms(
                                out_numerator[c, plane + z, y, px_lo:px_hi],
                                box_xy,
                                z,
                                size,
                                r,
                                px_lo,
                                px_hi,
                                src,
                                image[t, c, z, y, px_lo:px_hi],
                            )
