"""denoise_sequence on Dask arrays: lazy, same chunks and dtype, and bit for
bit the in-memory result for any chunking (time and space)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")

import nlmeans  # noqa: E402


def _clip(rng, n=7, shape=(20, 22), channels=None, dtype=np.float32):
    full = (n,) + shape + ((channels,) if channels else ())
    clip = np.clip(0.5 + 0.2 * rng.standard_normal(full), 0, 1)
    if dtype == np.uint8:
        return (clip * 255).round().astype(np.uint8)
    return clip.astype(dtype)


@pytest.mark.parametrize("method", ["fast", "exact", "patchwise"])
@pytest.mark.parametrize("chunks", [(2, -1, -1), (3, 9, 11), (-1, -1, -1)])
def test_equals_in_memory_bit_for_bit(rng, method, chunks):
    clip = _clip(rng)
    expected = nlmeans.denoise_sequence(clip, method=method, temporal_radius=2)
    lazy = da.from_array(clip, chunks=chunks)
    out, params = nlmeans.denoise_sequence(
        lazy, method=method, temporal_radius=2, return_params=True
    )
    assert isinstance(out, da.Array)
    assert out.chunks == lazy.chunks and out.dtype == clip.dtype
    np.testing.assert_array_equal(out.compute(), expected)
    assert (
        params
        == nlmeans.denoise_sequence(clip, method=method, temporal_radius=2, return_params=True)[1]
    )


def test_colour_uint8_and_other_time_axis(rng):
    clip = _clip(rng, n=5, channels=3, dtype=np.uint8)
    moved = np.moveaxis(clip, 0, 2)  # (y, x, t, c)
    expected = nlmeans.denoise_sequence(moved, time_axis=2, channel_axis=3)
    out = nlmeans.denoise_sequence(
        da.from_array(moved, chunks=(10, -1, 2, -1)), time_axis=2, channel_axis=3
    )
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out.compute(), expected)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(1, 6), st.integers(0, 3))
def test_any_time_chunking(rng, chunk, k):
    clip = _clip(rng, n=6, shape=(12, 13))
    expected = nlmeans.denoise_sequence(clip, temporal_radius=k)
    out = nlmeans.denoise_sequence(da.from_array(clip, chunks=(chunk, -1, -1)), temporal_radius=k)
    np.testing.assert_array_equal(out.compute(), expected)


def test_network_on_dask_equals_in_memory(rng, tmp_path):
    pytest.importorskip("torch")
    from test_sequence_neural import TINY_ST, _activated

    from nlmeans.neural import checkpoint

    weights = checkpoint.save_weights(tmp_path / "st.safetensors", _activated(TINY_ST))
    clip = _clip(rng, n=6)
    expected = nlmeans.denoise_sequence(clip, method="neural", weights=weights, sigma=0.1)
    out = nlmeans.denoise_sequence(
        da.from_array(clip, chunks=(2, -1, -1)), method="neural", weights=weights, sigma=0.1
    )
    np.testing.assert_allclose(out.compute(), expected, atol=1e-6)


def test_bad_input(rng):
    with pytest.raises(ValueError, match="pass channel_axis"):
        nlmeans.denoise_sequence(da.zeros((3, 8, 8, 2)))
    with pytest.raises(ValueError, match="3-D .* or 4-D"):
        nlmeans.denoise_sequence(da.zeros((3, 8)))
    with pytest.raises(ValueError, match="larger than the clip"):
        nlmeans.denoise_sequence(da.from_array(_clip(rng, n=2)), temporal_radius=2)
