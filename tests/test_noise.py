"""nlmeans.noise: the Poisson-Gaussian model, its estimation, the generalized Anscombe transform."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
from scipy.stats import poisson
from skimage import color, data, transform

from nlmeans.noise import (
    NoiseModel,
    estimate_noise,
    estimate_sigma,
    generalized_anscombe,
    inverse_generalized_anscombe,
)

# Poisson-Gaussian target of the tests: the noise std goes from 5 grey levels
# at black to 40 at white.
A_TRUE = (40 / 255) ** 2 - (5 / 255) ** 2
B_TRUE = (5 / 255) ** 2


# --------------------------------------------------------------------------
# Test images (clean, float in [0, 1], at most 256 pixels a side)
# --------------------------------------------------------------------------


def _camera():
    return transform.downscale_local_mean(data.camera() / 255.0, (2, 2))


def _astronaut_gray():
    return transform.downscale_local_mean(color.rgb2gray(data.astronaut()), (2, 2))


def _coffee_gray():
    return transform.downscale_local_mean(color.rgb2gray(data.coffee()), (2, 2))


def _gradient():
    return np.tile(np.linspace(0.0, 1.0, 256), (256, 1))


IMAGES = {
    "camera": _camera,
    "astronaut": _astronaut_gray,
    "coffee": _coffee_gray,
    "gradient": _gradient,
}


@pytest.fixture(scope="module")
def images():
    return {name: make() for name, make in IMAGES.items()}


def _poisson_gaussian_normal(clean, a, b, rng):
    """``y + sqrt(a y + b) N(0, 1)``: the Gaussian approximation of the model."""
    return clean + np.sqrt(a * clean + b) * rng.standard_normal(clean.shape)


def _poisson_gaussian_exact(clean, a, b, rng):
    """``a Poisson(y / a) + N(0, b)``: the exact scaled-Poisson form."""
    return a * rng.poisson(clean / a) + np.sqrt(b) * rng.standard_normal(clean.shape)


# --------------------------------------------------------------------------
# NoiseModel
# --------------------------------------------------------------------------


def test_model_stores_tuples_and_reports_sigma():
    gauss = NoiseModel("gaussian", a=0, b=(25 / 255) ** 2)
    assert gauss.a == (0.0,) and gauss.b == ((25 / 255) ** 2,)
    assert gauss.channels == 1
    assert gauss.sigma == pytest.approx(25 / 255)
    colour = NoiseModel("gaussian", a=[0, 0, 0], b=np.array([1e-4, 4e-4, 9e-4]))
    assert colour.channels == 3
    assert colour.sigma == pytest.approx(np.sqrt(np.mean([1e-4, 4e-4, 9e-4])))
    pg = NoiseModel("poisson-gaussian", a=(0.02, 0.01), b=(1e-4, 2e-4))
    expected = np.mean([np.sqrt(0.02 * 0.5 + 1e-4), np.sqrt(0.01 * 0.5 + 2e-4)])
    assert pg.sigma == pytest.approx(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pg.kind = "gaussian"


def test_model_variance():
    pg = NoiseModel("poisson-gaussian", a=(0.02, 0.01), b=(1e-4, 2e-4))
    assert pg.variance(0.5, channel=0) == pytest.approx(0.02 * 0.5 + 1e-4)
    assert pg.variance(0.5, channel=-1) == pytest.approx(0.01 * 0.5 + 2e-4)
    y = np.array([[-1.0, 0.0], [0.25, 1.0]])
    out = pg.variance(y, channel=1)
    assert out.shape == y.shape
    np.testing.assert_allclose(out, np.maximum(0.01 * y + 2e-4, 0.0))
    assert out[0, 0] == 0.0  # clipped: never a negative variance
    with pytest.raises(ValueError, match="channel"):
        pg.variance(0.5)  # two channels: which one?
    with pytest.raises(ValueError, match="channel=2"):
        pg.variance(0.5, channel=2)
    with pytest.raises(TypeError, match="channel"):
        pg.variance(0.5, channel=0.5)
    single = NoiseModel("poisson-gaussian", a=0.02, b=1e-4)
    assert isinstance(single.variance(0.5), float)


def test_model_as_dict_round_trips_through_json():
    pg = NoiseModel("poisson-gaussian", a=(0.02, 0.01, 0.0), b=(1e-4, 2e-4, 3e-4))
    d = json.loads(json.dumps(pg.as_dict()))
    assert d["kind"] == "poisson-gaussian" and d["sigma"] == pytest.approx(pg.sigma)
    assert NoiseModel(d["kind"], d["a"], d["b"]) == pg


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(kind="laplace", a=0.0, b=1e-4), ValueError, "kind"),
        (dict(kind="poisson-gaussian", a=-0.01, b=1e-4), ValueError, r"^a must be non-negative"),
        (dict(kind="poisson-gaussian", a=(0.01, -0.01), b=(1e-4, 1e-4)), ValueError, r"a\[1\]"),
        (dict(kind="poisson-gaussian", a=0.01, b=-1e-4), ValueError, r"^b .*negative variance"),
        (dict(kind="gaussian", a=0.0, b=-1e-4), ValueError, r"^b "),
        (
            dict(kind="poisson-gaussian", a=(0.01, 0.02), b=(1e-4, 1e-4, 1e-4)),
            ValueError,
            "a has 2 values, b has 3",
        ),
        (dict(kind="gaussian", a=0.01, b=1e-4), ValueError, "^a must be 0"),
        (dict(kind="gaussian", a=0.0, b=float("nan")), ValueError, "^b must be finite"),
        (dict(kind="poisson-gaussian", a=1e308, b=1e-4), ValueError, "^a must be below 1e"),
        (dict(kind="gaussian", a=0.0, b=()), ValueError, "^b must hold one value"),
        (dict(kind="gaussian", a=0.0, b="0.1"), TypeError, "^b must be a real number"),
        (dict(kind="gaussian", a=True, b=0.1), TypeError, "^a must be a real number"),
    ],
)
def test_model_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        NoiseModel(**kwargs)


def test_sigma_map_follows_the_intensity():
    pg = NoiseModel("poisson-gaussian", a=0.02, b=1e-4)
    flat = np.full((20, 30), 0.5)
    np.testing.assert_allclose(pg.sigma_map(flat), np.sqrt(0.02 * 0.5 + 1e-4))
    ramp = np.tile(np.linspace(0.0, 1.0, 64), (16, 1))
    out = pg.sigma_map(ramp)
    assert out.shape == ramp.shape and out.dtype == np.float64
    # Smoothing keeps a linear ramp away from the borders.
    np.testing.assert_allclose(out[:, 4:-4], np.sqrt(0.02 * ramp[:, 4:-4] + 1e-4), rtol=1e-9)
    dark = pg.sigma_map(np.full((8, 8), -1.0))  # negative input: variance clipped at 0
    assert np.all(dark == 0.0)
    # uint8 images are read on the [0, 1] scale.
    u8 = np.full((10, 10), 255, np.uint8)
    np.testing.assert_allclose(pg.sigma_map(u8), np.sqrt(0.02 + 1e-4))


def test_sigma_map_per_channel_and_channel_axis():
    pg = NoiseModel("poisson-gaussian", a=(0.02, 0.0, 0.01), b=(1e-4, 4e-4, 0.0))
    image = np.empty((3, 12, 14))
    image[:] = np.array([0.2, 0.5, 0.8])[:, None, None]
    out = pg.sigma_map(image, channel_axis=0)
    assert out.shape == image.shape
    expected = np.sqrt([0.02 * 0.2 + 1e-4, 4e-4, 0.01 * 0.8])
    np.testing.assert_allclose(out[:, 5, 5], expected)
    last = pg.sigma_map(np.moveaxis(image, 0, -1), channel_axis=-1)
    np.testing.assert_allclose(np.moveaxis(last, -1, 0), out)
    # A one-channel model applies to every channel.
    single = NoiseModel("gaussian", a=0.0, b=1e-4)
    np.testing.assert_allclose(single.sigma_map(image, channel_axis=0), 1e-2)


def test_sigma_map_channel_count_mismatch_names_both_counts():
    pg = NoiseModel("poisson-gaussian", a=(0.02, 0.01), b=(1e-4, 1e-4))
    with pytest.raises(ValueError, match=r"2 channels but the image has 3.*channel_axis"):
        pg.sigma_map(np.zeros((16, 16, 3)), channel_axis=-1)
    with pytest.raises(ValueError, match=r"2 channels but the image has 1"):
        pg.sigma_map(np.zeros((16, 16)))
    with pytest.raises(ValueError, match="image is empty"):
        pg.sigma_map(np.zeros((0, 16, 2)), channel_axis=-1)


# --------------------------------------------------------------------------
# estimate_noise: (i) Gaussian noise
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["camera", "gradient"])
@pytest.mark.parametrize("sigma255", [5, 15, 25, 50])
def test_gaussian_sigma_within_10_percent_and_auto_says_gaussian(images, name, sigma255):
    clean = images[name]
    rng = np.random.default_rng(sigma255)
    noisy = clean + sigma255 / 255 * rng.standard_normal(clean.shape)
    model = estimate_noise(noisy)
    assert model.kind == "gaussian"
    assert model.a == (0.0,)
    assert model.sigma * 255 == pytest.approx(sigma255, rel=0.10)
    forced = estimate_noise(noisy, model="gaussian")
    assert forced == model


def test_gaussian_uint8_quantised_and_clipped(images):
    clean = images["camera"]
    rng = np.random.default_rng(7)
    noisy = clean + 15 / 255 * rng.standard_normal(clean.shape)
    u8 = np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)
    model = estimate_noise(u8)
    assert model.kind == "gaussian"
    assert model.sigma * 255 == pytest.approx(15, rel=0.10)


# --------------------------------------------------------------------------
# estimate_noise: (ii) Poisson-Gaussian noise
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "simulate", [_poisson_gaussian_normal, _poisson_gaussian_exact], ids=["normal", "poisson"]
)
def test_poisson_gaussian_a_and_b_within_20_percent_on_average(images, simulate):
    errors_a, errors_b = [], []
    for seed, (name, clean) in enumerate(sorted(images.items())):
        noisy = simulate(clean, A_TRUE, B_TRUE, np.random.default_rng(100 + seed))
        model = estimate_noise(noisy)
        assert model.kind == "poisson-gaussian", name
        assert model.a[0] == pytest.approx(A_TRUE, rel=0.15), name
        errors_a.append(abs(model.a[0] / A_TRUE - 1))
        errors_b.append(abs(model.b[0] / B_TRUE - 1))
        assert model.sigma == pytest.approx(np.sqrt(A_TRUE * 0.5 + B_TRUE), rel=0.05), name
    assert np.mean(errors_a) < 0.20
    assert np.mean(errors_b) < 0.20


def test_poisson_gaussian_forced_models(images):
    clean = images["astronaut"]
    noisy = _poisson_gaussian_normal(clean, A_TRUE, B_TRUE, np.random.default_rng(3))
    pg = estimate_noise(noisy, model="poisson-gaussian")
    assert pg == estimate_noise(noisy)  # auto picks the same fit
    gauss = estimate_noise(noisy, model="gaussian")
    assert gauss.kind == "gaussian" and gauss.a == (0.0,)
    # b of the Gaussian fit is a mean variance: between the extremes.
    assert B_TRUE < gauss.b[0] < A_TRUE + B_TRUE


def test_poisson_gaussian_uint8_clipped(images):
    """Clipping at 0 and 1 is modelled (the clipped normal), not ignored."""
    clean = images["gradient"]
    noisy = _poisson_gaussian_normal(clean, A_TRUE, B_TRUE, np.random.default_rng(11))
    u8 = np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)
    assert np.mean(u8 == 255) > 0.01 and np.mean(u8 == 0) > 0.005
    model = estimate_noise(u8)
    assert model.kind == "poisson-gaussian"
    assert model.a[0] == pytest.approx(A_TRUE, rel=0.10)
    assert model.b[0] == pytest.approx(B_TRUE, rel=0.30)


def test_weak_signal_dependence_over_a_narrow_range_stays_gaussian():
    # Only intensities 0.45..0.55: the variance changes by < 10 %.
    clean = np.tile(np.linspace(0.45, 0.55, 256), (256, 1))
    noisy = _poisson_gaussian_normal(clean, 0.002, 0.004, np.random.default_rng(5))
    assert estimate_noise(noisy).kind == "gaussian"


# --------------------------------------------------------------------------
# estimate_noise: (iii) colour
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def astronaut_rgb():
    return transform.downscale_local_mean(data.astronaut() / 255.0, (2, 2, 1))


def test_colour_poisson_gaussian_per_channel(astronaut_rgb):
    a = A_TRUE * np.array([1.0, 0.5, 1.5])
    b = B_TRUE * np.array([1.0, 2.0, 0.7])
    rng = np.random.default_rng(21)
    clean = astronaut_rgb
    noisy = clean + np.sqrt(a * clean + b) * rng.standard_normal(clean.shape)
    model = estimate_noise(noisy, channel_axis=-1)
    assert model.kind == "poisson-gaussian" and model.channels == 3
    np.testing.assert_allclose(model.a, a, rtol=0.15)
    assert np.mean(np.abs(np.array(model.b) / b - 1)) < 0.20
    # The channel axis may be anywhere.
    first = estimate_noise(np.moveaxis(noisy, -1, 0), channel_axis=0)
    np.testing.assert_allclose(first.a, model.a, rtol=1e-12)
    np.testing.assert_allclose(first.b, model.b, rtol=1e-12)


def test_colour_gaussian_per_channel(astronaut_rgb):
    sigmas = np.array([5.0, 15.0, 30.0]) / 255
    rng = np.random.default_rng(22)
    noisy = astronaut_rgb + sigmas * rng.standard_normal(astronaut_rgb.shape)
    model = estimate_noise(noisy, channel_axis=2)
    assert model.kind == "gaussian"
    np.testing.assert_allclose(np.sqrt(model.b), sigmas, rtol=0.10)


def test_volume(images):
    rng = np.random.default_rng(8)
    volume = np.tile(np.linspace(0.0, 1.0, 32)[:, None, None], (1, 48, 48))
    noisy = volume + 0.05 * rng.standard_normal(volume.shape)
    model = estimate_noise(noisy)
    assert model.kind == "gaussian" and model.sigma == pytest.approx(0.05, rel=0.10)
    stack = np.stack([volume, volume[::-1]], axis=-1)
    noisy = stack + np.sqrt(0.02 * stack + 1e-3) * rng.standard_normal(stack.shape)
    model = estimate_noise(noisy, channel_axis=-1)
    assert model.kind == "poisson-gaussian" and model.channels == 2
    np.testing.assert_allclose(model.a, 0.02, rtol=0.15)


# --------------------------------------------------------------------------
# estimate_noise: edge cases and (iv) bad input
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, channel_axis",
    [
        (np.full((64, 64), 0.3), None),
        (np.zeros((64, 64), np.uint8), None),
        (np.full((40, 50, 3), 200, np.uint8), -1),
        (np.full((2, 2), 0.5), None),
    ],
)
def test_constant_image_is_gaussian_with_sigma_zero(image, channel_axis):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = estimate_noise(image, channel_axis=channel_axis)
    assert model.kind == "gaussian"
    assert model.sigma == 0.0
    assert all(np.isfinite(model.b))


def test_small_images_give_a_finite_estimate():
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for shape in [(2, 2), (3, 7), (8, 8), (17, 16)]:
            model = estimate_noise(0.5 + 0.1 * rng.standard_normal(shape))
            assert model.kind == "gaussian" and np.isfinite(model.sigma) and model.sigma > 0


def test_black_border_does_not_pull_the_estimate_down(images):
    clean = np.pad(images["camera"], 24)  # a noise-free black frame
    rng = np.random.default_rng(9)
    noisy = clean + 15 / 255 * rng.standard_normal(clean.shape)
    noisy[clean == 0] = 0.0
    model = estimate_noise(noisy)
    assert model.sigma * 255 == pytest.approx(15, rel=0.10)


@pytest.mark.parametrize(
    "image, kwargs, error, match",
    [
        (np.array([[0.1, np.nan], [0.2, 0.3]]), {}, ValueError, "NaN"),
        (np.full((4, 4), np.inf), {}, ValueError, "NaN or Inf"),
        (np.zeros((0, 5)), {}, ValueError, "image is empty"),
        (np.zeros((8, 8)), {"model": "poisson"}, ValueError, "model must be one of"),
        (np.zeros((8, 8)), {"model": None}, ValueError, "model must be one of"),
        (np.zeros((8, 8, 3)), {"channel_axis": 3}, ValueError, "channel_axis=3"),
        (np.zeros((8, 8, 3)), {"channel_axis": 1.0}, TypeError, "channel_axis"),
        (np.zeros((8, 8)), {"channel_axis": -1}, ValueError, "channel_axis"),
        (np.zeros(16), {}, ValueError, "2-D"),
        (np.zeros((1, 16)), {}, ValueError, "too small"),
        (np.zeros((8, 8), np.int64), {}, TypeError, "dtype"),
        ("image", {}, TypeError, "NumPy array"),
    ],
)
def test_bad_input(image, kwargs, error, match):
    with pytest.raises(error, match=match):
        estimate_noise(image, **kwargs)


def test_sample_cap_for_large_images(images, monkeypatch):
    """Beyond the cap, fewer phases and then a regular subset give the same answer."""
    from nlmeans import noise

    clean = images["gradient"]
    noisy = _poisson_gaussian_normal(clean, A_TRUE, B_TRUE, np.random.default_rng(12))
    full = estimate_noise(noisy)
    for cap in (40_000, 8_000):  # two phases; one phase, every other sample
        monkeypatch.setattr(noise, "_MAX_SAMPLES", cap)
        assert noise._wavelet_samples(noisy)[0].size <= cap
        capped = estimate_noise(noisy)
        assert capped.kind == full.kind == "poisson-gaussian"
        assert capped.a[0] == pytest.approx(full.a[0], rel=0.05)


def test_full_size_rgb_photograph():
    rng = np.random.default_rng(1)
    noisy = data.astronaut() / 255.0 + 0.05 * rng.standard_normal((512, 512, 3))
    model = estimate_noise(noisy, channel_axis=-1)
    assert model.sigma == pytest.approx(0.05, rel=0.1)


# --------------------------------------------------------------------------
# Generalized Anscombe transform
# --------------------------------------------------------------------------


PG_MODELS = [
    NoiseModel("poisson-gaussian", a=A_TRUE, b=B_TRUE),  # Gaussian part ~0.8 counts
    NoiseModel("poisson-gaussian", a=0.01, b=0.0),  # pure Poisson
    NoiseModel("poisson-gaussian", a=0.01, b=1e-3),  # Gaussian part ~3 counts
]


@pytest.mark.parametrize("model", PG_MODELS)
def test_forward_then_algebraic_inverse_is_identity(model):
    a, b = model.a[0], model.b[0]
    z = np.linspace(-0.375 * a - b / a + 1e-9, 1.5, 1001)  # the transform's domain
    d = generalized_anscombe(z, model)
    assert np.all(np.diff(d) > 0)
    np.testing.assert_allclose(
        inverse_generalized_anscombe(d, model, method="algebraic"), z, atol=1e-12
    )
    below = generalized_anscombe(np.array([-0.375 * a - b / a - 0.1]), model)
    assert below[0] == 0.0  # outside the domain: the square root's argument is clipped


def test_forward_formula():
    model = NoiseModel("poisson-gaussian", a=0.02, b=1e-3)
    z = np.array([0.0, 0.3, 1.0])
    expected = (2 / 0.02) * np.sqrt(0.02 * z + 0.375 * 0.02**2 + 1e-3)
    np.testing.assert_allclose(generalized_anscombe(z, model), expected)
    # Integers are read on the [0, 1] scale, like everywhere in nlmeans.
    u8 = np.array([[0, 128, 255]], np.uint8)
    np.testing.assert_allclose(
        generalized_anscombe(u8, model), generalized_anscombe(u8 / 255.0, model)
    )


@pytest.mark.parametrize("model", PG_MODELS)
def test_forward_stabilises_the_variance(model):
    a, b = model.a[0], model.b[0]
    rng = np.random.default_rng(4)
    for y in (0.1, 0.25, 0.5, 0.9):  # at least ~4 counts
        z = _poisson_gaussian_exact(np.full(200_000, y), a, b, rng)
        assert np.var(generalized_anscombe(z, model)) == pytest.approx(1.0, abs=0.10), y


def _expected_transform(y, model):
    """E[f(z) | y] by summation over the Poisson counts and quadrature over the Gaussian."""
    a, b = model.a[0], model.b[0]
    lam = y / a
    k = np.arange(int(lam + 12 * np.sqrt(lam) + 30) + 1)
    pk = poisson.pmf(k, lam)
    if b > 0:
        s = np.sqrt(b)
        n = np.linspace(-9 * s, 9 * s, 2001)
        wn = np.exp(-0.5 * (n / s) ** 2)
        wn /= wn.sum()
    else:
        n, wn = np.zeros(1), np.ones(1)
    f = generalized_anscombe(a * k[:, None] + n[None, :], model)
    return float(pk @ (f @ wn))


@pytest.mark.parametrize("model", PG_MODELS)
def test_unbiased_inverse(model):
    a = model.a[0]
    ys = np.array([0.0005, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3, 0.8])
    expectations = np.array([_expected_transform(y, model) for y in ys])
    unbiased = inverse_generalized_anscombe(expectations, model)
    algebraic = inverse_generalized_anscombe(expectations, model, method="algebraic")
    # The closed form is within 0.05 counts (0.05 a) of the exact unbiased inverse...
    np.testing.assert_allclose(unbiased, ys, atol=0.05 * a, rtol=0)
    # ...the algebraic inverse is off by about a quarter of a count from ~1 count up.
    assert np.all(np.abs(algebraic - ys)[ys >= 0.02] > 0.15 * a)
    low = ys <= 0.05
    assert np.all(np.abs(unbiased - ys)[low] < np.abs(algebraic - ys)[low])


def test_unbiased_inverse_shape():
    model = NoiseModel("poisson-gaussian", a=0.01, b=1e-4)
    d = np.linspace(-1.0, 30.0, 3001)
    out = inverse_generalized_anscombe(d, model)
    assert np.all(out >= 0)
    assert np.all(np.diff(out) >= 0)
    assert np.all(out[d <= 2 * np.sqrt(0.375)] == 0)


def test_gaussian_case_a_zero():
    model = NoiseModel("gaussian", a=0.0, b=0.04)
    z = np.array([[-0.3, 0.0], [0.5, 1.2]])
    d = generalized_anscombe(z, model)
    np.testing.assert_allclose(d, z / 0.2)
    for method in ("unbiased", "algebraic"):
        np.testing.assert_allclose(inverse_generalized_anscombe(d, model, method=method), z)
    rng = np.random.default_rng(2)
    noisy = 0.5 + 0.2 * rng.standard_normal(100_000)
    assert np.std(generalized_anscombe(noisy, model)) == pytest.approx(1.0, abs=0.02)


def test_per_channel_transform():
    model = NoiseModel("poisson-gaussian", a=(0.02, 0.0, 0.01), b=(1e-4, 4e-4, 0.0))
    rng = np.random.default_rng(6)
    image = rng.random((3, 10, 12))
    d = generalized_anscombe(image, model, channel_axis=0)
    for c in range(3):
        single = NoiseModel(
            "poisson-gaussian" if model.a[c] else "gaussian", a=model.a[c], b=model.b[c]
        )
        np.testing.assert_allclose(d[c], generalized_anscombe(image[c], single))
        np.testing.assert_allclose(
            inverse_generalized_anscombe(d, model, channel_axis=0)[c],
            inverse_generalized_anscombe(d[c], single),
        )
    last = generalized_anscombe(np.moveaxis(image, 0, -1), model, channel_axis=-1)
    np.testing.assert_allclose(np.moveaxis(last, -1, 0), d)
    back = inverse_generalized_anscombe(d, model, channel_axis=0, method="algebraic")
    np.testing.assert_allclose(back, image, atol=1e-12)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: generalized_anscombe(np.zeros(4), {"a": 1}),
            TypeError,
            "model must be a NoiseModel",
        ),
        (
            lambda: generalized_anscombe(np.arange(4.0) / 4, NoiseModel("gaussian", 0.0, 0.0)),
            ValueError,
            "no noise in channel 0",
        ),
        (
            lambda: inverse_generalized_anscombe(np.zeros(4), PG_MODELS[0], method="exact"),
            ValueError,
            "method must be one of",
        ),
        (
            lambda: inverse_generalized_anscombe(np.full(4, 300, np.uint16), PG_MODELS[0]),
            TypeError,
            "d must be float",
        ),
        (
            lambda: generalized_anscombe(np.zeros((8, 8, 3)), PG_MODELS[0], channel_axis=5),
            ValueError,
            "channel_axis=5",
        ),
        (
            lambda: generalized_anscombe(
                np.zeros((8, 8, 2)), NoiseModel("gaussian", (0, 0, 0), (1, 1, 1)), channel_axis=-1
            ),
            ValueError,
            "3 channels but the image has 2",
        ),
        (
            lambda: inverse_generalized_anscombe(np.array([np.nan]), PG_MODELS[0]),
            ValueError,
            "^d: .*NaN",
        ),
        (lambda: generalized_anscombe(np.zeros((0, 3)), PG_MODELS[0]), ValueError, "^z: .*empty"),
        (lambda: generalized_anscombe(0.5, PG_MODELS[0]), TypeError, "^z: "),
    ],
)
def test_transform_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "shape, axis", [((1, 4000), None), ((4000, 1), None), ((1, 3000, 3), -1), ((3, 1, 3000), 0)]
)
def test_estimate_sigma_along_a_one_pixel_wide_image(shape, axis):
    """A one-pixel axis holds no wavelet detail: it read about 1e-17 for white
    noise of 0.1 (so denoise used sigma ~ 0); the other axes are read."""
    noisy = 0.5 + 0.1 * np.random.default_rng(0).standard_normal(shape)
    assert estimate_sigma(noisy, channel_axis=axis) == pytest.approx(0.1, rel=0.06)
    assert estimate_sigma(np.full((1, 1), 0.3)) == 0.0


@pytest.mark.parametrize(
    "shape, axis", [((6, 64, 64), None), ((64, 5, 64), None), ((4, 64, 64, 3), -1)]
)
def test_estimate_sigma_on_thin_volumes(shape, axis):
    """scikit-image's 3-D wavelet reads white noise 10-30 % low on volumes a
    few slices thick; the border-free Haar band does not. Thicker volumes keep
    scikit-image's 3-D reading."""
    from skimage.restoration import estimate_sigma as skimage_sigma

    rng = np.random.default_rng(1)
    volume = 0.5 + 0.1 * rng.standard_normal(shape)
    assert estimate_sigma(volume, channel_axis=axis) == pytest.approx(0.1, rel=0.05)
    thick = 0.5 + 0.1 * rng.standard_normal((16, 40, 40))
    assert estimate_sigma(thick) == skimage_sigma(thick)
