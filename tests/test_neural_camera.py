"""Tests of the simulated camera that makes training noise
(:mod:`nlmeans.neural.camera`): its JPEG against OpenCV's, its demosaicking
against the formula, and the noise it makes."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from nlmeans.neural import camera  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _photo(h: int, w: int, seed: int = 0, grain: float = 0.03) -> np.ndarray:
    """A colour image with smooth shading, edges and white grain of std ``grain``, in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / 8.0
    base = 0.5 + 0.3 * np.sin(xx + 0.5 * yy) * np.cos(0.3 * yy)
    edges = 0.2 * (xx + yy > 6)
    img = np.stack([base + edges, 1.0 - base, 0.3 + 0.4 * base * (xx > 3)], axis=-1)
    return np.clip(img + grain * rng.standard_normal(img.shape), 0, 1)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def _to_torch(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float()


@pytest.mark.parametrize("quality", [60, 90])
@pytest.mark.parametrize("shape", [(64, 80), (50, 70)])  # the second is padded to 64 x 80
def test_jpeg_decodes_to_what_opencv_makes(quality, shape):
    img = np.round(_photo(*shape) * 255).astype(np.uint8)
    _, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    theirs = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] / 255.0
    ours = camera.jpeg(_to_torch(img / 255.0), torch.tensor([float(quality)]))
    ours = ours[0].permute(1, 2, 0).double().numpy()
    assert ours.shape == img.shape
    np.testing.assert_allclose(np.round(ours * 255), ours * 255, atol=1e-4)  # 8-bit values
    # Both lose about as much; they differ far less than either from the input
    # (chroma upsampling and rounding inside libjpeg's integer DCT differ).
    loss_ours, loss_theirs = _psnr(ours, img / 255.0), _psnr(theirs, img / 255.0)
    assert abs(loss_ours - loss_theirs) < 1.5, (loss_ours, loss_theirs)
    assert _psnr(ours, theirs) > max(loss_ours, loss_theirs) + 3


def test_jpeg_quality_is_per_image():
    img = _to_torch(_photo(32, 32, grain=0))
    both = camera.jpeg(torch.cat([img, img]), torch.tensor([20.0, 95.0]))
    low = camera.jpeg(img, torch.tensor([20.0]))
    high = camera.jpeg(img, torch.tensor([95.0]))
    torch.testing.assert_close(both, torch.cat([low, high]), atol=0, rtol=0)
    err = [float(((x - img) ** 2).mean()) for x in (low, high)]
    assert err[0] > 4 * err[1]


def test_mosaic_keeps_one_colour_per_site_and_bilinear_demosaic_is_exact_on_ramps():
    h, w = 12, 14
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    rgb = torch.stack([0.01 * xx + 0.02 * yy, 0.5 - 0.01 * xx, 0.03 * yy])[None]
    raw = camera._mosaic(rgb)
    assert raw.shape == (1, 1, h, w)
    assert torch.equal(raw[0, 0, 0::2, 0::2], rgb[0, 0, 0::2, 0::2])  # R at even rows, cols
    assert torch.equal(raw[0, 0, 0::2, 1::2], rgb[0, 1, 0::2, 1::2])  # G
    assert torch.equal(raw[0, 0, 1::2, 0::2], rgb[0, 1, 1::2, 0::2])  # G
    assert torch.equal(raw[0, 0, 1::2, 1::2], rgb[0, 2, 1::2, 1::2])  # B
    back = camera._demosaic(raw)
    # Bilinear interpolation reproduces linear functions away from the border ...
    torch.testing.assert_close(back[..., 1:-1, 1:-1], rgb[..., 1:-1, 1:-1], atol=1e-6, rtol=0)
    # ... and constants everywhere (normalised convolution).
    flat = torch.full((1, 3, h, w), 0.37)
    torch.testing.assert_close(camera._demosaic(camera._mosaic(flat)), flat, atol=1e-6, rtol=0)


def test_demosaic_keeps_every_measured_value_and_fills_from_the_nearest_sites():
    rng = np.random.default_rng(0)
    rgb = torch.from_numpy(rng.uniform(size=(1, 3, 10, 12))).float()
    raw = camera._mosaic(rgb)
    back = camera._demosaic(raw)
    masks = camera._bayer_masks(10, 12, "cpu")
    # each site keeps its own measurement (a green site is not averaged with
    # its diagonal green neighbours)
    torch.testing.assert_close(back * masks, rgb * masks, atol=1e-6, rtol=0)
    # the reference formula inside: green from the 4 edge neighbours, red and
    # blue from the 2 or 4 nearest sites of their lattice
    r = raw[0, 0].double().numpy()
    for y in range(1, 9):
        for x in range(1, 11):
            even_y, even_x = y % 2 == 0, x % 2 == 0
            edges = (r[y - 1, x] + r[y + 1, x] + r[y, x - 1] + r[y, x + 1]) / 4
            diagonals = (r[y - 1, x - 1] + r[y - 1, x + 1] + r[y + 1, x - 1] + r[y + 1, x + 1]) / 4
            rows, cols = (r[y - 1, x] + r[y + 1, x]) / 2, (r[y, x - 1] + r[y, x + 1]) / 2
            if even_y and even_x:  # red site
                expect = (r[y, x], edges, diagonals)
            elif not even_y and not even_x:  # blue site
                expect = (diagonals, edges, r[y, x])
            elif even_y:  # green site on a red row
                expect = (cols, r[y, x], rows)
            else:  # green site on a blue row
                expect = (rows, r[y, x], cols)
            np.testing.assert_allclose(back[0, :, y, x].double().numpy(), expect, atol=1e-6)


def test_jpeg_takes_patches_smaller_than_a_block_and_integer_qualities():
    x = torch.rand(1, 3, 8, 6, generator=torch.Generator().manual_seed(0)).expand(2, 3, 8, 6)
    out = camera.jpeg(x, torch.tensor([80.0, 80.4]))  # libjpeg's quality is an integer
    assert out.shape == (2, 3, 8, 6)
    assert torch.equal(out[0], out[1])


def test_srgb_curves_invert_each_other():
    x = torch.linspace(-0.2, 1, 301)
    torch.testing.assert_close(
        camera._linear_to_srgb(camera._srgb_to_linear(x.clamp(0))), x.clamp(0), atol=1e-5, rtol=0
    )
    assert torch.equal(camera._linear_to_srgb(-x), -camera._linear_to_srgb(x))


def test_gaussian_blur_matches_scipy_and_zero_sigma_keeps_the_plane():
    from scipy import ndimage

    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    sigmas = torch.tensor([[0.0, 0.7, 1.5], [1.0, 0.0, 2.0]])
    out = camera._gaussian_blur(x, sigmas, 2.0)
    for b in range(2):
        for c in range(3):
            s = float(sigmas[b, c])
            if s == 0:
                torch.testing.assert_close(out[b, c], x[b, c], atol=1e-6, rtol=0)
                continue
            # the same kernel radius as the function (3 x the largest sigma)
            ref = ndimage.gaussian_filter(
                x[b, c].double().numpy(), s, mode="mirror", truncate=math.ceil(3 * 2.0) / s
            )
            np.testing.assert_allclose(out[b, c].double().numpy(), ref, atol=1e-5)


def test_camera_noise_is_seeded_8_bit_correlated_and_measured():
    clean = _to_torch(_photo(64, 64, grain=0)).expand(24, 3, 64, 64).contiguous()
    noisy, level = camera.camera_noise(clean, torch.Generator().manual_seed(3))
    again, level_again = camera.camera_noise(clean, torch.Generator().manual_seed(3))
    assert torch.equal(noisy, again) and torch.equal(level, level_again)
    assert noisy.shape == clean.shape and level.shape == (24,)
    assert float(noisy.min()) >= 0 and float(noisy.max()) <= 1
    torch.testing.assert_close(noisy * 255, torch.round(noisy * 255), atol=2e-4, rtol=0)
    residual = (noisy - clean).double()
    luminance = residual.sum(dim=1) / math.sqrt(3)
    torch.testing.assert_close(
        level.double(), luminance.flatten(1).std(dim=1), atol=1e-6, rtol=1e-5
    )
    # a wide range of strengths, from barely visible to strong
    levels = level * 255
    assert float(levels.min()) < 4 and float(levels.max()) > 8, levels
    # demosaicking and noise reduction make neighbouring pixels' noise alike,
    # unlike white noise (whose lag-1 correlation is 0)
    lum = luminance - luminance.mean(dim=(1, 2), keepdim=True)
    lag1 = (lum[:, :, 1:] * lum[:, :, :-1]).mean(dim=(1, 2)) / lum.var(dim=(1, 2))
    assert float(lag1.median()) > 0.2, lag1


def test_camera_noise_needs_rgb_batches():
    with pytest.raises(ValueError, match="RGB"):
        camera.camera_noise(torch.rand(2, 1, 16, 16), torch.Generator())


def test_where_the_camera_model_lives_and_when_it_is_picked(tmp_path, monkeypatch):
    from nlmeans.neural import checkpoint, inference

    assert checkpoint.default_weights_path(3, camera=True).name == "denoiser_camera.safetensors"
    with pytest.raises(ValueError, match="colour"):
        checkpoint.default_weights_path(1, camera=True)

    def stand_in(channels=1, *, spacetime=False, camera=False):
        return tmp_path / f"{channels}-{camera}.safetensors"

    monkeypatch.setattr(inference, "default_weights_path", stand_in)
    colour, camera_model = tmp_path / "3-False.safetensors", tmp_path / "3-True.safetensors"
    colour.touch()
    assert inference.default_model_path(3, camera=True) == colour  # not shipped: the colour model
    camera_model.touch()
    assert inference.default_model_path(3, camera=True) == camera_model
    assert inference.default_model_path(3) == colour
    assert inference.default_model_path(1, camera=True) == tmp_path / "1-False.safetensors"
    from nlmeans.neural import denoise

    with pytest.raises(ValueError, match="camera=True or weights"):
        denoise(np.zeros((8, 8, 3), np.float32), weights=colour, camera=True)
