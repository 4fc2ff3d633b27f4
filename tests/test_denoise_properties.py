"""nlmeans.denoise: refused arguments, numerically extreme but valid input, and properties.

Property tests (hypothesis) run over shapes, dtypes, channel counts and
parameters for every method, including "neural".
"""

from __future__ import annotations

import math
import tracemalloc
import warnings

import numpy as np
import pytest
from cli_harness import (
    SAMPLES,
    _noisy,
    _tiny_config,
    _torch_or_skip,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import nlmeans


def test_library_rejects_a_path_string():
    with pytest.raises(TypeError, match="NumPy array"):
        nlmeans.denoise(str(SAMPLES / "camera.png"))


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(h=0.0), ValueError, r"\bh must be positive"),
        (dict(h=-0.1), ValueError, r"\bh must be positive"),
        (dict(h=float("nan")), ValueError, r"\bh must be finite"),
        (dict(h=float("inf")), ValueError, r"\bh must be finite"),
        (dict(h="0.1"), TypeError, r"\bh must be a real number"),
        (dict(sigma=-0.1), ValueError, "sigma must be non-negative"),
        (dict(sigma=float("nan")), ValueError, "sigma must be finite"),
        (dict(sigma=float("inf")), ValueError, "sigma must be finite"),
        (dict(patch_size=0), ValueError, "patch_size"),
        (dict(patch_size=4), ValueError, "patch_size"),
        (dict(patch_size=-3), ValueError, "patch_size"),
        (dict(patch_size=3.0), TypeError, "patch_size"),
        (dict(patch_size=True), TypeError, "patch_size"),
        (dict(patch_distance=-1), ValueError, "patch_distance"),
        (dict(patch_distance=2.0), TypeError, "patch_distance"),
        (dict(threads=0), ValueError, "threads"),
        (dict(threads=100_000), ValueError, "threads"),
        (dict(threads=1.5), TypeError, "threads"),
        (dict(method="median"), ValueError, "method"),
        (dict(channel_axis=3), ValueError, "channel_axis"),
        (dict(method="neural", h=0.1), ValueError, r"\bh does not apply"),
        (dict(method="neural", patch_size=3), ValueError, "patch_size does not apply"),
    ],
    ids=lambda v: "-".join(f"{k}={v[k]!r}" for k in v) if isinstance(v, dict) else None,
)
def test_library_parameter_out_of_range(kwargs, error, pattern):
    image = _noisy((20, 20), np.float32)
    before = image.copy()
    call = {**dict(h=0.08, sigma=0.03, patch_size=3, patch_distance=2), **kwargs}
    if call.get("method") == "neural":
        for name in ("h", "patch_size", "patch_distance"):
            if name not in kwargs:
                call.pop(name)
    with pytest.raises(error, match=pattern):
        nlmeans.denoise(image, **call)
    if "threads" not in kwargs:  # resolve_parameters takes the same arguments but threads
        with pytest.raises(error, match=pattern):
            nlmeans.resolve_parameters(image, **call)
    np.testing.assert_array_equal(image, before)


# --------------------------------------------------------------------------- numerically extreme but valid


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_all_black_image_library(dtype):
    image = np.zeros((16, 16), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nlmeans.estimate_sigma(image) == 0.0
        for method in ("fast", "exact", "patchwise"):
            out, params = nlmeans.denoise(image, method=method, return_params=True)
            assert math.isfinite(params.sigma) and math.isfinite(params.h)
            np.testing.assert_array_equal(out, image)


def _finite_in_range_or_refused(image, name, **kwargs):
    """Valid parameters: a finite in-range result, or a ValueError naming ``name``. Nothing else."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            out = nlmeans.denoise(image, **kwargs)
        except ValueError as exc:
            assert name in str(exc), exc
            return
    assert np.isfinite(out).all()
    assert out.min() >= image.min() and out.max() <= image.max()


@pytest.mark.parametrize("h", [1e-25, 1e-200, 5e-324])
def test_tiny_h(h):
    image = _noisy((16, 16), np.float64)
    for method in ("fast", "exact", "patchwise"):
        _finite_in_range_or_refused(
            image, "h", h=h, sigma=0.05, patch_size=3, patch_distance=2, method=method
        )


@pytest.mark.parametrize("scale", [1e20, 1e30, 3e37])
def test_float_image_of_large_magnitude(scale):
    image = (_noisy((16, 16), np.float64) * scale).astype(np.float32)
    _finite_in_range_or_refused(image, "image", patch_size=3, patch_distance=2)


def test_huge_sigma_is_not_an_overflow_error():
    _finite_in_range_or_refused(
        _noisy((16, 16), np.float64), "sigma", sigma=1e200, h=0.1, patch_size=3, patch_distance=2
    )


def test_huge_patch_distance_costs_no_memory():
    """The window is clipped at the border: a radius beyond the image must cost nothing more."""
    image = _noisy((16, 16), np.float32)
    reference = nlmeans.denoise(image, h=0.1, sigma=0.02, patch_size=3, patch_distance=15)
    tracemalloc.start()
    try:
        out = nlmeans.denoise(image, h=0.1, sigma=0.02, patch_size=3, patch_distance=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(out, reference)
    # today: ~73 MiB for a radius of 500, and `nlmeans denoise x.png -r 1000000` never ends
    assert peak < 20 << 20, f"{peak / 2**20:.0f} MiB for a 16x16 image"


# --------------------------------------------------------------------------- property tests


@pytest.fixture(scope="module")
def neural_weights(tmp_path_factory):
    """The shipped weights if present; else a small random model stands in for them."""
    _torch_or_skip()
    from nlmeans.neural import inference

    if inference.default_weights_path().is_file():
        yield inference.default_weights_path()
        return
    import torch

    from nlmeans.neural import NonLocalDenoiser, save_weights

    torch.manual_seed(0)
    path = save_weights(
        tmp_path_factory.mktemp("weights") / "tiny.safetensors", NonLocalDenoiser(_tiny_config())
    )
    patch = pytest.MonkeyPatch()
    patch.setattr(inference, "default_weights_path", lambda: path)
    yield path
    patch.undo()


def _random_image(rng, shape, dtype, scale):
    if np.dtype(dtype).kind == "u":
        top = np.iinfo(dtype).max
        lo, hi = sorted(rng.integers(0, top, 2, endpoint=True))
        return rng.integers(lo, hi, shape, endpoint=True).astype(dtype)
    return (rng.standard_normal(shape) * scale + rng.uniform(-1, 1) * scale).astype(dtype)


@st.composite
def _layouts(draw, volumes: bool):
    """(shape, channel_axis): gray, channels at any axis, or (classical only) a volume."""
    kinds = ["gray", "channels"] + (["volume"] if volumes else [])
    kind = draw(st.sampled_from(kinds))
    h, w = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    if kind == "gray":
        return (h, w), None
    if kind == "volume":
        return (draw(st.integers(3, 6)), draw(st.integers(3, 7)), draw(st.integers(3, 7))), None
    c = draw(st.integers(1, 5))
    axis = draw(st.sampled_from([0, 2, -1]))
    shape = [h, w]
    shape.insert(axis if axis >= 0 else 2, c)
    return tuple(shape), axis


def _check_properties(image, out):
    assert out.shape == image.shape and out.dtype == image.dtype
    assert np.isfinite(out.astype(np.float64)).all()
    assert out.min() >= image.min() and out.max() <= image.max()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layout=_layouts(volumes=True),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64]),
    method=st.sampled_from(["fast", "exact", "patchwise"]),
    patch_size=st.sampled_from([None, 1, 3, 5]),
    patch_distance=st.one_of(st.none(), st.integers(0, 4)),
    h=st.one_of(st.none(), st.floats(1e-3, 10.0)),
    sigma=st.one_of(st.none(), st.floats(0.0, 0.5)),
    threads=st.sampled_from([None, 1]),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    seed=st.integers(0, 2**16),
)
def test_property_classical(
    layout, dtype, method, patch_size, patch_distance, h, sigma, threads, scale, seed
):
    """Automatic or given parameters, any layout: a valid result or a clear 'smaller than the patch'."""
    shape, axis = layout
    image = _random_image(np.random.default_rng(seed), shape, dtype, scale)
    before = image.copy()
    kwargs = dict(
        method=method,
        patch_size=patch_size,
        patch_distance=patch_distance,
        h=h,
        sigma=sigma,
        channel_axis=axis,
    )
    spatial = [n for i, n in enumerate(shape) if axis is None or i != axis % len(shape)]
    try:
        params = nlmeans.resolve_parameters(image, **kwargs)
    except ValueError as exc:
        assert "smaller than the patch" in str(exc)
        assert patch_size is None or min(spatial) < patch_size
        event("refused: image smaller than the patch")
        with pytest.raises(ValueError, match="smaller than the patch"):
            nlmeans.denoise(image, threads=threads, **kwargs)
        return
    assert min(spatial) >= params.patch_size
    event("denoised")
    out = nlmeans.denoise(image, threads=threads, **kwargs)
    _check_properties(image, out)
    np.testing.assert_array_equal(image, before)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layout=_layouts(volumes=False),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64]),
    sigma=st.one_of(st.none(), st.floats(0.0, 0.3)),
    seed=st.integers(0, 2**16),
)
def test_property_neural(neural_weights, layout, dtype, sigma, seed):
    shape, axis = layout
    image = _random_image(np.random.default_rng(seed), shape, dtype, 1.0)
    if image.dtype.kind == "f":
        # The network's scale, [0, 1] and noise beyond it; data off it is refused.
        if image.min() < -1 or image.max() > 2:
            with pytest.raises(ValueError, match=r"\[0, 1\] scale"):
                nlmeans.denoise(image, method="neural", sigma=sigma, channel_axis=axis)
        image = np.clip(0.5 + 0.25 * image, -1, 2).astype(dtype)
    before = image.copy()
    out = nlmeans.denoise(image, method="neural", sigma=sigma, channel_axis=axis)
    _check_properties(image, out)
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.uint16])
def test_neural_output_within_input_range(tmp_path, monkeypatch, dtype):
    """Whatever the weights, the wrapper keeps the result within the input's range (as the classical path does).

    The weights here predict a constant noise of 0.05: the raw network output is
    the input minus 0.05, below the input's minimum everywhere.
    """
    torch = _torch_or_skip()
    from nlmeans.neural import NonLocalDenoiser, inference, save_weights

    torch.manual_seed(0)
    model = NonLocalDenoiser(_tiny_config())
    with torch.no_grad():
        model.tail.weight.zero_()
        model.tail.bias.fill_(0.05)
    path = save_weights(tmp_path / "shifting.safetensors", model)
    monkeypatch.setattr(inference, "default_weights_path", lambda: path)
    rng = np.random.default_rng(0)
    if dtype == np.float32:
        image = (0.4 + 0.2 * rng.random((20, 20))).astype(np.float32)
    else:
        top = np.iinfo(dtype).max
        image = rng.integers(int(0.4 * top), int(0.6 * top), (20, 20)).astype(dtype)
    out = nlmeans.denoise(image, method="neural")
    _check_properties(image, out)
