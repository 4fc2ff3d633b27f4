"""Tests of the learned denoiser: network, checkpoints, safe loading, inference."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neural_helpers import Evil, activate, save_evil_checkpoint  # noqa: E402

import nlmeans  # noqa: E402
import nlmeans.neural as nn_  # noqa: E402
from nlmeans.neural import checkpoint as ckpt_mod  # noqa: E402
from nlmeans.neural import inference as inf_mod  # noqa: E402
from nlmeans.neural.model import BLOCK_MODES, DenoiserConfig, NonLocalDenoiser  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODES = [m for m in BLOCK_MODES if m != "none"]


def _small(**kw) -> DenoiserConfig:
    base = dict(channels=8, depth=5, blocks=1, window=2)
    base.update(kw)
    return DenoiserConfig(**base)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    clean = 0.5 + 0.3 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + 0.2 * ((xx // 9 + yy // 11) % 2)
    return np.clip(clean / 1.2 + 0.08 * rng.standard_normal((h, w)), 0, 1).astype(np.float32)


# ---------------------------------------------------------------------------
# network
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1, 16, 16), (2, 1, 17, 23), (1, 1, 1, 5), (3, 1, 40, 40)])
def test_output_shape_any_size(shape):
    model = activate(NonLocalDenoiser(_small()))
    x = torch.rand(shape)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_residual_form():
    model = activate(NonLocalDenoiser(_small()))
    x = torch.rand(2, 1, 24, 20)
    with torch.no_grad():
        noise = model.predict_noise(x)
        out = model(x)
    assert noise.abs().max() > 1e-3  # a real prediction, not zero
    torch.testing.assert_close(out, x - noise, rtol=0, atol=1e-6)


def test_new_model_is_close_to_identity_and_blocks_start_as_identity():
    model = NonLocalDenoiser(DenoiserConfig()).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert (model(x) - x).abs().max() < 0.05
        blocks = [m for m in model.body if isinstance(m, nn_.NonLocalBlock2d)]
        assert len(blocks) == 1
        feat = torch.randn(1, 48, 8, 8)
        torch.testing.assert_close(blocks[0](feat), feat)


@pytest.mark.parametrize("mode", MODES)
def test_every_block_mode_trains(mode):
    model = NonLocalDenoiser(_small(mode=mode))
    blocks = [m for m in model.body if isinstance(m, nn_.NonLocalBlock2d)]
    assert [b.mode for b in blocks] == [mode]
    x = torch.rand(2, 1, 16, 16)
    loss = (model(x) - x).pow(2).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(
    "blocks,mode,expected",
    [(0, "embedded_gaussian", 0), (3, "none", 0), (1, "dot_product", 1), (3, "gaussian", 3)],
)
def test_number_of_blocks(blocks, mode, expected):
    model = NonLocalDenoiser(DenoiserConfig(channels=8, depth=8, blocks=blocks, mode=mode))
    found = [m for m in model.body if isinstance(m, nn_.NonLocalBlock2d)]
    assert len(found) == expected == model.config.num_blocks
    convs = [
        m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    assert len(convs) == 8  # depth counts the 3x3 convolutions, blocks do not change it


def test_none_mode_is_same_network_without_block():
    a = NonLocalDenoiser(DenoiserConfig(mode="none"))
    b = NonLocalDenoiser(DenoiserConfig(mode="embedded_gaussian"))
    block_params = sum(
        p.numel() for m in b.body if isinstance(m, nn_.NonLocalBlock2d) for p in m.parameters()
    )
    assert block_params > 0
    assert a.num_parameters() + block_params == b.num_parameters()


def test_default_design_size():
    model = NonLocalDenoiser(DenoiserConfig())
    n = model.num_parameters()
    assert 100_000 < n < 1_250_000  # float32 weights well under 5 MB
    assert model.blind


def test_config_round_trip_and_validation():
    cfg = DenoiserConfig(
        channels=32, depth=10, blocks=2, mode="concatenation", window=4, norm="batch"
    )
    d = cfg.to_dict()
    json.dumps(d)  # plain builtins
    assert DenoiserConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown"):
        DenoiserConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match="mode"):
        DenoiserConfig(mode="softmax")
    with pytest.raises(ValueError, match="depth"):
        DenoiserConfig(depth=2)
    with pytest.raises(ValueError, match="window"):
        DenoiserConfig(window=-1)
    with pytest.raises(ValueError, match="sub_sample"):
        DenoiserConfig(sub_sample=True, window=3)


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("norm", ["none", "batch"])
def test_body_variants(residual, norm):
    cfg = _small(norm=norm, residual=residual, depth=7)
    model = NonLocalDenoiser(cfg)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.body.modules())
    assert n_bn == (5 if norm == "batch" else 0) + 1  # + the block's W_z BatchNorm
    units = [m for m in model.body if not isinstance(m, nn_.NonLocalBlock2d)]
    assert len(units) == (
        3 if residual else 5
    )  # 5 body convs: 1 plain + 2 residual units, or 5 plain
    model(torch.rand(2, 1, 12, 12)).sum().backward()
    assert DenoiserConfig.from_dict(cfg.to_dict()) == cfg


def test_non_blind_variant_uses_sigma():
    model = activate(NonLocalDenoiser(_small(noise_level_input=True)))
    assert not model.blind
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        a, b = model(x, 0.05), model(x, 0.2)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="sigma"):
        model(x)


def test_receptive_radius_is_an_upper_bound():
    cfg = _small(depth=5, window=2, blocks=1)
    model = activate(NonLocalDenoiser(cfg))
    r = cfg.receptive_radius
    x = torch.rand(1, 1, 64, 64)
    x2 = x.clone()
    x2[0, 0, 32, 32] += 1.0
    with torch.no_grad():
        diff = (model(x2) - model(x)).abs()[0, 0]
    ys, xs = torch.nonzero(diff > 0, as_tuple=True)
    assert len(ys) > 1
    assert int((ys - 32).abs().max()) <= r and int((xs - 32).abs().max()) <= r
    assert NonLocalDenoiser(_small(window=None)).config.receptive_radius is None


# ---------------------------------------------------------------------------
# inference: tiling, colour, sigma
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["embedded_gaussian", "concatenation", "none"])
def test_tiling_is_seamless(mode):
    model = activate(NonLocalDenoiser(_small(mode=mode, depth=6, window=3)))
    img = _image(97, 83)
    whole = inf_mod.denoise_array(model, img, tile_size=None)
    tiled = inf_mod.denoise_array(model, img, tile_size=16)
    assert whole.shape == img.shape
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
    # the margin matters: without it the tiles would show seams
    cut = inf_mod.denoise_array(model, img, tile_size=16, margin=0)
    assert np.abs(cut - whole).max() > 1e-3


def _dihedral_mean_reference(model, img, sigma):
    """The self-ensemble written out: the 8 transforms in NumPy, one untiled pass each."""
    outputs = []
    for turns in range(4):
        for flip in (False, True):
            x = img[:, ::-1] if flip else img
            x = np.ascontiguousarray(np.rot90(x, turns))
            with torch.no_grad():
                y = model(torch.from_numpy(x)[None, None], sigma)[0, 0].numpy()
            y = np.rot90(y, -turns)
            outputs.append(y[:, ::-1] if flip else y)
    return np.mean(outputs, axis=0)


@pytest.mark.parametrize("tile_size", [None, 16])
def test_ensemble_is_the_mean_over_flips_and_rotations(tile_size):
    model = activate(NonLocalDenoiser(_small(noise_level_input=True, window=3)))
    img = _image(40, 34)  # sides multiples of the alignment: no padding to undo
    got = nn_.denoise(img, sigma=0.08, weights=model, ensemble=True, tile_size=tile_size)
    np.testing.assert_allclose(got, _dihedral_mean_reference(model, img, 0.08), atol=1e-5)
    # the network alone is not equivariant: the ensemble differs from one pass
    one = nn_.denoise(img, sigma=0.08, weights=model)
    assert np.abs(got - one).max() > 1e-4


def test_ensemble_commutes_with_flips_and_rotations():
    model = activate(NonLocalDenoiser(_small(noise_level_input=True, window=3)))
    img = _image(36, 44)
    out = nn_.denoise(img, sigma=0.1, weights=model, ensemble=True)
    for turns, flip in ((1, False), (2, True), (3, False), (0, True)):
        moved = np.rot90(img[:, ::-1] if flip else img, turns)
        expected = np.rot90(out[:, ::-1] if flip else out, turns)
        got = nn_.denoise(np.ascontiguousarray(moved), sigma=0.1, weights=model, ensemble=True)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_ensemble_takes_a_noise_map_turned_with_the_image():
    model = activate(NonLocalDenoiser(_small(noise_level_input=True, window=3)))
    img = _image(32, 30)
    ramp = np.broadcast_to(np.linspace(0.01, 0.2, 30, dtype=np.float32), img.shape)
    got = nn_.denoise(img, noise_map=ramp, weights=model, ensemble=True)
    outputs = []
    for turns in range(4):
        for flip in (False, True):
            x, m = (a[:, ::-1] if flip else a for a in (img, ramp))
            x, m = (torch.from_numpy(np.ascontiguousarray(np.rot90(a, turns))) for a in (x, m))
            with torch.no_grad():
                y = model(x[None, None], m[None, None])[0, 0].numpy()
            y = np.rot90(y, -turns)
            outputs.append(y[:, ::-1] if flip else y)
    np.testing.assert_allclose(got, np.mean(outputs, axis=0), atol=1e-5)


def test_ensemble_through_nlmeans_denoise(rng):
    import nlmeans

    image = np.clip(0.5 + 0.1 * rng.standard_normal((30, 34, 3)), 0, 1)
    out, params = nlmeans.denoise(
        image, method="neural", channel_axis=-1, ensemble=True, return_params=True
    )
    assert params.ensemble and params.denoise_kwargs()["ensemble"] is True
    again = nlmeans.denoise(image, channel_axis=-1, **params.denoise_kwargs())
    np.testing.assert_array_equal(again, out)
    assert not np.array_equal(out, nlmeans.denoise(image, method="neural", channel_axis=-1))
    with pytest.raises(ValueError, match="ensemble applies to method='neural' only"):
        nlmeans.denoise(image, channel_axis=-1, ensemble=True)
    with pytest.raises(TypeError, match="ensemble must be True or False"):
        nlmeans.denoise(image, method="neural", channel_axis=-1, ensemble="yes")


def test_denoise_gray_colour_and_channel_axis(tmp_path):
    model = activate(NonLocalDenoiser(_small()))
    path = nn_.save_weights(tmp_path / "w.safetensors", model)
    gray = _image(30, 26)
    out = nn_.denoise(gray, weights=path, tile_size=None)
    assert out.shape == gray.shape and out.dtype == np.float32
    with torch.no_grad():
        ref = model(torch.from_numpy(gray)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6)

    colour = np.stack([_image(30, 26, s) for s in range(3)], axis=-1)
    out_c = nn_.denoise(colour, weights=path)
    assert out_c.shape == colour.shape
    for c in range(3):  # per channel with the gray model
        np.testing.assert_allclose(
            out_c[..., c], nn_.denoise(colour[..., c], weights=path), atol=1e-6
        )
    out_first = nn_.denoise(np.moveaxis(colour, -1, 0), weights=model, channel_axis=0)
    np.testing.assert_allclose(np.moveaxis(out_first, 0, -1), out_c, atol=1e-6)


def test_blind_model_reports_sigma_only(tmp_path):
    model = activate(NonLocalDenoiser(_small()))
    img = _image(40, 40)
    a = nn_.denoise(img, sigma=0.02, weights=model)
    b, info = nn_.denoise(img, sigma=0.2, weights=model, return_info=True)
    np.testing.assert_array_equal(a, b)
    assert (
        info["sigma"] == pytest.approx(0.2)
        and info["sigma_estimated"] is False
        and info["blind"] is True
    )
    _, info = nn_.denoise(img, weights=model, return_info=True)
    assert info["sigma_estimated"] is True
    import nlmeans

    assert info["sigma"] == pytest.approx(nlmeans.estimate_sigma(img))


def test_denoise_rejects_bad_input():
    model = NonLocalDenoiser(_small())
    with pytest.raises(TypeError):
        nn_.denoise(np.zeros((8, 8), np.uint8), weights=model)
    with pytest.raises(ValueError):
        nn_.denoise(np.zeros((2, 8, 8, 1), np.float32), weights=model)
    with pytest.raises(ValueError):
        nn_.denoise(np.full((8, 8), np.nan, np.float32), weights=model)
    with pytest.raises(ValueError):
        nn_.denoise(np.zeros((8, 8), np.float32), sigma=-1.0, weights=model)
    image = np.zeros((8, 8), np.float32)
    for kwargs, error, match in [
        (dict(tile_size=0), ValueError, "tile_size must be a positive integer"),
        (dict(tile_size=-5), ValueError, "tile_size must be a positive integer"),
        (dict(threads=0), ValueError, "threads must be a positive integer"),
        (dict(threads=2.0), TypeError, "threads must be a positive integer"),
        (dict(threads=True), TypeError, "threads must be a positive integer"),
        (dict(sigma=np.zeros((8, 8))), ValueError, r"sigma must be one number.*noise_map="),
        # gray levels for the [0, 1] scale: the output was ruined, not refused
        (dict(sigma=25), ValueError, r"\[0, 1\] scale and must be <= 1.*25/255"),
        (dict(noise_map=np.full((8, 8), 25.0)), ValueError, r"noise_map is on .* <= 1"),
    ]:
        with pytest.raises(error, match=match):
            nn_.denoise(image, weights=model, **kwargs)
    with pytest.raises(TypeError, match="camera must be True or False"):
        nn_.denoise(image, camera="no")
    with pytest.raises(TypeError, match="ensemble must be True or False"):
        nn_.denoise(image, weights=model, ensemble=1)
    with pytest.raises(TypeError, match="weights must be a path"):
        nn_.denoise(image, weights=3)


def test_info_says_an_estimated_noise_model_was_estimated():
    noisy = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    _, info = nn_.denoise(noisy, noise="auto", return_info=True)
    assert info["sigma_estimated"] is True and info["noise"] == "noise model"
    model = nlmeans.NoiseModel("gaussian", a=0, b=0.01)
    _, info = nn_.denoise(noisy, noise=model, return_info=True)
    assert info["sigma_estimated"] is False


def test_integer_images_refuse_sigma_in_gray_levels():
    u8 = (np.random.default_rng(1).random((3, 16, 16)) * 255).astype(np.uint8)
    for call in (
        lambda: nlmeans.denoise(u8[0], sigma=25),
        lambda: nlmeans.denoise(u8[0], sigma=25, method="neural"),
        lambda: nlmeans.denoise_sequence(u8, sigma=25),
        lambda: nlmeans.denoise_sequence(u8 / 255.0, sigma=25, method="neural"),
    ):
        with pytest.raises(ValueError, match=r"\[0, 1\] scale.*<= 1"):
            call()
    # float data on its own scale keeps a large sigma (classical methods)
    assert nlmeans.denoise(u8[0] * 1.0, sigma=25, h=10).shape == (16, 16)


def test_rgb_without_channel_axis_names_channel_axis():
    with pytest.raises(ValueError, match="channel_axis=-1"):
        nlmeans.denoise(np.random.default_rng(2).random((16, 16, 3)), method="neural")


def test_channel_axis_and_scale_are_checked():
    image = np.full((8, 8, 3), 0.5, np.float32)
    for axis in (True, 2.0, "2"):
        with pytest.raises(TypeError, match="channel_axis must be an int or None"):
            nn_.denoise(image, sigma=0.1, channel_axis=axis)
    # data on another scale would come back nearly untouched: refused
    for low, high in ((0.0, 4000.0), (-3.0, 0.5)):
        scaled = np.linspace(low, high, 64, dtype=np.float32).reshape(8, 8)
        with pytest.raises(ValueError, match=r"\[0, 1\] scale"):
            nn_.denoise(scaled, sigma=0.1)
    # noisy data a little outside [0, 1] is on the scale
    ok = np.linspace(-0.4, 1.4, 64, dtype=np.float32).reshape(8, 8)
    assert nn_.denoise(ok, sigma=0.1, weights=NonLocalDenoiser(_small())).shape == (8, 8)
    # a read-only input is read, never written, and gives no torch warning
    frozen = np.full((16, 16), 0.5, np.float32)
    frozen.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn_.denoise(frozen, sigma=0.1, weights=NonLocalDenoiser(_small()), tile_size=None)


def test_missing_shipped_weights_names_expected_path(tmp_path, monkeypatch):
    missing = tmp_path / "weights" / "denoiser.safetensors"
    monkeypatch.setattr(ckpt_mod, "default_weights_path", lambda: missing)
    monkeypatch.setattr(inf_mod, "default_weights_path", lambda: missing)
    with pytest.raises(FileNotFoundError, match="denoiser.safetensors"):
        nn_.denoise(np.zeros((8, 8), np.float32))
    with pytest.raises(FileNotFoundError, match=str(missing.parent).replace("\\", "\\\\")):
        nn_.load_model()


def test_default_weights_path_inside_package():
    p = nn_.default_weights_path()
    assert p.parent == Path(nn_.__file__).parent / "weights"
    if p.exists():  # shipped weights: small, and loadable with their config
        assert p.stat().st_size < 5 * 2**20
        model = nn_.load_model()
        assert model.config.in_channels == 1 and model.config.noise_level_input


def test_cuda_unavailable_is_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        nn_.load_model(device="cuda")
    with pytest.raises(ValueError, match="device"):
        nn_.resolve_device("tpu")


# ---------------------------------------------------------------------------
# checkpoints and safe loading
# ---------------------------------------------------------------------------
def test_safetensors_round_trip_rebuilds_network(tmp_path):
    cfg = _small(mode="dot_product", blocks=2, depth=7)
    model = activate(NonLocalDenoiser(cfg))
    path = nn_.save_weights(tmp_path / "m.safetensors", model, {"note": "test"})
    loaded = nn_.load_model(path)
    assert loaded.config == cfg and not loaded.training
    x = torch.rand(1, 1, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    data = nn_.load_checkpoint(path)
    assert data["info"] == {"note": "test"}


def test_checkpoint_round_trip_and_export(tmp_path):
    model = activate(NonLocalDenoiser(_small()))
    ck = nn_.save_checkpoint(
        tmp_path / "c.pt",
        {
            "config": model.config,
            "model": model.state_dict(),
            "step": 7,
            "history": [{"val_psnr": 30.0}],
        },
    )
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    assert ck.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    data = nn_.load_checkpoint(ck)
    assert data["step"] == 7
    dest = nn_.export_weights(ck, tmp_path / "out" / "denoiser.safetensors")
    assert dest.exists() and dest.with_suffix(".json").exists()
    assert json.loads(dest.with_suffix(".json").read_text())["config"] == model.config.to_dict()
    x = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(nn_.load_model(dest)(x), model(x), rtol=0, atol=0)
        torch.testing.assert_close(nn_.load_model(ck)(x), model(x), rtol=0, atol=0)


def test_refuses_pickled_code_in_torch_file(tmp_path):
    marker = tmp_path / "PWNED"
    bad = tmp_path / "evil.pt"
    model = NonLocalDenoiser(_small())
    save_evil_checkpoint(model, bad, marker)
    with pytest.raises(ValueError, match="evil.pt"):
        nn_.load_checkpoint(bad)
    with pytest.raises(ValueError, match="evil.pt"):
        nn_.load_model(bad)
    assert not marker.exists()
    # sanity check of the test itself: a full unpickle WOULD run the code
    torch.load(bad, weights_only=False)
    assert marker.exists()


def test_refuses_raw_pickle_with_code(tmp_path):
    marker = tmp_path / "PWNED"
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps(Evil(str(marker))))
    with pytest.raises(ValueError, match="evil.pkl"):
        nn_.load_checkpoint(bad)
    assert not marker.exists()


def test_refuses_foreign_files(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, foreign)
    with pytest.raises(ValueError, match="foreign.pt"):
        nn_.load_checkpoint(foreign)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00not a model at all" * 10)
    with pytest.raises(ValueError, match="junk.bin"):
        nn_.load_model(junk)
    from safetensors.torch import save_file

    st = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(st))
    with pytest.raises(ValueError, match="other.safetensors"):
        nn_.load_model(st)
    # right marker, but weights that do not fit the stored config
    model = NonLocalDenoiser(_small())
    wrong = tmp_path / "wrong.pt"
    nn_.save_checkpoint(
        wrong, {"config": _small(channels=4).to_dict(), "model": model.state_dict()}
    )
    with pytest.raises(ValueError, match="wrong.pt"):
        nn_.load_model(wrong)
    with pytest.raises(FileNotFoundError):
        nn_.load_checkpoint(tmp_path / "nope.pt")


def test_conv_init_does_not_depend_on_blocks():
    """Ablation fairness: same seed -> same convolutions with or without blocks."""
    nets = []
    for mode in ("none", "embedded_gaussian", "concatenation"):
        torch.manual_seed(5)
        nets.append(NonLocalDenoiser(_small(mode=mode)))
    convs = [
        [
            m.weight
            for m in net.modules()
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
        ]
        for net in nets
    ]
    for other in convs[1:]:
        assert len(other) == len(convs[0])
        for a, b in zip(convs[0], other):
            assert torch.equal(a, b)


@pytest.mark.slow
def test_2048_image_bounded_memory(tmp_path):
    """A 2048x2048 gray image is denoised under 3 GB peak (tiled inference)."""
    import subprocess
    import sys

    code = (
        "import resource, numpy as np, torch\n"
        "import nlmeans.neural as nn_\n"
        "torch.set_num_threads(1)\n"
        "model = nn_.NonLocalDenoiser(nn_.DenoiserConfig()).eval()\n"
        "img = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)\n"
        "out = nn_.denoise(img, weights=model)\n"
        "assert out.shape == img.shape and np.isfinite(out).all()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert res.returncode == 0, res.stderr
    peak_kib = int(res.stdout.strip().splitlines()[-1])
    assert peak_kib * 1024 < 3 * 2**30


def test_shipped_model_is_in_the_package_and_denoises():
    """The weights ship inside the package (< 5 MB) and really denoise a sample."""
    import imageio.v3 as iio

    path = nn_.default_weights_path()
    assert path.is_file(), f"shipped weights missing: {path}"
    assert path.stat().st_size < 5 * 1024 * 1024
    model = nn_.load_model()
    assert model.config.mode != "none" and model.config.blocks >= 1
    root = Path(__file__).resolve().parents[1] / "sample_images"
    clean = iio.imread(root / "camera.png")[64:192, 64:192] / 255.0
    noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape)
    out = nn_.denoise(noisy.astype(np.float32), weights=model)

    def psnr(x):
        return 10 * np.log10(1 / np.mean((np.clip(x, 0, 1) - clean) ** 2))

    # Measured: noisy 20.7 dB, shipped weights 28.5 dB.
    assert psnr(out) > psnr(noisy) + 7
