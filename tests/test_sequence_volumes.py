"""denoise_sequence on volumes over time (3-D + t): the kernel against the
brute-force reference, k = 0 against volume-by-volume denoise, independence
of blocks, threads and Dask chunks, automatic parameters and the gain they
bring, and bad input. The kernel's bounds: tests/test_sequence_boundscheck.py."""

from __future__ import annotations

import numpy as np
import pytest
import reference

import nlmeans
from nlmeans import _sequence, _sequence_kernels
from nlmeans.synthetic import make_volume_sequence


def _series(rng, shape, channels=None):
    return rng.random(shape if channels is None else shape + (channels,))


@pytest.mark.parametrize("method", ["fast", "exact", "patchwise"])
@pytest.mark.parametrize("k", [1, 2])
def test_matches_reference_gray(rng, method, k):
    series = _series(rng, (4, 5, 6, 7))
    series[:, 0, 0, 0] = 0.0  # the float scale is then the identity
    series[:, 0, 0, 1] = 1.0
    options = dict(patch_size=3, patch_distance=2, h=0.3, sigma=0.05)
    out = nlmeans.denoise_sequence(series, temporal_radius=k, method=method, **options)
    expected = reference.nlm_volume_spacetime(
        series[np.newaxis],
        temporal_radius=k,
        gaussian=method == "exact",
        patchwise=method == "patchwise",
        **options,
    )[0]
    for t in range(series.shape[0]):  # the output is clipped to its window's range
        window = series[max(0, t - k) : t + k + 1]
        expected[t] = np.clip(expected[t], window.min(), window.max())
    np.testing.assert_allclose(out, expected, atol=2e-5)


@pytest.mark.parametrize("method", ["fast", "patchwise"])
def test_matches_reference_channels(rng, method):
    series = _series(rng, (3, 4, 6, 5), channels=2)
    series[..., 0, 0, 0, :] = [0.0, 1.0]
    options = dict(patch_size=3, patch_distance=1, h=0.4, sigma=0.0)
    out = nlmeans.denoise_sequence(
        series, channel_axis=-1, temporal_radius=1, method=method, **options
    )
    expected = reference.nlm_volume_spacetime(
        np.moveaxis(series, -1, 0), temporal_radius=1, patchwise=method == "patchwise", **options
    )
    np.testing.assert_allclose(np.moveaxis(out, -1, 0), expected, atol=2e-5)


@pytest.mark.parametrize("method", ["fast", "exact", "patchwise"])
@pytest.mark.parametrize("channels", [None, 3])
def test_radius_zero_is_volume_by_volume_exactly(rng, method, channels):
    series = _series(rng, (3, 6, 40, 9), channels=channels)
    series[:, 0, 0, 0] = 0.0  # volumes sharing [min, max] share denoise's float scale
    series[:, 0, 0, 1] = 1.0
    axis = None if channels is None else -1
    options = dict(method=method, sigma=0.1, h=0.08, patch_size=3, patch_distance=2)
    options.update(channel_axis=axis)
    out = nlmeans.denoise_sequence(series, temporal_radius=0, **options)
    for t in range(series.shape[0]):
        np.testing.assert_array_equal(out[t], nlmeans.denoise(series[t], **options))


@pytest.mark.parametrize("method", ["fast", "patchwise"])
@pytest.mark.parametrize("chunk", [1, 2])
def test_blocks_threads_and_dask_do_not_change_the_result(monkeypatch, rng, chunk, method):
    da = pytest.importorskip("dask.array")
    series = _series(rng, (6, 5, 37, 8)).astype(np.float32)
    options = dict(temporal_radius=2, patch_size=3, patch_distance=2, sigma=0.05, method=method)
    whole = nlmeans.denoise_sequence(series, **options)
    one_thread = nlmeans.denoise_sequence(series, threads=1, **options)
    lazy = nlmeans.denoise_sequence(da.from_array(series, chunks=(chunk, 5, 20, 4)), **options)
    monkeypatch.setattr(_sequence, "_MAX_CHUNK", chunk)
    streamed = np.stack(list(nlmeans.denoise_sequence(iter(series), **options)))
    np.testing.assert_array_equal(whole, one_thread)
    np.testing.assert_array_equal(whole, streamed)
    np.testing.assert_array_equal(whole, lazy.compute())


def test_half_window_shifts_cover_each_pair_once():
    shifts = _sequence_kernels.volume_half_window_shifts(2, 1, 2)
    as_set = {tuple(s) for s in shifts}
    assert len(as_set) == len(shifts) == (5 * 3 * 5 * 5 - 1) // 2
    assert all(tuple(-np.array(s)) not in as_set for s in as_set)
    assert (shifts[:, 2] >= 0).all()  # partners never on an earlier row (the strips' halo)


@pytest.mark.parametrize("method", ["fast", "exact", "patchwise"])
def test_automatic_parameters_and_gain(method):
    image = (np.add.outer(np.arange(96), np.arange(96)) % 24 < 12) * 0.5 + 0.25
    image = image + 0.2 * np.sin(np.arange(96) / 5.0)[:, None]
    clean = make_volume_sequence(np.clip(image, 0, 1), 5, depth=8, seed=0)
    noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape)
    out, params = nlmeans.denoise_sequence(noisy, method=method, return_params=True)
    row = _sequence.VOLUME_PARAMETERS[method]
    expected = {key: value for key, value in row.items() if key != "h_over_sigma"}
    assert {key: getattr(params, key) for key in expected} == expected
    assert params.h == pytest.approx(row["h_over_sigma"] * params.sigma)
    volumes = np.stack([nlmeans.denoise(v, method=method) for v in noisy])

    def psnr(x):
        return 10 * np.log10(1 / np.mean((np.clip(x, 0, 1) - clean) ** 2))

    assert psnr(out) > psnr(volumes) + 0.3


def test_thin_stack_takes_a_smaller_patch(rng):
    out, params = nlmeans.denoise_sequence(rng.random((3, 3, 16, 16)), return_params=True)
    assert params.patch_size == 3 and out.shape == (3, 3, 16, 16)


def test_bad_input(rng):
    series = rng.random((3, 6, 16, 16))
    with pytest.raises(
        ValueError,
        match=r"volumes over time \(3-D \+ t\) are denoised with method='fast', 'exact' or "
        "'patchwise'",
    ):
        nlmeans.denoise_sequence(series, method="neural")
    with pytest.raises(ValueError, match="3-D .* or 4-D .* got 5-D"):
        nlmeans.denoise_sequence(rng.random((3, 6, 8, 8, 2)))
    with pytest.raises(ValueError, match="got 3-D"):
        nlmeans.denoise_sequence(rng.random((3, 8, 8)), channel_axis=-1)
    with pytest.raises(ValueError, match="smaller than the patch.*pass channel_axis"):
        nlmeans.denoise_sequence(rng.random((3, 16, 16, 3)))
    with pytest.raises(ValueError, match="larger than the clip"):
        nlmeans.denoise_sequence(series, temporal_radius=3)


def test_make_volume_sequence():
    image = np.random.default_rng(0).random((64, 64))
    a = make_volume_sequence(image, 4, depth=6, seed=1)
    b = make_volume_sequence(image, 4, depth=6, seed=1)
    assert a.shape == (4, 6, 32, 32) and np.array_equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    assert np.abs(np.diff(a, axis=0)).mean() > 0.01  # it moves
    with pytest.raises(ValueError, match="depth"):
        make_volume_sequence(image, 4, depth=0, seed=1)
    with pytest.raises(ValueError, match="2-D gray"):
        make_volume_sequence(np.zeros((8, 8, 3)), 4, depth=2, seed=1)
