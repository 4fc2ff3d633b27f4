"""Tests of nlmeans.neural.train: smoke run, determinism, resume, atomic
checkpoints, interruption, data reading, noise sampling, the ablation script."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nlmeans.neural as nn_  # noqa: E402
from nlmeans.neural import checkpoint as ckpt_mod  # noqa: E402
from nlmeans.neural import training as train_mod  # noqa: E402
from nlmeans.neural.model import DenoiserConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = DenoiserConfig(channels=8, depth=4, blocks=1, window=2)


def _synthetic(seed: int, h: int = 48, w: int = 52) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 0.5 + 0.25 * np.sin(xx / rng.uniform(2, 6) + yy / rng.uniform(3, 9))
    cy, cx, r = rng.uniform(10, 38), rng.uniform(10, 40), rng.uniform(5, 12)
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.uniform(0, 1)
    return np.clip(img, 0, 1)


@pytest.fixture
def data_dir(tmp_path):
    """Six tiny clean gray PNGs."""
    import imageio.v3 as iio

    d = tmp_path / "data"
    d.mkdir()
    for i in range(6):
        iio.imwrite(d / f"img{i}.png", (_synthetic(i) * 255).round().astype(np.uint8))
    return d


def _run(data_dir, out, **kw):
    args = dict(
        out=out,
        config=TINY,
        steps=6,
        steps_per_epoch=2,
        batch_size=4,
        patch_size=16,
        progress=False,
        threads=1,
        seed=3,
        val_fraction=0.2,
    )
    args.update(kw)
    return nn_.train(data_dir, **args)


def _weights(path):
    return nn_.load_checkpoint(path)["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_smoke_training(data_dir, tmp_path):
    out = tmp_path / "run" / "model.pt"
    res = _run(data_dir, out)
    assert res.out == out and out.is_file()
    assert res.completed and res.step == res.total_steps == 6
    assert res.train_images == 5 and res.val_images == 1
    assert [h["step"] for h in res.history] == [2, 4, 6]
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    for h in res.history:
        assert (
            math.isfinite(h["train_loss"]) and math.isfinite(h["val_psnr"]) and h["wall_time"] > 0
        )
    assert res.history[-1]["lr"] < res.history[0]["lr"]  # cosine schedule
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.pt"]  # no temp files
    data = nn_.load_checkpoint(out)
    assert data["step"] == 6 and data["complete"] is True
    model = nn_.load_model(out)
    assert model.config == TINY
    img = _synthetic(9, 33, 31).astype(np.float32)
    assert nn_.denoise(img, weights=out).shape == img.shape


def test_training_reduces_loss(data_dir, tmp_path):
    res = _run(
        data_dir,
        tmp_path / "m.pt",
        steps=120,
        steps_per_epoch=60,
        batch_size=8,
        lr=3e-3,
        sigma=(25.0, 25.0),
        config=DenoiserConfig(channels=16, depth=5, blocks=1, window=2),
    )
    noisy_psnr = 10 * math.log10(1 / (25 / 255) ** 2)  # ~20.2 dB
    assert res.history[-1]["val_psnr"] > noisy_psnr + 1.0
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_same_seed_same_weights(data_dir, tmp_path):
    _run(data_dir, tmp_path / "a.pt")
    _run(data_dir, tmp_path / "b.pt")
    _run(data_dir, tmp_path / "c.pt", seed=4)
    a, b, c = (_weights(tmp_path / n) for n in ("a.pt", "b.pt", "c.pt"))
    _assert_same_weights(a, b)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_resume_after_interrupt_equals_uninterrupted(data_dir, tmp_path):
    full = _run(data_dir, tmp_path / "full.pt")

    def stop_after_first_epoch(record):
        if record["step"] == 2:
            raise KeyboardInterrupt

    part = tmp_path / "part.pt"
    with pytest.raises(nn_.TrainingInterrupted) as info:
        _run(data_dir, part, callback=stop_after_first_epoch)
    err = info.value
    assert err.checkpoint == part and err.step == 2
    assert "resume" in str(err) and str(part) in str(err)
    assert nn_.load_checkpoint(part)["step"] == 2
    assert sorted(p.name for p in tmp_path.glob("*.tmp")) == []

    resumed = nn_.train(
        data_dir, resume=part, progress=False, threads=1
    )  # settings come from the file
    assert resumed.out == part and resumed.step == 6
    _assert_same_weights(_weights(part), _weights(tmp_path / "full.pt"))
    assert [h["val_psnr"] for h in resumed.history] == [h["val_psnr"] for h in full.history]
    state = nn_.load_checkpoint(part)
    assert state["optimizer"]["state"]  # Adam moments stored


def test_max_steps_then_resume_mid_epoch(data_dir, tmp_path):
    _run(data_dir, tmp_path / "full.pt", steps=5)
    first = _run(data_dir, tmp_path / "a.pt", steps=5, max_steps=3)
    assert first.step == 3 and not first.completed and first.history[-1]["partial"]
    second = nn_.train(
        data_dir, resume=tmp_path / "a.pt", out=tmp_path / "b.pt", progress=False, threads=1
    )
    assert second.completed and second.step == 5
    _assert_same_weights(_weights(tmp_path / "b.pt"), _weights(tmp_path / "full.pt"))


def test_resume_warns_about_ignored_arguments(data_dir, tmp_path):
    _run(data_dir, tmp_path / "a.pt", steps=2, max_steps=1)
    with pytest.warns(UserWarning, match="batch_size"):
        nn_.train(data_dir, resume=tmp_path / "a.pt", batch_size=99, progress=False, threads=1)


def test_interrupt_during_checkpoint_write_keeps_previous(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "m.pt"
    real_save = torch.save
    calls = {"n": 0}

    def flaky_save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            f.write(b"partial garbage")  # half-written temp file
            raise KeyboardInterrupt
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ckpt_mod.torch, "save", flaky_save)
    with pytest.raises(nn_.TrainingInterrupted) as info:
        _run(data_dir, out)
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    assert info.value.step == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "m.pt"]  # no temp file
    assert nn_.load_checkpoint(out)["step"] == 2  # previous complete checkpoint intact
    resumed = nn_.train(data_dir, resume=out, progress=False, threads=1)
    assert resumed.step == 6


def test_interrupt_before_first_checkpoint(data_dir, tmp_path, monkeypatch):
    def boom(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod._PatchSampler, "batch", boom)
    with pytest.raises(nn_.TrainingInterrupted, match="nothing was saved") as info:
        _run(data_dir, tmp_path / "m.pt")
    assert info.value.checkpoint is None
    assert list(tmp_path.glob("m.pt*")) == [] and list(tmp_path.glob(".m.pt*")) == []


def test_blind_sigma_range_and_augmentation():
    # image whose pixel values are unique, to trace where patches come from
    img = torch.arange(30 * 30, dtype=torch.float32).reshape(30, 30) / 900.0
    settings = nn_.TrainConfig(sigma=(0.0, 55.0), batch_size=512, patch_size=6)
    sampler = train_mod._PatchSampler([img], settings, torch.Generator().manual_seed(0))
    noisy, clean, sigma = sampler.batch()
    assert noisy.shape == clean.shape == (512, 1, 6, 6)
    s255 = sigma * 255
    assert float(s255.min()) >= 0 and float(s255.max()) <= 55.0
    assert float(s255.min()) < 5 and float(s255.max()) > 50  # covers the range
    # noise has the drawn per-patch std
    est = (noisy - clean).flatten(1).std(1)
    big = sigma > 20 / 255
    assert torch.allclose(est[big] / sigma[big], torch.ones(int(big.sum())), atol=0.35)
    # every clean patch is one of the 8 symmetries of a real patch of the image
    seen = set()
    for k in range(64):
        p = clean[k, 0]
        # values grow along rows and columns: the minimum is the crop's top-left pixel
        y, x = divmod(int(round(float(p.min()) * 900)), 30)
        ref = img[y : y + 6, x : x + 6]
        syms = [torch.rot90(r, t, (0, 1)) for r in (ref, ref.flip(-1)) for t in range(4)]
        idx = [i for i, s in enumerate(syms) if torch.equal(s, p)]
        assert idx, "patch is not a flipped/rotated crop of the image"
        seen.add(idx[0])
    assert len(seen) == 8


def test_poisson_gaussian_noise_option(data_dir, tmp_path):
    settings = nn_.TrainConfig(
        sigma=(0.0, 0.0),
        noise="poisson-gaussian",
        poisson_peak=(10.0, 10.0),
        batch_size=64,
        patch_size=8,
    )
    img = torch.full((20, 20), 0.5)
    noisy, clean, _ = train_mod._PatchSampler(
        [img], settings, torch.Generator().manual_seed(1)
    ).batch()
    # Poisson(5)/10: mean 0.5, std sqrt(5)/10, values on a 0.1 grid
    assert abs(float(noisy.mean()) - 0.5) < 0.02
    assert abs(float(noisy.std()) - math.sqrt(5) / 10) < 0.03
    assert torch.allclose(noisy * 10, (noisy * 10).round(), atol=1e-4)
    res = _run(data_dir, tmp_path / "pg.pt", steps=2, noise="poisson-gaussian")
    assert res.completed


def test_reads_colour_tiff_jpeg_and_subfolders(tmp_path):
    import imageio.v3 as iio
    import tifffile

    d = tmp_path / "mixed"
    (d / "sub").mkdir(parents=True)
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[..., 0] = 255
    iio.imwrite(d / "red.png", rgb)
    tifffile.imwrite(d / "sub" / "deep.tif", np.full((40, 44), 65535, np.uint16))
    iio.imwrite(d / "photo.JPG", (_synthetic(1, 40, 40) * 255).astype(np.uint8))
    (d / "notes.txt").write_text("not an image")
    files = train_mod.list_images(d)
    assert [f.name for f in files] == ["photo.JPG", "red.png", "deep.tif"]
    red = train_mod.read_gray(d / "red.png")
    assert red.shape == (40, 40) and red.dtype == np.float32
    np.testing.assert_allclose(red, 0.2125, atol=1e-6)  # luminance of pure red
    np.testing.assert_allclose(train_mod.read_gray(d / "sub" / "deep.tif"), 1.0)
    res = nn_.train(
        d,
        out=tmp_path / "m.pt",
        config=TINY,
        steps=1,
        batch_size=2,
        patch_size=16,
        progress=False,
        threads=1,
        val_fraction=0.0,
    )
    assert res.completed and res.val_images == 0 and res.history[-1]["val_psnr"] is None


def test_bad_inputs(tmp_path, data_dir):
    with pytest.raises(FileNotFoundError):
        nn_.train(tmp_path / "missing", out=tmp_path / "m.pt", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        nn_.train(empty, out=tmp_path / "m.pt", progress=False)
    with pytest.raises(ValueError, match="sigma"):
        nn_.train(data_dir, out=tmp_path / "m.pt", sigma=(30, 10), progress=False)
    with (
        pytest.raises(ValueError, match="at least"),
        pytest.warns(UserWarning, match="smaller than patch_size"),
    ):
        _run(data_dir, tmp_path / "m.pt", patch_size=100)
    with pytest.raises(ValueError, match="noise"):
        _run(data_dir, tmp_path / "m.pt", noise="speckle")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            _run(data_dir, tmp_path / "m.pt", device="cuda")
    weights_only = nn_.save_weights(tmp_path / "w.safetensors", nn_.NonLocalDenoiser(TINY))
    with pytest.raises(ValueError, match="not a resumable"):
        nn_.train(data_dir, resume=weights_only, progress=False)


def test_progress_bar_goes_to_stderr(data_dir, tmp_path, capsys):
    _run(data_dir, tmp_path / "m.pt", steps=2, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "step 2/2" in captured.err


def test_ablation_script_tiny(data_dir, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "train_neural_ablation", ROOT / "benchmarks" / "train_neural_ablation.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_neural_ablation"] = mod
    spec.loader.exec_module(mod)
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    import imageio.v3 as iio

    for i in range(2):
        iio.imwrite(
            test_dir / f"t{i}.png", (_synthetic(20 + i, 36, 40) * 255).round().astype(np.uint8)
        )
    table = tmp_path / "ablation.md"
    rc = mod.main(
        [
            "--data",
            str(data_dir),
            "--test",
            str(test_dir),
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--patch-size",
            "16",
            "--channels",
            "8",
            "--depth",
            "4",
            "--window",
            "2",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(table),
            "--no-progress",
        ]
    )
    assert rc == 0
    text = table.read_text()
    for name in ("none", "embedded_gaussian", "gaussian", "dot_product", "concatenation"):
        assert f"| {name} " in text
    rows = [
        line
        for line in text.splitlines()
        if line.startswith("| ") and "PSNR" not in line and "---" not in line
    ]
    assert len(rows) >= 6  # no block, 4 modes, several blocks


def test_divergence_is_reported_not_saved(data_dir, tmp_path):
    with pytest.raises(FloatingPointError, match="diverged"):
        _run(data_dir, tmp_path / "m.pt", lr=1e30, steps=20, steps_per_epoch=20)
    assert not (tmp_path / "m.pt").exists()


def test_training_reads_the_files_the_cli_reads(tmp_path):
    from nlmeans._checks import IMAGE_SUFFIXES
    from nlmeans.io import IMAGE_EXTENSIONS as IO_EXTENSIONS

    assert train_mod.IMAGE_EXTENSIONS == IMAGE_SUFFIXES
    assert set(IMAGE_SUFFIXES) == set(IO_EXTENSIONS)
    (tmp_path / "a.bmp").write_bytes(b"BM")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in train_mod.list_images(tmp_path)] == ["b.png"]
    # unreadable files get nlmeans.io's message, naming the file
    with pytest.raises(ValueError, match="b.png"):
        train_mod.read_gray(tmp_path / "b.png")


def test_settings_dataclass_equals_the_keywords(data_dir, tmp_path):
    a = _run(data_dir, tmp_path / "a.pt", steps=2)
    settings = nn_.TrainConfig(
        steps=2, steps_per_epoch=2, batch_size=4, patch_size=16, seed=3, val_fraction=0.2
    )
    b = nn_.train(
        data_dir,
        settings=settings,
        out=tmp_path / "b.pt",
        config=TINY,
        progress=False,
        threads=1,
    )
    assert a.settings == b.settings == settings
    wa, wb = (nn_.load_checkpoint(r.out)["model"] for r in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(ValueError, match="not both"):
        nn_.train(data_dir, settings=settings, steps=3, out=tmp_path / "c.pt")
    with pytest.raises(TypeError, match="TrainConfig"):
        nn_.train(data_dir, settings={"steps": 2}, out=tmp_path / "c.pt")


def test_warm_start_from_a_blind_model_computes_the_same_then_trains(data_dir, tmp_path):
    import dataclasses

    from neural_helpers import activate

    from nlmeans.neural.model import NonLocalDenoiser

    torch.manual_seed(0)
    blind = activate(NonLocalDenoiser(TINY))
    source = ckpt_mod.save_weights(tmp_path / "blind.safetensors", blind)
    mapped = NonLocalDenoiser(dataclasses.replace(TINY, noise_level_input=True)).eval()
    train_mod.warm_start(mapped, source)
    x = torch.rand(2, 1, 20, 24)
    with torch.no_grad():
        for sigma in (0.0, 0.1, torch.rand(2, 1, 20, 24)):
            torch.testing.assert_close(mapped(x, sigma), blind(x), rtol=0, atol=0)
    # A different architecture is refused, naming both.
    with pytest.raises(ValueError, match="cannot start from"):
        train_mod.warm_start(NonLocalDenoiser(dataclasses.replace(TINY, channels=12)), source)
    # train(init=...) starts there and moves away from it with training.
    config = dataclasses.replace(TINY, noise_level_input=True)
    result = _run(data_dir, tmp_path / "w.pt", config=config, init=source, steps=2)
    trained = _weights(result.out)
    assert not torch.equal(
        trained["head.weight"][:, 4:], torch.zeros_like(trained["head.weight"][:, 4:])
    )


# --------------------------------------------------------------------------- time budget, sync


@pytest.fixture
def fake_clock(monkeypatch):
    """Training time that passes only as the test says: 1 s per optimizer
    step and 0.5 s per checkpoint written."""
    from nlmeans.neural import train_loop, train_state

    clock = {"t": 0.0}
    monkeypatch.setattr(train_loop, "_clock", lambda: clock["t"])
    real_step, real_save = torch.optim.Adam.step, train_state.save

    def step(self, *args, **kwargs):
        clock["t"] += 1.0
        return real_step(self, *args, **kwargs)

    def save(*args, **kwargs):
        clock["t"] += 0.5
        return real_save(*args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    monkeypatch.setattr(train_state, "save", save)
    return clock


def _cosine(fraction: float, lr: float = 1e-3) -> float:
    return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0))))


def test_time_budget_ends_the_run_and_the_schedule(data_dir, tmp_path, fake_clock):
    """With a time budget the cosine schedule follows the clock and the run is
    complete, at whatever step, once the time is spent."""
    out = tmp_path / "budget.pt"
    res = _run(data_dir, out, steps=1000, steps_per_epoch=3, time_budget=8)
    # steps 1-3 (3 s), a checkpoint (3.5 s), steps 4-6 (6.5 s), a checkpoint
    # (7 s), step 7 (8 s): spent. The run ends there, complete.
    assert res.step == 7 and res.total_steps == 7 and res.completed
    assert [h["step"] for h in res.history] == [3, 6, 7]
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    assert not any(h["partial"] for h in res.history)
    # The learning rate is the cosine of the time spent (a step-based cosine
    # over 1000 steps would still be near 1e-3).
    assert [h["lr"] for h in res.history] == pytest.approx(
        [_cosine(3 / 8), _cosine(6.5 / 8), _cosine(1.0)]
    )
    stored = nn_.load_checkpoint(out)
    assert stored["train_settings"]["time_budget"] == 8.0
    assert stored["history"][-1]["wall_time"] == pytest.approx(8.0)
    # Resuming a run whose budget is spent trains no further.
    again = nn_.train(data_dir, resume=out, progress=False, threads=1)
    assert again.step == 7 and again.completed
    _assert_same_weights(_weights(out), stored["model"])


def test_time_budget_resumed_after_a_stop(data_dir, tmp_path, fake_clock):
    """A run stopped early (max_steps) spends the rest of its budget when
    resumed, counting the time it had already spent."""
    out = tmp_path / "budget.pt"
    first = _run(data_dir, out, steps=1000, steps_per_epoch=3, time_budget=8, max_steps=4)
    assert first.step == 4 and not first.completed and first.history[-1]["partial"]
    # Stored: 4 steps and the checkpoint at step 3, 4.5 s; the 3.5 s left
    # are steps 5 and 6, the checkpoint at step 6, and step 7.
    res = nn_.train(data_dir, resume=out, progress=False, threads=1)
    assert res.step == 7 and res.completed
    assert res.history[-1]["wall_time"] == pytest.approx(8.0)


def test_time_budget_settings_are_checked(data_dir, tmp_path):
    with pytest.raises(ValueError, match="time_budget"):
        _run(data_dir, tmp_path / "m.pt", time_budget=-1)
    with pytest.raises(ValueError, match="time_budget needs schedule"):
        _run(data_dir, tmp_path / "m.pt", time_budget=10, schedule="step")


def test_reading_the_loss_every_few_steps_changes_nothing(data_dir, tmp_path, monkeypatch):
    """On a GPU the loop reads the loss on the host every SYNC_EVERY steps
    only; forced on the CPU, the weights and the history are the same."""
    from nlmeans.neural import train_loop

    every_step = _run(data_dir, tmp_path / "a.pt", steps=7, steps_per_epoch=5)
    monkeypatch.setattr(train_loop, "_sync_every", lambda device: 3)
    every_third = _run(data_dir, tmp_path / "b.pt", steps=7, steps_per_epoch=5)
    _assert_same_weights(_weights(tmp_path / "a.pt"), _weights(tmp_path / "b.pt"))
    assert every_step.history == [
        {**h, "epoch_time": a["epoch_time"], "wall_time": a["wall_time"]}
        for h, a in zip(every_third.history, every_step.history)
    ]


def test_divergence_between_reads_is_reported(data_dir, tmp_path, monkeypatch):
    from nlmeans.neural import train_loop

    monkeypatch.setattr(train_loop, "_sync_every", lambda device: 4)
    with pytest.raises(FloatingPointError, match=r"diverged .* between steps \d+ and \d+"):
        _run(data_dir, tmp_path / "m.pt", lr=1e30, steps=20, steps_per_epoch=20)
    assert not (tmp_path / "m.pt").exists()


def test_gradient_clipping_clips(data_dir, tmp_path, monkeypatch):
    """grad_clip reaches torch's clip_grad_norm_ at every step, and is stored."""
    calls = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        norm = real(parameters, max_norm, *args, **kwargs)
        after = torch.sqrt(sum((p.grad**2).sum() for p in parameters if p.grad is not None))
        calls.append((max_norm, float(norm), float(after)))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    _run(data_dir, tmp_path / "c.pt", grad_clip=1e-4, steps=3, steps_per_epoch=3)
    assert len(calls) == 3
    for max_norm, before, after in calls:
        assert max_norm == 1e-4 and before > 1e-4 and after == pytest.approx(1e-4, rel=1e-3)
    assert nn_.load_checkpoint(tmp_path / "c.pt")["train_settings"]["grad_clip"] == 1e-4


def test_time_budget_progress_shows_time_not_a_step_total(data_dir, tmp_path, fake_clock, capsys):
    _run(data_dir, tmp_path / "m.pt", steps=1000, steps_per_epoch=3, time_budget=8, progress=True)
    err = " ".join(capsys.readouterr().err.split())
    # 3.5 s spent by the end of the first epoch (its checkpoint included)
    assert "step 3 (4 of 8 s)" in err
    assert "/1000" not in err  # no step total, no ETA over a million steps
