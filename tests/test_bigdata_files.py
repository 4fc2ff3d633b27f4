"""Big images on disk: lazy TIFF/Zarr/OME-Zarr in, chunk-by-chunk out, resume, a real cluster."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import nlmeans

pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")
tifffile = pytest.importorskip("tifffile")

from nlmeans import bigio  # noqa: E402
from nlmeans_cli.main import app  # noqa: E402

# Fixed parameters (h from the table): the reference needs no estimate.
PARAMS = dict(sigma=0.08, patch_size=3, patch_distance=3)
CLI_PARAMS = ["--sigma", "0.08", "--patch-size", "3", "--patch-distance", "3"]


def _noisy(rng, shape, dtype=np.uint16):
    clean = np.zeros(shape)
    clean[..., : shape[1] // 2, :] = 0.3
    noisy = np.clip(0.4 + clean + 0.08 * rng.standard_normal(shape), 0, 1)
    if np.dtype(dtype).kind == "u":
        return np.round(noisy * np.iinfo(dtype).max).astype(dtype)
    return noisy.astype(dtype)


def _cli(*args):
    result = CliRunner().invoke(app, ["denoise", *map(str, args)])
    return result


@pytest.fixture()
def gray_tiff(tmp_path, rng):
    image = _noisy(rng, (100, 90))
    path = tmp_path / "big.tif"
    tifffile.imwrite(
        path, image, bigtiff=True, tile=(32, 32), resolution=(4.0, 5.0), resolutionunit=3
    )
    return path, image


def test_tiff_to_zarr_equals_in_memory(gray_tiff, tmp_path):
    path, image = gray_tiff
    out = tmp_path / "out.zarr"
    result = _cli(path, "-o", out, "--chunk-size", 40, *CLI_PARAMS)
    assert result.exit_code == 0, result.output
    stored = zarr.open_array(out, mode="r")
    assert stored.dtype == image.dtype and stored.chunks == (40, 40)
    np.testing.assert_array_equal(stored[:], nlmeans.denoise(image, **PARAMS))
    # Axes and pixel size travel with the data; the done-markers are gone.
    back = bigio.open_big_image(out)
    assert back.axes == "YX" and back.scale == {"X": 0.25, "Y": 0.2}
    assert back.units == {"X": "centimeter", "Y": "centimeter"}
    assert not (out / bigio.DONE_DIR).exists()
    assert path.read_bytes()[:4] in (b"II+\x00", b"MM\x00+")  # the input untouched


def test_force_never_replaces_a_folder_holding_the_input_or_other_files(tmp_path, rng):
    """--force replaces an earlier output, whole: never a folder that holds the
    input, a folder that is not a Zarr store, or a folder named .tif."""
    folder = tmp_path / "p.zarr"
    folder.mkdir()
    source = folder / "big.tif"
    tifffile.imwrite(source, _noisy(rng, (64, 64)), tile=(32, 32))
    other = tmp_path / "other.zarr"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    (tmp_path / "x.tif").mkdir()
    for out, why in (
        (folder, "p.zarr/big.tif is inside it"),
        (other, "is not a Zarr store"),
        (tmp_path / "x.tif", "is a folder, not a TIFF file"),
    ):
        result = _cli(source, "-o", out, "--force", "--chunk-size", 32, *CLI_PARAMS)
        assert result.exit_code == 1 and why in " ".join(result.output.split()), result.output
    assert source.is_file() and (other / "notes.txt").read_text() == "mine"
    # an earlier output is a Zarr store: replaced, as --force says
    out = tmp_path / "out.zarr"
    for _ in range(2):
        result = _cli(source, "-o", out, "--force", "--chunk-size", 32, *CLI_PARAMS)
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("memory", ["0", "1KB"])
def test_a_memory_budget_too_small_for_any_chunk_is_refused(gray_tiff, tmp_path, memory):
    path, _ = gray_tiff
    result = _cli(path, "-o", tmp_path / "out.zarr", "--memory", memory, *CLI_PARAMS)
    assert result.exit_code == 1 and "is too small" in result.output, result.output
    assert not (tmp_path / "out.zarr").exists()


def test_neural_on_a_colour_big_image_names_its_model(tmp_path, rng):
    """The network path on Dask reports the model it runs, as in memory."""
    pytest.importorskip("torch")
    from nlmeans.neural import default_weights_path

    if not default_weights_path(3).is_file():
        pytest.skip("the colour model is not shipped in this checkout")
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, _noisy(rng, (64, 64, 3), np.uint8), photometric="rgb", tile=(32, 32))
    for extra, expected in (
        ([], "method neural (denoiser_color.safetensors)"),
        (["--noise", "poisson-gaussian"], "its per-pixel sigma map given to the network"),
    ):
        out = tmp_path / f"out{len(extra)}.zarr"
        result = _cli(path, "-o", out, "--chunk-size", 64, "--method", "neural", *extra)
        assert result.exit_code == 0, result.output
        assert expected in " ".join(result.output.split()), result.output
        assert zarr.open_array(out, mode="r").shape == (64, 64, 3)
    # an empty channel: the gray model on the others, said so, as in memory
    pixels = _noisy(rng, (64, 64, 3), np.uint8)
    pixels[..., 2] = 0
    tifffile.imwrite(path, pixels, photometric="rgb", tile=(32, 32))
    result = _cli(path, "-o", tmp_path / "empty.zarr", "--chunk-size", 64, "--method", "neural")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "(denoiser.safetensors on each channel that is not constant" in said, said
    assert np.all(zarr.open_array(tmp_path / "empty.zarr", mode="r")[..., 2] == 0)


@pytest.mark.parametrize("colour", (3, 1))
def test_alpha_channel_is_passed_through_as_in_memory(tmp_path, rng, colour):
    """RGBA and gray+alpha TIFFs: the alpha channel is not a colour channel
    (it used to be denoised with the others as a fourth one)."""
    from nlmeans.io import read_image

    pixels = _noisy(rng, (70, 60, colour), np.uint8)
    alpha = np.full((70, 60, 1), 200, np.uint8)
    alpha[:20] = 0
    path = tmp_path / "rgba.tif"
    photometric = "rgb" if colour == 3 else "minisblack"
    tifffile.imwrite(
        path, np.dstack([pixels, alpha]), photometric=photometric, extrasamples=["unassalpha"]
    )
    in_memory = tmp_path / "memory.tif"
    assert _cli(path, "-o", in_memory, *CLI_PARAMS).exit_code == 0
    for out in (tmp_path / "out.zarr", tmp_path / "out.tif"):
        result = _cli(path, "-o", out, "--chunk-size", 32, *CLI_PARAMS)
        assert result.exit_code == 0, result.output
        if colour == 3:
            assert "opponent colour" in result.stderr
        back = bigio.open_big_image(out)
        assert back.alpha
        stored = np.asarray(back.array)
        np.testing.assert_array_equal(stored[..., -1:], alpha)
        np.testing.assert_array_equal(stored, read_image(in_memory).pixels)
    page = tifffile.TiffFile(tmp_path / "out.tif").pages[0]
    assert page.photometric.name == photometric.upper() and tuple(page.extrasamples) == (2,)
    # OME-Zarr stores the channels first (NGFF: channel before space axes),
    # and reads back as the same image
    out = tmp_path / "out.ome.zarr"
    assert _cli(path, "-o", out, "--chunk-size", 32, *CLI_PARAMS).exit_code == 0
    back = bigio.open_big_image(out)
    assert back.axes == "CYX" and back.alpha
    stored = np.moveaxis(np.asarray(back.array), 0, -1)
    np.testing.assert_array_equal(stored, read_image(in_memory).pixels)
    again = tmp_path / "again.tif"  # an OME-Zarr output is an input too
    assert _cli(out, "-o", again, "--chunk-size", 32, *CLI_PARAMS).exit_code == 0
    assert bigio.open_big_image(again).axes == "YXC"


def test_bigtiff_output_keeps_layout_and_resolution(tmp_path, rng):
    image = _noisy(rng, (40, 36, 3), np.uint8)
    src = tmp_path / "colour.tif"
    tifffile.imwrite(src, image, photometric="rgb", resolution=(2.0, 2.0), resolutionunit=2)
    out = tmp_path / "colour_denoised.tif"
    result = _cli(src, "-o", out, "--chunk-size", 20, *CLI_PARAMS)
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert tif.is_bigtiff and page.is_tiled and page.resolution == (2.0, 2.0)
        written = tif.asarray()
    expected = nlmeans.denoise(image, channel_axis=-1, **PARAMS)
    np.testing.assert_array_equal(written, expected)
    assert not bigio.partial_path(out).exists()


def test_volume_bigtiff_keeps_z_spacing(tmp_path, rng):
    image = _noisy(rng, (10, 30, 28), np.float32)
    src = tmp_path / "vol.zarr"
    stored = zarr.open_array(src, mode="w", shape=image.shape, chunks=(5, 30, 28), dtype="f4")
    stored[:] = image
    stored.attrs["nlmeans"] = {"axes": "ZYX", "scale": {"Z": 2.5}, "units": {"Z": "micrometer"}}
    out = tmp_path / "vol.tif"
    result = _cli(src, "-o", out, "--chunk-size", 12, "--sigma", "0.08", "-p", "3", "-r", "2")
    assert result.exit_code == 0, result.output
    back = bigio.open_big_image(out)
    assert back.axes == "ZYX" and back.scale.get("Z") == 2.5
    expected = nlmeans.denoise(image, sigma=0.08, patch_size=3, patch_distance=2)
    np.testing.assert_array_equal(back.array.compute(), expected)


def test_imagej_pixel_size_travels_to_every_output(tmp_path, rng):
    """ImageJ keeps its unit (um) in its metadata, with no TIFF resolution unit:
    X and Y sizes used to be dropped (only inch / centimetre were read)."""
    image = _noisy(rng, (20, 40, 40), np.uint8)
    src = tmp_path / "cells.tif"
    tifffile.imwrite(
        src, image, imagej=True, metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um"},
        resolution=(4.0, 4.0),
    )  # fmt: skip
    want = {"X": 0.25, "Y": 0.25, "Z": 0.5}
    assert bigio.open_big_image(src).scale == want
    for name in ("out.ome.zarr", "out.tif", "out.zarr"):
        result = _cli(src, "-o", tmp_path / name, "--chunk-size", 32, *CLI_PARAMS)
        assert result.exit_code == 0, result.output
        back = bigio.open_big_image(tmp_path / name)
        # OME-Zarr names units as UDUNITS-2 does (the NGFF specification)
        unit = "micrometer" if name.endswith(".ome.zarr") else "um"
        assert back.scale == want and set(back.units.values()) == {unit}, name


def test_ome_tiff_pixel_size_is_read_from_its_xml(tmp_path, rng):
    """OME writers keep the pixel size in the OME-XML (PhysicalSizeX/Y), not in
    the resolution tags: it was lost."""
    src = tmp_path / "cells.ome.tif"
    tifffile.imwrite(
        src, _noisy(rng, (64, 48), np.uint16), ome=True, tile=(32, 32),
        metadata={"axes": "YX", "PhysicalSizeX": 0.7, "PhysicalSizeY": 0.6},
    )  # fmt: skip
    image = bigio.open_big_image(src)
    assert image.scale == {"X": 0.7, "Y": 0.6} and set(image.units.values()) == {"µm"}
    result = _cli(src, "-o", tmp_path / "out.ome.zarr", "--chunk-size", 32, *CLI_PARAMS)
    assert result.exit_code == 0, result.output
    back = bigio.open_big_image(tmp_path / "out.ome.zarr")
    assert back.scale == {"X": 0.7, "Y": 0.6} and set(back.units.values()) == {"micrometer"}


def test_ome_zarr_pyramid_rebuilt(tmp_path, rng):
    image = _noisy(rng, (2, 64, 48))  # c, y, x
    src = tmp_path / "in.ome.zarr"
    group = zarr.open_group(src, mode="w", zarr_format=2)
    group.create_array("0", shape=image.shape, chunks=(1, 32, 32), dtype=image.dtype)[:] = image
    half = image[:, ::2, ::2]
    group.create_array("1", shape=half.shape, chunks=(1, 32, 32), dtype=image.dtype)[:] = half
    axes = [
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"},
    ]
    datasets = [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 0.5, 0.5]}]},
        {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1, 1.0, 1.0]}]},
    ]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    out = tmp_path / "out.ome.zarr"
    result = _cli(src, "-o", out, "--chunk-size", 32, "--color-space", "rgb", *CLI_PARAMS)
    assert result.exit_code == 0, result.output
    written = zarr.open_group(out, mode="r")
    meta = written.attrs["multiscales"][0]
    assert [a["name"] for a in meta["axes"]] == ["c", "y", "x"]
    assert meta["axes"][1]["unit"] == "micrometer"
    scales = [d["coordinateTransformations"][0]["scale"] for d in meta["datasets"]]
    assert scales == [[1.0, 0.5, 0.5], [1.0, 1.0, 1.0]]
    level0 = written["0"][:]
    expected = nlmeans.denoise(image, channel_axis=0, color_space="rgb", **PARAMS)
    np.testing.assert_array_equal(level0, expected)
    mean = level0.astype(np.float64).reshape(2, 32, 2, 24, 2).mean(axis=(2, 4))
    np.testing.assert_array_equal(written["1"][:], np.round(mean).astype(image.dtype))
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = next(iter(Reader(parse_url(str(out)))()))
    assert [level.shape for level in node.data] == [(2, 64, 48), (2, 32, 24)]


def _fail_after(monkeypatch, count: int, exc: BaseException) -> None:
    """Store ``count`` chunks, then raise ``exc`` (Ctrl-C, a full disk...)."""
    real = bigio._store_chunk
    stored = []

    def failing(*args):
        if len(stored) == count:
            raise exc
        stored.append(args[-1])
        return real(*args)

    monkeypatch.setattr(bigio, "_store_chunk", failing)


def test_interrupt_then_resume_computes_only_the_rest(gray_tiff, tmp_path, monkeypatch):
    path, image = gray_tiff
    out = tmp_path / "out.zarr"
    real = bigio._store_chunk
    _fail_after(monkeypatch, 3, KeyboardInterrupt())
    args = (path, "-o", out, "--chunk-size", 32, *CLI_PARAMS)
    result = _cli(*args)
    assert result.exit_code == 130
    assert "--resume" in result.output
    partial = bigio.partial_path(out)
    assert not out.exists() and partial.exists()
    done = sorted(p.name for p in (partial / bigio.DONE_DIR).iterdir())
    assert len(done) == 3  # exactly the chunks completely written

    resumed = []
    monkeypatch.setattr(bigio, "_store_chunk", lambda *a: resumed.append(a[-1]) or real(*a))
    assert _cli(*args).exit_code == 1  # without --resume: refused, nothing touched
    result = _cli(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert len(resumed) == 4 * 3 - 3 and not partial.exists()  # 12 chunks, 3 were done
    np.testing.assert_array_equal(zarr.open_array(out)[:], nlmeans.denoise(image, **PARAMS))


def test_resume_refuses_other_parameters(gray_tiff, tmp_path, monkeypatch):
    path, _ = gray_tiff
    out = tmp_path / "out.zarr"
    monkeypatch.setattr(bigio, "_compute", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    assert _cli(path, "-o", out, "--chunk-size", 32, *CLI_PARAMS).exit_code == 130
    result = _cli(path, "-o", out, "--chunk-size", 32, "--sigma", "0.05", "--resume")
    assert result.exit_code == 1 and "another input" in result.output


def test_resume_refuses_an_input_replaced_at_the_same_path(gray_tiff, tmp_path, monkeypatch):
    path, image = gray_tiff
    out = tmp_path / "out.zarr"
    monkeypatch.setattr(bigio, "_compute", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    assert _cli(path, "-o", out, "--chunk-size", 32, *CLI_PARAMS).exit_code == 130
    monkeypatch.undo()
    # another image under the same name: resumed, the output mixed the two
    tifffile.imwrite(path, 1.0 - image, bigtiff=True, tile=(32, 32))
    result = _cli(path, "-o", out, "--chunk-size", 32, *CLI_PARAMS, "--resume")
    assert result.exit_code == 1 and "another input" in result.output


def test_pyramidal_tiff_reads_its_full_resolution(tmp_path, rng):
    image = (_noisy(rng, (96, 80)) * 65535).astype(np.uint16)
    path = tmp_path / "slide.ome.tif"
    with tifffile.TiffWriter(path) as tif:  # a whole-slide layout: levels as SubIFDs
        tif.write(image, subifds=1, tile=(32, 32), metadata={"axes": "YX"})
        tif.write(image[::2, ::2], subfiletype=1, tile=(32, 32))
    out = tmp_path / "out.zarr"
    result = _cli(path, "-o", out, "--chunk-size", 32, *CLI_PARAMS)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(zarr.open_array(out)[:], nlmeans.denoise(image, **PARAMS))


def test_output_inside_the_input_store_is_refused(tmp_path, rng):
    image = _noisy(rng, (40, 40))
    src = tmp_path / "in.zarr"
    zarr.open_array(src, mode="w", shape=image.shape, chunks=(20, 20), dtype=image.dtype)[:] = image
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    result = _cli(src, "-o", src / "sub.zarr", "--chunk-size", 32, *CLI_PARAMS)
    assert result.exit_code == 1 and "inside the input store" in result.output
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before


def test_a_full_disk_says_how_to_go_on(gray_tiff, tmp_path, monkeypatch):
    import errno

    path, _ = gray_tiff
    out = tmp_path / "out.zarr"
    _fail_after(monkeypatch, 2, OSError(errno.ENOSPC, "No space left on device"))
    result = _cli(path, "-o", out, "--chunk-size", 32, *CLI_PARAMS)
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "the disk is full" in text and "--resume" in text and "Traceback" not in text
    assert bigio.partial_path(out).exists()


def test_bad_workers_refused_before_reading(gray_tiff, tmp_path, monkeypatch):
    path, _ = gray_tiff
    monkeypatch.setattr(bigio, "open_big_image", lambda *a, **k: 1 / 0)  # never reached
    result = _cli(path, "-o", tmp_path / "out.zarr", "--workers", "0", *CLI_PARAMS)
    assert result.exit_code == 2 and "--workers must be at least 1" in " ".join(
        result.output.split()
    )


def test_memory_sizes_in_bytes(tmp_path):
    from nlmeans_cli._bigdata import parse_memory

    assert parse_memory("2GB") == 2 * 10**9 and parse_memory("1.5GiB") == 1610612736
    assert parse_memory("2048B") == parse_memory("2048b") == 2048  # a KeyError traceback
    with pytest.raises(typer.BadParameter):
        parse_memory("1i")


def test_corrupt_chunk_is_one_error(tmp_path, rng):
    image = _noisy(rng, (64, 64))
    src = tmp_path / "in.zarr"
    stored = zarr.open_array(src, mode="w", shape=image.shape, chunks=(32, 32), dtype=image.dtype)
    stored[:] = image
    chunk = next(p for p in (src / "c").rglob("*") if p.is_file())
    chunk.write_bytes(b"not a chunk")
    out = tmp_path / "out.zarr"
    result = _cli(src, "-o", out, "--chunk-size", 32, *CLI_PARAMS)
    assert result.exit_code == 1
    assert "cannot read the chunk" in result.output and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--chunk-size", "3"], "smaller than the halo"),
        (["--scheduler", "nonsense://nowhere"], "cannot reach the Dask scheduler"),
    ],
)
def test_bad_big_data_options(gray_tiff, tmp_path, extra, message):
    path, _ = gray_tiff
    result = _cli(path, "-o", tmp_path / "out.zarr", *CLI_PARAMS, *extra)
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        ("-1,0.001", 2, "Invalid value for --noise-params: a must be non-negative"),
        ("0.01,0.001,0.01,0.001", 1, "--noise-params gives 2 channel(s) but"),
    ],
)
def test_bad_noise_params_on_a_big_image_name_the_option(
    gray_tiff, tmp_path, params, code, message
):
    path, _ = gray_tiff
    result = _cli(path, "-o", tmp_path / "out.zarr", "--noise-params", params)
    assert result.exit_code == code and message in " ".join(result.output.split())
    assert "Traceback" not in result.output and not (tmp_path / "out.zarr").exists()


def test_existing_zarr_needs_force(gray_tiff, tmp_path):
    path, image = gray_tiff
    out = tmp_path / "out.zarr"
    out.mkdir()
    result = _cli(path, "-o", out, "--chunk-size", 32, *CLI_PARAMS)
    assert result.exit_code == 1 and "--force" in result.output
    result = _cli(path, "-o", out, "--chunk-size", 32, "--force", *CLI_PARAMS)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(zarr.open_array(out)[:], nlmeans.denoise(image, **PARAMS))


def test_missing_dask_names_the_extra(gray_tiff, tmp_path, monkeypatch):
    path, _ = gray_tiff
    monkeypatch.setitem(sys.modules, "dask.array", None)
    result = _cli(path, "-o", tmp_path / "out.zarr", *CLI_PARAMS)
    assert result.exit_code == 1 and 'pip install "nlmeans[dask]"' in result.output


# --------------------------------------------------------------------------
# A real cluster: worker processes
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        distributed.Client(local) as client,
    ):
        yield client


def test_cluster_survives_a_killed_worker(cluster, tmp_path, rng):
    """A worker process killed mid-run: Dask reschedules, the output is still exact."""
    import dask.array as da

    image = _noisy(rng, (128, 96))
    result = nlmeans.denoise(da.from_array(image, chunks=32), **PARAMS)
    pids = list(cluster.run(os.getpid).values())
    killed = []

    def kill_one():
        if not killed:
            killed.append(pids[0])
            os.kill(pids[0], signal.SIGKILL)

    like = bigio.BigImage(result, "YX", "zarr")
    out = bigio.write_big_image(
        result, tmp_path / "out.zarr", like=like, client=cluster, on_chunk=kill_one
    )
    assert killed
    np.testing.assert_array_equal(zarr.open_array(out)[:], nlmeans.denoise(image, **PARAMS))


def test_cli_on_a_running_scheduler(cluster, gray_tiff, tmp_path):
    path, image = gray_tiff
    out = tmp_path / "out.ome.zarr"
    address = cluster.scheduler.address
    result = _cli(path, "-o", out, "--chunk-size", 48, "--scheduler", address, *CLI_PARAMS)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(zarr.open_group(out)["0"][:], nlmeans.denoise(image, **PARAMS))
