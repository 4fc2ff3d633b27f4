"""``estimate_noise_level``: white noise read at the finest scale, camera noise at the coarser one."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data, transform
from skimage.metrics import peak_signal_noise_ratio as psnr
from typer.testing import CliRunner

import nlmeans
from nlmeans.io import write_image
from nlmeans.noise_level import _COARSE_SCALE, _flat_correlation, estimate_noise_level
from nlmeans_cli.main import app


@pytest.fixture(scope="module")
def astronaut():
    return transform.downscale_local_mean(data.astronaut() / 255.0, (2, 2, 1))  # 256x256 RGB


def _camera_noise(clean, sigma, rng, quality=90):
    """White noise on an RGGB mosaic, demosaicked and JPEG-compressed (what cameras do)."""
    raw = np.empty(clean.shape[:2])
    raw[0::2, 0::2] = clean[0::2, 0::2, 0]
    raw[0::2, 1::2] = clean[0::2, 1::2, 1]
    raw[1::2, 0::2] = clean[1::2, 0::2, 1]
    raw[1::2, 1::2] = clean[1::2, 1::2, 2]
    raw = raw + sigma * rng.standard_normal(raw.shape)
    r16 = np.clip(np.rint((raw + 0.05) * 60000), 0, 65535).astype(np.uint16)
    rgb = cv2.cvtColor(r16, cv2.COLOR_BayerBG2RGB) / 60000 - 0.05
    u8 = np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)
    _, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def _naive_flat_correlation(lum, tile=16, share=0.1, minimum=8):
    """The formula written out tile by tile, with a least-squares plane per tile."""
    from scipy import ndimage as ndi

    gy, gx = np.gradient(ndi.gaussian_filter(lum, 2.0))
    energy = gx**2 + gy**2
    tiles, scores = [], []
    for y in range(0, lum.shape[0] // tile * tile, tile):
        for x in range(0, lum.shape[1] // tile * tile, tile):
            tiles.append(lum[y : y + tile, x : x + tile])
            scores.append(energy[y : y + tile, x : x + tile].mean())
    order = np.argsort(scores, kind="stable")[: max(minimum, int(share * len(scores)))]
    yy, xx = np.mgrid[0:tile, 0:tile] / (tile - 1) - 0.5
    design = np.stack([np.ones(tile * tile), yy.ravel(), xx.ravel()], axis=1)
    power = lag = 0.0
    for k in order:
        coef, *_ = np.linalg.lstsq(design, tiles[k].ravel(), rcond=None)
        r = tiles[k] - (design @ coef).reshape(tile, tile)
        power += np.mean(r * r)
        lag += 0.5 * (np.mean(r[:, 1:] * r[:, :-1]) + np.mean(r[1:, :] * r[:-1, :]))
    return lag / power


def test_flat_correlation_matches_the_naive_formula(astronaut):
    rng = np.random.default_rng(0)
    lum = astronaut.mean(-1)[:200, :232] + 0.03 * rng.standard_normal((200, 232))
    assert _flat_correlation(lum) == pytest.approx(_naive_flat_correlation(lum), rel=1e-9)
    smooth = lum + 0.03 * rng.standard_normal(lum.shape)
    smooth = 0.25 * (
        smooth + np.roll(smooth, 1, 0) + np.roll(smooth, 1, 1) + np.roll(smooth, 1, (0, 1))
    )
    assert _flat_correlation(smooth) == pytest.approx(_naive_flat_correlation(smooth), rel=1e-9)


@pytest.mark.parametrize("sigma255", [15, 25, 50])
@pytest.mark.parametrize("colour", [False, True])
def test_white_noise_reads_as_white_and_keeps_the_finest_scale_estimate(
    astronaut, sigma255, colour
):
    rng = np.random.default_rng(sigma255)
    clean = astronaut if colour else astronaut.mean(-1)
    noisy = clean + sigma255 / 255 * rng.standard_normal(clean.shape)
    axis = -1 if colour else None
    level = estimate_noise_level(noisy, channel_axis=axis)
    assert level.correlated == 0.0
    assert level.sigma == nlmeans.estimate_sigma(noisy, channel_axis=axis)
    assert abs(level.flat_correlation) < 0.15
    if not colour:  # colour reads coarse_sigma on the luminance, where texture weighs more
        assert level.coarse_sigma == pytest.approx(level.white_sigma, rel=0.3)
    # So every automatic result on white noise is what noise="white" gives.
    auto, params = nlmeans.denoise(noisy, channel_axis=axis, return_params=True)
    assert params.correlated_noise == 0.0
    np.testing.assert_array_equal(auto, nlmeans.denoise(noisy, channel_axis=axis, noise="white"))


@pytest.mark.parametrize("sigma255", [3, 6])
def test_camera_noise_reads_as_correlated_at_its_strength(astronaut, sigma255):
    clean = astronaut[:, :, :]
    noisy = _camera_noise(clean, sigma255 / 255, np.random.default_rng(1))
    reference = _camera_noise(clean, 0.0, np.random.default_rng(1))
    # Demosaicked noise moves R, G and B together: its strength is read on the
    # orthonormal luminance, where white noise reads its per-channel sigma.
    true = np.std((noisy / 255 - reference / 255).sum(axis=-1) / np.sqrt(3))
    level = estimate_noise_level(noisy, channel_axis=-1)
    assert level.correlated == 1.0
    assert level.flat_correlation > 0.35
    assert level.white_sigma < 0.5 * true  # what the finest scale misses
    assert 0.6 * true < level.sigma < 1.6 * true
    assert level.sigma == pytest.approx(_COARSE_SCALE * level.coarse_sigma, rel=1e-12)


def test_denoising_camera_noise_gains_over_the_white_noise_estimate(astronaut):
    noisy = _camera_noise(astronaut, 6 / 255, np.random.default_rng(2))
    reference = _camera_noise(astronaut, 0.0, np.random.default_rng(2))
    auto, params = nlmeans.denoise(noisy, channel_axis=-1, return_params=True)
    white = nlmeans.denoise(noisy, channel_axis=-1, noise="white")
    assert params.correlated_noise == 1.0 and params.sigma_estimated
    gain_auto = psnr(reference, auto) - psnr(reference, noisy)
    gain_white = psnr(reference, white) - psnr(reference, noisy)
    assert gain_auto > gain_white + 0.5, (gain_auto, gain_white)
    # The resolved parameters reproduce the call; "auto" keeps the Gaussian path.
    np.testing.assert_array_equal(
        auto, nlmeans.denoise(noisy, channel_axis=-1, **params.denoise_kwargs())
    )
    _, auto_params = nlmeans.denoise(noisy, channel_axis=-1, noise="auto", return_params=True)
    assert auto_params.noise_model is None and auto_params.sigma == params.sigma


def test_the_network_gets_the_correlated_estimate_and_the_camera_model(astronaut):
    pytest.importorskip("torch")
    from nlmeans._denoise import uses_camera_model
    from nlmeans.io import from_unit_float, to_unit_float
    from nlmeans.neural import denoise as neural_denoise

    noisy = _camera_noise(astronaut[:96, :96], 6 / 255, np.random.default_rng(3))
    out, params = nlmeans.denoise(noisy, channel_axis=-1, method="neural", return_params=True)
    assert params.correlated_noise == 1.0 and uses_camera_model(params)
    # the camera model (when shipped) given the coarse-scale estimate
    floats = to_unit_float(noisy).astype(np.float32)
    direct = neural_denoise(floats, sigma=params.sigma, camera=True)
    expected = from_unit_float(np.clip(direct, floats.min(), floats.max()), noisy.dtype)
    np.testing.assert_array_equal(out, expected)
    # the parameters reproduce the result: the sigma is estimated again, and
    # with it the model
    kwargs = params.denoise_kwargs()
    assert "sigma" not in kwargs
    np.testing.assert_array_equal(out, nlmeans.denoise(noisy, channel_axis=-1, **kwargs))


def test_small_images_and_volumes_are_taken_as_white():
    rng = np.random.default_rng(0)
    for image in (rng.random((20, 40)), rng.random((24, 40, 40))):
        level = estimate_noise_level(image)
        assert level.correlated == 0.0 and level.sigma == nlmeans.estimate_sigma(image)
    constant = estimate_noise_level(np.full((64, 64), 0.5))
    assert constant.correlated == 0.0 and constant.sigma < 1e-12


def test_bad_input_is_refused_with_the_parameter_named():
    with pytest.raises(ValueError, match="channel_axis"):
        estimate_noise_level(np.zeros((32, 32)), channel_axis=3)
    with pytest.raises((TypeError, ValueError), match="NaN|finite"):
        estimate_noise_level(np.full((32, 32), np.nan))


@settings(max_examples=10, deadline=None)
@given(scale=st.floats(0.25, 4.0))
def test_estimate_scales_with_the_image(astronaut, scale):
    noisy = _camera_noise(astronaut[:128, :128], 6 / 255, np.random.default_rng(4)) / 255.0
    base = estimate_noise_level(noisy, channel_axis=-1)
    scaled = estimate_noise_level(noisy * scale, channel_axis=-1)
    assert scaled.sigma == pytest.approx(scale * base.sigma, rel=1e-6)
    assert scaled.flat_correlation == pytest.approx(base.flat_correlation, abs=1e-9)
    assert scaled.correlated == pytest.approx(base.correlated, abs=1e-9)


def test_cli_reports_correlated_noise_and_white_overrides(astronaut, tmp_path):
    noisy = _camera_noise(astronaut[:128, :128], 6 / 255, np.random.default_rng(5))
    src = write_image(tmp_path / "photo.png", noisy)
    runner = CliRunner()
    result = runner.invoke(app, ["denoise", str(src)])
    assert result.exit_code == 0, result.output
    assert "correlated noise (100%)" in " ".join(result.stderr.split())
    out = tmp_path / "white.png"
    result = runner.invoke(app, ["denoise", str(src), "--noise", "white", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "correlated noise" not in " ".join(result.stderr.split()) and out.exists()


def test_estimate_sigma_command_reports_the_correlated_sigma(astronaut, tmp_path):
    noisy = _camera_noise(astronaut[:128, :128], 6 / 255, np.random.default_rng(6))
    white = np.clip(
        np.rint(
            astronaut[:128, :128] * 255 + np.random.default_rng(7).normal(0, 20, (128, 128, 3))
        ),
        0,
        255,
    )
    photo = write_image(tmp_path / "photo.png", noisy)
    plain = write_image(tmp_path / "plain.png", white.astype(np.uint8))
    result = CliRunner().invoke(app, ["estimate-sigma", str(photo), str(plain)])
    assert result.exit_code == 0, result.output
    first, second = result.stdout.splitlines()
    level = estimate_noise_level(noisy, channel_axis=-1)
    assert f"denoise uses sigma = {level.sigma:.6f}" in first and "correlated noise (100%)" in first
    assert "correlated" not in second.split(":", 1)[1]


def test_the_network_gets_a_fitted_map_for_signal_dependent_noise():
    pytest.importorskip("torch")
    clean = transform.downscale_local_mean(data.camera() / 255.0, (4, 4))  # 128x128
    rng = np.random.default_rng(8)
    a, b = (40 / 255) ** 2, (5 / 255) ** 2
    noisy = clean + np.sqrt(a * clean + b) * rng.standard_normal(clean.shape)
    out, params = nlmeans.denoise(noisy, method="neural", return_params=True)
    assert params.noise_model is not None and params.noise_model.kind == "poisson-gaussian"
    assert "noise" in params.automatic
    np.testing.assert_array_equal(out, nlmeans.denoise(noisy, **params.denoise_kwargs()))
    constant = nlmeans.denoise(noisy, method="neural", noise="white")
    assert psnr(clean, out, data_range=1) > psnr(clean, np.clip(constant, 0, 1), data_range=1) + 0.5
    # White noise keeps the constant map of estimate_sigma, bit for bit.
    white = clean + 20 / 255 * rng.standard_normal(clean.shape)
    out, params = nlmeans.denoise(white, method="neural", return_params=True)
    assert params.noise_model is None
    np.testing.assert_array_equal(out, nlmeans.denoise(white, method="neural", noise="white"))
