"""The spatio-temporal kernels never index out of bounds.

The kernels skip bounds checks for speed. Here the same sources are compiled
serially with ``boundscheck=True`` (the distance helper they call included),
so that an out-of-range index raises ``IndexError`` at the access, and run
on sequences whose windows hit every border: the first and last frames,
blocks of one output frame with a radius larger than the block (the pairs'
frame range is then not contiguous), frames taller than two row strips,
search radii beyond a strip, patches as large as the frame; and, for volumes
over time, windows beyond the volume and the series and patches as deep as
the volume. Results must match the normal (unchecked, parallel) kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import nlmeans
from nlmeans import _sequence, _sequence_kernels, kernels

pytestmark = pytest.mark.slow

TALL = 2 * kernels.STRIP_ROWS + 3

# name: (shape (t, y, x[, c]), channel_axis, patch_size, patch_distance, temporal_radius, chunk)
CASES = {
    "gray_p3_d2_k1": ((4, 9, 11), None, 3, 2, 1, 8),
    "gray_chunk1_k3_hull_not_contiguous": ((6, 9, 11), None, 3, 2, 3, 1),
    "gray_window_beyond_frame": ((3, 7, 8), None, 3, 12, 2, 2),
    "gray_patch_as_tall_as_frame": ((3, 7, 9), None, 7, 2, 1, 1),
    "gray_tall_radius_beyond_strip": ((3, TALL, 6), None, 3, kernels.STRIP_ROWS + 3, 1, 2),
    "rgb_chunk2_k2": ((5, 9, 10, 3), -1, 3, 3, 2, 2),
    "two_frames_k1": ((2, 8, 8), None, 5, 3, 1, 1),
}


def _serial_checked(dispatcher):
    options = dict(dispatcher.targetoptions, parallel=False, boundscheck=True, cache=False)
    options.pop("nopython", None)
    return njit(**options)(dispatcher.py_func)


def _install_checked(monkeypatch, kernel_names) -> None:
    """Replace the named kernels of _sequence_kernels (and their helpers) by checked ones."""
    # Module globals are resolved when a function compiles: the checked
    # helpers must be in place before the checked kernels are built.
    monkeypatch.setattr(
        _sequence_kernels, "_shift_distances", _serial_checked(kernels._shift_distances)
    )
    monkeypatch.setattr(_sequence_kernels, "exp_neg", _serial_checked(kernels.exp_neg))
    for name in kernel_names:
        monkeypatch.setattr(
            _sequence_kernels, name, _serial_checked(getattr(_sequence_kernels, name))
        )


def _run_all():
    rng = np.random.default_rng(7)
    out = {}
    for name, (shape, axis, p, d, k, chunk) in CASES.items():
        frames = rng.random(shape)
        for method in ("fast", "exact", "patchwise"):
            _sequence._MAX_CHUNK = chunk
            out[name, method] = np.stack(
                list(
                    nlmeans.denoise_sequence(
                        iter(frames),
                        channel_axis=axis,
                        method=method,
                        h=0.3,
                        sigma=0.05,
                        patch_size=p,
                        patch_distance=d,
                        temporal_radius=k,
                    )
                )
            )
    return out


def test_sequence_kernels_stay_in_bounds(monkeypatch):
    chunk = _sequence._MAX_CHUNK
    try:
        normal = _run_all()
        _install_checked(monkeypatch, ("frames_accumulate", "frames_patchwise_aggregate"))
        checked = _run_all()
    finally:
        _sequence._MAX_CHUNK = chunk
    for key, expected in normal.items():
        np.testing.assert_allclose(checked[key], expected, rtol=1e-6, atol=1e-6, err_msg=str(key))


def test_volume_kernel_stays_in_bounds(monkeypatch):
    # Windows beyond the volume and the series, patches as deep as the
    # volume, volumes taller than two row strips, blocks of one volume.
    tall = 2 * kernels.STRIP_ROWS + 3
    cases = [
        ((4, 3, 7, 8), 3, 4, 3, 1),
        ((3, 5, tall, 6), 5, 2, 1, 2),
        ((2, 4, 6, 5), 3, 9, 1, 1),
    ]
    rng = np.random.default_rng(3)

    def run_all():
        out = []
        for shape, p, d, k, chunk in cases:
            _sequence._MAX_CHUNK = chunk
            series = rng.random(shape)
            for method in ("fast", "exact", "patchwise"):
                options = dict(method=method, h=0.3, sigma=0.05, temporal_radius=k)
                options.update(patch_size=p, patch_distance=d)
                out.append(np.stack(list(nlmeans.denoise_sequence(iter(series), **options))))
        return out

    chunk = _sequence._MAX_CHUNK
    try:
        normal = run_all()
        _install_checked(monkeypatch, ("volumes_accumulate", "volumes_patchwise_aggregate"))
        rng = np.random.default_rng(3)
        checked = run_all()
    finally:
        _sequence._MAX_CHUNK = chunk
    for got, expected in zip(checked, normal):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
