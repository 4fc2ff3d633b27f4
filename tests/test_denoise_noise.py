"""nlmeans.denoise under a Poisson-Gaussian noise model (``noise=``)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data, transform

import nlmeans
from nlmeans.noise import NoiseModel, generalized_anscombe, inverse_generalized_anscombe

A, B = (40 / 255) ** 2 - (5 / 255) ** 2, (5 / 255) ** 2  # std 5 (black) to 40 (white) gray levels


@pytest.fixture(scope="module")
def camera():
    clean = transform.downscale_local_mean(data.camera() / 255.0, (2, 2))
    noisy = clean + np.sqrt(A * clean + B) * np.random.default_rng(0).standard_normal(clean.shape)
    return clean, noisy


def _psnr(clean, out):
    return -10 * np.log10(np.mean((np.clip(out, 0, 1) - clean) ** 2))


@pytest.mark.parametrize("method", ["fast", "patchwise"])
def test_given_model_is_stabilise_denoise_invert(camera, method):
    """The pipeline, spelled out: GAT, rescale, Gaussian NLM, unbiased inverse."""
    _, noisy = camera
    model = NoiseModel("poisson-gaussian", A, B)
    kw = dict(method=method, patch_size=3, patch_distance=4, h=0.05)
    out, params = nlmeans.denoise(noisy, noise=model, return_params=True, **kw)
    stabilised = generalized_anscombe(noisy, model)
    lo, spread = stabilised.min(), stabilised.max() - stabilised.min()
    inner = nlmeans.denoise((stabilised - lo) / spread, sigma=1 / spread, **kw)
    expected = np.clip(
        inverse_generalized_anscombe(inner * spread + lo, model), noisy.min(), noisy.max()
    )
    np.testing.assert_allclose(out, expected, atol=1e-6, rtol=0)
    assert params.noise_model == model and not params.sigma_estimated
    assert params.sigma == pytest.approx(1 / spread)


@pytest.mark.parametrize("method", ["fast", "exact", "patchwise"])
def test_estimated_model_beats_one_global_sigma(camera, method):
    clean, noisy = camera
    gaussian = _psnr(clean, nlmeans.denoise(noisy, method=method))
    out, params = nlmeans.denoise(noisy, method=method, noise="auto", return_params=True)
    assert params.noise_model.kind == "poisson-gaussian" and "noise" in params.automatic
    assert _psnr(clean, out) > gaussian + 0.5


def test_auto_on_white_noise_is_the_gaussian_path():
    clean = transform.downscale_local_mean(data.camera() / 255.0, (2, 2))
    noisy = clean + np.random.default_rng(1).normal(0, 20 / 255, clean.shape)
    auto, params = nlmeans.denoise(noisy, noise="auto", return_params=True)
    np.testing.assert_array_equal(auto, nlmeans.denoise(noisy))
    assert params.noise_model is None and params.sigma_estimated


def test_colour_and_integer_images(camera):
    clean, _ = camera
    rgb = np.dstack([clean, clean[::-1], clean[:, ::-1]])
    noisy = rgb + np.sqrt(A * rgb + B) * np.random.default_rng(2).standard_normal(rgb.shape)
    u8 = np.clip(np.rint(noisy * 255), 0, 255).astype(np.uint8)
    out, params = nlmeans.denoise(u8, channel_axis=-1, noise="poisson-gaussian", return_params=True)
    assert out.dtype == np.uint8 and out.shape == u8.shape
    assert params.color_space == "opponent" and params.noise_model.channels == 3
    assert _psnr(rgb, out / 255.0) > _psnr(rgb, u8 / 255.0) + 5


def test_colour_channels_are_stabilised_each_from_its_own_minimum(camera):
    """Each channel is shifted to start at 0 and all share the widest range:
    a channel with a small ``a`` sits 2 sqrt(b) / a away from the others."""
    clean, _ = camera
    rgb = np.dstack([clean, 0.2 + 0.5 * clean[::-1], clean[:, ::-1]])
    noisy = rgb + 0.05 * np.random.default_rng(3).standard_normal(rgb.shape)
    model = NoiseModel("poisson-gaussian", [A, 1e-5, A], [B, 0.0025, B])
    kw = dict(channel_axis=-1, patch_size=3, patch_distance=4, h=0.05)
    out, params = nlmeans.denoise(noisy, noise=model, return_params=True, **kw)
    stabilised = generalized_anscombe(noisy, model, channel_axis=-1)
    lo = stabilised.min(axis=(0, 1), keepdims=True)
    spread = (stabilised.max(axis=(0, 1), keepdims=True) - lo).max()
    assert lo[0, 0, 1] > 100 * lo[0, 0, 0]  # the offsets this guards against
    inner = nlmeans.denoise((stabilised - lo) / spread, sigma=1 / spread, **kw)
    expected = inverse_generalized_anscombe(inner * spread + lo, model, channel_axis=-1)
    np.testing.assert_allclose(out, np.clip(expected, noisy.min(), noisy.max()), atol=1e-6)
    assert params.sigma == pytest.approx(1 / spread)


@pytest.mark.parametrize("method", ["fast", "neural"])
def test_a_constant_channel_under_an_estimated_poisson_gaussian_model(camera, method):
    """estimate_noise gives an exactly constant channel a = b = 0; the
    transform leaves such a channel as it is (it failed: "no noise in
    channel 2"), and it comes back unchanged."""
    clean, noisy = camera
    rgb = np.dstack([noisy, noisy[::-1], np.zeros_like(noisy)])
    model = nlmeans.estimate_noise(rgb, channel_axis=-1, model="poisson-gaussian")
    assert model.a[2] == model.b[2] == 0
    stabilised = generalized_anscombe(rgb, model, channel_axis=-1)
    assert np.all(stabilised[..., 2] == 0)
    np.testing.assert_array_equal(
        inverse_generalized_anscombe(stabilised, model, channel_axis=-1)[..., 2], 0
    )
    out, params = nlmeans.denoise(
        rgb, method=method, channel_axis=-1, noise="poisson-gaussian", return_params=True
    )
    assert np.all(out[..., 2] == 0)
    assert _psnr(clean, out[..., 0]) > _psnr(clean, noisy) + 3
    # the resolved parameters replay the call (the command line does this)
    again = nlmeans.denoise(rgb, channel_axis=-1, **params.denoise_kwargs())
    np.testing.assert_array_equal(again, out)
    # a channel that varies still needs noise to be stabilised
    with pytest.raises(ValueError, match="no noise in channel 2.*not constant"):
        generalized_anscombe(np.dstack([noisy, noisy, noisy]), model, channel_axis=-1)


def test_poisson_gaussian_fit_to_white_colour_noise_still_denoises():
    """White noise fitted as Poisson-Gaussian finds a ~ 0 (1e-16 in one
    channel here); the transform treats such a channel as Gaussian, where its
    offset 2 sqrt(b) / a used to leave no precision for the image."""
    clean = transform.downscale_local_mean(data.astronaut() / 255.0, (4, 4, 1))
    noisy = clean + 0.08 * np.random.default_rng(4).standard_normal(clean.shape)
    model = nlmeans.estimate_noise(noisy, channel_axis=-1, model="poisson-gaussian")
    gaussian = _psnr(clean, nlmeans.denoise(noisy, channel_axis=-1))
    for noise in (model, NoiseModel("poisson-gaussian", [1e-12, 2e-12, 3e-12], [0.0064] * 3)):
        out = nlmeans.denoise(noisy, channel_axis=-1, noise=noise)
        assert _psnr(clean, out) > gaussian - 0.5


def test_negligible_a_is_the_gaussian_transform():
    """Only an a so small that the transform's offset 2 sqrt(b) / a passes 1e9
    (a fit's 1e-14 on white noise) is taken as Gaussian: on any image scale
    (photon counts up to 4000 with a = 1, b = 2000 included) a real Poisson
    term keeps its transform."""
    z = np.linspace(-0.1, 1.2, 50)
    for a in (0.0, 1e-14, 1.9e-10):
        model = NoiseModel("poisson-gaussian", a, 0.01)
        np.testing.assert_array_equal(generalized_anscombe(z, model), z / 0.1)
        np.testing.assert_allclose(inverse_generalized_anscombe(z / 0.1, model), z, atol=1e-15)
    for a, b, scale in ((1e-6, 0.01, 1.0), (1.0, 2000.0, 4000.0)):
        model = NoiseModel("poisson-gaussian", a, b)
        counts = np.linspace(0, scale, 50)
        assert not np.allclose(generalized_anscombe(counts, model), counts / np.sqrt(b))


def test_neural_under_poisson_gaussian(camera):
    clean, noisy = camera
    crop_clean, crop = clean[:64, :64], noisy[:64, :64]
    out = nlmeans.denoise(crop, method="neural", noise=NoiseModel("poisson-gaussian", A, B))
    assert out.shape == crop.shape and _psnr(crop_clean, out) > _psnr(crop_clean, crop) + 3


def test_noise_free_image_takes_the_gaussian_path():
    flat = np.full((32, 32), 0.5)
    for noise in ("poisson-gaussian", "auto"):
        np.testing.assert_array_equal(nlmeans.denoise(flat, noise=noise), flat)


def test_gaussian_model_is_sigma():
    image = np.random.default_rng(3).random((24, 24))
    model = NoiseModel("gaussian", 0.0, 0.1**2)
    out = nlmeans.denoise(image, noise=model)
    np.testing.assert_array_equal(out, nlmeans.denoise(image, sigma=0.1))


def test_neural_keeps_one_sigma_when_gaussian_is_asked_for(camera):
    """noise=None lets the network's map follow a Poisson-Gaussian fit;
    noise="gaussian" (or "white") is one sigma, as for the classical methods."""
    pytest.importorskip("torch")
    _, noisy = camera
    _, default = nlmeans.denoise(noisy, method="neural", return_params=True)
    assert default.noise_model is not None and default.noise_model.kind == "poisson-gaussian"
    for noise in ("gaussian", "white"):
        _, params = nlmeans.denoise(noisy, method="neural", noise=noise, return_params=True)
        assert params.noise_model is None and params.sigma_estimated


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(noise="poisson"), ValueError, "noise must be one of"),
        (dict(noise=3), ValueError, "noise must be one of"),
        (dict(noise="auto", sigma=0.1), ValueError, "sigma cannot be combined"),
        (dict(noise=NoiseModel("poisson-gaussian", A, B), sigma=0.1), ValueError, "sigma"),
        (dict(noise=NoiseModel("poisson-gaussian", (A, A), (B, B))), ValueError, "2 channels"),
    ],
)
def test_bad_noise_arguments(kwargs, exc, match):
    image = np.random.default_rng(0).random((16, 16))
    with pytest.raises(exc, match=match):
        nlmeans.denoise(image, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(method="patchwise", channel_axis=-1),
        dict(method="exact", channel_axis=-1, color_space="rgb"),
        dict(noise="auto"),
        dict(noise="poisson-gaussian", channel_axis=-1, method="fast"),
        dict(method="neural"),
        dict(method="neural", noise="white"),
        dict(method="neural", noise="gaussian", channel_axis=-1),
    ],
)
def test_resolved_parameters_reproduce_the_call(camera, kwargs):
    """params.denoise_kwargs() hands the resolved parameters on (what the CLI does)."""
    _, noisy = camera
    image = np.dstack([noisy] * 3) if kwargs.get("channel_axis") is not None else noisy
    out, params = nlmeans.denoise(image, return_params=True, **kwargs)
    again = nlmeans.denoise(
        image, channel_axis=kwargs.get("channel_axis"), **params.denoise_kwargs()
    )
    np.testing.assert_array_equal(again, out)
