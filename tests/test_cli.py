"""The ``nlmeans`` command line: every command and option, errors without tracebacks.

Most tests drive the Typer app in-process with ``typer.testing.CliRunner``
(stdout and stderr kept apart); a few run the installed ``nlmeans`` script in
a subprocess. Images are 48x48 crops of ``sample_images/`` and searches are
small, so that the whole file runs in seconds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import nlmeans
from nlmeans.io import read_image, write_image
from nlmeans_cli.main import app

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
FAST = ["--patch-size", "3", "--patch-distance", "2"]

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _noisy(clean: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    top = np.iinfo(clean.dtype).max
    noisy = clean / top + np.random.default_rng(seed).normal(0, sigma, clean.shape)
    return np.clip(np.rint(noisy * top), 0, top).astype(clean.dtype)


@pytest.fixture(scope="module")
def crops():
    gray = read_image(SAMPLES / "camera.png").pixels[60:108, 100:148]
    rgb = read_image(SAMPLES / "astronaut.png").pixels[80:128, 100:148]
    rgb16 = read_image(SAMPLES / "coffee16.png").pixels[40:88, 60:108]
    gray16 = read_image(SAMPLES / "brick16.png").pixels[:48, :48]
    alpha = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (48, 1))
    return {
        "gray": _noisy(gray, 0.06),
        "rgb": _noisy(rgb, 0.06, 1),
        "rgb16": _noisy(rgb16, 0.06, 2),
        "gray16": _noisy(gray16, 0.06, 3),
        "rgba": np.concatenate([_noisy(rgb, 0.06, 4), alpha[..., None]], axis=2),
        "gray_alpha": np.stack([_noisy(gray, 0.06, 5), alpha], axis=2),
        "float": (_noisy(gray, 0.06, 6) / 255.0).astype(np.float32),
    }


@pytest.fixture()
def images(tmp_path, crops):
    folder = tmp_path / "in"
    folder.mkdir()
    paths = {}
    for name, ext in [
        ("gray", ".png"),
        ("rgb", ".png"),
        ("rgb16", ".png"),
        ("gray16", ".png"),
        ("rgba", ".png"),
        ("gray_alpha", ".png"),
        ("float", ".tif"),
    ]:
        paths[name] = write_image(folder / f"{name}{ext}", crops[name])
    paths["jpeg"] = write_image(folder / "photo.jpg", crops["rgb"])
    return paths


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def _flat(text: str) -> str:
    """Text of a (Rich-boxed, wrapped) message on one line."""
    return " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


def _assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = _error_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""


# --------------------------------------------------------------------------- general


def test_help_everywhere():
    for args in ([], ["--help"], ["-h"]):
        result = invoke(*args)
        assert "denoise" in result.output and "compare" in result.output
    for command in ("denoise", "compare", "train-neural", "estimate-sigma", "explain"):
        for flag in ("-h", "--help"):
            result = invoke(command, flag)
            assert result.exit_code == 0, result.output
            assert "Usage" in result.output
            # Rich reads "[cuda]" as markup: an unescaped extra vanishes from the hint.
            assert 'install "nlmeans")' not in result.output
    assert "divide" in invoke("denoise", "-h").output  # the >1 policy is documented
    assert '"nlmeans[cuda]"' in invoke("denoise", "-h").output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"nlmeans {nlmeans.__version__}"


def test_shell_completion_is_available():
    assert "--install-completion" in invoke("--help").output


def test_cli_import_is_light():
    code = (
        "import sys, nlmeans_cli.main; "
        "print(sorted(m for m in ('torch', 'numba', 'numpy', 'nlmeans', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- denoise


def test_denoise_gray_defaults(images):
    src = images["gray"]
    result = invoke("denoise", src, *FAST)
    assert result.exit_code == 0, result.output
    dst = src.with_name("gray_denoised.png")
    assert result.stdout.strip() == str(dst)
    assert (
        "sigma" in result.stderr
        and "patch 3x3, search 5x5" in result.stderr
        and "estimated" in result.stderr
    )
    out = read_image(dst)
    original = read_image(src)
    assert (
        out.pixels.dtype == np.uint8
        and out.pixels.shape == original.pixels.shape
        and out.format == "PNG"
    )
    # exactly what the library gives with the parameters it reports
    params = nlmeans.resolve_parameters(original.pixels, patch_size=3, patch_distance=2)
    expected = nlmeans.denoise(
        original.pixels, h=params.h, sigma=params.sigma, patch_size=3, patch_distance=2
    )
    np.testing.assert_array_equal(out.pixels, expected)
    assert f"h {params.h:.5f}" in result.stderr


@pytest.mark.parametrize(
    "name, mode, dtype",
    [("rgb16", "rgb", np.uint16), ("gray16", "gray", np.uint16), ("rgb", "rgb", np.uint8)],
)
def test_denoise_keeps_depth_and_channels(images, name, mode, dtype):
    src = images[name]
    result = invoke("denoise", src, *FAST)
    assert result.exit_code == 0, result.output
    out = read_image(src.with_name(f"{name}_denoised.png"))
    assert out.mode == mode and out.pixels.dtype == dtype
    original = read_image(src).pixels
    assert not np.array_equal(out.pixels, original)
    if dtype == np.uint16:
        assert "/65535" in result.stderr
        assert len(np.unique(out.pixels)) > 256


@pytest.mark.parametrize("name", ["rgba", "gray_alpha"])
def test_alpha_is_passed_through_untouched(images, name):
    src = images[name]
    result = invoke("denoise", src, *FAST)
    assert result.exit_code == 0, result.output
    out = read_image(src.with_name(f"{name}_denoised.png"))
    original = read_image(src)
    assert out.has_alpha and out.mode == original.mode
    np.testing.assert_array_equal(out.pixels[..., -1], original.pixels[..., -1])
    assert not np.array_equal(out.pixels[..., :-1], original.pixels[..., :-1])


def test_float_tiff_and_jpeg_keep_their_format(images):
    result = invoke("denoise", images["float"], images["jpeg"], *FAST)
    assert result.exit_code == 0, result.output
    tif = read_image(images["float"].with_name("float_denoised.tif"))
    assert tif.format == "TIFF" and tif.pixels.dtype == np.float32
    jpg = read_image(images["jpeg"].with_name("photo_denoised.jpg"))
    assert jpg.format == "JPEG" and jpg.mode == "rgb"


def test_jpeg_named_png(images):
    disguised = images["jpeg"].with_name("disguised.png")
    disguised.write_bytes(images["jpeg"].read_bytes())
    result = invoke("denoise", disguised, *FAST)
    assert result.exit_code == 0, result.output
    assert "is a JPEG image despite its name" in result.stderr
    out = disguised.with_name("disguised_denoised.png")
    assert out.read_bytes().startswith(b"\x89PNG")  # the output is what its name says


@pytest.mark.parametrize(
    "name, out, fragment",
    [
        ("rgba", "x.jpg", "JPEG cannot store an alpha channel"),
        ("gray_alpha", "x.jpeg", "JPEG cannot store an alpha channel"),
        ("rgb16", "x.jpg", "JPEG holds 8-bit samples only"),
        ("float", "x.png", "PNG cannot store float samples"),
        ("rgb", "x.bmp", "cannot tell the image format"),
        ("rgb", "noext", "cannot tell the image format"),
    ],
)
def test_denoise_refuses_an_output_format_before_denoising(images, tmp_path, name, out, fragment):
    result = invoke("denoise", images[name], "-o", tmp_path / out)
    _assert_one_line_error(result, fragment)
    assert "method fast" not in result.stderr  # the file's line comes only once it can be written
    assert not (tmp_path / out).exists()


def test_denoise_options(images, tmp_path):
    src = images["gray"]
    out = tmp_path / "custom.tif"
    result = invoke(
        "denoise",
        src,
        "-o",
        out,
        "--method",
        "exact",
        "--h",
        "0.05",
        "--sigma",
        "0.02",
        "--patch-size",
        "3",
        "--patch-distance",
        "1",
        "--threads",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert (
        "method exact" in result.stderr
        and "h 0.05000" in result.stderr
        and "(given)" in result.stderr
    )
    written = read_image(out)
    assert written.format == "TIFF" and written.pixels.dtype == np.uint8
    expected = nlmeans.denoise(
        read_image(src).pixels, method="exact", h=0.05, sigma=0.02, patch_size=3, patch_distance=1
    )
    np.testing.assert_array_equal(written.pixels, expected)
    result = invoke(
        "denoise", src, "-m", "patchwise", "-p", "3", "-r", "1", "-d", tmp_path / "new" / "dir"
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "dir" / "gray_denoised.png").is_file()


def test_denoise_color_space(images, tmp_path):
    src = images["rgb"]
    pixels = read_image(src).pixels
    out = tmp_path / "opp.png"
    result = invoke(
        "denoise", src, "-o", out, *FAST, "--sigma", "0.06", "--h", "0.05", "--h-chroma", "0.1"
    )
    assert result.exit_code == 0, result.output
    assert "opponent colour (h_chroma 0.10000)" in result.stderr
    expected = nlmeans.denoise(
        pixels, channel_axis=-1, patch_size=3, patch_distance=2, sigma=0.06, h=0.05, h_chroma=0.1
    )
    np.testing.assert_array_equal(read_image(out).pixels, expected)
    out = tmp_path / "rgb.png"
    result = invoke("denoise", src, "-o", out, *FAST, "--sigma", "0.06", "--color-space", "rgb")
    assert result.exit_code == 0, result.output
    assert "joint RGB" in result.stderr
    expected = nlmeans.denoise(
        pixels, channel_axis=-1, patch_size=3, patch_distance=2, sigma=0.06, color_space="rgb"
    )
    np.testing.assert_array_equal(read_image(out).pixels, expected)
    # Automatic: the opponent path with the fitted chrominance h.
    result = invoke("denoise", src, "-o", tmp_path / "auto.png")
    assert result.exit_code == 0, result.output
    assert "opponent colour" in result.stderr


def test_denoise_color_space_errors(images):
    result = invoke("denoise", images["gray"], "--color-space", "opponent")
    _assert_one_line_error(result, "3 colour channels")
    result = invoke("denoise", images["rgb"], "--color-space", "rgb", "--h-chroma", "0.1")
    _assert_one_line_error(result, "h_chroma")
    result = invoke("denoise", images["rgb"], "--color-space", "lab")
    assert result.exit_code == 2
    result = invoke("denoise", images["rgb"], "--h-chroma", "30")
    assert result.exit_code == 2 and "divide gray levels by 255" in _flat(result.stderr)
    assert not images["rgb"].with_name("rgb_denoised.png").exists()


def test_values_above_one_are_refused(images):
    for option in ("--sigma", "--h"):
        result = invoke("denoise", images["gray"], option, "25")
        assert result.exit_code == 2
        message = _flat(result.stderr)
        assert "divide gray levels by 255" in message and "65535" in message and "[0, 1]" in message
    assert not images["gray"].with_name("gray_denoised.png").exists()


def test_library_errors_are_one_line(images):
    result = invoke("denoise", images["gray"], "--patch-size", "4")
    _assert_one_line_error(result, "patch_size")
    result = invoke("denoise", images["gray"], "--method", "neural", "--h", "0.1")
    _assert_one_line_error(result, "does not apply")


def test_neural_method(images):
    pytest.importorskip("torch")
    from nlmeans.neural import default_weights_path

    result = invoke("denoise", images["gray"], "--method", "neural")
    if default_weights_path().is_file():
        assert result.exit_code == 0, result.output
        assert read_image(images["gray"].with_name("gray_denoised.png")).pixels.dtype == np.uint8
    else:
        assert result.exit_code == 1
        errors = [line for line in _error_lines(result) if line.startswith("Error:")]
        assert len(errors) == 1 and "weights" in errors[0]
        assert "Traceback" not in result.output


def test_neural_names_the_model_it_runs(images):
    """Gray and gray+alpha images run the gray model, RGB(A) the colour model
    (white noise: not the camera model)."""
    pytest.importorskip("torch")
    from nlmeans.neural import default_weights_path

    if not default_weights_path(3).is_file():
        pytest.skip("the colour model is not shipped in this checkout")
    expected = {
        "gray": "denoiser.safetensors",
        "gray_alpha": "denoiser.safetensors",
        "rgb": "denoiser_color.safetensors",
        "rgba": "denoiser_color.safetensors",
    }
    for name, weights in expected.items():
        result = invoke("denoise", images[name], "--method", "neural")
        assert result.exit_code == 0, result.output
        assert f"method neural ({weights})" in _flat(result.output), (name, result.output)


def test_neural_ensemble_option(images, tmp_path):
    """--ensemble: the library's ensemble=True, said on the file's line; refused
    (exit 2, before anything is written) with a classical method."""
    pytest.importorskip("torch")
    out = tmp_path / "rgb_ensemble.png"
    result = invoke("denoise", images["rgb"], "--method", "neural", "--ensemble", "-o", out)
    assert result.exit_code == 0, result.output
    assert "the mean over 8 flips and rotations" in _flat(result.output)
    image = read_image(images["rgb"])
    expected = nlmeans.denoise(image.pixels, method="neural", channel_axis=-1, ensemble=True)
    np.testing.assert_array_equal(read_image(out).pixels, expected)
    refused = invoke("denoise", images["rgb"], "--ensemble", "-o", tmp_path / "no.png")
    assert refused.exit_code == 2 and "--ensemble applies to --method neural" in _flat(
        refused.output
    )
    assert not (tmp_path / "no.png").exists()


def test_folders_and_globs(images, tmp_path):
    folder = images["gray"].parent
    (folder / "old_denoised.png").write_bytes(images["gray"].read_bytes())
    out = tmp_path / "out"
    result = invoke("denoise", folder, str(folder / "*.jpg"), "--out-dir", out, *FAST)
    assert result.exit_code == 0, result.output
    produced = sorted(p.name for p in out.iterdir())
    # folder and glob overlap (each file once); *_denoised files of a folder are left out
    assert produced == sorted(
        [
            "gray_denoised.png",
            "rgb_denoised.png",
            "rgb16_denoised.png",
            "gray16_denoised.png",
            "rgba_denoised.png",
            "gray_alpha_denoised.png",
            "float_denoised.tif",
            "photo_denoised.jpg",
        ]
    )
    assert "8 of 8 image(s) denoised" in result.stderr
    # stdout: the outputs' paths, one per line, nothing else
    assert sorted(Path(line).name for line in result.stdout.splitlines()) == produced
    result = invoke("denoise", str(tmp_path / "nothing*.png"))
    _assert_one_line_error(result, "no image or video file matches")


def test_output_option_conflicts(images, tmp_path):
    result = invoke("denoise", images["gray"], images["rgb"], "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "--out-dir" in _flat(result.stderr)
    result = invoke("denoise", images["gray"], "-o", tmp_path / "x.png", "--out-dir", tmp_path)
    assert result.exit_code == 2
    result = invoke("denoise", images["gray"], "-o", tmp_path / "no" / "x.png")
    assert result.exit_code == 2 and "does not exist" in _flat(result.stderr)


def test_refuses_to_overwrite(images):
    src = images["gray"]
    dst = src.with_name("gray_denoised.png")
    dst.write_bytes(b"precious")
    result = invoke("denoise", src, *FAST)
    _assert_one_line_error(result, "already exists", "--force")
    assert dst.read_bytes() == b"precious"
    result = invoke("denoise", src, "--force", *FAST)
    assert result.exit_code == 0
    assert read_image(dst).pixels.shape == (48, 48)


def test_never_overwrites_the_input(images):
    src = images["gray"]
    before = src.read_bytes()
    for extra in ([], ["--force"]):
        result = invoke("denoise", src, "-o", src, *extra, *FAST)
        _assert_one_line_error(result, "input file")
    assert src.read_bytes() == before
    assert not [p for p in src.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"", "empty"),
        (b"just some text\n", "not a PNG, TIFF or JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated"),
    ],
    ids=["zero-byte", "text", "truncated"],
)
def test_bad_input_file_is_one_line(tmp_path, content, fragment):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    result = invoke("denoise", bad)
    _assert_one_line_error(result, "bad.png", fragment)
    assert list(tmp_path.iterdir()) == [bad]


def test_batch_goes_on_after_a_bad_file(images):
    folder = images["gray"].parent
    (folder / "a_corrupt.png").write_bytes(images["gray"].read_bytes()[:100])
    result = invoke(
        "denoise",
        folder / "a_corrupt.png",
        images["gray"],
        folder / "missing.png",
        images["rgb"],
        *FAST,
    )
    assert result.exit_code == 1
    errors = [line for line in _error_lines(result) if line.startswith("Error:")]
    assert len(errors) == 2
    assert "a_corrupt.png" in errors[1] or "a_corrupt.png" in errors[0]
    assert any("missing.png" in e for e in errors)
    assert "Traceback" not in result.output
    assert (folder / "gray_denoised.png").is_file() and (folder / "rgb_denoised.png").is_file()
    assert "2 of 4 image(s) denoised" in result.stderr and "failed" in result.stderr
    assert [Path(line).name for line in result.stdout.splitlines()] == [
        "gray_denoised.png",
        "rgb_denoised.png",
    ]


def test_output_name_clash(tmp_path, crops):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        write_image(tmp_path / sub / "x.png", crops["gray"])
    result = invoke(
        "denoise", tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", "-d", tmp_path / "out", *FAST
    )
    assert result.exit_code == 1
    assert "would also be written" in result.stderr


def test_force_never_replaces_another_input_of_the_batch(tmp_path, crops):
    # a.png's output is a_denoised.png, which is also an input: with --force it
    # was replaced before it was read (and then denoised again)
    write_image(tmp_path / "a.png", crops["gray"])
    write_image(tmp_path / "a_denoised.png", crops["gray"][::-1])
    before = (tmp_path / "a_denoised.png").read_bytes()
    result = invoke("denoise", tmp_path / "a.png", tmp_path / "a_denoised.png", "--force", *FAST)
    assert result.exit_code == 1
    assert "is another input of this run" in result.stderr
    assert (tmp_path / "a_denoised.png").read_bytes() == before
    assert (tmp_path / "a_denoised_denoised.png").is_file()  # the other input went on
    # the same through a symbolic link to that input
    (tmp_path / "a_denoised_denoised.png").unlink()
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "a_denoised.png").symlink_to(tmp_path / "a_denoised.png")
    write_image(tmp_path / "link" / "a.png", crops["gray"])
    result = invoke(
        "denoise", tmp_path / "link" / "a.png", tmp_path / "a_denoised.png", "--force", *FAST
    )
    assert result.exit_code == 1 and "is another input" in result.stderr
    assert (tmp_path / "a_denoised.png").read_bytes() == before


def test_ctrl_c_exits_130(images, monkeypatch):
    import nlmeans.io

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nlmeans.io, "read_image", interrupted)
    result = invoke("denoise", images["gray"])
    assert result.exit_code == 130
    assert "Interrupted" in result.stderr and "Traceback" not in result.output


# --------------------------------------------------------------------------- compare


def test_compare_table_and_report(images, tmp_path):
    report = tmp_path / "report"
    result = invoke(
        "compare",
        images["gray"],
        images["rgb"],
        "--sigma",
        "25",
        "--methods",
        "fast,opencv",
        "--report",
        report,
        "--threads",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert "sigma = 25/255" in result.stdout and "mean of 2 images" in result.stdout
    for name in ("fast", "opencv", "PSNR (dB)", "SSIM", "gray.png"):
        assert name in result.stdout
    for name in (
        "results.json",
        "results.csv",
        "report.md",
        "montages/gray_sigma25.png",
        "montages/rgb_sigma25.png",
    ):
        assert (report / name).is_file(), name
    data = json.loads((report / "results.json").read_text())
    assert {r["method"] for r in data["records"]} == {"fast", "opencv"}
    # the report folder is not overwritten without --force
    again = invoke(
        "compare", images["gray"], "--sigma", "25", "--methods", "opencv", "--report", report
    )
    assert again.exit_code == 1 and "already exists" in again.stderr
    again = invoke(
        "compare",
        images["gray"],
        "--sigma",
        "25",
        "--methods",
        "opencv",
        "--report",
        report,
        "--force",
    )
    assert again.exit_code == 0


def test_compare_json_is_alone_on_stdout(images):
    args = ["compare", images["gray"], "--sigma", "15,50", "--methods", "fast,skimage", "--json"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # nothing but JSON
    assert data["sigmas"] == [15.0, 50.0]
    assert data["methods"] == ["fast", "skimage-same", "skimage-best"]
    assert len(data["records"]) == 6 and all(r["status"] == "ok" for r in data["records"])
    psnr = {(a["sigma"], a["method"]): a["psnr"] for a in data["averages"]}
    assert psnr[(15.0, "fast")] > psnr[(50.0, "fast")]
    seeded = json.loads(invoke(*args, "--seed", "3").stdout)
    assert seeded["seed"] == 3
    assert seeded["records"][0]["psnr"] != data["records"][0]["psnr"]


def test_compare_optional_methods(images, monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # as if bm3d were not installed
    result = invoke("compare", images["gray"], "--sigma", "25", "--methods", "opencv,bm3d,neural")
    assert result.exit_code == 0, result.output
    assert "not installed" in result.stdout
    assert "bm3d: not installed" in result.stderr
    if importlib.util.find_spec("torch") is not None:
        from nlmeans.neural import default_weights_path

        if not default_weights_path().is_file():
            assert "unavailable" in result.stdout


def test_compare_paired(images, crops, tmp_path):
    clean = tmp_path / "clean.png"
    write_image(clean, crops["gray"])
    noisy = tmp_path / "noisy.png"
    write_image(noisy, _noisy(crops["gray"], 0.08, 9))
    result = invoke(
        "compare", "--noisy", noisy, "--clean", clean, "--methods", "fast,skimage-best,opencv"
    )
    assert result.exit_code == 0, result.output
    assert "given noisy images" in result.stdout
    result = invoke("compare", "--noisy", noisy, "--clean", clean, "--methods", "fast", "--json")
    data = json.loads(result.stdout)
    assert data["mode"] == "paired" and data["records"][0]["sigma"] is None
    # One reference for two shots: named twice, kept twice (a repeated noisy file is not).
    shot = tmp_path / "shot2.png"
    write_image(shot, _noisy(crops["gray"], 0.05, 10))
    result = invoke(
        "compare", "--noisy", noisy, "--noisy", shot, "--clean", clean, "--clean", clean,
        "--methods", "fast", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [r["image"] for r in json.loads(result.stdout)["records"]] == ["noisy.png", "shot2.png"]


@pytest.mark.parametrize(
    "with_image, args, fragment",
    [
        (True, ["--methods", "fast,median"], "unknown method"),
        (True, ["--sigma", "300"], "(0, 255]"),
        (True, ["--sigma", "abc"], "numbers"),
        (False, ["--noisy", "x.png"], "go together"),
        (True, ["--noisy", "x.png", "--clean", "y.png"], "not both"),
        (False, ["--noisy", "x.png", "--clean", "y.png", "--sigma", "5"], "synthetic noise"),
        (False, ["--methods", "fast"], "at least one IMAGE"),
    ],
)
def test_compare_usage_errors(images, with_image, args, fragment):
    result = invoke("compare", *([images["gray"]] if with_image else []), *args)
    assert result.exit_code == 2
    assert fragment in _flat(result.stderr)


def test_compare_exits_1_when_a_run_fails(crops, tmp_path):
    """A method that fails on an image stays in the table as "error", and the
    exit status says so (a script cannot read the table)."""
    clean = tmp_path / "clean.tif"
    write_image(clean, (crops["gray"] / 255).astype(np.float32))
    broken = tmp_path / "nan.tif"  # readable, but no method takes NaN
    pixels = (crops["gray"] / 255).astype(np.float32)
    pixels[3, 4] = np.nan
    write_image(broken, pixels)
    result = invoke("compare", "--noisy", broken, "--clean", clean, "--methods", "fast")
    assert result.exit_code == 1
    assert "error" in result.stdout and "1 of 1 runs failed" in _flat(result.stderr)
    assert "Traceback" not in result.output


def test_compare_missing_image(tmp_path):
    result = invoke("compare", tmp_path / "nope.png", "--methods", "fast")
    _assert_one_line_error(result, "no such file")


# --------------------------------------------------------------------------- estimate-sigma


def test_estimate_sigma(tmp_path):
    flat = np.full((64, 64), 0.5)
    noisy = flat + np.random.default_rng(0).normal(0, 20 / 255, flat.shape)
    write_image(tmp_path / "n8.png", np.clip(np.rint(noisy * 255), 0, 255).astype(np.uint8))
    write_image(tmp_path / "n16.png", np.clip(np.rint(noisy * 65535), 0, 65535).astype(np.uint16))
    result = invoke("estimate-sigma", tmp_path / "n8.png", tmp_path / "n16.png")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    value = float(re.search(r"sigma = ([0-9.]+)", lines[0]).group(1))
    assert value == pytest.approx(20 / 255, rel=0.1)
    levels = float(re.search(r"\(([0-9.]+)/255 gray levels\)", lines[0]).group(1))
    assert levels == pytest.approx(value * 255, abs=0.01)
    assert "/65535 gray levels" in lines[1]
    # Float images: an 8-bit equivalent on [0, 1], none on a scale of their own.
    write_image(tmp_path / "unit.tif", noisy.astype(np.float32))
    write_image(tmp_path / "counts.tif", (noisy * 1000).astype(np.float32))
    result = invoke("estimate-sigma", tmp_path / "unit.tif", tmp_path / "counts.tif")
    unit, counts = result.stdout.splitlines()
    assert "/255 if it were 8-bit" in unit and "own scale" in counts and "/255" not in counts


def test_estimate_sigma_bad_file(tmp_path, crops):
    write_image(tmp_path / "good.png", crops["gray"])
    (tmp_path / "bad.png").write_text("nope")
    result = invoke("estimate-sigma", tmp_path / "bad.png", tmp_path / "good.png")
    assert result.exit_code == 1
    assert "good.png: sigma =" in result.stdout
    assert len(_error_lines(result)) == 1 and "bad.png" in result.stderr


# --------------------------------------------------------------------------- explain


def test_explain(images, tmp_path):
    src = images["gray"]
    result = invoke("explain", src, "--at", "10,5", "--patch-size", "3", "--patch-distance", "4")
    assert result.exit_code == 0, result.output
    picture = src.with_name("gray_explain_x10_y5.png")
    assert picture.is_file()
    assert "pixel x=10 y=5" in result.stdout and "effective neighbours" in result.stdout
    assert f"picture: {picture}" in result.stdout
    out = tmp_path / "e.png"
    result = invoke(
        "explain", images["rgb"], "--at", "0,47", "--out", out, "--no-neural", "--h", "0.05"
    )
    assert result.exit_code == 0, result.output
    assert read_image(out).width == 3 * 256 + 2 * 6  # image | window | NLM weights
    assert "h 0.05000" in result.stdout
    again = invoke("explain", images["rgb"], "--at", "0,47", "--out", out, "--no-neural")
    _assert_one_line_error(again, "already exists")
    before = images["rgb"].read_bytes()
    onto = invoke("explain", images["rgb"], "--at", "0,47", "-o", images["rgb"], "--force")
    _assert_one_line_error(onto, "refusing to write onto the input file")
    assert images["rgb"].read_bytes() == before


def test_explain_with_neural_weights(images, tmp_path):
    torch = pytest.importorskip("torch")
    from nlmeans.neural import NonLocalDenoiser, save_weights

    torch.manual_seed(0)
    weights = save_weights(tmp_path / "w.safetensors", NonLocalDenoiser())
    out = tmp_path / "n.png"
    result = invoke(
        "explain", images["gray"], "--at", "20,30", "--weights", weights, "-o", out, "-r", "3"
    )
    assert result.exit_code == 0, result.output
    assert read_image(out).width == 4 * 256 + 3 * 6  # image | window | NLM | attention
    assert "left out" not in result.stderr
    result = invoke(
        "explain", images["gray"], "--at", "20,30", "--weights", tmp_path / "none.safetensors"
    )
    assert result.exit_code == 2


@pytest.mark.parametrize("at", ["48,0", "0,-1", "a,b", "3"])
def test_explain_bad_position(images, at):
    result = invoke("explain", images["gray"], "--at", at)
    assert result.exit_code == 2
    assert "--at" in _flat(result.stderr)


# --------------------------------------------------------------------------- train-neural


@pytest.fixture
def training_folder(tmp_path, crops):
    """Three small gray PNGs to train on (the tests that use it need torch)."""
    pytest.importorskip("torch")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        write_image(data / f"{i}.png", np.rot90(crops["gray"], i).copy())
    return data


def test_train_neural_tiny_run(tmp_path, training_folder):
    data = training_folder
    ckpt = tmp_path / "model.pt"
    args = [
        "train-neural",
        "--data",
        data,
        "--sigma",
        "10,30",
        "--steps",
        "2",
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--patch-size",
        "16",
        "--out",
        ckpt,
        "--seed",
        "1",
        "--threads",
        "1",
    ]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert ckpt.is_file() and "step 1/2" in result.stdout and "resume" in result.stdout
    # an existing checkpoint is not replaced without --force
    again = invoke(*args)
    assert again.exit_code == 2 and "already exists" in _flat(again.stderr)
    weights = tmp_path / "w.safetensors"
    # without --data, the resumed run goes on with the checkpoint's own images
    resumed = invoke("train-neural", "--resume", ckpt, "--export", weights, "--threads", "1")
    assert resumed.exit_code == 0, resumed.output
    assert "step 2/2 (done)" in resumed.stdout and weights.is_file()
    assert "differ" not in resumed.output and "train400" not in resumed.output
    both = invoke("train-neural", "--resume", ckpt, "--init-from", weights, "--threads", "1")
    assert both.exit_code == 2 and "--init-from" in _flat(both.stderr)
    from nlmeans.neural import load_model

    assert load_model(weights).num_parameters() > 0


def test_train_neural_time_budget_grad_clip_and_epoch_length(tmp_path, training_folder):
    data = training_folder
    ckpt = tmp_path / "model.pt"
    result = invoke(
        "train-neural", "--data", data, "--steps", "3", "--steps-per-epoch", "1",
        "--time-budget", "1h", "--grad-clip", "0.5", "--batch-size", "2", "--patch-size",
        "16", "--out", ckpt, "--threads", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    from nlmeans.neural import load_checkpoint

    stored = load_checkpoint(ckpt)
    assert stored["train_settings"]["time_budget"] == 3600.0
    assert stored["train_settings"]["grad_clip"] == 0.5
    assert [h["step"] for h in stored["history"]] == [1, 2, 3]
    for option, value in (("--time-budget", "soon"), ("--grad-clip", "0")):
        bad = invoke("train-neural", "--data", data, option, value, "--out", tmp_path / "x.pt")
        assert bad.exit_code == 2 and option in _flat(bad.stderr), bad.output
        assert not (tmp_path / "x.pt").exists()


def test_train_neural_checks_where_results_go_before_training(tmp_path, training_folder):
    """Each refused before a step is trained (nothing appears, "step" is never printed)."""
    data = training_folder
    (tmp_path / "notes.json").write_text("mine")
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    cases = [
        (["--out", tmp_path / "x.pt", "--export", tmp_path / "x.pt"], "--export", "also the checkpoint"),
        (["--out", tmp_path / "x.pt", "--export", tmp_path / "notes.safetensors"], "--export",
         "notes.json"),
        (["--out", tmp_path / "folder", "--force"], "--out", "is a folder"),
        (["--out", tmp_path / "file" / "x.pt"], "--out", "does not exist"),
        (["--out", tmp_path / "x.pt", "--export", tmp_path / "file" / "w.safetensors"], "--export",
         "does not exist"),
        # a checkpoint named as an image could replace a training image
        (["--out", data / "0.png", "--force"], "--out", "name it .pt"),
        (["--out", tmp_path / "x.safetensors"], "--out", "name it .pt"),
        (["--out", tmp_path / "x.pt", "--export", tmp_path / "w.pt"], "--export",
         "name them .safetensors"),
    ]  # fmt: skip
    for extra, option, fragment in cases:
        result = invoke("train-neural", "--data", data, "--steps", "1", *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert option in _flat(result.stderr) and fragment in _flat(result.stderr), result.stderr
        assert "step" not in result.stdout and not (tmp_path / "x.pt").exists()
    assert (tmp_path / "notes.json").read_text() == "mine"
    assert read_image(data / "0.png").pixels.dtype == np.uint8  # still the image


def test_train_neural_usage_errors(tmp_path):
    result = invoke("train-neural", "--data", tmp_path / "none")
    assert result.exit_code == 2 and "not a folder" in _flat(result.stderr)
    result = invoke("train-neural", "--data", tmp_path, "--sigma", "30,10")
    assert result.exit_code == 2 and "MIN <= MAX" in _flat(result.stderr)
    pytest.importorskip("torch")
    result = invoke(
        "train-neural", "--data", tmp_path, "--noise", "salt", "--out", tmp_path / "m.pt"
    )
    _assert_one_line_error(result, "noise")
    result = invoke("train-neural", "--data", tmp_path, "--noise", "camera", "--channels", "1")
    assert result.exit_code == 2 and "--channels 3" in _flat(result.stderr)
    result = invoke("train-neural", "--data", tmp_path, "--camera-fraction", "1.5")
    assert result.exit_code == 2 and "--camera-fraction" in _flat(result.stderr)
    result = invoke("train-neural", "--data", tmp_path, "--camera-fraction", "0.3")
    assert result.exit_code == 2 and "only to --noise camera" in _flat(result.stderr)


# --------------------------------------------------------------------------- the installed script


def _script() -> Path:
    path = Path(sys.executable).parent / ("nlmeans.exe" if os.name == "nt" else "nlmeans")
    if not path.exists():
        pytest.skip("the nlmeans script is not installed next to this Python")
    return path


def test_installed_script_end_to_end(tmp_path):
    script = _script()
    src = tmp_path / "camera.png"
    src.write_bytes((SAMPLES / "camera.png").read_bytes())
    env = dict(os.environ)
    done = subprocess.run(
        [str(script), "denoise", str(src), "--patch-distance", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "camera_denoised.png"
    assert done.stdout.strip() == str(out)
    assert read_image(out).pixels.shape == (256, 256)
    # a corrupt file: exactly one line on stderr (no traceback, no codec chatter)
    bad = tmp_path / "broken.png"
    bad.write_bytes(src.read_bytes()[:5000])
    done = subprocess.run(
        [str(script), "denoise", str(bad)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"Error: {bad}: truncated PNG file (chunk b'IDAT' is cut off)"
    ]
    assert done.stdout == ""


def test_installed_script_help_and_version():
    # That --help imports neither torch nor numba is checked on sys.modules
    # (test_cli_import_is_light); its time is in the README.
    script = _script()
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "denoise" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "nlmeans", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("nlmeans ")


def test_cli_lists_match_the_library():
    """The CLI keeps its own copies so that --help imports no library: they must agree."""
    from nlmeans._checks import METHODS
    from nlmeans.io import IMAGE_EXTENSIONS
    from nlmeans_cli._common import IMAGE_SUFFIXES
    from nlmeans_cli.denoise import Method

    assert tuple(m.value for m in Method) == METHODS
    assert set(IMAGE_SUFFIXES) == set(IMAGE_EXTENSIONS)
