"""The spacetime network: the model against a frame-by-frame reference, its
warm start from the per-frame network, clip training, and
``denoise_sequence(method="neural")`` with its command line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import nlmeans  # noqa: E402
from nlmeans import _sequence_neural  # noqa: E402
from nlmeans.neural import checkpoint as ckpt_mod  # noqa: E402
from nlmeans.neural import training as train_mod  # noqa: E402
from nlmeans.neural.model import DenoiserConfig, NonLocalDenoiser  # noqa: E402
from nlmeans.neural.train_config import TrainConfig  # noqa: E402

TINY = DenoiserConfig(channels=8, depth=6, blocks=1, window=1, noise_level_input=True)
TINY_ST = dataclasses.replace(TINY, frames=3, temporal_window=1)


def _activated(config, seed=0):
    from neural_helpers import activate

    torch.manual_seed(seed)
    return activate(NonLocalDenoiser(config), seed)


@pytest.fixture
def tiny_weights(tmp_path):
    """A small spacetime network whose temporal block does something."""
    return ckpt_mod.save_weights(tmp_path / "st.safetensors", _activated(TINY_ST))


def _reference_noise(model, x, sigma):
    """The spacetime forward pass written out frame by frame, with loops."""
    cfg = model.config
    unshuffle = torch.nn.functional.pixel_unshuffle
    feats = []
    for t in range(cfg.frames):
        frame = x[:, t : t + 1]
        y = unshuffle(frame, cfg.downscale)
        level = torch.full((x.shape[0], 1, *y.shape[-2:]), float(sigma))
        inputs = [y, level]
        if cfg.early_fusion:  # the middle frame also sees the others, in time order
            others = [unshuffle(x[:, u : u + 1], cfg.downscale) for u in range(cfg.frames)]
            others = [o if t == cfg.frames // 2 else torch.zeros_like(o) for o in others]
            inputs += [o for u, o in enumerate(others) if u != cfg.frames // 2]
        y = torch.relu(model.head(torch.cat(inputs, dim=1)))
        for layer in list(model.body)[: model._fuse_at]:
            y = layer(y)
        feats.append(y)
    volume = torch.stack(feats, dim=2)  # (B, c, T, h, w)
    y = model.temporal(volume)[:, :, cfg.frames // 2]
    for layer in list(model.body)[model._fuse_at :]:
        y = layer(y)
    return torch.nn.functional.pixel_shuffle(model.tail(y), cfg.downscale)


@pytest.mark.parametrize("early_fusion", [False, True])
def test_forward_matches_the_frame_by_frame_reference(early_fusion):
    model = _activated(dataclasses.replace(TINY_ST, early_fusion=early_fusion))
    x = torch.rand(2, 3, 12, 16)
    with torch.no_grad():
        noise = model.predict_noise(x, 0.1)
        expected = _reference_noise(model, x, 0.1)
        torch.testing.assert_close(noise, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model(x, 0.1), x[:, 1:2] - expected, rtol=1e-5, atol=1e-6)
        # one level per clip, repeated for its frames, equals the scalar
        torch.testing.assert_close(model(x, torch.tensor([0.1, 0.1])), model(x, 0.1))
    # The other frames matter once the temporal block is active.
    y = x.clone()
    y[:, 0] = torch.rand(12, 16)
    with torch.no_grad():
        assert not torch.allclose(model(x, 0.1), model(y, 0.1))


def test_config_and_shape_errors():
    with pytest.raises(ValueError, match="frames must be odd"):
        DenoiserConfig(frames=4)
    with pytest.raises(ValueError, match="frames"):
        DenoiserConfig(frames=0)
    with pytest.raises(ValueError, match="early_fusion needs frames > 1"):
        DenoiserConfig(early_fusion=True)
    model = NonLocalDenoiser(TINY_ST)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*3 frames"):
        model(torch.rand(1, 1, 8, 8), 0.1)
    # The receptive radius grows by the temporal window (at half resolution).
    assert TINY_ST.receptive_radius == TINY.receptive_radius + 2 * TINY_ST.temporal_window


def test_warm_start_from_the_per_frame_network_is_exact_then_trains(tmp_path):
    frame_model = _activated(TINY)
    source = ckpt_mod.save_weights(tmp_path / "frame.safetensors", frame_model)
    spacetime = NonLocalDenoiser(TINY_ST).eval()
    train_mod.warm_start(spacetime, source)
    x = torch.rand(2, 3, 16, 20)
    with torch.no_grad():
        for sigma in (0.0, 0.2):
            torch.testing.assert_close(
                spacetime(x, sigma), frame_model(x[:, 1:2], sigma), rtol=0, atol=0
            )
    # Early fusion added to a trained spacetime network: exact at the start too.
    trained = _activated(TINY_ST, seed=1)
    st_source = ckpt_mod.save_weights(tmp_path / "st.safetensors", trained)
    fused = NonLocalDenoiser(dataclasses.replace(TINY_ST, early_fusion=True)).eval()
    train_mod.warm_start(fused, st_source)
    with torch.no_grad():
        torch.testing.assert_close(fused(x, 0.1), trained(x, 0.1), rtol=0, atol=0)
    # A spacetime source for a network of other frames, or one dropping early
    # fusion, is refused.
    with pytest.raises(ValueError, match="cannot start from"):
        train_mod.warm_start(NonLocalDenoiser(dataclasses.replace(TINY_ST, frames=5)), st_source)
    fused_source = ckpt_mod.save_weights(tmp_path / "fused.safetensors", _activated(fused.config))
    with pytest.raises(ValueError, match="cannot start from"):
        train_mod.warm_start(NonLocalDenoiser(TINY_ST), fused_source)


@pytest.fixture
def data_dir(tmp_path):
    import imageio.v3 as iio

    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        yy, xx = np.mgrid[0:64, 0:60]
        img = 0.5 + 0.3 * np.sin(xx / (2 + i) + yy / 5) * rng.uniform(0.5, 1)
        iio.imwrite(d / f"img{i}.png", (np.clip(img, 0, 1) * 255).round().astype(np.uint8))
    return d


def test_clip_data_and_training(data_dir, tmp_path):
    from nlmeans.neural.data import CLIP_MOTIONS, load_data

    settings = TrainConfig(patch_size=16, batch_size=4, val_fraction=0.2)
    data = load_data(data_dir, settings, 1, frames=3)
    assert len(data.train_images) == 4 * len(CLIP_MOTIONS)
    # static clips repeat their frame exactly; the others move
    static = data.train_images[CLIP_MOTIONS.index("static")]
    assert torch.equal(static[0], static[1]) and torch.equal(static[0], static[2])
    two = load_data(data_dir, TrainConfig(patch_size=16, clip_motions=("pan", "zoom")), 1, 3)
    assert len(two.train_images) == 4 * 2
    assert TrainConfig.from_dict(TrainConfig(clip_motions=("pan",)).to_dict()).clip_motions == (
        "pan",
    )
    with pytest.raises(ValueError, match="clip_motions"):
        TrainConfig(clip_motions=("wobble",))
    assert all(c.dtype == torch.uint8 and c.shape == (3, 48, 45) for c in data.train_images)
    ((noisy, clean),) = data.val_pairs
    assert noisy.shape == (1, 3, 48, 45) and clean.shape == (1, 1, 48, 45)
    # The clips move: consecutive frames differ.
    assert any(not torch.equal(c[0], c[1]) for c in data.train_images)
    source = ckpt_mod.save_weights(tmp_path / "frame.safetensors", _activated(TINY))
    result = train_mod.train(
        data_dir,
        out=tmp_path / "st.pt",
        config=TINY_ST,
        init=source,
        steps=3,
        batch_size=4,
        patch_size=16,
        progress=False,
        threads=1,
        val_fraction=0.2,
    )
    assert result.completed and np.isfinite(result.final_val_psnr)
    exported = ckpt_mod.export_weights(result.out, tmp_path / "st.safetensors")
    assert ckpt_mod.load_model(exported).config == TINY_ST
    with pytest.raises(ValueError, match="mixture"):
        train_mod.train(
            data_dir,
            out=tmp_path / "m.pt",
            config=TINY_ST,
            noise="mixture",
            steps=1,
            progress=False,
        )
    with pytest.raises(ValueError, match="gray"):
        load_data(data_dir, settings, 3, frames=3)


@given(st.integers(-40, 40), st.integers(1, 12))
def test_clamped_index_stays_in_the_clip(index, n):
    got = _sequence_neural.clamped(index, n)
    assert 0 <= got < n
    assert got == (0 if index < 0 else n - 1 if index >= n else index)


def test_training_windows_cut_at_clip_ends_as_inference_fills_them():
    from nlmeans.neural.data import PatchSampler

    # Frame f of every clip is the constant f / 10: a window's frames say
    # where they came from.
    clip = torch.stack([torch.full((12, 12), f / 10) for f in range(5)])
    settings = TrainConfig(sigma=(0.0, 0.0), batch_size=4000, patch_size=4, clip_ends=0.4)
    sampler = PatchSampler([clip], settings, torch.Generator().manual_seed(0), frames=5)
    noisy, clean, _ = sampler.batch()
    assert torch.equal(clean[:, :, 0, 0] * 10, torch.arange(5.0).expand(4000, 5))
    sources = torch.round(noisy[:, :, 0, 0] * 10).long()
    assert torch.equal(sources[:, 2], torch.full((4000,), 2))  # the target never moves
    # Every window is one that denoise_sequence builds for a clip frame.
    offsets = np.arange(-2, 3)
    allowed = {(0, 1, 2, 3, 4)}
    for kept in (0, 1):  # frames left on the cut side of the middle one
        allowed.add(tuple(2 + np.maximum(offsets, -kept)))  # cut at the start
        allowed.add(tuple(2 + np.minimum(offsets, kept)))  # cut at the end
    seen = {tuple(row) for row in sources.tolist()}
    assert seen == allowed
    cut = (sources != torch.arange(5)).any(1).float().mean()
    assert abs(float(cut) - 0.4) < 0.03
    # With noise, a repeated frame repeats its noise too.
    noisy_settings = TrainConfig(sigma=(25.0, 25.0), batch_size=200, patch_size=4, clip_ends=1.0)
    noisy, clean, _ = PatchSampler(
        [clip], noisy_settings, torch.Generator().manual_seed(1), frames=5
    ).batch()
    for window in noisy:
        assert torch.equal(window[0], window[1]) or torch.equal(window[3], window[4])
    # clip_ends=0 draws nothing more: the batches of a run without it.
    plain = TrainConfig(sigma=(10.0, 30.0), batch_size=8, patch_size=4, clip_ends=0.0)
    a = PatchSampler([clip], plain, torch.Generator().manual_seed(2), frames=5).batch()
    b = PatchSampler([clip], plain, torch.Generator().manual_seed(2)).batch()
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_clip_ends_setting():
    assert TrainConfig().clip_ends == 0.2
    assert TrainConfig.from_dict(TrainConfig(clip_ends=0.5).to_dict()).clip_ends == 0.5
    # Checkpoints written before the setting existed were trained without it.
    old = TrainConfig().to_dict()
    del old["clip_ends"]
    assert TrainConfig.from_dict(old).clip_ends == 0.0
    with pytest.raises(ValueError, match="clip_ends"):
        TrainConfig(clip_ends=1.5)


def _clip(n=7, shape=(24, 28), colour=False, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    frames = [0.5 + 0.3 * np.sin((xx + t) / 3 + yy / 4) for t in range(n)]
    clip = np.stack(frames)
    if colour:
        clip = np.stack([clip, clip[:, ::-1], 1 - clip], axis=-1)
    return np.clip(clip + rng.normal(0, 0.08, clip.shape), 0, 1)


def test_sequence_network_array_stream_dtypes_and_channels(tiny_weights):
    model = ckpt_mod.load_model(tiny_weights)
    clip = _clip()
    out, params = nlmeans.denoise_sequence(
        clip, method="neural", weights=tiny_weights, sigma=0.08, return_params=True
    )
    assert out.shape == clip.shape and out.dtype == clip.dtype
    assert params.temporal_radius == 1 and params.h is None and params.weights == str(tiny_weights)
    # Frame t is the network's answer on frames t-1, t, t+1, the end frame
    # repeated beyond the clip's ends.
    from nlmeans.neural.inference import denoise_array

    for t, window in ((0, [0, 0, 1]), (3, [2, 3, 4]), (6, [5, 6, 6])):
        expected = denoise_array(model, clip[window].astype(np.float32), 0.08)
        np.testing.assert_allclose(out[t], expected, atol=1e-6)
    streamed = np.stack(
        list(
            nlmeans.denoise_sequence(iter(clip), method="neural", weights=tiny_weights, sigma=0.08)
        )
    )
    np.testing.assert_array_equal(streamed, out)
    # kwargs reproduce the call; uint8 stays uint8.
    again = nlmeans.denoise_sequence(clip, **params.denoise_kwargs())
    np.testing.assert_array_equal(again, out)
    as_uint8 = (clip * 255).round().astype(np.uint8)
    assert (
        nlmeans.denoise_sequence(as_uint8, method="neural", weights=tiny_weights).dtype == np.uint8
    )
    # Colour: each channel through the gray network.
    rgb = _clip(n=4, colour=True)
    out_rgb, rgb_params = nlmeans.denoise_sequence(
        rgb, channel_axis=-1, method="neural", weights=tiny_weights, sigma=0.08, return_params=True
    )
    assert rgb_params.color_space == "rgb"  # not "opponent": channels one at a time
    # torch's thread count is the caller's while the generator waits between frames
    import torch

    before = torch.get_num_threads()
    stream = nlmeans.denoise_sequence(
        iter(clip), method="neural", weights=tiny_weights, sigma=0.08, threads=1
    )
    next(stream)
    assert torch.get_num_threads() == before
    stream.close()
    for c in range(3):
        gray = nlmeans.denoise_sequence(
            rgb[..., c], method="neural", weights=tiny_weights, sigma=0.08
        )
        np.testing.assert_allclose(out_rgb[..., c], gray, atol=1e-6)
    # Clips shorter than the window and of one frame.
    for n in (1, 2):
        assert (
            nlmeans.denoise_sequence(clip[:n], method="neural", weights=tiny_weights).shape
            == clip[:n].shape
        )


def test_sequence_network_bad_input(tiny_weights, tmp_path):
    clip = _clip(n=4)
    with pytest.raises(ValueError, match="temporal_radius must be 1"):
        nlmeans.denoise_sequence(clip, method="neural", weights=tiny_weights, temporal_radius=2)
    with pytest.raises(ValueError, match="h does not apply"):
        nlmeans.denoise_sequence(clip, method="neural", weights=tiny_weights, h=0.1)
    with pytest.raises(ValueError, match="color_space does not apply"):
        nlmeans.denoise_sequence(
            _clip(n=3, colour=True),
            channel_axis=-1,
            method="neural",
            weights=tiny_weights,
            color_space="opponent",
        )
    frame_weights = ckpt_mod.save_weights(tmp_path / "f.safetensors", NonLocalDenoiser(TINY))
    with pytest.raises(ValueError, match="not a spacetime network"):
        nlmeans.denoise_sequence(clip, method="neural", weights=frame_weights)
    with pytest.raises(ValueError, match="weights applies only"):
        nlmeans.denoise_sequence(clip, weights=tiny_weights)
    with pytest.raises(ValueError, match="spacetime network"):
        nlmeans.neural.denoise(clip[0].astype(np.float32), sigma=0.1, weights=tiny_weights)
    bad = [clip[0], clip[1][:, :-2]]
    with pytest.raises(ValueError, match="must match"):
        list(nlmeans.denoise_sequence(iter(bad), method="neural", weights=tiny_weights, sigma=0.1))
    # float frames off the [0, 1] scale (raw counts) came back nearly untouched
    with pytest.raises(ValueError, match=r"frame 0: .*\[0, 1\] scale.*white level"):
        nlmeans.denoise_sequence(clip * 1000, method="neural", weights=tiny_weights)
    with pytest.raises(ValueError, match=r"sigma is on the frames' \[0, 1\] scale"):
        nlmeans.denoise_sequence(clip, method="neural", weights=tiny_weights, sigma=25)


# -- the shipped spacetime network ---------------------------------------------


def _clip_of_coffee(motion, seed=0, n=7):
    from skimage import color, data

    from nlmeans.synthetic import make_sequence

    image = color.rgb2gray(data.coffee())[::4, ::4]  # 100 x 150
    clean = make_sequence(image, n, seed=seed, motion=motion)
    noisy = clean + np.random.default_rng(seed).normal(0, 25 / 255, clean.shape)
    return clean, noisy


@pytest.mark.parametrize("motion, gain", [("static", 0.4), ("objects", 0.2)])
def test_shipped_spacetime_network_gains_over_the_per_frame_network(motion, gain):
    # The gain depends on the content: +0.6 to +1.5 dB on Set12 clips, less
    # on small aliased frames (README); this 7-frame clip gains about 1.0 / 0.85 dB.
    from skimage.metrics import peak_signal_noise_ratio as psnr

    clean, noisy = _clip_of_coffee(motion)
    spacetime, params = nlmeans.denoise_sequence(noisy, method="neural", return_params=True)
    assert params.temporal_radius == 2 and params.sigma_estimated
    frames = np.stack([nlmeans.denoise(f, method="neural", sigma=params.sigma) for f in noisy])

    def score(out):
        return np.mean([psnr(c, np.clip(o, 0, 1), data_range=1) for c, o in zip(clean, out)])

    assert score(spacetime) >= score(frames) + gain


def test_cli_denoises_and_compares_a_stack_with_the_spacetime_network(tmp_path):
    import json

    import tifffile
    from typer.testing import CliRunner

    from nlmeans_cli.main import app

    clean, noisy = _clip_of_coffee("objects", n=6)
    stack = tmp_path / "clip.tif"
    tifffile.imwrite(stack, (np.clip(noisy, 0, 1) * 255).round().astype(np.uint8))
    runner = CliRunner()
    result = runner.invoke(app, ["denoise", str(stack), "--method", "neural"])
    assert result.exit_code == 0, result.stderr
    assert "spacetime network, 5 frames" in result.stderr
    out = tifffile.imread(tmp_path / "clip_denoised.tif")
    expected = nlmeans.denoise_sequence(tifffile.imread(stack), method="neural")
    np.testing.assert_array_equal(out, expected)
    result = runner.invoke(app, ["denoise", str(stack), "--method", "neural", "-k", "1", "-f"])
    assert result.exit_code == 1 and "temporal_radius must be 2" in result.stderr
    assert "Traceback" not in result.stderr
    clean_stack = tmp_path / "clean.tif"
    tifffile.imwrite(clean_stack, (clean * 255).round().astype(np.uint8))
    result = runner.invoke(
        app,
        [
            "compare",
            str(clean_stack),
            "--sigma",
            "25",
            "--methods",
            "noisy,spacetime-neural,frames-neural",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    records = {r["method"]: r for r in json.loads(result.stdout)[0]["records"]}
    assert records["spacetime-neural"]["psnr"] > records["frames-neural"]["psnr"]
    assert records["spacetime-neural"]["flicker"] < records["frames-neural"]["flicker"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--frames", "4"], "odd number of frames"),
        (["--frames", "3", "--channels", "3"], "spacetime networks are gray"),
        (["--early-fusion"], "--early-fusion needs --frames"),
        (["--frames", "3", "--clip-motions", "pan,wobble"], "expected motions among"),
    ],
)
def test_train_neural_cli_refuses_bad_frame_options(data_dir, tmp_path, args, message):
    from typer.testing import CliRunner

    from nlmeans_cli.main import app

    out = tmp_path / "x.pt"
    result = CliRunner().invoke(
        app, ["train-neural", "--data", str(data_dir), "--steps", "1", "-o", str(out), *args]
    )
    assert result.exit_code == 2 and message in " ".join(result.stderr.split())
    assert not out.exists() and "Traceback" not in result.stderr
