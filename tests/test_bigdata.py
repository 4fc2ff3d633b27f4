"""nlmeans.denoise on Dask arrays equals the in-memory result, for any chunking."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nlmeans
from nlmeans import bigdata

da = pytest.importorskip("dask.array")


def _noisy(rng, shape, dtype=np.float64):
    clean = np.zeros(shape)
    clean[..., : shape[1] // 2, :] = 0.3  # an edge, so that weights vary
    noisy = np.clip(0.5 + clean + 0.1 * rng.standard_normal(shape), 0, 1)
    if np.dtype(dtype).kind == "u":
        return np.round(noisy * np.iinfo(dtype).max).astype(dtype)
    return noisy.astype(dtype)


def _chunking(draw, shape, fixed=()):
    """Random, often uneven, chunks along every axis (axes in ``fixed`` whole or split)."""
    chunks = []
    for n in shape:
        cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=3))) if n > 1 else []
        edges = [0, *cuts, n]
        chunks.append(tuple(b - a for a, b in zip(edges, edges[1:])))
    return tuple(chunks)


def _same_as_in_memory(image, chunks, **kwargs):
    x = da.from_array(image, chunks=chunks)
    out, params = nlmeans.denoise(x, return_params=True, **kwargs)
    assert isinstance(out, da.Array)
    assert out.shape == image.shape and out.dtype == image.dtype and out.chunks == x.chunks
    ref = nlmeans.denoise(image, channel_axis=kwargs.get("channel_axis"), **params.denoise_kwargs())
    got = out.compute()
    return got, ref, params


_SETTINGS = dict(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@settings(**_SETTINGS)
@given(data=st.data(), method=st.sampled_from(["fast", "exact", "patchwise"]))
def test_gray_any_chunking_bit_identical(data, method):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    image = _noisy(rng, (70, 41), data.draw(st.sampled_from([np.uint8, np.uint16, np.float64])))
    chunks = _chunking(data.draw, image.shape)
    got, ref, _ = _same_as_in_memory(
        image, chunks, method=method, sigma=0.1, patch_size=3, patch_distance=4
    )
    np.testing.assert_array_equal(got, ref)


@settings(**_SETTINGS)
@given(data=st.data(), space=st.sampled_from(["rgb", "opponent"]))
def test_colour_any_chunking_bit_identical(data, space):
    """Channels may be split across chunks too; the channel axis anywhere."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    axis = data.draw(st.sampled_from([0, -1]))
    image = np.moveaxis(_noisy(rng, (38, 45, 3), np.uint8), -1, axis)
    method = data.draw(st.sampled_from(["fast", "patchwise"]))
    got, ref, params = _same_as_in_memory(
        image,
        _chunking(data.draw, image.shape),
        method=method,
        channel_axis=axis,
        color_space=space,
        sigma=0.1,
        patch_size=3,
        patch_distance=3,
    )
    assert params.color_space == space
    np.testing.assert_array_equal(got, ref)


@settings(**_SETTINGS)
@given(data=st.data(), method=st.sampled_from(["fast", "exact", "patchwise"]))
def test_volume_any_chunking_bit_identical(data, method):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    image = _noisy(rng, (12, 40, 17), np.float32)
    got, ref, _ = _same_as_in_memory(
        image,
        _chunking(data.draw, image.shape),
        method=method,
        sigma=0.1,
        patch_size=3,
        patch_distance=2,
    )
    np.testing.assert_array_equal(got, ref)


def test_automatic_parameters_bit_identical(rng):
    """Table parameters (a larger window and patch) and strips of rows across chunks."""
    image = _noisy(rng, (150, 60), np.uint16)
    got, ref, params = _same_as_in_memory(image, ((37, 70, 43), (25, 35)), sigma=0.1)
    assert {"patch_size", "patch_distance", "h"} <= set(params.automatic)
    np.testing.assert_array_equal(got, ref)


def test_poisson_gaussian_bit_identical(rng):
    clean = np.linspace(0.05, 0.9, 64 * 50).reshape(64, 50)
    noisy = rng.poisson(clean * 200) / 200 + 0.01 * rng.standard_normal(clean.shape)
    image = np.clip(noisy, 0, 1).astype(np.float32)
    model = nlmeans.NoiseModel("poisson-gaussian", 1 / 200, 1e-4)
    got, ref, params = _same_as_in_memory(
        image, ((30, 34), (20, 30)), noise=model, patch_size=3, patch_distance=3
    )
    assert params.noise_model == model
    np.testing.assert_array_equal(got, ref)


def test_poisson_gaussian_colour_bit_identical(rng):
    """Per-channel offsets of the stabilised image: the whole image's, per channel."""
    clean = np.linspace(0.05, 0.9, 48 * 40 * 3).reshape(48, 40, 3)
    clean[..., 1] = 0.3 + 0.4 * clean[..., 1]
    noisy = clean + 0.03 * rng.standard_normal(clean.shape)
    image = np.clip(noisy, 0, 1).astype(np.float32)
    model = nlmeans.NoiseModel("poisson-gaussian", [1 / 200, 1e-5, 1 / 300], [1e-4, 9e-4, 1e-4])
    got, ref, params = _same_as_in_memory(
        image,
        ((20, 28), (15, 25), (3,)),
        channel_axis=-1,
        noise=model,
        patch_size=3,
        patch_distance=3,
    )
    assert params.noise_model == model
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("method", ("fast", "neural"))
def test_constant_channel_comes_back_as_in_memory(rng, method):
    image = np.clip(0.5 + 0.1 * rng.standard_normal((50, 44, 3)), 0, 1).astype(np.float32)
    image[..., 2] = 0.25
    got, ref, _ = _same_as_in_memory(
        image, ((20, 30), (22, 22), (3,)), channel_axis=-1, method=method, sigma=0.1
    )
    assert np.all(got[..., 2] == np.float32(0.25)) and np.all(ref[..., 2] == np.float32(0.25))
    np.testing.assert_allclose(got, ref, atol=1e-5 if method == "neural" else 0, rtol=0)


def test_neural_matches_in_memory(rng):
    """The network's receptive field is the halo: equal to float rounding."""
    image = _noisy(rng, (70, 66), np.float32)
    got, ref, params = _same_as_in_memory(image, ((25, 45), (33, 33)), method="neural", sigma=0.1)
    assert bigdata.halo(params, image.shape) == 32  # the shipped network
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_neural_ensemble_matches_in_memory(rng):
    """Each chunk's region is flipped and turned on its own: its sides and
    origin keep the network's pixel grid, so the mean equals the whole image's."""
    image = _noisy(rng, (71, 66), np.float32)  # odd height: the last region is padded
    got, ref, params = _same_as_in_memory(
        image, ((25, 46), (33, 33)), method="neural", sigma=0.1, ensemble=True
    )
    assert params.ensemble
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_sigma_from_a_sample_of_chunks(rng):
    image = _noisy(rng, (96, 64))
    x = da.from_array(image, chunks=(32, 32))
    _, params = bigdata.denoise_dask(x, return_params=True, sample_chunks=3)
    samples = bigdata.sample_blocks(x, None, 3)
    assert len(samples) == 3 and samples[0] == (slice(0, 32), slice(0, 32))
    expected = np.median([nlmeans.estimate_sigma(image[s]) for s in samples])
    assert params.sigma == expected
    assert params.sigma_estimated and params.automatic[0] == "sigma"


def test_only_the_range_is_read_before_compute(rng):
    # With sigma given, the call reads each chunk once (the image's minimum
    # and maximum); the denoising waits for .compute().
    image = _noisy(rng, (64, 48))
    calls = []

    def record(block):
        calls.append(block.shape)
        return block

    x = da.from_array(image, chunks=(32, 24)).map_blocks(record, meta=image[:0, :0])
    out = nlmeans.denoise(x, sigma=0.1, patch_size=3, patch_distance=2)
    assert len(calls) == x.npartitions
    np.testing.assert_array_equal(
        out.compute(), nlmeans.denoise(image, sigma=0.1, patch_size=3, patch_distance=2)
    )
    assert len(calls) > x.npartitions


def test_memory_stays_near_the_chunks_in_flight(tmp_path):
    # The range used to be a reduction inside the denoising graph: when it
    # finished, every chunk became ready at once and the threaded scheduler
    # held them all (a 128 MB image written chunk by chunk peaked at 1.18 GB).
    # Now what is held follows the chunks in flight, not the image's size.
    import threading

    import psutil

    from nlmeans import bigio

    zarr = pytest.importorskip("zarr")
    side, chunk = 4096, 256
    path = tmp_path / "in.zarr"
    source = zarr.create_array(path, shape=(side, side), chunks=(chunk, chunk), dtype="u2")
    rng = np.random.default_rng(0)
    for y in range(0, side, chunk):
        source[y : y + chunk] = rng.integers(0, 60000, (chunk, side), dtype=np.uint16)
    options = dict(sigma=0.05, patch_size=3, patch_distance=1)
    nlmeans.denoise(np.asarray(source[:64, :64]), **options)  # compiled before measuring
    image = bigio.open_big_image(path, chunk_size=chunk)
    process = psutil.Process()
    base = process.memory_info().rss
    peak, done = [base], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        out = nlmeans.denoise(image.array, **options)
        bigio.write_big_image(out, tmp_path / "out.zarr", like=image, workers=2)
    finally:
        done.set()
        sampler.join()
    nbytes = side * side * 2
    print(f"peak {(peak[0] - base) / 2**20:.0f} MB above the start, image {nbytes / 2**20:.0f} MB")
    assert peak[0] - base < 3 * nbytes


def test_nan_is_reported_when_the_range_is_read(rng):
    image = _noisy(rng, (40, 40))
    image[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        nlmeans.denoise(da.from_array(image, chunks=20), sigma=0.1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "neural"}, ValueError, "2-D images"),
        ({"method": "nope"}, ValueError, "method must be"),
        ({"noise": "poisson-gaussian", "sigma": 0.1}, ValueError, "sigma cannot be combined"),
        ({"patch_size": 4, "sigma": 0.1}, ValueError, "patch_size"),
    ],
)
def test_bad_arguments(rng, kwargs, error, match):
    x = da.from_array(_noisy(rng, (8, 20, 20)), chunks=10)
    with pytest.raises(error, match=match):
        nlmeans.denoise(x, **kwargs)


def test_white_noise_with_a_sigma_and_byte_order_as_in_memory(rng):
    """noise="white" with a sigma is taken (it was refused on Dask only), and
    big-endian data come back big-endian, as in memory."""
    image = _noisy(rng, (60, 50), np.float32).astype(">f4")
    got, ref, _ = _same_as_in_memory(image, (32, 25), noise="white", sigma=0.1)
    assert got.dtype == ref.dtype == np.dtype(">f4")
    np.testing.assert_array_equal(got, ref)


def test_neural_keeps_a_gaussian_model_per_channel(rng):
    """A Gaussian model with a sigma per channel is the network's map, on Dask
    as in memory, and the parameters replay it."""
    image = np.clip(0.5 + 0.1 * rng.standard_normal((40, 36, 3)), 0, 1).astype(np.float32)
    model = nlmeans.NoiseModel("gaussian", a=(0, 0, 0), b=(0.02**2, 0.08**2, 0.15**2))
    got, ref, params = _same_as_in_memory(
        image, ((20, 20), (18, 18), (3,)), channel_axis=-1, method="neural", noise=model
    )
    assert params.noise_model == model
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    one_sigma = nlmeans.denoise(image, channel_axis=-1, method="neural", sigma=model.sigma)
    assert np.abs(ref - one_sigma).max() > 1e-3


def test_neural_refuses_data_off_the_unit_scale_before_any_chunk(rng):
    image = _noisy(rng, (64, 64), np.float32) * 4000
    with pytest.raises(ValueError, match=r"\[0, 1\] scale.*divide it"):
        nlmeans.denoise(da.from_array(image, chunks=32), method="neural")


def test_sigma_in_gray_levels_is_refused_as_in_memory(rng):
    u8 = (_noisy(rng, (32, 32)) * 255).astype(np.uint8)
    with pytest.raises(ValueError, match=r"\[0, 1\] scale for uint8 images"):
        nlmeans.denoise(da.from_array(u8, chunks=16), sigma=25)
    # float data on its own scale keeps its sigma, as in memory
    floats = u8.astype(np.float32)
    lazy = nlmeans.denoise(da.from_array(floats, chunks=16), sigma=25.0, h=20.0)
    np.testing.assert_array_equal(lazy.compute(), nlmeans.denoise(floats, sigma=25.0, h=20.0))


def test_float_data_on_another_scale_as_in_memory(rng):
    # raw counts: the table is read with sigma on [0, 1] from the image's range,
    # which the Dask path reads before any chunk is denoised
    counts = (_noisy(rng, (48, 40)) * 4000).astype(np.float32)
    want, params = nlmeans.denoise(counts, sigma=300.0, return_params=True)
    lazy, lazy_params = nlmeans.denoise(
        da.from_array(counts, chunks=(16, 24)), sigma=300.0, return_params=True
    )
    assert lazy_params == params
    np.testing.assert_array_equal(lazy.compute(), want)


def test_given_parameters_read_no_range(rng, monkeypatch):
    # the range of a float image is read only when the table needs it
    def forbidden(*_args):
        raise AssertionError("the whole image was read")

    monkeypatch.setattr(bigdata, "_channel_ranges", forbidden)
    counts = da.from_array((_noisy(rng, (32, 32)) * 4000).astype(np.float32), chunks=16)
    params = bigdata.resolve_dask_parameters(
        counts, sigma=300.0, h=300.0, patch_size=3, patch_distance=2
    )
    assert params.h == 300.0


def test_bad_sample_count(rng):
    with pytest.raises(ValueError, match="sample_chunks"):
        bigdata.denoise_dask(da.from_array(_noisy(rng, (20, 20)), chunks=10), sample_chunks=0)


def test_bad_dtype():
    with pytest.raises(TypeError, match="unsupported dtype"):
        nlmeans.denoise(da.zeros((20, 20), dtype=np.int32, chunks=10), sigma=0.1)


def test_global_attention_has_no_halo(monkeypatch):
    from nlmeans.neural.model import DenoiserConfig

    monkeypatch.setattr(bigdata, "_neural_config", lambda: DenoiserConfig(window=None))
    params = nlmeans.NLMeansParameters("neural", 0.1, None, None, None, False)
    with pytest.raises(ValueError, match="whole image"):
        bigdata.halo(params, (100, 100))


def test_halo_of_the_classical_methods():
    def params(method):
        return nlmeans.NLMeansParameters(method, 0.1, 0.1, 7, 10, False)

    assert bigdata.halo(params("fast"), (100, 100)) == 13
    assert bigdata.halo(params("exact"), (100, 100)) == 13
    assert bigdata.halo(params("patchwise"), (100, 100)) == 16
    assert bigdata.halo(params("fast"), (6, 5)) == 5 + 3  # window clipped to the image


def test_missing_dask_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(ImportError, match=r"nlmeans\[dask\]"):
        bigdata.require_dask()


def test_camera_noise_on_dask_takes_the_gaussian_path(rng):
    """noise="auto" checks for correlated noise first, as in memory."""
    from skimage import data, transform
    from test_noise_level import _camera_noise

    clean = transform.downscale_local_mean(data.astronaut() / 255.0, (2, 2, 1))
    noisy = _camera_noise(clean, 0.03, rng)
    x = da.from_array(noisy, chunks=(128, 128, 3))
    _, params = bigdata.denoise_dask(x, channel_axis=-1, noise="auto", return_params=True)
    in_memory = nlmeans.resolve_parameters(noisy, channel_axis=-1, noise="auto")
    assert in_memory.noise_model is None and in_memory.correlated_noise > 0
    assert params.noise_model is None and params.correlated_noise > 0
    assert params.sigma == pytest.approx(in_memory.sigma, rel=0.25)


def test_camera_noise_on_dask_runs_the_camera_model(rng):
    """As in memory: mostly correlated noise goes to the camera model, with the sigma of the samples."""
    pytest.importorskip("torch")
    from skimage import data, transform
    from test_noise_level import _camera_noise

    from nlmeans._denoise import uses_camera_model
    from nlmeans.neural import denoise as neural_denoise

    clean = transform.downscale_local_mean(data.astronaut()[:256, :256] / 255.0, (2, 2, 1))
    noisy = (_camera_noise(clean, 0.03, rng) / 255.0).astype(np.float32)
    x = da.from_array(noisy, chunks=(64, 128, 3))
    out, params = nlmeans.denoise(x, channel_axis=-1, method="neural", return_params=True)
    assert uses_camera_model(params)
    expected = np.clip(neural_denoise(noisy, sigma=params.sigma, camera=True), 0, 1)
    np.testing.assert_allclose(out.compute(), expected, atol=2e-6)


def test_neural_gets_the_poisson_gaussian_map_on_dask(rng):
    """As in memory: with nothing given, the network's map is the fitted model's."""
    yy, xx = np.mgrid[0:96, 0:96]
    clean = np.clip(0.1 + 0.8 * xx / 95 + 0.05 * np.sin(yy / 3), 0, 1)
    noisy = clean + np.sqrt(0.01 * clean + 0.0004) * rng.standard_normal(clean.shape)
    image = np.clip(noisy, 0, 1).astype(np.float32)
    x = da.from_array(image, chunks=(24, 96))  # each chunk spans the intensity range
    out, params = nlmeans.denoise(x, method="neural", return_params=True)
    assert params.noise_model is not None and params.noise_model.kind == "poisson-gaussian"
    assert "noise" in params.automatic and params.sigma_estimated  # as in memory
    _, given = nlmeans.denoise(x, method="neural", noise=params.noise_model, return_params=True)
    assert not given.sigma_estimated
    expected = nlmeans.denoise(image, method="neural", noise=params.noise_model)
    np.testing.assert_allclose(out.compute(), expected, atol=1e-5, rtol=0)
