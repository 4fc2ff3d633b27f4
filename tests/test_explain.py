"""nlmeans.explain: the per-pixel NLM weight map and the explanation picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from reference import window_weights

import nlmeans
from nlmeans.explain import explain_pixel, nlm_weight_map
from nlmeans.io import read_image

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"


def _noisy_crop(name="camera.png", size=40, sigma=0.08, seed=0):
    clean = read_image(SAMPLES / name).pixels[60 : 60 + size, 90 : 90 + size] / 255.0
    rng = np.random.default_rng(seed)
    return np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 1)


def _brute_force(u, row, col, h, sigma, s, d):
    """The "fast" weights of one window as plain loops (tests/reference.py); u is H x W x C."""
    return window_weights(
        np.moveaxis(u, -1, 0), (row, col), patch_size=s, patch_distance=d, h=h, sigma=sigma
    )


@pytest.mark.parametrize("position", [(0, 0), (20, 17), (39, 39), (2, 37)])
def test_matches_the_formula(position):
    u = _noisy_crop()
    got = nlm_weight_map(u, position, h=0.07, sigma=0.08, patch_size=5, patch_distance=4)
    want = _brute_force(u[..., None], *position, 0.07, 0.08, 5, 4)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


def test_colour_matches_the_formula_and_channel_axis():
    rgb = read_image(SAMPLES / "astronaut.png").pixels[100:130, 100:130]
    got = nlm_weight_map(
        rgb, (5, 25), h=0.05, sigma=0.02, patch_size=3, patch_distance=3, channel_axis=-1
    )
    want = _brute_force(rgb / 255.0, 5, 25, 0.05, 0.02, 3, 3)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    first = np.moveaxis(rgb, -1, 0)
    np.testing.assert_allclose(
        nlm_weight_map(
            first, (5, 25), h=0.05, sigma=0.02, patch_size=3, patch_distance=3, channel_axis=0
        ),
        got,
    )


def test_properties():
    u = _noisy_crop()
    w = nlm_weight_map(u, (0, 0), h=0.1, sigma=0.05, patch_size=3, patch_distance=5)
    assert w.shape == (11, 11)
    assert w.sum() == pytest.approx(1.0)
    # the window is clipped at the image border: rows/columns above and left of (0, 0) are 0
    assert np.all(w[:5, :] == 0) and np.all(w[:, :5] == 0)
    assert np.all(w[5:, 5:] > 0)
    # the centre compares a patch with itself: distance 0, weight exp(0) = the maximum
    assert w[5, 5] == w.max()
    # uint8 input is read on the [0, 1] scale
    u8 = np.clip(np.rint(u * 255), 0, 255).astype(np.uint8)
    np.testing.assert_allclose(
        nlm_weight_map(u8, (7, 7), h=0.1, sigma=0.05, patch_size=3, patch_distance=2),
        nlm_weight_map(u8 / 255.0, (7, 7), h=0.1, sigma=0.05, patch_size=3, patch_distance=2),
    )


def test_weighted_window_is_the_denoised_pixel():
    u = _noisy_crop().astype(np.float32)
    params = nlmeans.resolve_parameters(u, patch_size=5, patch_distance=3)
    out = nlmeans.denoise(
        u, h=params.h, sigma=params.sigma, patch_size=5, patch_distance=3, method="fast", threads=1
    )
    padded = np.pad(u.astype(np.float64), 3)  # zeros outside: their weights are 0 anyway
    for row, col in [(0, 0), (10, 30), (39, 0), (25, 25)]:
        w = nlm_weight_map(
            u, (row, col), h=params.h, sigma=params.sigma, patch_size=5, patch_distance=3
        )
        window = padded[row : row + 7, col : col + 7]
        assert float(np.sum(w * window)) == pytest.approx(float(out[row, col]), abs=2e-5)


def test_bad_arguments():
    u = _noisy_crop(size=20)
    kwargs = dict(h=0.1, sigma=0.05, patch_size=3, patch_distance=2)
    with pytest.raises(ValueError, match="outside"):
        nlm_weight_map(u, (20, 0), **kwargs)
    with pytest.raises(ValueError, match="position"):
        nlm_weight_map(u, (1,), **kwargs)
    with pytest.raises(ValueError, match="patch_size"):
        nlm_weight_map(u, (1, 1), **{**kwargs, "patch_size": 4})
    with pytest.raises(ValueError, match="patch_distance"):
        nlm_weight_map(u, (1, 1), **{**kwargs, "patch_distance": -1})
    with pytest.raises(ValueError, match="h must"):
        nlm_weight_map(u, (1, 1), **{**kwargs, "h": 0.0})
    with pytest.raises(ValueError, match="sigma"):
        nlm_weight_map(u, (1, 1), **{**kwargs, "sigma": -0.1})
    with pytest.raises(ValueError, match="channel_axis"):
        nlm_weight_map(np.zeros((4, 4, 3)), (1, 1), **kwargs)


def test_explain_pixel_without_neural_panel():
    u = _noisy_crop()
    result = explain_pixel(u, (10, 12), patch_size=3, patch_distance=4, neural=False)
    assert (
        result.picture.dtype == np.uint8
        and result.picture.ndim == 3
        and result.picture.shape[2] == 3
    )
    assert result.attention is None
    assert any("not requested" in n for n in result.notes)
    # image | search window | NLM weights: three panels of 256 px and two 6 px gaps
    assert result.picture.shape[1] == 3 * 256 + 2 * 6
    assert result.parameters["patch_size"] == 3 and result.parameters["patch_distance"] == 4
    assert 1.0 <= result.effective_neighbours <= 81
    top = result.top_neighbours(3)
    assert len(top) == 3 and all(abs(r - 10) <= 4 and abs(c - 12) <= 4 for r, c, _ in top)
    assert top[0][2] == pytest.approx(result.weights.max())
    w = result.weights
    assert result.sharing_largest_weight == np.count_nonzero(np.isclose(w, w.max(), rtol=1e-6))
    assert result.sharing_largest_weight >= 1
    # a corner of a tiny image: only its pixels, never places outside it
    tiny = u[:3, :3]
    corner = explain_pixel(tiny, (0, 0), patch_size=1, patch_distance=4, sigma=0.0, neural=False)
    for r, c, w in corner.top_neighbours(10):
        assert 0 <= r < 3 and 0 <= c < 3 and w > 0


def test_explain_pixel_with_a_neural_model(tmp_path):
    torch = pytest.importorskip("torch")
    from nlmeans.neural import NonLocalDenoiser, save_weights

    torch.manual_seed(0)
    model = NonLocalDenoiser()  # untrained, seeded: the drawing does not depend on training
    weights = save_weights(tmp_path / "w.safetensors", model)
    u = _noisy_crop(size=48)
    result = explain_pixel(u, (20, 31), neural_weights=weights, patch_size=3, patch_distance=3)
    assert result.attention is not None
    info = result.attention_info
    window = model.config.window
    assert info["window"] == window and info["query"] == (10, 15)
    assert result.attention.shape == (24, 24)  # half resolution
    assert result.attention.sum() == pytest.approx(1.0, abs=1e-5)  # softmax mode
    qr, qc = info["query"]
    outside = np.ones(result.attention.shape, bool)
    outside[qr - window : qr + window + 1, qc - window : qc + window + 1] = False
    assert np.all(result.attention[outside] == 0)
    assert result.picture.shape[1] == 4 * 256 + 3 * 6
    assert result.notes == []


def test_explain_pixel_with_colour_and_spacetime_models(tmp_path):
    """A colour model sees the gray image in R, G and B; a spacetime model is
    refused by name (both used to fail on the tensor's shape)."""
    torch = pytest.importorskip("torch")
    from nlmeans.neural import DenoiserConfig, NonLocalDenoiser, save_weights

    torch.manual_seed(0)
    colour = NonLocalDenoiser(DenoiserConfig(in_channels=3, noise_level_input=True))
    weights = save_weights(tmp_path / "colour.safetensors", colour)
    u = _noisy_crop(size=32)
    result = explain_pixel(u, (10, 11), neural_weights=weights, patch_size=3, patch_distance=3)
    assert result.attention is not None and result.attention.sum() == pytest.approx(1.0, abs=1e-5)
    clip = NonLocalDenoiser(DenoiserConfig(frames=3))
    weights = save_weights(tmp_path / "clip.safetensors", clip)
    with pytest.raises(ValueError, match="clip.safetensors: a spacetime model"):
        explain_pixel(u, (10, 11), neural_weights=weights, patch_size=3, patch_distance=3)


def test_explain_pixel_reports_a_missing_model(tmp_path):
    pytest.importorskip("torch")
    u = _noisy_crop(size=24)
    result = explain_pixel(
        u, (3, 3), neural_weights=tmp_path / "missing.safetensors", patch_distance=2
    )
    assert result.attention is None
    assert any("neural panel left out" in n for n in result.notes)
    assert result.picture.shape[1] == 3 * 256 + 2 * 6


@pytest.mark.parametrize("position", [(10, 12), (0, 1), (39, 38)])
@pytest.mark.parametrize("colour", [False, True])
def test_explanation_estimate_is_the_window_averaged_with_the_weights(position, colour):
    u = _noisy_crop()
    if colour:
        u = np.stack([u, u[::-1], u[:, ::-1]], axis=-1)
    axis = -1 if colour else None
    result = explain_pixel(
        u,
        position,
        h=0.07,
        sigma=0.08,
        patch_size=3,
        patch_distance=4,
        channel_axis=axis,
        neural=False,
    )
    chw = np.moveaxis(u if colour else u[..., None], -1, 0)
    weights = _brute_force(np.moveaxis(chw, 0, -1), *position, 0.07, 0.08, 3, 4)
    row, col = position
    want = np.zeros(chw.shape[0])
    inside = 0
    for dr in range(-4, 5):
        for dc in range(-4, 5):
            r, c = row + dr, col + dc
            if 0 <= r < u.shape[0] and 0 <= c < u.shape[1]:
                want += weights[dr + 4, dc + 4] * chw[:, r, c]
                inside += 1
    np.testing.assert_allclose(np.atleast_1d(result.estimate), want, rtol=1e-10)
    np.testing.assert_array_equal(np.atleast_1d(result.value), chw[:, row, col])
    assert result.window_pixels == inside
