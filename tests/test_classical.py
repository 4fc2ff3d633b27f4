"""nlmeans.denoise (classical methods) against the slow NumPy references."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import nlm_patchwise, nlm_pixelwise
from skimage.restoration import denoise_nl_means

import nlmeans
from nlmeans import kernels

CLASSICAL = ("fast", "exact", "patchwise")


def _reference(method, image_cf, **kw):
    if method == "patchwise":
        return nlm_patchwise(image_cf, **kw)
    return nlm_pixelwise(image_cf, gaussian=(method == "exact"), **kw)


# --------------------------------------------------------------------------
# Against the formula
# --------------------------------------------------------------------------


@pytest.mark.parametrize("method", CLASSICAL)
@pytest.mark.parametrize(
    "patch_size, patch_distance, h, sigma",
    [(3, 2, 0.3, 0.1), (5, 3, 0.5, 0.0), (1, 2, 0.2, 0.05), (3, 0, 0.3, 0.1)],
)
def test_gray_matches_reference(method, patch_size, patch_distance, h, sigma, rng):
    image = rng.random((13, 17))
    kw = dict(patch_size=patch_size, patch_distance=patch_distance, h=h, sigma=sigma)
    out = nlmeans.denoise(image, method=method, **kw)
    expected = _reference(method, image[None], **kw)[0]
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", CLASSICAL)
def test_colour_matches_reference_with_joint_weights(method, rng):
    image = rng.random((9, 11, 3))
    kw = dict(patch_size=3, patch_distance=2, h=0.35, sigma=0.08)
    out = nlmeans.denoise(image, method=method, channel_axis=-1, color_space="rgb", **kw)
    expected = _reference(method, np.moveaxis(image, -1, 0), **kw)
    np.testing.assert_allclose(out, np.moveaxis(expected, 0, -1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", CLASSICAL)
def test_volume_matches_reference(method, rng):
    volume = rng.random((5, 6, 7))
    kw = dict(patch_size=3, patch_distance=1, h=0.4, sigma=0.05)
    out = nlmeans.denoise(volume, method=method, **kw)
    expected = _reference(method, volume[None], **kw)[0]
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)


def test_channel_axis_first_equals_last(rng):
    image = rng.random((10, 12, 2))
    kw = dict(patch_size=3, patch_distance=2, h=0.3)
    last = nlmeans.denoise(image, channel_axis=-1, **kw)
    first = nlmeans.denoise(np.moveaxis(image, -1, 0).copy(), channel_axis=0, **kw)
    np.testing.assert_array_equal(np.moveaxis(first, 0, -1), last)


def test_image_taller_than_several_strips_matches_reference(rng):
    # More rows than kernels.STRIP_ROWS: pairs cross strip boundaries.
    image = rng.random((kernels.STRIP_ROWS * 2 + 5, 6))
    kw = dict(patch_size=3, patch_distance=3, h=0.3, sigma=0.05)
    for method in CLASSICAL:
        out = nlmeans.denoise(image, method=method, **kw)
        expected = _reference(method, image[None], **kw)[0]
        np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------
# Against scikit-image, where the meanings coincide
# --------------------------------------------------------------------------


def test_exact_agrees_with_skimage_slow_mode(rng):
    # Same Gaussian patch kernel, same sigma subtraction and window clipping.
    # Differences: scikit-image's fast_exp (about 3 % relative error on each
    # weight) and its distance cut-offs, which do not trigger at this h.
    image = rng.random((24, 26))
    for sigma in (0.0, 0.1):
        ours = nlmeans.denoise(
            image, h=1.0, sigma=sigma, patch_size=5, patch_distance=3, method="exact"
        )
        theirs = denoise_nl_means(
            image, h=1.0, sigma=sigma, patch_size=5, patch_distance=3, fast_mode=False
        )
        assert np.abs(ours - theirs).max() < 0.01


def test_fast_agrees_with_skimage_fast_mode():
    # scikit-image's fast mode sums (s-1)^2 pixels and divides by s^2, so its
    # distances are ((s-1)/s)^2 of ours: scaling h by (s-1)/s matches them on
    # average. What remains is the patch shape and its exp approximation.
    from skimage import data, img_as_float

    clean = img_as_float(data.camera()[200:296, 200:296])
    noisy = clean + np.random.default_rng(0).normal(0, 0.08, clean.shape)
    s, h = 7, 0.07
    ours = nlmeans.denoise(noisy, h=h * (s - 1) / s, sigma=0.08, patch_size=s, patch_distance=5)
    theirs = denoise_nl_means(
        noisy, h=h, sigma=0.08, patch_size=s, patch_distance=5, fast_mode=True
    )
    assert np.abs(ours - theirs).mean() < 0.01
    err_ours = np.sqrt(np.mean((ours - clean) ** 2))
    err_theirs = np.sqrt(np.mean((theirs - clean) ** 2))
    assert abs(20 * np.log10(err_theirs / err_ours)) < 0.5  # PSNR within 0.5 dB


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------


@pytest.mark.parametrize("method", CLASSICAL)
def test_constant_image_stays_constant(method):
    image = np.full((20, 21), 0.37, np.float32)
    out = nlmeans.denoise(image, method=method, h=0.1, sigma=0.05, patch_size=5, patch_distance=4)
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("method", CLASSICAL)
def test_tiny_h_returns_the_input(method, rng):
    image = rng.random((15, 16))
    out = nlmeans.denoise(image, method=method, h=1e-6, sigma=0.0, patch_size=3, patch_distance=3)
    np.testing.assert_allclose(out, image, atol=1e-6)


@pytest.mark.parametrize("method", CLASSICAL)
@pytest.mark.parametrize("channel_axis", [None, -1])
def test_tiny_h_keeps_each_pixel_at_its_own_precision(method, channel_axis, rng):
    """h -> 0 averages nothing: every pixel comes back to its dtype's precision,
    pixels near zero included (relative error), float32 and float64 alike."""
    shape = (15, 16, 3) if channel_axis is not None else (15, 16)
    # Pixels near zero among ordinary ones, and one large pixel: the float32
    # round trip through (u - min) / (max - min) would change the small ones
    # by about 1e-7 of the range, i.e. entirely.
    image = rng.random(shape)
    image[::3, ::2] *= 1e-9
    image[0, 0] = 50.0
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 4 * np.finfo(np.float32).eps)):
        data = image.astype(dtype)
        out = nlmeans.denoise(
            data,
            method=method,
            h=1e-12,
            sigma=0.0,
            patch_size=3,
            patch_distance=3,
            channel_axis=channel_axis,
        )
        np.testing.assert_allclose(out, data, rtol=rtol, atol=0)


@pytest.mark.parametrize("method", CLASSICAL)
@pytest.mark.parametrize("transform", ["flipud", "fliplr", "transpose"])
def test_flips_and_transposes_commute(method, transform, rng):
    image = rng.random((14, 19))
    op = {"flipud": np.flipud, "fliplr": np.fliplr, "transpose": np.transpose}[transform]
    kw = dict(method=method, h=0.3, sigma=0.05, patch_size=3, patch_distance=3)
    a = op(nlmeans.denoise(image, **kw))
    b = nlmeans.denoise(np.ascontiguousarray(op(image)), **kw)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("method", CLASSICAL)
def test_float32_and_float64_agree(method, rng):
    image = rng.random((16, 18))
    kw = dict(method=method, h=0.2, sigma=0.05, patch_size=5, patch_distance=3)
    a = nlmeans.denoise(image, **kw)
    b = nlmeans.denoise(image.astype(np.float32), **kw)
    assert a.dtype == np.float64 and b.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
@pytest.mark.parametrize("method", CLASSICAL)
def test_thread_count_does_not_change_a_bit(method, rng):
    image = rng.random((kernels.STRIP_ROWS * 3 + 7, 23, 3)).astype(np.float32)
    kw = dict(method=method, h=0.3, sigma=0.05, patch_size=3, patch_distance=4, channel_axis=-1)
    one = nlmeans.denoise(image, threads=1, **kw)
    two = nlmeans.denoise(image, threads=2, **kw)
    np.testing.assert_array_equal(one, two)
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS


def test_integer_images_are_read_on_unit_scale(rng):
    image8 = (rng.random((12, 13)) * 255).astype(np.uint8)
    out8 = nlmeans.denoise(image8, h=0.1, sigma=0.02, patch_size=3, patch_distance=2)
    ref = nlmeans.denoise(image8 / 255.0, h=0.1, sigma=0.02, patch_size=3, patch_distance=2)
    assert out8.dtype == np.uint8
    np.testing.assert_array_equal(out8, np.clip(np.rint(ref * 255), 0, 255))
    image16 = (rng.random((12, 13)) * 65535).astype(np.uint16)
    out16 = nlmeans.denoise(image16, h=0.1, patch_size=3, patch_distance=2)
    assert out16.dtype == np.uint16 and out16.shape == image16.shape


def test_input_is_not_modified(rng):
    image = rng.random((12, 14)).astype(np.float32)
    before = image.copy()
    nlmeans.denoise(image, h=0.2, patch_size=3, patch_distance=2)
    np.testing.assert_array_equal(image, before)


_shapes = st.one_of(
    st.tuples(st.integers(5, 14), st.integers(5, 14)),
    st.tuples(st.integers(5, 9), st.integers(5, 9), st.integers(1, 4)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=_shapes,
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64]),
    method=st.sampled_from(CLASSICAL),
    patch_size=st.sampled_from([1, 3, 5]),
    patch_distance=st.integers(0, 3),
    h=st.floats(1e-3, 2.0),
    sigma=st.one_of(st.none(), st.floats(0, 0.3)),
    seed=st.integers(0, 2**16),
)
def test_property_shape_dtype_range(
    shape, dtype, method, patch_size, patch_distance, h, sigma, seed
):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        image = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    else:
        image = (rng.standard_normal(shape) * 3).astype(dtype)
    channel_axis = -1 if len(shape) == 3 and shape[-1] <= 4 else None
    if channel_axis is None and len(shape) == 3:
        channel_axis = None  # a small volume
    out = nlmeans.denoise(
        image,
        method=method,
        patch_size=patch_size,
        patch_distance=patch_distance,
        h=h,
        sigma=sigma,
        channel_axis=channel_axis,
    )
    assert out.shape == image.shape and out.dtype == image.dtype
    assert np.isfinite(out.astype(np.float64)).all()
    assert out.min() >= image.min() and out.max() <= image.max()


# --------------------------------------------------------------------------
# Automatic parameters
# --------------------------------------------------------------------------


def test_automatic_parameters_are_reported(rng):
    clean = np.tile(np.linspace(0, 1, 40), (40, 1))
    noisy = clean + rng.normal(0, 20 / 255, clean.shape)
    out, params = nlmeans.denoise(noisy, return_params=True)
    assert params.sigma_estimated
    assert set(params.automatic) == {"sigma", "h", "patch_size", "patch_distance"}
    assert abs(params.sigma * 255 - 20) < 3
    assert params.h > 0 and params.patch_size % 2 == 1
    assert np.mean((out - clean) ** 2) < np.mean((noisy - clean) ** 2) / 3
    again = nlmeans.resolve_parameters(noisy)
    assert again == params


@pytest.mark.parametrize("sigma", [10, 25, 50])
@pytest.mark.parametrize("scale", [255.0, 4000.0])
def test_float_data_on_another_scale_read_the_table_on_unit_scale(rng, sigma, scale):
    """Raw counts or 0-255 floats get the row their noise has on [0, 1] (they
    read the sigma = 50 row whatever the noise, 1.4 dB lost at sigma 15)."""
    clean = np.tile(np.linspace(0, 1, 96), (96, 1))
    noisy = clean + rng.normal(0, sigma / 255, clean.shape)
    from nlmeans._denoise import _table_row

    scaled = nlmeans.resolve_parameters(noisy * scale, sigma=sigma / 255 * scale)
    # the row of a sigma within a quarter of the truth (the span is read from
    # the noisy extremes), h on the data's scale
    rows = [_table_row("fast", sigma / 255 * f) for f in np.linspace(0.8, 1.25, 10)]
    assert any(
        (scaled.patch_size, scaled.patch_distance) == (r["patch_size"], r["patch_distance"])
        and scaled.h == pytest.approx(r["h_over_sigma"] * sigma / 255 * scale, rel=1e-9)
        for r in rows
    )
    frames = np.stack([noisy, noisy, noisy])
    on_unit = nlmeans.resolve_sequence_parameters(frames, sigma=sigma / 255)
    on_scale = nlmeans.resolve_sequence_parameters(frames * scale, sigma=sigma / 255 * scale)
    assert on_scale.h / scale == pytest.approx(on_unit.h, rel=0.5)  # not the sigma = 50 row


def test_strong_noise_on_unit_scale_stays_on_unit_scale(rng):
    # sigma 0.3, not clipped, reaches beyond [-1, 2]: still [0, 1] data
    clean = np.tile(np.linspace(0, 1, 256), (256, 1))
    noisy = clean + rng.normal(0, 0.3, clean.shape)
    assert noisy.min() < -1 and noisy.max() > 2
    loose = nlmeans.resolve_parameters(noisy, sigma=0.3)
    clipped = nlmeans.resolve_parameters(np.clip(noisy, 0, 1), sigma=0.3)
    assert (loose.patch_size, loose.h) == (clipped.patch_size, clipped.h)


def test_float_data_on_a_tiny_scale_are_not_flattened(rng):
    # sigma 1e-4 on data spanning 1e-3: the absolute floor of 1e-3 made h as
    # large as the whole image's contrast (22 dB where the same data on [0, 1]
    # give 29)
    clean = np.tile(np.linspace(0, 1, 64), (64, 1))
    noisy = clean + rng.normal(0, 0.1, clean.shape)
    on_unit = nlmeans.resolve_parameters(noisy)
    tiny = nlmeans.resolve_parameters(noisy * 1e-3)
    assert tiny.sigma == pytest.approx(on_unit.sigma * 1e-3, rel=1e-6)
    assert 0.5 < tiny.h / 1e-3 / on_unit.h < 2.0


def test_given_parameters_are_kept(rng):
    image = rng.random((20, 20))
    params = nlmeans.resolve_parameters(
        image, h=0.2, sigma=0.1, patch_size=3, patch_distance=4, method="exact"
    )
    assert (params.h, params.sigma, params.patch_size, params.patch_distance) == (0.2, 0.1, 3, 4)
    assert params.automatic == () and not params.sigma_estimated


def test_volume_defaults_are_capped(rng):
    volume = rng.random((12, 12, 12))
    params = nlmeans.resolve_parameters(volume, sigma=0.2)
    assert params.patch_size <= 5 and params.patch_distance <= 3


def test_estimate_sigma_wraps_skimage(rng):
    from skimage.restoration import estimate_sigma

    image = rng.random((32, 32, 3))
    ours = nlmeans.estimate_sigma(image, channel_axis=-1)
    theirs = estimate_sigma(image, channel_axis=-1, average_sigmas=True)
    assert ours == pytest.approx(theirs)
    assert nlmeans.estimate_sigma((image * 255).astype(np.uint8), channel_axis=-1) == pytest.approx(
        theirs, rel=0.05
    )


# --------------------------------------------------------------------------
# Bad input: one clear exception naming the parameter, never a Numba error
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(patch_size=4), ValueError, "patch_size"),
        (dict(patch_size=0), ValueError, "patch_size"),
        (dict(patch_size=-3), ValueError, "patch_size"),
        (dict(patch_size=3.0), TypeError, "patch_size"),
        (dict(patch_distance=-1), ValueError, "patch_distance"),
        (dict(h=-0.1), ValueError, "h must"),
        (dict(h=0.0), ValueError, "h must"),
        (dict(h=float("nan")), ValueError, "h must"),
        (dict(sigma=-0.1), ValueError, "sigma"),
        (dict(sigma="a"), TypeError, "sigma"),
        (dict(method="median"), ValueError, "method"),
        (dict(channel_axis=5), ValueError, "channel_axis"),
        (dict(channel_axis=1.5), TypeError, "channel_axis"),
        (dict(threads=0), ValueError, "threads"),
        (dict(threads=10_000), ValueError, "threads"),
    ],
)
def test_bad_parameters(kwargs, exc, match):
    image = np.random.default_rng(0).random((16, 16))
    if "channel_axis" in kwargs:
        image = image[..., None].repeat(3, -1)
    with pytest.raises(exc, match=match):
        nlmeans.denoise(image, **kwargs)


@pytest.mark.parametrize(
    "image, exc, match",
    [
        (np.zeros((0, 5)), ValueError, "empty"),
        (np.full((8, 8), np.nan), ValueError, "NaN"),
        (np.full((8, 8), np.inf, np.float32), ValueError, "Inf"),
        (np.zeros((8, 8), complex), TypeError, "dtype"),
        (np.zeros((8, 8), object), TypeError, "dtype"),
        (np.zeros((8, 8), bool), TypeError, "dtype"),
        (np.zeros((8, 8), np.int32), TypeError, "dtype"),
        (np.zeros(8), ValueError, "2-D"),
        (np.zeros((2, 2, 2, 2)), ValueError, "channel_axis"),
        ("not an image", TypeError, "NumPy array"),
    ],
)
def test_bad_images(image, exc, match):
    with pytest.raises(exc, match=match):
        nlmeans.denoise(image, h=0.1, sigma=0.0, patch_size=3, patch_distance=2)


def test_return_params_takes_a_bool(rng):
    image = rng.random((12, 12))
    for call in (nlmeans.denoise, nlmeans.denoise_sequence):
        with pytest.raises(TypeError, match="return_params must be True or False"):
            call(image if call is nlmeans.denoise else image[None], return_params="no")
    out, params = nlmeans.denoise(image, return_params=np.bool_(True))
    assert out.shape == image.shape and params.method == "fast"


def test_masked_arrays_are_refused_only_with_masked_pixels(rng):
    data = rng.random((12, 12))
    masked = np.ma.masked_array(data, mask=data > 0.95)
    for call in (
        lambda: nlmeans.denoise(masked),
        lambda: nlmeans.denoise(masked, method="neural"),
        lambda: nlmeans.estimate_noise(masked),
        lambda: nlmeans.denoise_sequence([masked, data]),
    ):
        with pytest.raises(ValueError, match="masked pixels.*filled"):
            call()
    # nothing masked: the same result as the plain array
    kwargs = dict(h=0.1, sigma=0.05, patch_size=3, patch_distance=2)
    out = nlmeans.denoise(np.ma.masked_array(data), **kwargs)
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, nlmeans.denoise(data, **kwargs))


def test_image_smaller_than_patch():
    with pytest.raises(ValueError, match="smaller than the patch"):
        nlmeans.denoise(np.zeros((4, 30)), h=0.1, patch_size=5, patch_distance=2)
    with pytest.raises(ValueError, match="channel_axis=-1"):
        nlmeans.denoise(np.zeros((30, 30, 3)), h=0.1, patch_size=5)
    out = nlmeans.denoise(np.zeros((1, 1)), h=0.1, patch_size=1, patch_distance=2)
    assert out.shape == (1, 1)


@pytest.mark.parametrize("method", ["fast", "exact", "patchwise"])
@pytest.mark.parametrize("shape, axis", [((3, 3), None), ((4, 40), None), ((3, 5, 3), -1)])
def test_automatic_patch_fits_a_tiny_image(method, shape, axis, rng):
    """The table's patch (5 for exact at this sigma) shrinks to what the image
    holds; a patch the caller chose is never changed."""
    image = 0.5 + 0.2 * rng.standard_normal(shape)
    out, params = nlmeans.denoise(
        image, method=method, channel_axis=axis, sigma=0.2, return_params=True
    )
    assert params.patch_size == 3 and "patch_size" in params.automatic
    assert out.shape == image.shape and np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="smaller than the patch"):
        nlmeans.denoise(image, method=method, channel_axis=axis, sigma=0.2, patch_size=5)
    # Without channel_axis a colour image would be a 3-slice volume: still an error that says so.
    with pytest.raises(ValueError, match="pass channel_axis"):
        nlmeans.denoise(rng.random((30, 30, 3)), method="exact", sigma=0.2)


# --------------------------------------------------------------------------
# Kernel building blocks
# --------------------------------------------------------------------------


def test_exp_neg_is_accurate():
    from numba import njit

    @njit
    def apply(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = kernels.exp_neg(x[i])
        return out

    x = np.linspace(0, kernels.EXP_CUTOFF, 200_001).astype(np.float32)
    exact = np.exp(-x.astype(np.float64))
    relative = np.abs(apply(x) - exact) / exact
    # float32 rounding of x * log2(e) dominates for large x.
    assert relative[x <= 4].max() < 5e-7 and relative.max() < 2e-6
    assert apply(np.array([kernels.EXP_CUTOFF + 1, 1e30], np.float32)).tolist() == [0, 0]


@pytest.mark.parametrize("dz, d", [(0, 3), (2, 2)])
def test_half_window_visits_each_pair_once(dz, d):
    half = {tuple(s) for s in kernels.half_window_shifts(dz, d)}
    full = {tuple(s) for s in kernels.full_window_shifts(dz, d)}
    assert all(s[1] >= 0 for s in half)
    assert half | {tuple(-np.array(s)) for s in half} == full
    assert len(half) * 2 == len(full)


def test_gaussian_patch_weights():
    g = kernels.patch_weights(7, "gaussian")
    assert g.sum() == pytest.approx(1.0, abs=1e-6) and g.argmax() == 3
    assert kernels.patch_weights(1, "gaussian").tolist() == [1.0]


@pytest.mark.parametrize(
    "shape, axis", [((6, 12, 14), None), ((3, 6, 12, 14), 0), ((6, 12, 14, 3), -1)]
)
def test_neural_refuses_volumes_with_what_to_use(shape, axis, rng):
    """With or without channels, in memory or on Dask: one message naming the way out."""
    image = rng.random(shape)
    with pytest.raises(ValueError, match="supports 2-D images.*'fast', 'exact' or 'patchwise'"):
        nlmeans.denoise(image, method="neural", channel_axis=axis)
    da = pytest.importorskip("dask.array")
    with pytest.raises(ValueError, match="supports 2-D images.*'fast', 'exact' or 'patchwise'"):
        nlmeans.denoise(da.from_array(image), method="neural", channel_axis=axis)
