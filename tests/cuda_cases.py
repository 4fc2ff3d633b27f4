"""CUDA kernels against the CPU kernels (run by tests/test_cuda.py, not collected).

These cases import ``numba.cuda``, whose mode is fixed when it is first
imported: ``tests/test_cuda.py`` runs this file in a fresh interpreter, with
``NUMBA_ENABLE_CUDASIM=1`` (Numba's CUDA simulator: each CUDA thread a Python
thread) where there is no GPU, and without it on a machine with one
(``benchmarks/device_run.sh`` runs it there directly). The simulator is slow,
so the images are tiny and the tiles small, which also puts several blocks and
partial tiles on every image. Cases marked ``gpu_only`` need real hardware.

Tolerance: 1e-5 on the [0, 1] scale (float32 sums in another order).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import reference

import nlmeans
from nlmeans import _cuda, kernels
from nlmeans._denoise import NLMeansParameters, _nlm_pass

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
gpu_only = pytest.mark.skipif(SIMULATOR, reason="too slow for the CUDA simulator")
ATOL = 1e-5
SIGMA, H = 0.05, 0.2


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(99)


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    """Small tiles under the simulator (a Python thread per CUDA thread)."""
    if SIMULATOR:
        monkeypatch.setattr(_cuda, "TILES_2D", ((8, 4, 1),))
        monkeypatch.setattr(_cuda, "TILES_3D", ((4, 2, 2),))


def _params(method, patch_size, patch_distance):
    return NLMeansParameters(method, SIGMA, H, patch_size, patch_distance, False)


def _both(values, guide, method, patch_size, patch_distance, volume, *, tile=None, h=H):
    p = _params(method, patch_size, patch_distance)
    gpu = _cuda.nlm_pass(values, guide, p, volume, SIGMA, h, tile=tile)
    cpu = _nlm_pass(values, guide, p, volume, SIGMA, h)
    assert gpu.shape == cpu.shape and gpu.dtype == np.float32
    return gpu, cpu


@pytest.mark.parametrize("method", ["fast", "exact", "patchwise"])
def test_gray_matches_cpu(method, rng):
    image = rng.random((1, 1, 7, 9)).astype(np.float32)
    distance = 2 if method == "fast" else 1
    gpu, cpu = _both(image, image, method, 3, distance, False, tile=(4, 4, 1))
    np.testing.assert_allclose(gpu, cpu, atol=ATOL)
    assert np.abs(cpu).max() > 1e-3  # the pass did average something


@pytest.mark.parametrize("method", ["fast", "exact", "patchwise"])
def test_volume_matches_cpu(method, rng):
    image = rng.random((1, 3, 4, 5)).astype(np.float32)
    gpu, cpu = _both(image, image, method, 3, 1, True, tile=(4, 2, 2))
    np.testing.assert_allclose(gpu, cpu, atol=ATOL)


def test_joint_channels_and_channel_chunks(rng):
    # Six value channels: two launches of MAX_VALUE_CHANNELS (4) and 2.
    image = rng.random((6, 1, 5, 6)).astype(np.float32)
    for method in ("fast", "patchwise"):
        gpu, cpu = _both(image, image, method, 3, 1, False)
        np.testing.assert_allclose(gpu, cpu, atol=ATOL)


def test_guide_differs_from_values(rng):
    # The opponent chrominance pass: 2 value channels, weights from 3.
    guide = rng.random((3, 1, 8, 7)).astype(np.float32)
    values = np.ascontiguousarray(guide[1:])
    for method in ("exact", "patchwise"):
        gpu, cpu = _both(values, guide, method, 3, 1, False)
        np.testing.assert_allclose(gpu, cpu, atol=ATOL)


def test_patch_of_one_pixel_and_window_beyond_the_image(rng):
    image = rng.random((1, 1, 5, 4)).astype(np.float32)
    gpu, cpu = _both(image, image, "fast", 1, 9, False)
    np.testing.assert_allclose(gpu, cpu, atol=ATOL)


def test_exact_against_the_numpy_reference(rng):
    image = rng.random((1, 7, 8))
    p = _params("exact", 3, 2)
    data = image[:, np.newaxis].astype(np.float32)
    correction = _cuda.nlm_pass(data, data, p, False, SIGMA, H)
    expected = reference.nlm_pixelwise(
        image, patch_size=3, patch_distance=2, h=H, sigma=SIGMA, gaussian=True
    )
    np.testing.assert_allclose(data[:, 0] + correction[:, 0], expected, atol=ATOL)


def test_front_door_opponent_colour_and_device_in_params(rng):
    image = rng.random((8, 9, 3))
    kw = dict(channel_axis=-1, sigma=SIGMA, patch_size=3, patch_distance=1, method="fast")
    gpu, params = nlmeans.denoise(image, device="cuda", return_params=True, **kw)
    assert params.device == "cuda" and params.color_space == "opponent"
    assert params.denoise_kwargs()["device"] == "cuda"
    np.testing.assert_allclose(gpu, nlmeans.denoise(image, **kw), atol=ATOL)


def test_constant_image_comes_back_exactly():
    image = np.full((6, 7), 0.25)
    out = nlmeans.denoise(image, sigma=0.1, patch_size=3, patch_distance=1, device="cuda")
    np.testing.assert_array_equal(out, image)


def test_tile_choice_fits_shared_memory():
    for volume in (False, True):
        for f in range(0, 4):
            fz = f if volume else 0
            tile = _cuda.choose_tile(volume, f, fz, patchwise=True)
            assert tile is not None
            assert 4 * _cuda._shared_floats("patchwise", tile, f, fz) <= _cuda.SHARED_BYTES


def test_auto_keeps_the_cpu_for_a_patch_the_kernels_refuse(rng, monkeypatch):
    from nlmeans import device as nl_device

    assert not nl_device.cuda_kernels_fit("patchwise", 11, volume=True)
    assert nl_device.cuda_kernels_fit("patchwise", 9, volume=True)
    assert nl_device.cuda_kernels_fit("fast", 101, volume=False)
    assert not nl_device.cuda_kernels_fit("fast", 103, volume=False)
    # as on a machine with a GPU: "auto" resolves to CUDA before the patch is seen
    monkeypatch.setattr(nl_device, "resolve_device", lambda device, method: "cuda")
    volume = rng.random((11, 12, 12))
    kw = dict(sigma=SIGMA, patch_distance=1, method="patchwise", device="auto")
    _, params = nlmeans.denoise(volume, patch_size=11, return_params=True, **kw)
    assert params.device == "cpu"  # the CUDA pass would refuse patch 11
    _, params = nlmeans.denoise(volume[:3, :4, :4], patch_size=3, return_params=True, **kw)
    assert params.device == "cuda"


@gpu_only
@pytest.mark.parametrize("method", ["fast", "exact", "patchwise"])
@pytest.mark.parametrize("shape", [(1, 1, 131, 257), (3, 1, 70, 45), (1, 21, 19, 23)])
def test_larger_images_on_the_gpu(method, shape, rng):
    image = rng.random(shape).astype(np.float32)
    volume = shape[1] > 1
    gpu, cpu = _both(image, image, method, 5 if volume else 7, 3 if volume else 10, volume)
    np.testing.assert_allclose(gpu, cpu, atol=ATOL)


@gpu_only
def test_neural_on_the_gpu_matches_the_cpu(rng):
    image = rng.random((96, 80)).astype(np.float32)
    kw = dict(method="neural", sigma=SIGMA)
    gpu, params = nlmeans.denoise(image, device="cuda", return_params=True, **kw)
    assert params.device == "cuda"
    # torch runs convolutions in TF32 on Ampere and later GPUs by default.
    np.testing.assert_allclose(gpu, nlmeans.denoise(image, **kw), atol=3e-3)


def test_kernels_module_shifts_cover_the_window():
    # The GPU walks the full window; the CPU half of it, crediting both pixels.
    full = {tuple(t) for t in kernels.full_window_shifts(1, 2)}
    half = {tuple(t) for t in kernels.half_window_shifts(1, 2)}
    assert full == half | {(-a, -b, -c) for a, b, c in half}
