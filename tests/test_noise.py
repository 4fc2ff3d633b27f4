"""nlmeans.noise: the Poisson-Gaussian model and the generalized Anscombe transform."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
from scipy.stats import poisson

from nlmeans.noise import (
    NoiseModel,
    generalized_anscombe,
    inverse_generalized_anscombe,
)

# Poisson-Gaussian target of the tests: the noise std goes from 5 grey levels
# at black to 40 at white.
A_TRUE = (40 / 255) ** 2 - (5 / 255) ** 2
B_TRUE = (5 / 255) ** 2


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
        (dict(kind="poisson-gaussian", a=(0.01, 0.02), b=(1e-4, 1e-4, 1e-4)), ValueError,
         "a has 2 values, b has 3"),
        (dict(kind="gaussian", a=0.01, b=1e-4), ValueError, "^a must be 0"),
        (dict(kind="gaussian", a=0.0, b=float("nan")), ValueError, "^b must be finite"),
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
        (lambda: generalized_anscombe(np.zeros(4), {"a": 1}),
         TypeError, "model must be a NoiseModel"),
        (lambda: generalized_anscombe(np.zeros(4), NoiseModel("gaussian", 0.0, 0.0)),
         ValueError, "no noise in channel 0"),
        (lambda: inverse_generalized_anscombe(np.zeros(4), PG_MODELS[0], method="exact"),
         ValueError, "method must be one of"),
        (lambda: generalized_anscombe(np.zeros((8, 8, 3)), PG_MODELS[0], channel_axis=5),
         ValueError, "channel_axis=5"),
        (lambda: generalized_anscombe(
            np.zeros((8, 8, 2)), NoiseModel("gaussian", (0, 0, 0), (1, 1, 1)), channel_axis=-1),
         ValueError, "3 channels but the image has 2"),
        (lambda: inverse_generalized_anscombe(np.array([np.nan]), PG_MODELS[0]),
         ValueError, "^d: .*NaN"),
        (lambda: generalized_anscombe(np.zeros((0, 3)), PG_MODELS[0]), ValueError, "^z: .*empty"),
        (lambda: generalized_anscombe(0.5, PG_MODELS[0]), TypeError, "^z: "),
    ],
)
def test_transform_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
