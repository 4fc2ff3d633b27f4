"""The command line's noise options: ``estimate-noise`` and ``denoise --noise / --noise-params``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage import data, transform
from typer.testing import CliRunner

import nlmeans
from nlmeans.io import read_image, write_image
from nlmeans.noise import NoiseModel
from nlmeans_cli.main import app

runner = CliRunner()
A, B = 0.01, 1e-4  # std from 2.6 (black) to 25.7 (white) gray levels


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _flat(text: str) -> str:
    """A Rich-boxed, wrapped message on one line."""
    return " ".join(text.replace("│", " ").split())


@pytest.fixture(scope="module")
def clean_rgb():
    return transform.downscale_local_mean(data.astronaut() / 255.0, (2, 2, 1))  # 256x256


@pytest.fixture()
def files(tmp_path, clean_rgb):
    rng = np.random.default_rng(0)
    pg = clean_rgb + np.sqrt(A * clean_rgb + B) * rng.standard_normal(clean_rgb.shape)
    white = clean_rgb + rng.normal(0, 15 / 255, clean_rgb.shape)
    to_u8 = lambda x: np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)  # noqa: E731
    return {
        "pg": write_image(tmp_path / "pg.png", to_u8(pg)),
        "white": write_image(tmp_path / "white.png", to_u8(white)),
        "gray": write_image(tmp_path / "gray.png", to_u8(pg[..., 1])),
    }


def test_estimate_noise_text_and_json(files):
    result = invoke("estimate-noise", files["pg"], files["white"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{files['pg']}: poisson-gaussian, variance = ")
    assert "(Y in gray levels/255)" in lines[0]
    assert lines[1].startswith(f"{files['white']}: gaussian, sigma = ")
    result = invoke("estimate-noise", files["pg"], "--json")
    record = json.loads(result.stdout)
    assert record["kind"] == "poisson-gaussian" and len(record["a"]) == 3
    assert np.mean(record["a"]) == pytest.approx(A, rel=0.2)
    # The JSON is what --noise-params takes.
    expected = nlmeans.estimate_noise(read_image(files["pg"]).pixels, channel_axis=-1)
    assert record["a"] == pytest.approx(list(expected.a)) and record["b"] == pytest.approx(
        list(expected.b)
    )
    result = invoke("estimate-noise", files["pg"], "--model", "gaussian")
    assert ": gaussian, sigma = " in result.stdout


def test_estimate_noise_plot(files, tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "fit.png"
    result = invoke("estimate-noise", files["gray"], "--plot", plot)
    assert result.exit_code == 0, result.output
    assert f"plot: {plot}" in result.stdout
    picture = read_image(plot).pixels
    assert picture.ndim == 3 and picture.shape[0] > 200 and picture.std() > 10
    result = invoke("estimate-noise", files["gray"], "--plot", plot)
    assert result.exit_code == 2 and "already exists" in _flat(result.stderr)
    assert invoke("estimate-noise", files["gray"], "--plot", plot, "--force").exit_code == 0
    result = invoke("estimate-noise", files["gray"], files["pg"], "--plot", tmp_path / "two.png")
    assert result.exit_code == 2 and not (tmp_path / "two.png").exists()


def test_estimate_noise_plot_formats_and_never_the_input(files, tmp_path):
    pytest.importorskip("matplotlib")
    svg = tmp_path / "fit.svg"
    assert invoke("estimate-noise", files["gray"], "--plot", svg).exit_code == 0
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    result = invoke("estimate-noise", files["gray"], "--plot", tmp_path / "fit.tif")
    assert result.exit_code == 2 and ".png, .svg, .pdf" in _flat(result.stderr)
    assert not (tmp_path / "fit.tif").exists()
    # The input image, even with --force, is never replaced by the plot.
    image = tmp_path / "image.png"
    image.write_bytes(Path(files["gray"]).read_bytes())
    before = image.read_bytes()
    result = invoke("estimate-noise", image, "--plot", image, "--force")
    assert result.exit_code == 2 and "is the input image" in _flat(result.stderr)
    assert image.read_bytes() == before


def test_neural_with_noise_gaussian_typed_out_keeps_one_sigma(files, tmp_path):
    """--noise gaussian, given, is one sigma for the network too; left out, the
    network's map follows the Poisson-Gaussian fit."""
    pytest.importorskip("torch")
    typed = invoke("denoise", files["pg"], "-o", tmp_path / "a.png", "--method", "neural",
                   "--noise", "gaussian")  # fmt: skip
    assert typed.exit_code == 0, typed.output
    assert "poisson-gaussian" not in typed.stderr and "sigma" in typed.stderr
    default = invoke("denoise", files["pg"], "-o", tmp_path / "b.png", "--method", "neural")
    assert default.exit_code == 0 and "poisson-gaussian" in default.stderr


def test_estimate_noise_bad_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    result = invoke("estimate-noise", bad)
    assert (
        result.exit_code == 1
        and result.stderr.startswith("Error: ")
        and "Traceback" not in result.output
    )


def test_denoise_noise_auto_and_params(files, tmp_path, clean_rgb):
    noisy = read_image(files["pg"]).pixels
    out = tmp_path / "auto.png"
    result = invoke("denoise", files["pg"], "--noise", "auto", "-o", out)
    assert result.exit_code == 0, result.output
    assert "noise poisson-gaussian" in result.stderr and "(estimated)" in result.stderr
    expected = nlmeans.denoise(noisy, channel_axis=-1, noise="auto")
    np.testing.assert_array_equal(read_image(out).pixels, expected)
    out = tmp_path / "given.png"
    result = invoke("denoise", files["pg"], "--noise-params", f"{A},{B}", "-o", out)
    assert result.exit_code == 0, result.output
    assert "(given)" in result.stderr
    expected = nlmeans.denoise(noisy, channel_axis=-1, noise=NoiseModel("poisson-gaussian", A, B))
    np.testing.assert_array_equal(read_image(out).pixels, expected)
    # White noise under --noise auto: the Gaussian path.
    out = tmp_path / "white_out.png"
    result = invoke("denoise", files["white"], "--noise", "auto", "-o", out)
    assert result.exit_code == 0, result.output
    assert "noise poisson" not in result.stderr


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["--noise-params", "0.01"], 2, "has 1 number"),
        (["--noise-params", "0.01,x"], 2, "not a list of numbers"),
        (["--noise-params", "-0.01,0.001"], 2, "a must be non-negative"),
        (["--noise-params", "0.01,-0.001"], 2, "b must be non-negative"),
        (["--noise-params", "0.01,0.001", "--sigma", "0.1"], 2, "--sigma or --noise-params"),
        (["--noise-params", "0.01,0.001", "--noise", "auto"], 2, "--noise or --noise-params"),
        (["--noise", "auto", "--sigma", "0.1"], 2, "cannot be combined"),
        (["--noise", "poisson"], 2, "poisson"),
        (["--noise-params", "0.01,0.001,0.01,0.001"], 1, "2 channel(s) but"),
        # estimate-noise's text is in gray levels: fed back, it flattened the image
        (["--noise-params", "2.532,3.494"], 1, "variances on the [0, 1] scale"),
        (["--noise-params", "1_0,0"], 2, "not a list of numbers"),
    ],
)
def test_denoise_noise_errors(files, args, code, fragment):
    result = invoke("denoise", files["pg"], *args)
    assert result.exit_code == code, result.output
    assert fragment in _flat(result.stderr)
    assert "Traceback" not in result.output
    assert not files["pg"].with_name("pg_denoised.png").exists()


def test_estimate_noise_of_float_counts_speaks_in_their_values(tmp_path):
    # photon counts stored as float: no black at 0 and white at 1
    rng = np.random.default_rng(3)
    counts = np.tile(np.linspace(200, 3800, 96), (96, 1))
    noisy = (40 * rng.poisson(counts / 40) + rng.normal(0, 40, counts.shape)).astype(np.float32)
    write_image(tmp_path / "counts.tif", noisy)
    result = invoke(
        "estimate-noise",
        tmp_path / "counts.tif",
        "--model",
        "poisson-gaussian",
        "--plot",
        tmp_path / "plot.png",
    )
    assert result.exit_code == 0, result.output
    line = result.stdout.splitlines()[0]
    assert "Y on the data's own scale" in line and "the brightest" in line
    brightest = float(line.split(" to ")[1].split(" ")[0])
    assert 300 < brightest < 500  # sqrt(40 * 3800 + 1600) = 392
    assert (tmp_path / "plot.png").is_file()
    # its --json numbers, on the file's own scale, go back into --noise-params
    result = invoke("estimate-noise", tmp_path / "counts.tif", "--json")
    fitted = json.loads(result.stdout)
    pairs = f"{fitted['a'][0]},{fitted['b'][0]}"
    result = invoke(
        "denoise", tmp_path / "counts.tif", "--noise-params", pairs, "-o", tmp_path / "out.tif"
    )
    assert result.exit_code == 0, result.output


def test_estimate_noise_prints_before_a_plot_that_fails(files, tmp_path):
    (tmp_path / "folder.png").mkdir()
    result = invoke("estimate-noise", files["gray"], "--plot", tmp_path / "folder.png", "-f")
    assert result.exit_code == 1
    assert "poisson-gaussian" in result.stdout or "gaussian" in result.stdout


def test_auto_model_ignores_constant_channels(clean_rgb):
    rng = np.random.default_rng(4)
    green = clean_rgb[..., 1]
    pg = green + np.sqrt(A * green + B) * rng.standard_normal(green.shape)
    rgb = np.zeros(green.shape + (3,))
    rgb[..., 1] = pg  # one fluorescence channel saved as RGB
    assert nlmeans.estimate_noise(pg).kind == "poisson-gaussian"
    assert nlmeans.estimate_noise(rgb, channel_axis=-1).kind == "poisson-gaussian"
