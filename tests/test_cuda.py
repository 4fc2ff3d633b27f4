"""device= of nlmeans.denoise and --device of the CLI; the CUDA kernels via tests/cuda_cases.py.

The kernels' cases import ``numba.cuda``, whose mode (simulator or hardware)
is fixed at its first import, so they run in a fresh interpreter: under
Numba's CUDA simulator where this machine has no usable GPU, on the GPU where
it has one. The other tests here run on any machine and check what a machine
without CUDA does.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import nlmeans
from nlmeans import device as nl_device
from nlmeans_cli.main import app

ROOT = Path(__file__).resolve().parent.parent
HAS_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None


@pytest.mark.skipif(not HAS_NUMBA_CUDA, reason="numba-cuda is not installed (test extra)")
def test_cuda_kernels_match_the_cpu_kernels():
    env = dict(os.environ)
    if nl_device.cuda_unavailable_reason() is not None:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/cuda_cases.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout


def test_cpu_is_the_default_and_recorded():
    image = np.random.default_rng(0).random((12, 12))
    out, params = nlmeans.denoise(image, sigma=0.1, return_params=True)
    assert params.device == "cpu"
    assert "device" not in params.denoise_kwargs()
    same = nlmeans.denoise(image, sigma=0.1, device="cpu")
    np.testing.assert_array_equal(out, same)


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="device must be one of cpu, cuda, auto"):
        nlmeans.denoise(np.zeros((8, 8)), sigma=0.1, device="gpu")
    with pytest.raises(ValueError, match="device must be one of"):
        nl_device.resolve_device(None)


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine, made to look like one without a usable GPU whatever it has."""
    monkeypatch.setattr(
        nl_device,
        "cuda_unavailable_reason",
        lambda method="fast": "the CUDA driver finds no GPU",
    )


@pytest.mark.parametrize("method", ["fast", "patchwise", "neural"])
def test_cuda_without_a_gpu_says_what_is_missing(no_cuda, method):
    with pytest.raises(nl_device.CUDAUnavailableError, match="finds no GPU"):
        nlmeans.denoise(np.zeros((16, 16)), sigma=0.1, method=method, device="cuda")


def test_auto_falls_back_to_the_cpu_and_says_so(no_cuda):
    image = np.random.default_rng(1).random((10, 11, 3))
    out, params = nlmeans.denoise(
        image, channel_axis=-1, sigma=0.1, device="auto", return_params=True
    )
    assert params.device == "cpu"
    np.testing.assert_array_equal(out, nlmeans.denoise(image, channel_axis=-1, sigma=0.1))


def test_auto_never_takes_the_simulator(monkeypatch):
    monkeypatch.setattr(nl_device, "cuda_unavailable_reason", lambda method="fast": None)
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    assert nl_device.resolve_device("auto") == "cpu"
    assert nl_device.resolve_device("cuda") == "cuda"
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "0")
    assert nl_device.resolve_device("auto", method="exact") == "cuda"


def test_this_machine_gets_a_reason_or_none():
    nl_device.cuda_unavailable_reason.cache_clear()
    for method in ("fast", "neural"):
        reason = nl_device.cuda_unavailable_reason(method)
        assert reason is None or (isinstance(reason, str) and reason)
    torch = pytest.importorskip("torch")
    if torch.version.cuda is None:
        assert "CPU-only build" in nl_device.cuda_unavailable_reason("neural")


@pytest.mark.parametrize(
    ("free_gib", "shape", "expected"),
    [
        (80, (2048, 2048), None),  # fits: one untiled pass, the fastest
        (1, (2048, 2048), 960),  # 0.5 GiB / 512 B = 1024**2 px: 960 + 2 x 32 margin
        (0.01, (4096, 4096), nl_device.NEURAL_MIN_TILE),  # never below the minimum
    ],
)
def test_neural_tile_follows_free_memory(monkeypatch, free_gib, shape, expected):
    torch = pytest.importorskip("torch")
    free = int(free_gib * 2**30)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (free, 2 * free))
    tile = nl_device.neural_tile_size(*shape)
    assert tile == expected
    if tile is not None and tile > nl_device.NEURAL_MIN_TILE:
        # The largest multiple of 64 whose pass (core and margins) fits.
        pixels = nl_device.NEURAL_MEMORY_SHARE * free / nl_device.NEURAL_BYTES_PER_PIXEL
        assert (tile + 64) ** 2 <= pixels < (tile + 128) ** 2


@settings(max_examples=200, deadline=None)
@given(
    free=st.integers(min_value=2**20, max_value=200 * 2**30),
    height=st.integers(min_value=1, max_value=20000),
    width=st.integers(min_value=1, max_value=20000),
)
def test_neural_tile_always_fits_or_is_untiled(free, height, width):
    import torch

    original = torch.cuda.mem_get_info
    torch.cuda.mem_get_info = lambda *a: (free, 2 * free)
    try:
        tile = nl_device.neural_tile_size(height, width)
    finally:
        torch.cuda.mem_get_info = original
    pixels = nl_device.NEURAL_MEMORY_SHARE * free / nl_device.NEURAL_BYTES_PER_PIXEL
    if tile is None:
        assert height * width <= pixels
    else:
        assert height * width > pixels
        assert tile % 64 == 0 and tile >= nl_device.NEURAL_MIN_TILE
        assert tile == nl_device.NEURAL_MIN_TILE or (tile + 64) ** 2 <= pixels


runner = CliRunner()


def test_cli_device_cuda_without_a_gpu_is_one_error_line(tmp_path, no_cuda):
    from nlmeans.io import write_image

    src = tmp_path / "a.png"
    write_image(src, (np.random.default_rng(2).random((20, 20)) * 255).astype(np.uint8))
    result = runner.invoke(app, ["denoise", str(src), "--device", "cuda"])
    assert result.exit_code == 1
    assert "finds no GPU" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "a_denoised.png").exists()


def test_cli_device_auto_reports_the_device(tmp_path, no_cuda):
    from nlmeans.io import write_image

    src = tmp_path / "a.png"
    write_image(src, (np.random.default_rng(3).random((20, 20)) * 255).astype(np.uint8))
    result = runner.invoke(app, ["denoise", str(src), "--device", "auto", "--sigma", "0.05"])
    assert result.exit_code == 0, result.output
    assert "on cpu" in result.output
    assert (tmp_path / "a_denoised.png").exists()


def test_cli_refuses_an_unknown_device(tmp_path):
    result = runner.invoke(app, ["denoise", str(tmp_path / "x.png"), "--device", "tpu"])
    assert result.exit_code == 2
