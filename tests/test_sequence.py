"""denoise_sequence: the spatio-temporal kernels against the brute-force reference,
k = 0 against frame-by-frame denoise, block and thread independence, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nlmeans
from nlmeans import _sequence


def _frames(rng, shape, channels=None):
    full = shape if channels is None else (channels,) + shape
    return rng.random(full)


@pytest.mark.parametrize("method", ["fast", "exact", "patchwise"])
def test_matches_reference_gray(rng, method):
    frames = _frames(rng, (4, 9, 10))
    options = dict(patch_size=3, patch_distance=2, h=0.3, sigma=0.05)
    out = nlmeans.denoise_sequence(frames, temporal_radius=1, method=method, **options)
    expected = reference.nlm_spacetime(
        frames[np.newaxis],
        temporal_radius=1,
        gaussian=method == "exact",
        patchwise=method == "patchwise",
        **options,
    )[0]
    np.testing.assert_allclose(out, expected, atol=2e-5)


@pytest.mark.parametrize("method", ["fast", "patchwise"])
def test_matches_reference_channels(rng, method):
    # Two channels, compared jointly (rgb path), channels last in each frame.
    frames = _frames(rng, (3, 8, 9), channels=2)
    options = dict(patch_size=3, patch_distance=2, h=0.4, sigma=0.0)
    out = nlmeans.denoise_sequence(
        np.moveaxis(frames, 0, -1), channel_axis=-1, temporal_radius=2, method=method, **options
    )
    expected = reference.nlm_spacetime(
        frames, temporal_radius=2, patchwise=method == "patchwise", **options
    )
    np.testing.assert_allclose(np.moveaxis(out, -1, 0), expected, atol=2e-5)


def test_opponent_matches_reference(rng):
    frames = _frames(rng, (3, 8, 8), channels=3)
    out = nlmeans.denoise_sequence(
        np.moveaxis(frames, 0, -1),
        channel_axis=-1,
        temporal_radius=1,
        patch_size=3,
        patch_distance=2,
        h=0.3,
        h_chroma=0.5,
        sigma=0.02,
        color_space="opponent",
    )
    opponent = np.tensordot(reference.OPPONENT, frames, axes=1)
    options = dict(patch_size=3, patch_distance=2, temporal_radius=1, sigma=0.02)
    luma = reference.nlm_spacetime(opponent[:1], h=0.3, **options)
    # The chrominance weights come from whole-colour patches: the reference
    # takes them with all channels and keeps the chrominance rows.
    chroma = _guided(opponent, h=0.5, **options)[1:]
    expected = np.tensordot(reference.OPPONENT.T, np.concatenate([luma, chroma]), axes=1)
    np.testing.assert_allclose(np.moveaxis(out, -1, 0), expected, atol=3e-5)


def _guided(frames, **options):
    """Pixel-wise spacetime NLM of all channels with weights from all channels."""
    return reference.nlm_spacetime(frames, **options)


@pytest.mark.parametrize("method", ["fast", "exact", "patchwise"])
@pytest.mark.parametrize("channels", [None, 3])
def test_radius_zero_is_frame_by_frame_exactly(rng, method, channels):
    frames = _frames(rng, (3, 40, 37), channels=channels)
    if channels is not None:
        frames = np.moveaxis(frames, 0, -1)
    # Frames sharing their [min, max] share the float scale denoise picks per image.
    frames[:, 0, 0] = 0.0
    frames[:, 0, 1] = 1.0
    axis = None if channels is None else -1
    options = dict(
        method=method,
        sigma=0.1,
        h=0.08,
        patch_size=5,
        patch_distance=4,
        channel_axis=axis,
        color_space="rgb",
    )
    out = nlmeans.denoise_sequence(frames, temporal_radius=0, **options)
    for t in range(frames.shape[0]):
        np.testing.assert_array_equal(out[t], nlmeans.denoise(frames[t], **options))


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n_frames=st.integers(2, 7),
    k=st.integers(0, 3),
    chunk=st.integers(1, 4),
    method=st.sampled_from(["fast", "patchwise"]),
)
def test_blocks_do_not_change_the_result(monkeypatch, n_frames, k, chunk, method):
    k = min(k, n_frames - 1)
    frames = np.random.default_rng(n_frames * 10 + k).random((n_frames, 12, 11)).astype(np.float32)
    options = dict(temporal_radius=k, method=method, patch_size=3, patch_distance=2, sigma=0.05)
    whole = nlmeans.denoise_sequence(frames, **options)
    monkeypatch.setattr(_sequence, "_MAX_CHUNK", chunk)
    streamed = np.stack(list(nlmeans.denoise_sequence(iter(frames), **options)))
    np.testing.assert_array_equal(whole, streamed)


def test_threads_do_not_change_the_result(rng):
    frames = _frames(rng, (4, 70, 33))
    one = nlmeans.denoise_sequence(frames, temporal_radius=1, sigma=0.1, threads=1)
    two = nlmeans.denoise_sequence(frames, temporal_radius=1, sigma=0.1, threads=2)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_dtype_shape_and_axes_kept(rng, dtype):
    frames = rng.random((12, 4, 10, 3))  # (y, t, x, c): time on axis 1
    if dtype != np.float32:
        frames = (frames * np.iinfo(dtype).max).astype(dtype)
    else:
        frames = frames.astype(dtype)
    out = nlmeans.denoise_sequence(frames, time_axis=1, channel_axis=-1, temporal_radius=1)
    assert out.shape == frames.shape and out.dtype == frames.dtype
    moved = np.moveaxis(frames, 1, 0)
    again = nlmeans.denoise_sequence(moved, channel_axis=-1, temporal_radius=1)
    np.testing.assert_array_equal(np.moveaxis(out, 1, 0), again)


def test_spacetime_beats_frame_by_frame_on_a_static_scene():
    rng = np.random.default_rng(5)
    clean = np.kron(rng.random((6, 6)), np.ones((6, 6)))  # piecewise constant 36 x 36
    noisy = clean + 0.1 * rng.standard_normal((7,) + clean.shape)
    options = dict(sigma=0.1, patch_size=3, patch_distance=3, h=0.08)
    alone = nlmeans.denoise_sequence(noisy, temporal_radius=0, **options)
    spacetime = nlmeans.denoise_sequence(noisy, temporal_radius=2, **options)
    err_alone = np.mean((alone - clean) ** 2)
    err_spacetime = np.mean((spacetime - clean) ** 2)
    assert err_spacetime < 0.7 * err_alone


def test_generator_input_and_params(rng):
    frames = [rng.random((16, 16)) for _ in range(6)]
    gen, params = nlmeans.denoise_sequence(
        (f for f in frames), temporal_radius=2, return_params=True
    )
    assert params.temporal_radius == 2 and "sigma" in params.automatic
    out = list(gen)
    assert len(out) == 6
    again = nlmeans.denoise_sequence(np.stack(frames), **params.denoise_kwargs())
    np.testing.assert_array_equal(np.stack(out), again)


def test_a_list_is_its_frames(rng):
    rgb = rng.random((5, 24, 24, 3))
    as_array = nlmeans.denoise_sequence(rgb, channel_axis=-1, temporal_radius=1)
    # channel_axis counts in a frame, as for any iterable (it counted in the stack)
    as_list = nlmeans.denoise_sequence(list(rgb), channel_axis=2, temporal_radius=1)
    streamed = list(nlmeans.denoise_sequence(iter(rgb), channel_axis=2, temporal_radius=1))
    np.testing.assert_array_equal(as_list, as_array)
    np.testing.assert_array_equal(as_list, np.stack(streamed))
    clip = rng.random((4, 16, 16)).astype(np.float32)
    # a uint8 frame among [0, 1] floats kept its 0-255 values, silently
    mixed = [(clip[0] * 255).astype(np.uint8)] + list(clip[1:])
    with pytest.raises(ValueError, match="frame 1 has .* dtype float32, the first .* uint8"):
        nlmeans.denoise_sequence(mixed)
    with pytest.raises(ValueError, match=r"frame 1 has shape \(12, 16\)"):
        nlmeans.denoise_sequence([clip[0], clip[1][:12]])
    with pytest.raises(ValueError, match="time_axis applies to an array"):
        nlmeans.denoise_sequence(list(clip), time_axis=1)
    # the parameters read any iterable of frames
    params = nlmeans.resolve_sequence_parameters(iter(clip), sigma=0.1)
    assert params == nlmeans.resolve_sequence_parameters(clip, sigma=0.1)


def test_automatic_radius_capped_by_short_clip(rng):
    out, params = nlmeans.denoise_sequence(rng.random((2, 16, 16)), return_params=True)
    assert params.temporal_radius <= 1 and out.shape == (2, 16, 16)


def test_bad_input(rng):
    frames = rng.random((3, 16, 16))
    with pytest.raises(ValueError, match="temporal_radius=3 is larger than the clip"):
        nlmeans.denoise_sequence(frames, temporal_radius=3)
    with pytest.raises(ValueError, match="larger than the clip"):
        list(nlmeans.denoise_sequence(iter(frames), temporal_radius=5))
    with pytest.raises(ValueError, match="same size"):
        list(nlmeans.denoise_sequence(iter([frames[0]] * 6 + [frames[0][:8]]), temporal_radius=1))
    with pytest.raises(ValueError, match="fast, exact, patchwise, neural"):
        nlmeans.denoise_sequence(frames, method="bm3d")
    with pytest.raises(ValueError, match="channel_axis"):
        nlmeans.denoise_sequence(rng.random((3, 16, 16, 3)))
    with pytest.raises(ValueError, match="NaN"):
        nlmeans.denoise_sequence(np.full((3, 8, 8), np.nan))
    with pytest.raises(TypeError, match="temporal_radius"):
        nlmeans.denoise_sequence(frames, temporal_radius=1.5)
