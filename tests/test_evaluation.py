"""nlmeans.evaluation: the protocol, the methods, the records and the report files."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import nlmeans
from nlmeans import evaluation as ev
from nlmeans.io import read_image, write_image

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
HAS_BM3D = importlib.util.find_spec("bm3d") is not None


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Two small clean images (48x48): gray 8-bit and RGB 16-bit."""
    folder = tmp_path_factory.mktemp("clean")
    gray = read_image(SAMPLES / "camera.png").pixels[40:88, 100:148]
    rgb16 = read_image(SAMPLES / "coffee16.png").pixels[40:88, 60:108]
    write_image(folder / "b_gray.png", gray)
    write_image(folder / "a_rgb16.png", rgb16)
    return folder, gray / 255.0, rgb16 / 65535.0


# --------------------------------------------------------------------------- protocol


def test_add_noise_follows_the_protocol():
    clean = np.tile(np.array([0.0, 1.0]), (32, 16))
    noisy = ev.add_noise(clean, 25, seed=7)
    expected = clean + np.random.default_rng(7).normal(0.0, 25 / 255, clean.shape)
    np.testing.assert_array_equal(noisy, expected)
    assert noisy.min() < 0 and noisy.max() > 1  # not clipped
    assert len(np.unique(noisy)) > 1000  # not quantised
    assert np.std(noisy - clean) == pytest.approx(25 / 255, rel=0.1)


def test_measure_clips_and_uses_data_range_one():
    clean = np.full((16, 16), 0.5)
    psnr, ssim = ev.measure(clean, clean + 0.1)
    assert psnr == pytest.approx(20.0)
    assert 0 < ssim <= 1
    clean = np.zeros((16, 16))
    clean[4:12] = 1.0
    beyond = clean.copy()
    beyond[clean == 1] = 1.7  # clipped back to 1
    beyond[clean == 0] = -3.0  # clipped back to 0
    psnr, ssim = ev.measure(clean, beyond)
    assert np.isinf(psnr) and ssim == pytest.approx(1.0)
    rgb = np.random.default_rng(0).random((16, 16, 3))
    assert ev.measure(rgb, rgb * 0.9)[1] < 1.0  # colour: channel_axis=-1


def test_parsers():
    assert ev.parse_sigmas("15, 25,50") == [15.0, 25.0, 50.0]
    assert ev.parse_sigmas([10, 10, 5]) == [10.0, 5.0]
    for bad in ("0", "-3", "300", "x", ",", "nan"):
        with pytest.raises(ValueError):
            ev.parse_sigmas(bad)
    assert ev.parse_methods("fast,skimage") == ["fast", "skimage-same", "skimage-best"]
    assert ev.parse_methods("ours") == list(ev.OUR_METHODS)
    assert ev.parse_methods("all") == list(ev.ALL_METHODS)
    assert ev.parse_methods(["opencv", "OpenCV ", "bm3d"]) == ["opencv", "bm3d"]
    with pytest.raises(ValueError, match="unknown method 'median'"):
        ev.parse_methods("fast,median")
    with pytest.raises(ValueError):
        ev.parse_methods("")


# --------------------------------------------------------------------------- methods


@pytest.mark.parametrize(
    "method", ["fast", "exact", "patchwise", "skimage-same", "skimage-best", "opencv", "bm3d"]
)
def test_every_method_denoises(crops, method):
    if method == "bm3d" and not HAS_BM3D:
        pytest.skip("bm3d is not installed")
    _, gray, _ = crops
    noisy = ev.add_noise(gray, 25, seed=0)
    out, settings = ev.run_method(method, noisy, sigma=25 / 255, channel_axis=None, threads=1)
    assert out.shape == gray.shape and out.dtype == np.float64
    noisy_psnr = ev.measure(gray, noisy)[0]
    assert ev.measure(gray, out)[0] > noisy_psnr + 3
    assert isinstance(settings, dict) and settings


def test_colour_methods(crops):
    _, _, rgb = crops
    noisy = ev.add_noise(rgb, 25, seed=1)
    for method in ("fast", "skimage-best", "opencv"):
        out, _ = ev.run_method(method, noisy, sigma=25 / 255, channel_axis=-1, threads=1)
        assert out.shape == rgb.shape
        assert ev.measure(rgb, out)[0] > ev.measure(rgb, noisy)[0] + 3


def test_reference_settings(crops):
    _, gray, _ = crops
    noisy = ev.add_noise(gray, 25, seed=0)
    _, same = ev.run_method("skimage-same", noisy, sigma=None, channel_axis=None)
    p = nlmeans.resolve_parameters(noisy, method="fast")
    assert (same["patch_size"], same["patch_distance"]) == (p.patch_size, p.patch_distance)
    assert same["h"] == pytest.approx(p.h) and same["sigma"] == pytest.approx(p.sigma)
    _, best = ev.run_method("skimage-best", noisy, sigma=0.1, channel_axis=None)
    assert best == {
        "fast_mode": True,
        "patch_size": 5,
        "patch_distance": 6,
        "h": pytest.approx(0.07),
        "sigma": 0.1,
    }
    _, cv = ev.run_method("opencv", noisy, sigma=0.1, channel_axis=None)
    assert cv["h_gray_levels"] == pytest.approx(0.95 * 0.1 * 255)
    assert (cv["templateWindowSize"], cv["searchWindowSize"]) == (7, 21)
    # without a given sigma the reference methods estimate it
    _, est = ev.run_method("skimage-best", noisy, sigma=None, channel_axis=None)
    assert est["sigma"] == pytest.approx(nlmeans.estimate_sigma(noisy))


def test_missing_package_is_not_installed(crops, monkeypatch):
    folder, _, _ = crops
    monkeypatch.setitem(sys.modules, "bm3d", None)  # makes `import bm3d` fail
    result = ev.compare_synthetic([folder / "b_gray.png"], [25], "opencv,bm3d", threads=1)
    status = {r.method: r.status for r in result.records}
    assert status == {"opencv": "ok", "bm3d": "not installed"}
    bm3d_record = next(r for r in result.records if r.method == "bm3d")
    assert "pip install bm3d" in bm3d_record.message and bm3d_record.psnr is None


def test_neural_without_weights_is_reported_not_raised(crops, tmp_path):
    pytest.importorskip("torch")
    from nlmeans.neural import default_weights_path

    if default_weights_path().is_file():
        pytest.skip("shipped neural weights are present")
    folder, _, _ = crops
    result = ev.compare_synthetic([folder / "b_gray.png"], [25], "neural,fast", threads=1)
    status = {r.method: r.status for r in result.records}
    assert status == {"neural": "unavailable", "fast": "ok"}


# --------------------------------------------------------------------------- comparisons


def test_compare_synthetic_records_and_seeds(crops):
    folder, gray, rgb = crops
    progress = []
    result = ev.compare_synthetic(
        [folder / "b_gray.png", folder / "a_rgb16.png"],
        [15, 50],
        "fast,opencv",
        threads=1,
        keep_images=True,
        progress=lambda *args: progress.append(args),
    )
    # sorted list: a_rgb16.png is image 0, b_gray.png image 1
    assert result.images == ["a_rgb16.png", "b_gray.png"]
    assert len(result.records) == 2 * 2 * 2 and len(progress) == 8 and progress[-1][3:] == (8, 8)
    np.testing.assert_allclose(
        result.images_data[("b_gray.png", 50.0)]["noisy"],
        (gray + np.random.default_rng(1).normal(0, 50 / 255, gray.shape)).astype(np.float32),
    )
    np.testing.assert_allclose(
        result.images_data[("a_rgb16.png", 15.0)]["noisy"],
        (rgb + np.random.default_rng(0).normal(0, 15 / 255, rgb.shape)).astype(np.float32),
    )
    for r in result.records:
        assert r.status == "ok" and r.seconds > 0 and 0 < r.ssim <= 1
        noisy = result.images_data[(r.image, r.sigma)]["noisy"]
        clean = result.images_data[(r.image, r.sigma)]["clean"]
        assert r.psnr > ev.measure(clean, noisy)[0]
    # stronger noise, lower PSNR
    averages = {(a["sigma"], a["method"]): a for a in result.averages()}
    assert averages[(15.0, "fast")]["psnr"] > averages[(50.0, "fast")]["psnr"]
    assert averages[(15.0, "fast")]["images"] == 2
    assert result.best(15.0, "psnr") == max(averages[(15.0, m)]["psnr"] for m in ("fast", "opencv"))
    assert result.best(15.0, "seconds") == min(
        averages[(15.0, m)]["seconds"] for m in ("fast", "opencv")
    )
    # a different seed gives different noise
    other = ev.compare_synthetic([folder / "b_gray.png"], [15], "opencv", seed=5, keep_images=True)
    np.testing.assert_allclose(
        other.images_data[("b_gray.png", 15.0)]["noisy"],
        (gray + np.random.default_rng(5).normal(0, 15 / 255, gray.shape)).astype(np.float32),
    )


@pytest.mark.filterwarnings("ignore:image is size 3")  # skimage's sigma estimate on the 3x3 image
def test_an_error_on_one_image_does_not_stop_the_rest(tmp_path, crops, monkeypatch):
    folder, _, _ = crops
    write_image(tmp_path / "small.png", np.full((20, 20), 100, np.uint8))
    real = ev.run_method

    def fails_on_small_images(method, noisy, **kwargs):
        if method == "fast" and noisy.shape == (20, 20):
            raise IndexError("a failure no method is expected to raise")  # any exception
        return real(method, noisy, **kwargs)

    monkeypatch.setattr(ev, "run_method", fails_on_small_images)
    result = ev.compare_paired(
        [tmp_path / "small.png", folder / "b_gray.png"],
        [tmp_path / "small.png", folder / "b_gray.png"],
        "fast,skimage-best",
        threads=1,
    )
    by = {(r.image, r.method): r for r in result.records}
    assert by[("small.png", "fast")].status == "error"
    assert "IndexError" in by[("small.png", "fast")].message
    assert by[("b_gray.png", "fast")].status == "ok"
    assert by[("b_gray.png", "skimage-best")].status == "ok"
    row = next(a for a in result.averages() if a["method"] == "fast")
    assert row["images"] == 1 and row["status"] == "1 of 2 failed"
    # a mean over fewer images is not ranked against complete ones
    assert result.best(None, "psnr") == next(
        a["psnr"] for a in result.averages() if a["method"] == "skimage-best"
    )


def test_one_clean_file_for_several_shots(tmp_path, crops):
    folder, _, _ = crops
    rng = np.random.default_rng(2)
    shots = []
    clean = read_image(folder / "b_gray.png").pixels
    for k in range(2):
        noisy = np.clip(clean + rng.normal(0, 10, clean.shape), 0, 255).astype(np.uint8)
        write_image(tmp_path / f"shot{k}.png", noisy)
        shots.append(tmp_path / f"shot{k}.png")
    result = ev.compare_paired(shots, [folder / "b_gray.png"], "fast", threads=1)
    assert [r.status for r in result.records] == ["ok", "ok"]
    with pytest.raises(ValueError, match="one clean file per noisy file, or one for all"):
        ev.compare_paired(shots + shots[:1], shots[:2], "fast", threads=1)


def test_clean_images_off_the_unit_scale_or_with_nan_are_refused(tmp_path):
    counts = np.full((20, 20), 200.0, np.float32)
    write_image(tmp_path / "counts.tif", counts)
    with pytest.raises(ValueError, match=r"counts.tif: float values on \[200, 200\].*white level"):
        ev.compare_synthetic([tmp_path / "counts.tif"], [25], "fast", threads=1)
    counts[3, 4] = np.nan
    write_image(tmp_path / "nan.tif", counts / 255)
    with pytest.raises(ValueError, match="nan.tif: the image contains NaN"):
        ev.compare_paired([tmp_path / "nan.tif"], [tmp_path / "nan.tif"], "fast", threads=1)


def test_compare_paired(tmp_path, crops):
    _, gray, _ = crops
    noisy = np.clip(
        np.rint((gray + np.random.default_rng(3).normal(0, 20 / 255, gray.shape)) * 255), 0, 255
    )
    write_image(tmp_path / "n.png", noisy.astype(np.uint8))
    write_image(tmp_path / "c.png", np.rint(gray * 255).astype(np.uint8))
    result = ev.compare_paired(
        [tmp_path / "n.png"], [tmp_path / "c.png"], "fast,skimage-best", keep_images=True
    )
    assert result.mode == "paired" and result.sigmas == [None]
    assert all(r.sigma is None and r.status == "ok" for r in result.records)
    assert all(r.psnr > ev.measure(gray, noisy / 255)[0] for r in result.records)
    with pytest.raises(ValueError, match="1 noisy file"):
        ev.compare_paired([tmp_path / "n.png"], [tmp_path / "c.png", tmp_path / "n.png"], "fast")
    write_image(tmp_path / "small.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="same size"):
        ev.compare_paired([tmp_path / "n.png"], [tmp_path / "small.png"], "fast")


# --------------------------------------------------------------------------- outputs


@pytest.fixture(scope="module")
def small_result(crops):
    folder, _, _ = crops
    return ev.compare_synthetic(
        [folder / "b_gray.png", folder / "a_rgb16.png"],
        [25],
        "fast,opencv",
        threads=1,
        keep_images=True,
    )


def test_csv_and_json(small_result):
    rows = list(csv.DictReader(io.StringIO(ev.results_csv(small_result))))
    assert len(rows) == 4
    assert set(rows[0]) == {
        "image",
        "sigma",
        "method",
        "psnr",
        "ssim",
        "seconds",
        "status",
        "message",
    }
    first = small_result.records[0]
    assert float(rows[0]["psnr"]) == pytest.approx(first.psnr, abs=1e-4)
    data = json.loads(ev.results_json(small_result))
    assert data["mode"] == "synthetic" and data["seed"] == 0
    assert len(data["records"]) == 4 and len(data["averages"]) == 2
    assert "default_rng" in data["protocol"]
    assert set(data["settings"]) >= {"skimage-best", "opencv", "bm3d"}


def test_markdown_report(small_result):
    text = ev.report_markdown(small_result, ["montages/x.png"])
    assert "| Method | PSNR (dB) | SSIM | Time (s) | Images |" in text
    best = max(r["psnr"] for r in small_result.averages())
    assert f"**{best:.2f}**" in text
    assert "![montages/x.png](montages/x.png)" in text
    assert "σ = 25" in text


def test_write_report(tmp_path, small_result):
    written = ev.write_report(small_result, tmp_path / "rep")
    names = sorted(str(p.relative_to(tmp_path / "rep")) for p in written)
    assert names == [
        "montages/a_rgb16_sigma25.png",
        "montages/b_gray_sigma25.png",
        "report.md",
        "results.csv",
        "results.json",
    ]
    montage = read_image(tmp_path / "rep" / "montages" / "b_gray_sigma25.png")
    assert montage.mode == "rgb" and montage.pixels.dtype == np.uint8
    # clean | noisy | fast | opencv: four 128 px panels (48 px enlarged x3 = 144) and 3 gaps
    assert montage.width == 4 * 144 + 3 * 4
    with pytest.raises(FileExistsError, match="--force"):
        ev.write_report(small_result, tmp_path / "rep")
    stale = tmp_path / "rep" / "montages" / "other_sigma50.png"  # an earlier report's
    stale.write_bytes((tmp_path / "rep" / "montages" / "b_gray_sigma25.png").read_bytes())
    report = tmp_path / "rep" / "report.md"
    report.write_text(report.read_text() + "\n![x](montages/other_sigma50.png)\n")
    mine = tmp_path / "rep" / "montages" / "mine.png"  # never linked: the user's own
    mine.write_bytes(stale.read_bytes())
    ev.write_report(small_result, tmp_path / "rep", force=True)
    assert mine.is_file()
    mine.unlink()
    assert not [p for p in (tmp_path / "rep").rglob("*.tmp")]
    assert sorted(p.name for p in (tmp_path / "rep" / "montages").iterdir()) == [
        "a_rgb16_sigma25.png",
        "b_gray_sigma25.png",
    ]


def test_montage_names_stay_unique(tmp_path, crops):
    # a.png in two folders and a_1.png: the second a.png was numbered a_1 too
    folder, _, _ = crops
    paths = []
    for sub, name in (("p1", "a.png"), ("p2", "a.png"), ("p3", "a_1.png")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / name).write_bytes((folder / "b_gray.png").read_bytes())
        paths.append(tmp_path / sub / name)
    result = ev.compare_paired(paths, paths, "fast", threads=1, keep_images=True)
    written = ev.write_report(result, tmp_path / "rep")
    montages = [p for p in written if p.parent.name == "montages"]
    assert len(montages) == len(set(montages)) == 3


def test_skimage_methods_keep_a_one_pixel_wide_image(tmp_path):
    # denoise_nl_means returns (40,) for a (40, 1) image
    column = (np.linspace(0.2, 0.8, 40)[:, None] * 255).astype(np.uint8)
    write_image(tmp_path / "column.png", column)
    result = ev.compare_synthetic([tmp_path / "column.png"], [25], "skimage", threads=1)
    assert [r.status for r in result.records] == ["ok", "ok"]


def test_montage_layout_and_crop():
    clean = np.full((60, 80), 0.5)
    clean[30:45, 50:65] = np.random.default_rng(0).random((15, 15))  # the only detail
    y, x = ev._detail_crop(clean, 15)
    assert abs(y - 30) <= 2 and abs(x - 50) <= 2
    panels = [("clean", [], clean), ("noisy", ["PSNR 20.00 dB"], clean * 0.9)]
    picture = ev.make_montage(panels)
    assert picture.dtype == np.uint8 and picture.shape[2] == 3
    # 80 px wide images are enlarged x2 to 160 px; one 4 px gap
    assert picture.shape[1] == 2 * 160 + 4
    big = ev.make_montage([("a", [], np.zeros((600, 300)))])
    assert big.shape[1] == 128  # 300 px shrunk so the long side is 256
    with pytest.raises(ValueError):
        ev.make_montage([])


def _hand_made_comparison() -> ev.Comparison:
    """Two images, three methods; one perfect output (infinite PSNR) and one failed run."""
    rows = [
        ("a.png", "fast", 30.0, 0.9, 0.5),
        ("a.png", "exact", 31.5, 0.8, 2.0),
        ("a.png", "opencv", None, None, None),
        ("b.png", "fast", float("inf"), 1.0, 0.25),
        ("b.png", "exact", 28.0, 0.95, 1.0),
        ("b.png", "opencv", 27.0, 0.7, 0.1),
    ]
    records = [
        ev.Record(image, 15.0, method, psnr, ssim, seconds, ev.OK if psnr else ev.ERROR, "")
        for image, method, psnr, ssim, seconds in rows
    ]
    return ev.Comparison(
        records, ["fast", "exact", "opencv"], [15.0], ["a.png", "b.png"], "synthetic", 0
    )


def test_best_values_follow_one_rule():
    result = _hand_made_comparison()
    assert ev.best_of("psnr", [None, 3.0, 5.0]) == 5.0
    assert ev.best_of("seconds", [None, 3.0, 5.0]) == 3.0
    assert ev.best_of("ssim", [None]) is None
    assert result.best_for_image("a.png", 15.0) == 31.5
    assert result.best_for_image("b.png", 15.0) == float("inf")
    # opencv's 0.1 s is a mean over one of the two images (it failed on a.png):
    # not ranked against the complete means
    assert result.best(15.0, "seconds") == 0.375
    assert ev.is_best(float("inf"), float("inf")) and not ev.is_best(None, None)


def test_terminal_and_markdown_mark_the_same_cells(monkeypatch):
    """The same values are bold in the Rich table and in report.md, an infinite PSNR included."""
    import re

    from rich.console import Console

    from nlmeans_cli import compare as cli_compare

    terminal = io.StringIO()
    console = Console(file=terminal, force_terminal=True, color_system="standard", width=200)
    monkeypatch.setattr(cli_compare, "stdout_console", lambda: console)
    result = _hand_made_comparison()
    cli_compare._print_comparison(result)
    on_terminal = re.findall(r"\x1b\[1;32m([^\x1b]*)\x1b\[0m", terminal.getvalue())
    tables = [line for line in ev.report_markdown(result).splitlines() if line.startswith("|")]
    in_markdown = re.findall(r"\*\*([^*]+)\*\*", "\n".join(tables))
    # report.md shows "PSNR / SSIM" per image where the terminal shows the PSNR.
    in_markdown = [text.split(" / ")[0] for text in in_markdown]
    # per image: 31.50 (a.png), inf (b.png); means (of the methods that ran on
    # both images): PSNR inf, SSIM 0.9500, time 0.375
    assert (
        sorted(on_terminal)
        == sorted(in_markdown)
        == sorted(["31.50", "inf", "inf", "0.9500", "0.375"])
    )
