"""Tests of the colour network and its noise-level map: the model input,
patch sampling and noise synthesis for training, colour training runs, and
inference with sigma, noise models and explicit maps."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neural_helpers import activate  # noqa: E402

import nlmeans  # noqa: E402
import nlmeans.neural as nn_  # noqa: E402
from nlmeans.neural import inference as inf_mod  # noqa: E402
from nlmeans.neural import training as train_mod  # noqa: E402
from nlmeans.neural.model import DenoiserConfig, NonLocalDenoiser  # noqa: E402
from nlmeans.noise import NoiseModel  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_COLOR = DenoiserConfig(in_channels=3, noise_level_input=True, channels=8, depth=4, window=2)


@pytest.fixture(scope="module")
def color_model():
    torch.manual_seed(0)
    return activate(NonLocalDenoiser(TINY_COLOR))


def _colour_image(seed: int, h: int = 30, w: int = 34) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.3 * np.sin(xx / 4.0 + yy / 6.0)
    img = np.stack([base, base[::-1], 0.8 - 0.5 * base], axis=-1)
    return np.clip(img + 0.05 * rng.standard_normal(img.shape), 0, 1).astype(np.float32)


# --------------------------------------------------------------------------- the model input


def test_scalar_per_channel_and_map_sigma_agree(color_model):
    x = torch.rand(2, 3, 14, 18)
    with torch.no_grad():
        scalar = color_model(x, 0.1)
        per_item = color_model(x, torch.tensor([0.1, 0.1]))
        per_channel = color_model(x, torch.full((2, 3), 0.1))
        full_map = color_model(x, torch.full((2, 3, 14, 18), 0.1))
        one_map = color_model(x, torch.full((1, 1, 14, 18), 0.1))
    for other in (per_item, per_channel, full_map, one_map):
        torch.testing.assert_close(other, scalar, atol=1e-6, rtol=0)


def test_map_is_seen_per_pixel_and_per_channel(color_model):
    x = torch.rand(1, 3, 16, 16)
    flat = torch.full((1, 3, 16, 16), 0.1)
    left = flat.clone()
    left[..., :8] = 0.3
    green = flat.clone()
    green[:, 1] = 0.3
    with torch.no_grad():
        a, b, c = color_model(x, flat), color_model(x, left), color_model(x, green)
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_only_the_mean_of_each_downscale_cell_matters(color_model):
    # FFDNet-style input: the map is averaged to the half-resolution grid.
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 12, 12, generator=g)
    noisy_map = 0.2 * torch.rand(1, 3, 12, 12, generator=g)
    cells = torch.nn.functional.avg_pool2d(noisy_map, 2)
    smooth_map = cells.repeat_interleave(2, -2).repeat_interleave(2, -1)
    with torch.no_grad():
        torch.testing.assert_close(
            color_model(x, noisy_map), color_model(x, smooth_map), atol=1e-6, rtol=0
        )


def test_odd_sized_input_with_a_map(color_model):
    x = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        out = color_model(x, torch.full((1, 3, 13, 11), 0.05))
        ref = color_model(x, 0.05)
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "sigma, match",
    [
        (None, "sigma"),
        (torch.zeros(2, 3, 12, 12), "shape"),  # spatial size differs
        (torch.zeros(1, 2, 14, 14), r"\(B, 3 or 1, H, W\)"),
        (torch.zeros(1, 3, 14), r"\(B, 3 or 1, H, W\)"),
        (torch.zeros(4), "one value per batch item"),
    ],
)
def test_bad_noise_level_input(color_model, sigma, match):
    with pytest.raises(ValueError, match=match):
        color_model(torch.rand(1, 3, 14, 14), sigma)


def test_shipped_gray_model_takes_a_noise_map():
    # The shipped gray model was retrained with a noise-level map (warm-started
    # from the blind one): one map channel after the 4 pixel-unshuffled inputs.
    model = nn_.load_model()
    assert not model.blind and model.config.in_channels == 1
    assert model.config.noise_channels == 1 and model.head.in_channels == 5


# --------------------------------------------------------------------------- sampling and noise


def _loop_reference(images, settings, generator):
    """The per-patch loop the vectorised sampler replaces (same draws)."""
    p, b = settings.patch_size, settings.batch_size
    counts = torch.tensor(
        [(im.shape[-2] - p + 1) * (im.shape[-1] - p + 1) for im in images], dtype=torch.float64
    )
    idx = torch.multinomial(counts / counts.sum(), b, replacement=True, generator=generator)
    u = torch.rand((b, 2), generator=generator, dtype=torch.float64)
    sym = torch.randint(0, 8, (b,), generator=generator)
    out = []
    for k in range(b):
        im = images[int(idx[k])]
        y = int(u[k, 0] * (im.shape[-2] - p + 1))
        x = int(u[k, 1] * (im.shape[-1] - p + 1))
        patch = im[:, y : y + p, x : x + p]
        if int(sym[k]) & 4:
            patch = patch.flip(-1)
        out.append(torch.rot90(patch, int(sym[k]) & 3, (1, 2)))
    return torch.stack(out)


def test_vectorised_gather_equals_the_per_patch_loop():
    g = torch.Generator().manual_seed(5)
    images = [torch.rand(3, 20, 27, generator=g), torch.rand(3, 31, 17, generator=g)]
    settings = nn_.TrainConfig(batch_size=64, patch_size=9)
    sampler = train_mod._PatchSampler(images, settings, torch.Generator().manual_seed(2))
    ref = _loop_reference(images, settings, torch.Generator().manual_seed(2))
    torch.testing.assert_close(sampler._gather(), ref, atol=0, rtol=0)


def test_uint8_images_give_the_same_patches_as_floats():
    g = torch.Generator().manual_seed(6)
    raw = [torch.randint(0, 256, (3, 19, 23), generator=g, dtype=torch.uint8) for _ in range(2)]
    floats = [torch.from_numpy((im.numpy() / 255.0).astype(np.float32)) for im in raw]
    settings = nn_.TrainConfig(batch_size=32, patch_size=8, noise="mixture")
    a = train_mod._PatchSampler(raw, settings, torch.Generator().manual_seed(3)).batch()
    b = train_mod._PatchSampler(floats, settings, torch.Generator().manual_seed(3)).batch()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=0, rtol=0)


def test_mixture_noise_has_its_true_sigma_map():
    # A smooth ramp so that patches see many intensities.
    ramp = torch.linspace(0, 1, 40)
    img = torch.stack(
        [
            ramp[:, None] * torch.ones(40),
            ramp[None, :] * torch.ones(40, 1),
            0.5 + 0 * ramp[:, None] * torch.ones(40),
        ]
    )
    settings = nn_.TrainConfig(sigma=(5.0, 50.0), noise="mixture", batch_size=2048, patch_size=8)
    noisy, clean, sigma = train_mod._PatchSampler(
        [img], settings, torch.Generator().manual_seed(0)
    ).batch()
    assert noisy.shape == clean.shape == sigma.shape == (2048, 3, 8, 8)
    s255 = sigma.double() * 255
    assert float(s255.min()) >= 5 - 1e-3 and float(s255.max()) <= 50 + 1e-3
    # the standardised residual is N(0, 1): the map is the noise's true std
    z = ((noisy - clean) / sigma).double()
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01
    # each (patch, channel) has a variance affine in the clean intensity,
    # increasing, with a constant map for the Gaussian patches
    var = sigma.double() ** 2
    flat = var.flatten(2).std(-1).amax(-1) < 1e-12
    share = float(flat.double().mean())
    assert 0.4 < share < 0.6
    y = clean.double().flatten(2)
    v = var.flatten(2)
    for k in torch.nonzero(~flat).flatten()[:50]:
        for c in range(3):
            yy, vv = y[k, c], v[k, c]
            if float(yy.max() - yy.min()) < 0.05:
                continue
            slope, intercept = np.polyfit(yy.numpy(), vv.numpy(), 1)
            assert slope >= -1e-9
            np.testing.assert_allclose(slope * yy.numpy() + intercept, vv.numpy(), atol=1e-7)
            assert intercept >= (5 / 255) ** 2 - 1e-9


def test_gaussian_fraction_is_checked():
    with pytest.raises(ValueError, match="gaussian_fraction"):
        nn_.TrainConfig(gaussian_fraction=1.5)


# --------------------------------------------------------------------------- training


@pytest.fixture
def color_dir(tmp_path):
    import imageio.v3 as iio

    d = tmp_path / "data"
    d.mkdir()
    for i in range(5):
        iio.imwrite(d / f"c{i}.png", (_colour_image(i) * 255).round().astype(np.uint8))
    iio.imwrite(d / "gray.png", (_colour_image(9)[..., 0] * 255).round().astype(np.uint8))
    return d


def _train(data, out, **kw):
    args = dict(
        out=out,
        config=TINY_COLOR,
        noise="mixture",
        sigma=(0.0, 50.0),
        steps=4,
        steps_per_epoch=2,
        batch_size=4,
        patch_size=16,
        progress=False,
        threads=1,
        seed=2,
        val_fraction=0.2,
    )
    args.update(kw)
    return nn_.train(data, **args)


def _weights(path):
    return nn_.load_checkpoint(path)["model"]


def test_colour_training_is_resumable_after_a_time_limit(color_dir, tmp_path):
    full = _train(color_dir, tmp_path / "full.pt")
    assert full.completed and full.config.in_channels == 3 and full.val_images == 1
    assert full.final_val_psnr is not None and math.isfinite(full.final_val_psnr)
    cut = _train(color_dir, tmp_path / "cut.pt", max_time=1e-9)
    assert cut.step == 1 and not cut.completed
    done = nn_.train(color_dir, resume=tmp_path / "cut.pt", progress=False, threads=1)
    assert done.completed
    a, b = _weights(tmp_path / "full.pt"), _weights(tmp_path / "cut.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="max_time"):
        _train(color_dir, tmp_path / "x.pt", max_time=0)


def test_read_rgb(color_dir):
    rgb = train_mod.read_rgb(color_dir / "c0.png")
    assert rgb.shape == (3, 30, 34) and rgb.dtype == np.float32
    raw = train_mod.read_rgb(color_dir / "c0.png", keep_uint8=True)
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(rgb, (raw / 255.0).astype(np.float32))
    gray = train_mod.read_rgb(color_dir / "gray.png")
    assert gray.shape == (3, 30, 34) and np.array_equal(gray[0], gray[2])


def test_training_refuses_other_channel_counts(color_dir, tmp_path):
    with pytest.raises(ValueError, match="in_channels=2"):
        _train(color_dir, tmp_path / "m.pt", config=DenoiserConfig(in_channels=2, channels=4))


def test_colour_training_on_gray_images_warns(tmp_path):
    import imageio.v3 as iio

    gray_dir = tmp_path / "gray"
    gray_dir.mkdir()
    for i in range(3):
        iio.imwrite(
            gray_dir / f"g{i}.png",
            (np.random.default_rng(i).random((30, 34)) * 255).astype(np.uint8),
        )
    with pytest.warns(UserWarning, match="every training image .* is gray"):
        _train(gray_dir, tmp_path / "m.pt", max_time=1e-9)


# --------------------------------------------------------------------------- inference


def test_joint_colour_inference_with_sigma_map_and_noise_model(color_model):
    img = _colour_image(3)
    by_sigma = nn_.denoise(img, sigma=0.1, weights=color_model)
    by_map = nn_.denoise(img, noise_map=np.full(img.shape[:2], 0.1), weights=color_model)
    gaussian = NoiseModel("gaussian", a=0.0, b=0.01)
    by_model = nn_.denoise(img, noise=gaussian, weights=color_model)
    np.testing.assert_allclose(by_map, by_sigma, atol=1e-6)
    np.testing.assert_allclose(by_model, by_sigma, atol=1e-6)
    # a Poisson-Gaussian model gives the map sqrt(a*y + b) of the noisy image
    pg = NoiseModel("poisson-gaussian", a=(0.01, 0.02, 0.005), b=(1e-4, 2e-4, 1e-4))
    out, info = nn_.denoise(img, noise=pg, weights=color_model, return_info=True)
    expected = nn_.denoise(img, noise_map=pg.sigma_map(img, channel_axis=-1), weights=color_model)
    np.testing.assert_allclose(out, expected, atol=0)
    assert info["noise"] == "noise model" and not info["blind"]
    # channels first, tiled: the same result
    tiled = nn_.denoise(
        np.moveaxis(img, -1, 0), noise=pg, weights=color_model, channel_axis=0, tile_size=8
    )
    np.testing.assert_allclose(np.moveaxis(tiled, 0, -1), out, atol=2e-5)


def test_noise_level_errors_name_the_parameter(color_model):
    img = _colour_image(4)
    with pytest.raises(ValueError, match="noise_map"):
        nn_.denoise(img, noise_map=np.zeros((30, 33)), weights=color_model)
    with pytest.raises(ValueError, match="noise_map"):
        nn_.denoise(img, noise_map=np.full(img.shape, -0.1), weights=color_model)
    with pytest.raises(ValueError, match="sigma and noise"):
        nn_.denoise(img, sigma=0.1, noise="auto", weights=color_model)
    with pytest.raises(ValueError, match="channels"):
        nn_.denoise(img, noise=NoiseModel("gaussian", a=(0, 0), b=(1, 1)), weights=color_model)
    with pytest.raises(ValueError, match="a must be non-negative"):
        nn_.denoise(img, noise=NoiseModel("poisson-gaussian", a=-1.0, b=0.0), weights=color_model)
    with pytest.raises(ValueError, match="3-channel"):
        nn_.denoise(img[..., 0], weights=color_model)


@pytest.fixture
def shipped_colour(tmp_path, monkeypatch, color_model):
    """A colour model installed where the shipped one would be (and the camera model)."""
    path = tmp_path / "denoiser_color.safetensors"
    nn_.save_weights(path, color_model)
    real = inf_mod.default_weights_path
    monkeypatch.setattr(
        inf_mod, "default_weights_path", lambda c=1, camera=False: path if c == 3 else real(c)
    )
    return path


def test_denoise_uses_the_colour_model_for_rgb_only(shipped_colour, color_model):
    img = _colour_image(5)
    assert inf_mod.default_model_path(3) == shipped_colour
    pg = NoiseModel("poisson-gaussian", a=0.01, b=1e-4)
    out, params = nlmeans.denoise(
        img, method="neural", channel_axis=-1, noise=pg, return_params=True
    )
    # the map goes straight to the non-blind network (no Anscombe transform)
    direct = nn_.denoise(img, noise=pg, weights=color_model)
    np.testing.assert_allclose(out, np.clip(direct, img.min(), img.max()), atol=0)
    by_sigma = nlmeans.denoise(img, method="neural", channel_axis=-1, sigma=0.08)
    direct = nn_.denoise(img, sigma=0.08, weights=color_model)
    np.testing.assert_allclose(by_sigma, np.clip(direct, img.min(), img.max()), atol=0)
    # gray images keep the gray model
    gray = img[..., 1]
    np.testing.assert_array_equal(
        nlmeans.denoise(gray, method="neural"),
        np.clip(nn_.denoise(gray, weights=nn_.default_weights_path()), gray.min(), gray.max()),
    )


@pytest.mark.parametrize("empty", [(2,), (0, 1)])
def test_a_constant_channel_sends_the_others_to_the_gray_model(shipped_colour, empty):
    """An image with an empty channel is nothing the colour model saw: each
    channel that is not constant goes to the gray model, with the whole
    image's sigma (or its noise model's map), and the constant ones stay."""
    img = _colour_image(9)
    img[..., list(empty)] = 0.25
    gray = nn_.default_weights_path()
    sigma = nlmeans.estimate_sigma(img, channel_axis=-1)
    out = nlmeans.denoise(img, method="neural", channel_axis=-1, noise="white")
    pg = NoiseModel("poisson-gaussian", a=(0.01, 0.02, 0.005), b=(1e-4, 2e-4, 1e-4))
    by_model = nlmeans.denoise(img, method="neural", channel_axis=-1, noise=pg)
    levels = pg.sigma_map(img, channel_axis=-1)
    for c in range(3):
        if c in empty:
            assert np.all(out[..., c] == np.float32(0.25)) and np.all(by_model[..., c] == 0.25)
            continue
        one = img[..., c]
        expected = nn_.denoise(one, sigma=sigma, weights=gray)
        np.testing.assert_allclose(out[..., c], np.clip(expected, img.min(), img.max()), atol=0)
        expected = nn_.denoise(one, noise_map=levels[..., c], weights=gray)
        np.testing.assert_allclose(by_model[..., c], np.clip(expected, 0, 1), atol=1e-6)
    # three constant channels, or none: the colour model as before
    full = _colour_image(9)
    np.testing.assert_array_equal(
        nlmeans.denoise(full, method="neural", channel_axis=-1, sigma=0.05),
        np.clip(nn_.denoise(full, sigma=0.05), full.min(), full.max()),
    )


def test_cli_names_the_gray_model_for_an_image_with_an_empty_channel(shipped_colour, tmp_path):
    from typer.testing import CliRunner

    from nlmeans.io import write_image
    from nlmeans_cli.main import app

    pixels = (_colour_image(10) * 255).round().astype(np.uint8)
    pixels[..., 1] = 0
    write_image(tmp_path / "rb.png", pixels)
    result = CliRunner().invoke(app, ["denoise", str(tmp_path / "rb.png"), "--method", "neural"])
    assert result.exit_code == 0, result.output
    assert "(denoiser.safetensors on each channel that is not constant" in " ".join(
        result.output.split()
    )


def test_without_colour_weights_rgb_uses_the_gray_model_per_channel(tmp_path, monkeypatch):
    real = inf_mod.default_weights_path
    monkeypatch.setattr(
        inf_mod, "default_weights_path", lambda c=1: tmp_path / "none" if c == 3 else real(c)
    )
    img = _colour_image(6)
    # sigma given: the gray model takes a noise map, and an estimate from all
    # three channels differs from one from a single channel.
    out, info = nn_.denoise(img, sigma=0.05, return_info=True)
    assert info["weights"] == str(real(1))
    np.testing.assert_array_equal(out[..., 2], nn_.denoise(img[..., 2], sigma=0.05))


def test_cli_says_the_colour_network_takes_the_noise_map(shipped_colour, tmp_path):
    from typer.testing import CliRunner

    from nlmeans.io import read_image, write_image
    from nlmeans_cli.main import app

    src = tmp_path / "rgb.png"
    write_image(src, (_colour_image(7) * 255).round().astype(np.uint8))
    gray = tmp_path / "gray.png"
    write_image(gray, (_colour_image(7)[..., 0] * 255).round().astype(np.uint8))
    result = CliRunner().invoke(
        app, ["denoise", str(src), str(gray), "--method", "neural", "--sigma", "0.04"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert any("rgb.png" in line and "the network's noise map" in line for line in lines)
    assert any("gray.png" in line and "the network's noise map" in line for line in lines)
    assert read_image(tmp_path / "rgb_denoised.png").pixels.shape == (30, 34, 3)


def test_one_channel_images_with_a_channel_axis_use_the_gray_model():
    img = _colour_image(8)[..., :1]
    out = nn_.denoise(img)
    np.testing.assert_array_equal(out[..., 0], nn_.denoise(img[..., 0]))


def test_shipped_colour_model_is_in_the_package_and_beats_the_gray_model_per_channel():
    """The colour weights ship beside the gray ones (all < 10 MB together) and
    denoise a colour sample better than the gray model applied per channel."""
    import imageio.v3 as iio

    path = nn_.default_weights_path(3)
    assert path.is_file(), f"shipped colour weights missing: {path}"
    total = sum(p.stat().st_size for p in path.parent.glob("*.safetensors"))
    assert total < 10 * 1024 * 1024
    root = Path(__file__).resolve().parents[1] / "sample_images"
    clean = iio.imread(root / "astronaut.png")[:128, 128:256, :3] / 255.0
    noisy = (clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape)).astype(np.float32)

    def psnr(x):
        return 10 * np.log10(1 / np.mean((np.clip(x, 0, 1) - clean) ** 2))

    colour = nn_.denoise(noisy, sigma=25 / 255)
    gray = np.stack([nn_.denoise(noisy[..., c], sigma=25 / 255) for c in range(3)], axis=-1)
    assert psnr(colour) > psnr(noisy) + 7
    assert psnr(colour) > psnr(gray)


# --------------------------------------------------------------------------- camera noise


def test_camera_noise_patches_get_a_constant_map_near_their_level():
    g = torch.Generator().manual_seed(4)
    images = [torch.rand(3, 40, 44, generator=g) for _ in range(2)]
    settings = nn_.TrainConfig(noise="camera", camera_fraction=1.0, batch_size=64, patch_size=16)
    noisy, clean, sigma = train_mod._PatchSampler(
        images, settings, torch.Generator().manual_seed(1)
    ).batch()
    assert noisy.shape == clean.shape == sigma.shape == (64, 3, 16, 16)
    assert float(sigma.flatten(1).std(dim=1).max()) == 0  # one level per patch
    level = ((noisy - clean).sum(dim=1) / math.sqrt(3)).flatten(1).std(dim=1)
    ratio = sigma[:, 0, 0, 0] / level
    assert float(ratio.min()) >= 0.5 - 1e-4 and float(ratio.max()) <= 2.0 + 1e-4
    assert float(ratio.max() / ratio.min()) > 2  # the spread is used


def test_camera_fraction_zero_is_the_mixture():
    g = torch.Generator().manual_seed(4)
    images = [torch.rand(3, 30, 30, generator=g)]
    mixture = nn_.TrainConfig(noise="mixture", batch_size=16, patch_size=16)
    none = nn_.TrainConfig(noise="camera", camera_fraction=0.0, batch_size=16, patch_size=16)
    a = train_mod._PatchSampler(images, mixture, torch.Generator().manual_seed(2)).batch()
    b = train_mod._PatchSampler(images, none, torch.Generator().manual_seed(2)).batch()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=0, rtol=0)


def test_camera_noise_trains_a_colour_network_and_refuses_a_gray_one(
    color_dir, tmp_path, monkeypatch
):
    result = _train(color_dir, tmp_path / "c.pt", noise="camera", camera_fraction=0.75)
    assert result.settings.noise == "camera" and result.settings.camera_fraction == 0.75
    assert math.isfinite(result.history[-1]["train_loss"])
    # exported, by default, to the shipped camera model's place
    from nlmeans.neural import checkpoint

    asked = []

    def stand_in(channels=1, *, spacetime=False, camera=False):
        asked.append((channels, spacetime, camera))
        return tmp_path / "exported.safetensors"

    monkeypatch.setattr(checkpoint, "default_weights_path", stand_in)
    assert nn_.export_weights(tmp_path / "c.pt") == tmp_path / "exported.safetensors"
    assert asked == [(3, False, True)]
    gray = DenoiserConfig(noise_level_input=True, channels=8, depth=4, window=2)
    with pytest.raises(ValueError, match="colour network"):
        _train(color_dir, tmp_path / "g.pt", noise="camera", config=gray)
    with pytest.raises(ValueError, match="camera_fraction"):
        nn_.TrainConfig(camera_fraction=1.5)


def test_shipped_camera_model_beats_the_colour_model_on_camera_noise():
    """The camera model ships beside the colour model and, on noise from the
    simulated camera it was trained with, does better than the colour model
    given the same (estimated) map."""
    import imageio.v3 as iio

    from nlmeans.neural.camera import camera_noise

    path = nn_.default_weights_path(3, camera=True)
    assert path.is_file(), f"shipped camera weights missing: {path}"
    assert inf_mod.default_model_path(3, camera=True) == path
    root = Path(__file__).resolve().parents[1] / "sample_images"
    clean = iio.imread(root / "astronaut.png")[:128, 128:256, :3] / 255.0

    def psnr(x):
        return 10 * np.log10(1 / np.mean((np.clip(x, 0, 1) - clean) ** 2))

    gains = []
    for seed in range(4):
        batch = torch.from_numpy(clean).permute(2, 0, 1)[None].float()
        noisy, _ = camera_noise(batch, torch.Generator().manual_seed(seed))
        noisy = noisy[0].permute(1, 2, 0).numpy()
        sigma = nlmeans.estimate_noise_level(noisy, channel_axis=-1).sigma
        camera = nn_.denoise(noisy, sigma=sigma, camera=True)
        colour = nn_.denoise(noisy, sigma=sigma)
        gains.append(psnr(camera) - psnr(colour))
    assert np.mean(gains) > 0.1, gains
