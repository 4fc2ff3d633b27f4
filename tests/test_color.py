"""Colour images: the opponent (luminance/chrominance) path and color_space."""

from __future__ import annotations

import numpy as np
import pytest
from reference import nlm_opponent

import nlmeans
from nlmeans._color import OPPONENT

CLASSICAL = ("fast", "exact", "patchwise")


@pytest.mark.parametrize("method", CLASSICAL)
def test_opponent_matches_reference(method, rng):
    image = rng.random((9, 11, 3))
    kw = dict(patch_size=3, patch_distance=2, sigma=0.05)
    out = nlmeans.denoise(
        image, method=method, channel_axis=-1, color_space="opponent", h=0.3, h_chroma=0.7, **kw
    )
    ref_kw = dict(kw, gaussian=True) if method == "exact" else kw
    expected = nlm_opponent(
        np.moveaxis(image, -1, 0), h=0.3, h_chroma=0.7, patchwise=method == "patchwise", **ref_kw
    )
    np.testing.assert_allclose(out, np.moveaxis(expected, 0, -1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ("fast", "patchwise"))
def test_opponent_volume_with_channels_matches_reference(method, rng):
    volume = rng.random((3, 5, 6, 7))  # channels first
    kw = dict(patch_size=3, patch_distance=1, sigma=0.05)
    out = nlmeans.denoise(
        volume, method=method, channel_axis=0, color_space="opponent", h=0.4, h_chroma=0.9, **kw
    )
    expected = nlm_opponent(volume, h=0.4, h_chroma=0.9, patchwise=method == "patchwise", **kw)
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)


def test_opponent_transform_is_orthonormal():
    np.testing.assert_allclose(OPPONENT @ OPPONENT.T, np.eye(3), atol=1e-15)
    # The first row is the luminance: a gray pixel has no chrominance.
    np.testing.assert_allclose(OPPONENT[1:] @ np.ones(3), 0, atol=1e-15)


@pytest.mark.parametrize("method", CLASSICAL)
def test_gray_image_in_three_channels_equals_gray_denoising(method, rng):
    """A gray image copied into R, G and B has luminance sqrt(3) g and no
    chrominance, so the opponent path with h and sigma scaled by sqrt(3)
    is gray denoising of g."""
    gray = rng.random((14, 15))
    kw = dict(patch_size=3, patch_distance=3, method=method)
    expected = nlmeans.denoise(gray, h=0.2, sigma=0.05, **kw)
    out = nlmeans.denoise(
        np.dstack([gray] * 3),
        channel_axis=-1,
        color_space="opponent",
        h=0.2 * np.sqrt(3),
        h_chroma=0.5,
        sigma=0.05 * np.sqrt(3),
        **kw,
    )
    for c in range(3):
        np.testing.assert_allclose(out[..., c], expected, atol=1e-5, rtol=0)


def test_auto_picks_opponent_for_three_channels_only(rng):
    for shape, axis, expected in [
        ((16, 16), None, "gray"),
        ((16, 16, 3), -1, "opponent"),
        ((3, 16, 16), 0, "opponent"),
        ((16, 16, 2), -1, "rgb"),
        ((16, 16, 4), -1, "rgb"),
        ((6, 16, 16, 3), -1, "opponent"),
    ]:
        params = nlmeans.resolve_parameters(rng.random(shape), channel_axis=axis, sigma=0.1)
        assert params.color_space == expected, shape
        assert (params.h_chroma is not None) == (expected == "opponent")
    params = nlmeans.resolve_parameters(
        rng.random((16, 16, 3)), channel_axis=-1, color_space="rgb", sigma=0.1
    )
    assert params.color_space == "rgb" and params.h_chroma is None


def test_automatic_chroma_h_follows_given_h(rng):
    image = rng.random((16, 16, 3))
    auto = nlmeans.resolve_parameters(image, channel_axis=-1, sigma=0.1)
    given = nlmeans.resolve_parameters(image, channel_axis=-1, sigma=0.1, h=2 * auto.h)
    assert "h_chroma" in auto.automatic and "h" in auto.automatic
    assert given.h_chroma == pytest.approx(2 * auto.h_chroma)
    assert auto.h_chroma > auto.h  # chrominance is smoothed harder
    fixed = nlmeans.resolve_parameters(image, channel_axis=-1, sigma=0.1, h_chroma=0.3)
    assert fixed.h_chroma == 0.3 and "h_chroma" not in fixed.automatic


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_opponent_keeps_dtype_range_and_input(dtype, rng):
    image = rng.random((20, 21, 3))
    if np.dtype(dtype).kind == "u":
        image = (image * np.iinfo(dtype).max).astype(dtype)
    else:
        image = image.astype(dtype)
    before = image.copy()
    out = nlmeans.denoise(image, channel_axis=-1)
    assert out.dtype == image.dtype and out.shape == image.shape
    assert out.min() >= image.min() and out.max() <= image.max()
    np.testing.assert_array_equal(image, before)


def test_opponent_threads_do_not_change_a_bit(rng):
    image = rng.random((70, 40, 3)).astype(np.float32)
    one = nlmeans.denoise(image, channel_axis=-1, threads=1, method="patchwise")
    two = nlmeans.denoise(image, channel_axis=-1, threads=2, method="patchwise")
    np.testing.assert_array_equal(one, two)


def test_opponent_beats_joint_rgb_on_a_photograph():
    from skimage import data

    clean = data.astronaut()[100:228, 150:278].astype(np.float64) / 255
    noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape)

    def error(color_space):
        out = nlmeans.denoise(noisy, channel_axis=-1, color_space=color_space, sigma=25 / 255)
        return np.mean((np.clip(out, 0, 1) - clean) ** 2)

    assert error("opponent") < 0.9 * error("rgb")


@pytest.mark.parametrize(
    "shape, axis, kwargs, exc, match",
    [
        ((16, 16, 3), -1, dict(color_space="lab"), ValueError, "color_space"),
        ((16, 16, 3), -1, dict(color_space=None), ValueError, "color_space"),
        ((16, 16), None, dict(color_space="opponent"), ValueError, "3 colour channels"),
        ((16, 16, 4), -1, dict(color_space="opponent"), ValueError, "the image has 4"),
        ((16, 16, 3), -1, dict(color_space="rgb", h_chroma=0.2), ValueError, "h_chroma"),
        ((16, 16), None, dict(h_chroma=0.2), ValueError, "h_chroma"),
        ((16, 16, 3), -1, dict(h_chroma=-0.2), ValueError, "h_chroma"),
        ((16, 16, 3), -1, dict(h_chroma=0.0), ValueError, "h_chroma"),
        ((16, 16, 3), -1, dict(h_chroma="x"), TypeError, "h_chroma"),
        ((16, 16, 3), -1, dict(method="neural", h_chroma=0.2), ValueError, "h_chroma"),
        ((16, 16, 3), -1, dict(method="neural", color_space="opponent"), ValueError, "color_space"),
    ],
)
def test_bad_colour_parameters(shape, axis, kwargs, exc, match):
    image = np.random.default_rng(0).random(shape)
    with pytest.raises(exc, match=match):
        nlmeans.resolve_parameters(image, channel_axis=axis, **kwargs)


@pytest.mark.parametrize("method", ("fast", "neural"))
@pytest.mark.parametrize("value", (0.0, 0.5))
def test_a_constant_channel_is_kept_and_left_out_of_sigma(method, value):
    """An empty channel (a microscope's unused colour) is neither read as
    noise-free signal that halves the estimate, nor filled by chrominance
    smoothing: it comes back exactly as it was."""
    from skimage import data

    clean = data.astronaut()[::4, ::4] / 255.0
    noise = 0.08 * np.random.default_rng(5).standard_normal(clean.shape)
    noisy = np.clip(clean + noise, 0, 1).astype(np.float32)
    full = nlmeans.estimate_sigma(noisy[..., [0, 2]], channel_axis=-1)
    noisy[..., 1] = value
    assert nlmeans.estimate_sigma(noisy, channel_axis=-1) == pytest.approx(full, rel=1e-12)
    assert nlmeans.estimate_noise_level(noisy, channel_axis=-1).sigma > 0.8 * full
    out = nlmeans.denoise(noisy, channel_axis=-1, method=method)
    assert np.all(out[..., 1] == np.float32(value))
    # The colour network was trained on photographs, not on an empty
    # channel: it removes a third of the noise here, `fast` 42 %.
    assert np.abs(out[..., 0] - clean[..., 0]).mean() < 0.75 * np.abs(noise[..., 0]).mean()
