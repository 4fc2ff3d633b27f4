"""Tests of classical non-local means written as a fixed non-local block."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from reference import gaussian_patch_weights, nlm_pixelwise, squared_patch_distance  # noqa: E402

from nlmeans.neural.bridge import ClassicalNonLocalMeans, classical_non_local_means  # noqa: E402


def naive_nlm(u, h, sigma, s, d):
    """The "exact" formula as an obvious loop (tests/reference.py); u is (C, H, W)."""
    return nlm_pixelwise(u, patch_size=s, patch_distance=d, h=h, sigma=sigma, gaussian=True)


def noisy_image(channels, height, width, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    clean = 0.5 + 0.3 * np.sin(xx / 2.5)[None] * np.cos(yy / 3.0)[None]
    clean = np.repeat(clean, channels, axis=0) * np.linspace(0.8, 1.0, channels)[:, None, None]
    return clean + rng.normal(0, 0.08, size=(channels, height, width))


@pytest.mark.parametrize(
    "channels, h, sigma, patch_size, patch_distance",
    [(1, 0.1, 0.0, 5, 3), (1, 0.07, 0.08, 3, 4), (3, 0.12, 0.05, 5, 2), (2, 0.2, 0.0, 1, 3)],
)
def test_matches_naive_double_loop(channels, h, sigma, patch_size, patch_distance):
    u = noisy_image(channels, 12, 14, seed=channels)
    want = naive_nlm(u, h, sigma, patch_size, patch_distance)
    x = torch.from_numpy(u)[None]
    got = classical_non_local_means(
        x, h=h, sigma=sigma, patch_size=patch_size, patch_distance=patch_distance
    )
    assert got.dtype == torch.float64 and got.shape == x.shape
    assert np.abs(got[0].numpy() - want).max() < 1e-5
    # the filter actually did something (not the identity)
    assert np.abs(got[0].numpy() - u).max() > 1e-2


def test_tiny_image_with_patch_larger_than_image():
    # numpy's "reflect" reflects repeatedly when the pad exceeds the size
    u = noisy_image(1, 3, 4, seed=4)
    want = naive_nlm(u, 0.1, 0.02, 7, 5)
    got = classical_non_local_means(
        torch.from_numpy(u)[None], h=0.1, sigma=0.02, patch_size=7, patch_distance=5
    )
    assert np.abs(got[0].numpy() - want).max() < 1e-5


def test_batch_and_module_agree_with_functional():
    x = torch.from_numpy(np.stack([noisy_image(2, 10, 9, seed=s) for s in range(3)]))
    module = ClassicalNonLocalMeans(h=0.1, sigma=0.03, patch_size=3, patch_distance=2)
    assert list(module.parameters()) == []
    got = module(x)
    for b in range(3):
        single = classical_non_local_means(
            x[b : b + 1], h=0.1, sigma=0.03, patch_size=3, patch_distance=2
        )
        assert torch.allclose(got[b : b + 1], single, atol=1e-12)
    want = naive_nlm(x[1].numpy(), 0.1, 0.03, 3, 2)
    assert np.abs(got[1].numpy() - want).max() < 1e-5


def test_embedding_distance_is_patch_distance():
    u = noisy_image(3, 8, 9, seed=2)
    module = ClassicalNonLocalMeans(h=0.1, patch_size=5)
    emb = module.embed(torch.from_numpy(u)[None])[0]  # (C * 25, H, W)
    assert emb.shape == (75, 8, 9)
    padded = np.pad(u, ((0, 0), (2, 2), (2, 2)), mode="reflect")
    weights = gaussian_patch_weights(5, 2)
    for (i, j), (k, m) in [((0, 0), (3, 4)), ((7, 8), (7, 0)), ((4, 4), (4, 4)), ((1, 7), (6, 2))]:
        got = float(((emb[:, i, j] - emb[:, k, m]) ** 2).sum())
        assert abs(got - squared_patch_distance(padded, (i, j), (k, m), 2, weights)) < 1e-12


def test_properties_constant_image_and_convex_combination():
    x = torch.full((1, 2, 9, 11), 0.25, dtype=torch.float64)
    assert torch.allclose(classical_non_local_means(x, h=0.1), x, atol=1e-15)
    y = torch.rand(2, 1, 13, 10, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    out = classical_non_local_means(y, h=0.2, sigma=0.05, patch_size=3, patch_distance=2)
    assert out.dtype == torch.float32
    assert out.min() >= y.min() - 1e-6 and out.max() <= y.max() + 1e-6
    # a huge h averages the clipped window uniformly
    flat = classical_non_local_means(y.double(), h=1e6, patch_size=3, patch_distance=1)
    box = torch.nn.functional.avg_pool2d(
        y.double(), 3, stride=1, padding=1, count_include_pad=False
    )
    assert torch.allclose(flat, box, atol=1e-9)
    # patch_distance=0: only the pixel itself
    assert torch.equal(classical_non_local_means(y, h=0.1, patch_distance=0), y)


def test_validation():
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="h"):
        classical_non_local_means(x, h=0.0)
    with pytest.raises(ValueError, match="sigma"):
        classical_non_local_means(x, h=0.1, sigma=-1.0)
    with pytest.raises(ValueError, match="patch_size"):
        classical_non_local_means(x, h=0.1, patch_size=4)
    with pytest.raises(ValueError, match="patch_distance"):
        classical_non_local_means(x, h=0.1, patch_distance=-2)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        classical_non_local_means(torch.rand(8, 8), h=0.1)
    with pytest.raises(TypeError, match="floating"):
        classical_non_local_means(torch.ones(1, 1, 8, 8, dtype=torch.uint8), h=0.1)
    with pytest.raises(ValueError, match="h"):
        ClassicalNonLocalMeans(h=float("nan"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x = torch.from_numpy(noisy_image(3, 20, 17, seed=9))[None]
    cpu = classical_non_local_means(x, h=0.1, sigma=0.05, patch_size=5, patch_distance=4)
    gpu = classical_non_local_means(x.cuda(), h=0.1, sigma=0.05, patch_size=5, patch_distance=4)
    assert gpu.is_cuda
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-10)


def _denoise_or_skip():
    try:
        import nlmeans

        return nlmeans.denoise
    except (ImportError, AttributeError) as exc:  # the classical core is written separately
        pytest.skip(f"nlmeans.denoise is not available yet ({exc!r})")


@pytest.mark.parametrize("channels", [1, 3])
def test_matches_denoise_exact(channels):
    denoise = _denoise_or_skip()
    u = np.clip(noisy_image(channels, 24, 21, seed=11), 0.0, 1.0)
    params = dict(h=0.09, sigma=0.06, patch_size=5, patch_distance=4)
    if channels == 1:
        ref = denoise(u[0], method="exact", **params)[None]
    else:
        # The bridge compares all channels jointly: the "rgb" colour space.
        ref = np.moveaxis(
            denoise(
                np.moveaxis(u, 0, -1), method="exact", channel_axis=-1, color_space="rgb", **params
            ),
            -1,
            0,
        )
    got = classical_non_local_means(torch.from_numpy(u)[None], **params)[0].numpy()
    assert np.abs(got - ref).max() < 1e-4
