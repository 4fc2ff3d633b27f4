"""nlmeans.io: lossless round trips, clear read errors, safe (atomic, no-clobber) writes."""

from __future__ import annotations

import functools
import os
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from cli_harness import _huge_jpeg, _huge_tiff
from PIL import Image

from nlmeans import io as nio
from nlmeans.io import (
    ImageReadError,
    ImageWriteError,
    OutputExistsError,
    read_image,
    write_image,
)

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"


def _random(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize(
    "shape, mode, alpha",
    [
        ((7, 9), "gray", False),
        ((7, 9, 2), "gray+alpha", True),
        ((7, 9, 3), "rgb", False),
        ((7, 9, 4), "rgba", True),
    ],
)
def test_roundtrip_is_lossless(tmp_path, ext, dtype, shape, mode, alpha):
    pixels = _random(shape, dtype)
    path = tmp_path / f"x{ext}"
    write_image(path, pixels)
    image = read_image(path)
    assert image.pixels.dtype == dtype
    assert image.pixels.shape == shape
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.has_alpha is alpha
    assert image.mode == mode
    assert image.format == ("PNG" if ext == ".png" else "TIFF")
    assert image.bit_depth == np.dtype(dtype).itemsize * 8


def test_16bit_colour_png_keeps_16_bits_and_rgb_order(tmp_path):
    pixels = np.zeros((3, 4, 3), np.uint16)
    pixels[0, 0] = (65535, 1, 300)  # distinct, needs 16 bits, order-sensitive
    pixels[1, 2] = (0, 40000, 257)
    pixels[2, 3] = (12345, 54321, 65534)
    path = tmp_path / "c16.png"
    write_image(path, pixels)
    raw = path.read_bytes()
    depth, color_type = raw[24], raw[25]  # IHDR bit depth and colour type
    assert (depth, color_type) == (16, 2)
    # OpenCV itself stores BGR: the file must hold R first, so cv2 sees it reversed.
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert bgr.dtype == np.uint16
    assert tuple(bgr[0, 0]) == (300, 1, 65535)
    image = read_image(path)
    assert image.pixels.dtype == np.uint16
    assert tuple(image.pixels[0, 0]) == (65535, 1, 300)
    assert tuple(image.pixels[1, 2]) == (0, 40000, 257)
    np.testing.assert_array_equal(image.pixels, pixels)


def test_16bit_rgba_png_keeps_alpha(tmp_path):
    pixels = _random((5, 6, 4), np.uint16, seed=3)
    write_image(tmp_path / "a.png", pixels)
    image = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(image.pixels, pixels)
    color, alpha = image.split_alpha()
    np.testing.assert_array_equal(alpha, pixels[..., 3])
    np.testing.assert_array_equal(color, pixels[..., :3])


def test_gray_alpha_png_is_a_standard_png(tmp_path):
    pixels = _random((6, 5, 2), np.uint8, seed=4)
    write_image(tmp_path / "la.png", pixels)
    with Image.open(tmp_path / "la.png") as im:
        assert im.mode == "LA"
        np.testing.assert_array_equal(np.asarray(im), pixels)


def test_png_encoder_roundtrip():
    """The PNG encoders (OpenCV; imagecodecs for gray+alpha) give what libpng decodes back."""
    rng = np.random.default_rng(1)
    for dtype in (np.uint8, np.uint16):
        for channels in (1, 2, 3, 4):
            base = np.cumsum(np.cumsum(rng.integers(0, 3, (30, 40, channels)), 0), 1)
            spikes = rng.integers(0, 200, (30, 40, channels)) * (rng.random((30, 1, 1)) < 0.3)
            pixels = (base + spikes).astype(dtype)
            pixels = pixels[..., 0] if channels == 1 else pixels
            data = nio._encode_png(pixels)
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            if channels == 1:
                np.testing.assert_array_equal(decoded, pixels)
            elif channels == 2:
                np.testing.assert_array_equal(decoded[..., 0], pixels[..., 0])
                np.testing.assert_array_equal(decoded[..., 3], pixels[..., 1])
            elif channels == 3:
                np.testing.assert_array_equal(decoded[..., ::-1], pixels)
            else:
                np.testing.assert_array_equal(decoded[..., [2, 1, 0, 3]], pixels)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 6), (5, 6, 3)])
def test_float_tiff_roundtrip(tmp_path, dtype, shape):
    pixels = _random(shape, dtype) * 1.5 - 0.2  # float TIFFs may leave [0, 1]
    write_image(tmp_path / "f.tif", pixels)
    image = read_image(tmp_path / "f.tif")
    assert image.pixels.dtype == dtype
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.max_value == 1.0


def test_planar_tiff_is_channel_last(tmp_path):
    planar = _random((3, 5, 6), np.uint16)
    tifffile.imwrite(tmp_path / "p.tif", planar, photometric="rgb", planarconfig="separate")
    image = read_image(tmp_path / "p.tif")
    np.testing.assert_array_equal(image.pixels, np.moveaxis(planar, 0, -1))


def test_jpeg_roundtrip_and_limits(tmp_path):
    pixels = cv2.GaussianBlur(_random((32, 32, 3), np.uint8), (5, 5), 0)
    write_image(tmp_path / "a.jpg", pixels)
    image = read_image(tmp_path / "a.jpg")
    assert (
        image.format == "JPEG"
        and image.pixels.dtype == np.uint8
        and image.pixels.shape == pixels.shape
    )
    assert np.abs(image.pixels.astype(int) - pixels).mean() < 4
    with pytest.raises(ValueError, match="alpha"):
        write_image(tmp_path / "b.jpg", _random((8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="8-bit"):
        write_image(tmp_path / "c.jpg", _random((8, 8), np.uint16))


def test_jpeg_named_png_is_read_by_content(tmp_path):
    pixels = _random((16, 16), np.uint8)
    write_image(tmp_path / "real.jpg", pixels)
    disguised = tmp_path / "disguised.png"
    disguised.write_bytes((tmp_path / "real.jpg").read_bytes())
    image = read_image(disguised)
    assert image.format == "JPEG"
    assert image.extension_mismatch
    np.testing.assert_array_equal(image.pixels, read_image(tmp_path / "real.jpg").pixels)
    # The name decides the written format: a .png output is a real PNG.
    write_image(tmp_path / "out.png", image.pixels, like=image)
    assert (tmp_path / "out.png").read_bytes().startswith(b"\x89PNG")


_PNG_VARIANTS = [
    # (name, pypng Writer options, depths); "transparent" is a tRNS chunk
    ("gray", {"greyscale": True}, (1, 2, 4, 8, 16)),
    ("gray-trns", {"greyscale": True, "transparent": 1}, (1, 8, 16)),
    ("gray+alpha", {"greyscale": True, "alpha": True}, (8, 16)),
    ("rgb", {"greyscale": False}, (8, 16)),
    ("rgb-trns", {"greyscale": False, "transparent": (1, 2, 3)}, (8, 16)),
    ("rgba", {"greyscale": False, "alpha": True}, (8, 16)),
    ("palette", {}, (1, 2, 4, 8)),
    ("palette-trns", {}, (2, 8)),
]


@pytest.mark.parametrize("interlace", [False, True], ids=["plain", "interlaced"])
@pytest.mark.parametrize(
    "kind, options, depth",
    [
        pytest.param(kind, options, depth, id=f"{kind}-{depth}bit")
        for kind, options, depths in _PNG_VARIANTS
        for depth in depths
    ],
)
def test_png_layouts_decode_like_pypng(tmp_path, kind, options, depth, interlace):
    """Every PNG layout (bit depths 1-16, palettes, tRNS, Adam7) gives pypng's own pixels.

    Expanded as libpng expands them (low bit depths scaled to 8 bits, palettes
    to RGB, tRNS to alpha; a gray image's tRNS too, which OpenCV leaves out
    and nlmeans applies itself).
    """
    import png

    rng = np.random.default_rng(depth)
    width, height = 13, 7
    options = dict(options)
    if kind.startswith("palette"):
        entries = 1 << depth
        colours = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(entries)]
        if kind == "palette-trns":
            colours[: entries // 2] = [
                c + (int(rng.integers(0, 256)),) for c in colours[: entries // 2]
            ]
        options["palette"] = colours
        samples = 1
    else:
        samples = (1 if options["greyscale"] else 3) + options.get("alpha", False)
    top = 1 << depth
    rows = rng.integers(0, top, (height, width * samples))
    rows[0, :samples] = 1 if samples == 1 else [1, 2, 3, 4][:samples]  # where tRNS matches
    path = tmp_path / "variant.png"
    with open(path, "wb") as handle:
        png.Writer(width, height, bitdepth=depth, interlace=interlace, **options).write(
            handle, rows.tolist()
        )

    reader = png.Reader(filename=str(path))
    _, _, pixels, _ = reader.asRGBA8() if depth <= 8 else reader.asRGBA()
    want = np.array([list(row) for row in pixels]).reshape(height, width, 4)
    if kind == "gray":
        want, alpha = want[..., 0], False
    elif kind in ("gray+alpha", "gray-trns"):
        want, alpha = want[..., [0, 3]], True
    elif kind in ("rgb", "palette"):
        want, alpha = want[..., :3], False
    else:
        alpha = True
    image = read_image(path)
    assert image.has_alpha is alpha
    assert image.pixels.dtype == (np.uint16 if depth == 16 else np.uint8)
    np.testing.assert_array_equal(image.pixels, want)


def test_sample_images_are_readable():
    expected = {
        "camera.png": ("gray", 8),
        "astronaut.png": ("rgb", 8),
        "coffee16.png": ("rgb", 16),
        "brick16.png": ("gray", 16),
    }
    for name, (mode, bits) in expected.items():
        image = read_image(SAMPLES / name)
        assert (image.mode, image.bit_depth) == (mode, bits), name
        assert max(image.width, image.height) <= 256
    assert len(np.unique(read_image(SAMPLES / "coffee16.png").pixels)) > 256


# --------------------------------------------------------------------------- read errors


def _png_bytes(pixels):
    return nio._encode_png(pixels)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "empty"),
        (b"hello, this is not an image\n", "content is text"),
        (b"GIF89a" + bytes(40), "GIF"),
        (bytes(range(256)) * 2, "not a PNG, TIFF or JPEG"),
    ],
)
def test_unreadable_content(tmp_path, content, expected):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=expected) as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_and_corrupt_png(tmp_path):
    data = _png_bytes(_random((20, 20), np.uint8))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / "cut.png")
    assert data[37:41] == b"IDAT"  # IHDR ends at byte 33; IDAT's data starts at 41
    broken = bytearray(data)
    broken[45] ^= 0xFF  # inside IDAT: CRC mismatch
    (tmp_path / "crc.png").write_bytes(bytes(broken))
    with pytest.raises(ImageReadError, match=r"checksum error in chunk b'IDAT'"):
        read_image(tmp_path / "crc.png")
    broken = bytearray(data)
    broken[40] ^= 0xFF  # IDAT's type itself: no chunk of that name can exist
    (tmp_path / "type.png").write_bytes(bytes(broken))
    with pytest.raises(ImageReadError, match=r"corrupt PNG file \(invalid chunk type b'IDA"):
        read_image(tmp_path / "type.png")
    (tmp_path / "magic.png").write_bytes(data[:8])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / "magic.png")


def test_truncated_jpeg(tmp_path):
    write_image(tmp_path / "a.jpg", _random((64, 64, 3), np.uint8))
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "head.jpg").write_bytes(data[:3])
    with pytest.raises(ImageReadError, match="JPEG"):
        read_image(tmp_path / "head.jpg")


def test_corrupt_tiff(tmp_path):
    write_image(tmp_path / "a.tif", _random((16, 16), np.uint16))
    data = (tmp_path / "a.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[:12])
    with pytest.raises(ImageReadError, match="TIFF"):
        read_image(tmp_path / "cut.tif")


def test_multipage_tiff_refused(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", _random((3, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(ImageReadError, match="3 images"):
        read_image(tmp_path / "stack.tif")


# --------------------------------------------------------------------------- TIFF colour models


def test_tiff_colour_models_are_converted_or_refused(tmp_path):
    a = _random((16, 16), np.uint8)
    rgb = np.dstack([a, a[::-1], 255 - a])
    # min-is-white (scans, faxes): read as 0 = black, so the output looks the same
    tifffile.imwrite(tmp_path / "white.tif", a, photometric="miniswhite")
    image = read_image(tmp_path / "white.tif")
    np.testing.assert_array_equal(image.pixels, 255 - a)
    assert image.converted_from == "min-is-white"
    # a palette becomes its colours
    table = np.zeros((3, 256), np.uint16)
    table[0], table[1] = np.arange(256) * 257, (255 - np.arange(256)) * 257
    tifffile.imwrite(tmp_path / "palette.tif", a, photometric="palette", colormap=table)
    image = read_image(tmp_path / "palette.tif")
    assert image.mode == "rgb" and image.dtype == np.uint8 and "palette" in image.describe()
    np.testing.assert_array_equal(image.pixels, np.dstack([a, 255 - a, np.zeros_like(a)]))
    # CMYK inks: RGB by (1 - C)(1 - K), as a CMYK JPEG
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "inks.tif")
    image = read_image(tmp_path / "inks.tif")
    assert image.mode == "rgb" and image.converted_from == "CMYK"
    np.testing.assert_array_equal(image.pixels, rgb)
    # Lab: refused, naming the colour model
    Image.fromarray(rgb).convert("LAB").save(tmp_path / "lab.tif")
    with pytest.raises(ImageReadError, match="colour model CIELAB is not supported"):
        read_image(tmp_path / "lab.tif")
    # 1-bit: 0 and 255
    Image.fromarray(a > 128).save(tmp_path / "bits.tif", compression="group4")
    image = read_image(tmp_path / "bits.tif")
    assert image.dtype == np.uint8 and set(np.unique(image.pixels)) <= {0, 255}
    np.testing.assert_array_equal(image.pixels > 0, a > 128)


def test_pillow_palette_and_premultiplied_cmyk_tiffs(tmp_path):
    # Pillow writes colour-map entries as value x 256 (not x 257): still 8-bit
    gray = _random((16, 16), np.uint8)
    paletted = Image.fromarray(gray).convert("P")
    paletted.save(tmp_path / "pillow.tif")
    image = read_image(tmp_path / "pillow.tif")
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image.pixels, np.asarray(paletted.convert("RGB")))
    # CMYK with premultiplied alpha: cyan 128 at alpha 128 is full cyan, red 0
    inks = np.zeros((8, 8, 5), np.uint8)
    inks[..., 0], inks[..., 4] = 128, 128
    tifffile.imwrite(
        tmp_path / "inks.tif",
        inks,
        photometric="separated",
        planarconfig="contig",
        extrasamples=["assocalpha"],
    )
    image = read_image(tmp_path / "inks.tif")
    assert image.mode == "rgba"
    np.testing.assert_array_equal(image.pixels[0, 0], [0, 255, 255, 128])


def test_premultiplied_alpha_is_divided_out(tmp_path):
    colour = np.full((4, 4, 3), 200, np.uint8)
    alpha = np.full((4, 4), 128, np.uint8)
    alpha[0, 0] = 0
    premultiplied = np.rint(colour * (alpha[..., None] / 255.0)).astype(np.uint8)
    premultiplied[0, 0] = 0
    tifffile.imwrite(
        tmp_path / "pre.tif",
        np.dstack([premultiplied, alpha]),
        photometric="rgb",
        extrasamples=["assocalpha"],
    )
    image = read_image(tmp_path / "pre.tif")
    assert image.mode == "rgba" and image.converted_from == "premultiplied alpha"
    assert np.abs(image.pixels[1:, 1:, :3].astype(int) - 200).max() <= 1
    np.testing.assert_array_equal(image.pixels[..., 3], alpha)


def test_tiff_with_a_thumbnail_is_one_image(tmp_path):
    from nlmeans.video import is_sequence_file

    rgb = _random((32, 32, 3), np.uint8)
    with tifffile.TiffWriter(tmp_path / "scan.tif") as tif:
        tif.write(rgb, photometric="rgb")
        tif.write(rgb[::4, ::4], photometric="rgb", subfiletype=1)  # a reduced-resolution page
    assert not is_sequence_file(tmp_path / "scan.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "scan.tif").pixels, rgb)


@pytest.mark.parametrize("depth, key", [(8, 128), (16, 1000), (2, 3)])
def test_gray_png_transparent_colour_becomes_alpha(tmp_path, depth, key):
    import png

    rng = np.random.default_rng(depth)
    values = rng.integers(0, 1 << depth, (8, 8))
    values[0, 0] = key
    with open(tmp_path / "key.png", "wb") as f:
        png.Writer(8, 8, greyscale=True, bitdepth=depth, transparent=key).write(f, values.tolist())
    image = read_image(tmp_path / "key.png")
    assert image.mode == "gray+alpha"
    np.testing.assert_array_equal(image.pixels[..., 1] == 0, values == key)


def test_resolution_is_carried_across_formats(tmp_path):
    rgb = _random((8, 8, 3), np.uint8)
    tifffile.imwrite(
        tmp_path / "print.tif", rgb, photometric="rgb", resolution=(300, 300), resolutionunit="INCH"
    )
    like = read_image(tmp_path / "print.tif")
    assert like.resolution == (300.0, 300.0, "inch")
    for ext in (".tif", ".png", ".jpg"):
        write_image(tmp_path / f"out{ext}", rgb, like=like)
        x, y, unit = read_image(tmp_path / f"out{ext}").resolution
        scale = 2.54 if unit == "cm" else 1.0  # PNG stores pixels per metre
        assert (x * scale, y * scale) == pytest.approx((300, 300), rel=1e-3)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", dpi=(72, 144))
    like = read_image(tmp_path / "photo.jpg")
    write_image(tmp_path / "photo_out.jpg", rgb, like=like)
    assert read_image(tmp_path / "photo_out.jpg").resolution == (72.0, 144.0, "inch")
    # an ImageJ calibration (micrometres per pixel) stays an ImageJ calibration
    gray = _random((8, 8), np.uint16)
    tifffile.imwrite(
        tmp_path / "cells.tif", gray, imagej=True, resolution=(10, 10), metadata={"unit": "um"}
    )
    like = read_image(tmp_path / "cells.tif")
    write_image(tmp_path / "cells_out.tif", gray, like=like)
    with tifffile.TiffFile(tmp_path / "cells_out.tif") as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "um"
        assert tif.pages[0].tags["XResolution"].value == (10, 1)
    # one pixel per micrometre is a calibration too
    tifffile.imwrite(
        tmp_path / "one.tif", gray, imagej=True, resolution=(1, 1), metadata={"unit": "um"}
    )
    assert read_image(tmp_path / "one.tif").resolution == (1.0, 1.0, None)
    # densities a format cannot hold are left out, not wrapped or failed after the work
    tifffile.imwrite(
        tmp_path / "fine.tif",
        rgb,
        photometric="rgb",
        resolution=(5e7, 5e7),
        resolutionunit="CENTIMETER",
    )
    like = read_image(tmp_path / "fine.tif")
    for ext in (".png", ".jpg"):
        write_image(tmp_path / f"fine_out{ext}", rgb, like=like)
        assert read_image(tmp_path / f"fine_out{ext}").resolution is None


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def _png_header_only(width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    crc = zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", crc)


def test_decompression_bomb_guard_reads_the_header_only(tmp_path, monkeypatch):
    # 100000 x 100000 claimed by a 33-byte file: refused from the header, nothing decoded.
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(ImageReadError, match="limit"):
        read_image(path)
    small = tmp_path / "small.png"
    write_image(small, _random((40, 50), np.uint8))
    with pytest.raises(ImageReadError, match="2,000 pixels"):
        read_image(small, max_pixels=1000)
    monkeypatch.setenv("NLMEANS_MAX_PIXELS", "100")
    with pytest.raises(ImageReadError, match="limit of 100"):
        read_image(small)
    assert read_image(small, max_pixels=0).pixels.shape == (40, 50)  # 0 disables the check
    for ext in (".jpg", ".tif"):
        other = tmp_path / f"small{ext}"
        write_image(other, _random((40, 50), np.uint8))
        with pytest.raises(ImageReadError, match="limit"):
            read_image(other, max_pixels=1000)


def test_decompression_bombs_are_refused_without_allocating(tmp_path):
    files = [tmp_path / "huge.png", _huge_jpeg(tmp_path), _huge_tiff(tmp_path, True)]
    files[0].write_bytes(_png_header_only(100_000, 100_000))
    for ext in (".png", ".jpg", ".tif"):  # import the decoders before measuring
        write_image(tmp_path / f"warm{ext}", np.zeros((8, 8), np.uint8))
        read_image(tmp_path / f"warm{ext}")
    for path in files:
        tracemalloc.start()
        try:
            with pytest.raises(ImageReadError, match="limit"):
                read_image(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # Refused from the header: a decoded image would be 10 GB.
        assert peak < 8 << 20, (path.name, peak)


# --------------------------------------------------------------------------- writing safely


def test_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "out.png"
    write_image(path, _random((8, 8), np.uint8, seed=1))
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="already exists"):
        write_image(path, _random((8, 8), np.uint8, seed=2))
    assert path.read_bytes() == before
    write_image(path, _random((8, 8), np.uint8, seed=2), force=True)
    np.testing.assert_array_equal(read_image(path).pixels, _random((8, 8), np.uint8, seed=2))


def test_never_writes_onto_the_input(tmp_path):
    path = tmp_path / "in.png"
    write_image(path, _random((8, 8), np.uint8))
    before = path.read_bytes()
    image = read_image(path)
    with pytest.raises(ImageWriteError, match="input file"):
        write_image(path, image.pixels, like=image, force=True)
    # also through another spelling of the same path
    with pytest.raises(ImageWriteError, match="input file"):
        write_image(tmp_path / "." / "in.png", image.pixels, like=image, force=True)
    # a picture made from the input but not written like it (nlmeans explain)
    (tmp_path / "link.png").symlink_to(path)
    with pytest.raises(ImageWriteError, match="input file"):
        write_image(
            tmp_path / "link.png", np.zeros((4, 4, 3), np.uint8), protect=(path,), force=True
        )
    assert path.read_bytes() == before


def test_unwritable_destination(tmp_path):
    with pytest.raises(ImageWriteError, match="does not exist"):
        write_image(tmp_path / "missing" / "x.png", _random((4, 4), np.uint8))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageWriteError, match="not a folder"):
        write_image(tmp_path / "file" / "x.png", _random((4, 4), np.uint8))
    with pytest.raises(ImageWriteError, match="extension"):
        write_image(tmp_path / "x.bmp", _random((4, 4), np.uint8))


@pytest.mark.parametrize("proc", [True, False], ids=["proc", "no-proc"])
def test_written_files_get_the_umask_permissions(tmp_path, monkeypatch, proc):
    """Images and checkpoints alike (one helper): 0o666 less the umask, not mkstemp's 0600."""
    if not proc:  # a system without /proc/self/status: the umask is read by setting one

        def no_proc(*_args, **_kwargs):
            raise OSError("no /proc here")

        monkeypatch.setattr(nio, "open", no_proc, raising=False)
    old = os.umask(0o027)
    try:
        assert nio._umask() == 0o027
        path = nio.atomic_write_bytes(tmp_path / "x.bin", b"data")
        assert os.umask(0o027) == 0o027  # reading it left it as it was
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


def test_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "link", broken)
    monkeypatch.setattr(os, "replace", broken)
    target = tmp_path / "out.png"
    with pytest.raises(ImageWriteError, match="No space left"):
        write_image(target, _random((8, 8), np.uint8))
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    # a failing encoder (float into PNG) fails before anything touches the disk
    with pytest.raises(ValueError, match="float"):
        write_image(target, _random((8, 8), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_float_result_is_converted_like_the_input(tmp_path):
    source = tmp_path / "in.png"
    write_image(source, np.array([[0, 128], [255, 3]], np.uint8))
    image = read_image(source)
    result = np.array([[0.0, 0.5], [1.2, -0.1]])
    write_image(tmp_path / "out.png", result, like=image)
    np.testing.assert_array_equal(read_image(tmp_path / "out.png").pixels, [[0, 128], [255, 0]])
    with pytest.raises(ValueError, match="sample type"):
        write_image(tmp_path / "o16.png", np.zeros((2, 2), np.uint16), like=image)


def test_unit_float_helpers():
    u16 = np.array([0, 65535, 32768], np.uint16)
    np.testing.assert_allclose(nio.to_unit_float(u16), [0, 1, 32768 / 65535])
    np.testing.assert_array_equal(nio.from_unit_float(nio.to_unit_float(u16), np.uint16), u16)
    color, alpha = nio.split_alpha(np.zeros((2, 2, 2), np.uint8), True)
    assert color.shape == (2, 2) and alpha.shape == (2, 2)
    assert nio.merge_alpha(color, alpha).shape == (2, 2, 2)
    assert nio.detect_format(b"II*\x00....") == "TIFF"
    assert nio.detect_format(b"\xff\xd8\xff\xe0") == "JPEG"
    assert nio.detect_format(b"BM....") is None


# --------------------------------------------------------------------------- colour profile and EXIF


@functools.cache  # made once: LittleCMS stamps each new profile with the time of day
def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _gray_profile() -> bytes:
    """A minimal ICC v2 gray display profile (gamma 2.2): Pillow has no maker for one.

    A gray PNG may only carry a GRAY profile (libpng ignores an RGB one).
    """
    text = b"nlmeans test gray"
    tags = [
        (
            b"desc",
            b"desc"
            + bytes(4)
            + struct.pack(">I", len(text) + 1)
            + text
            + bytes(1 + 4 + 4 + 2 + 1 + 67),
        ),
        (b"wtpt", b"XYZ " + bytes(4) + struct.pack(">3i", 0xF6D6, 0x10000, 0xD32D)),  # D50
        (b"kTRC", b"curv" + bytes(4) + struct.pack(">IH", 1, 0x0233)),  # gamma 2.2 as u8.8
        (b"cprt", b"text" + bytes(4) + b"no copyright\x00"),
    ]
    table, body = b"", b""
    start = 128 + 4 + 12 * len(tags)
    for sig, element in tags:
        table += struct.pack(">4sII", sig, start + len(body), len(element))
        body += element + bytes(-len(element) % 4)
    size = start + len(body)
    header = struct.pack(
        ">I4sI4s4s4s6H4s4sI4sIQI3i4s16s28s",
        size,
        bytes(4),
        0x02100000,
        b"mntr",
        b"GRAY",
        b"XYZ ",
        2024,
        1,
        1,
        0,
        0,
        0,
        b"acsp",
        bytes(4),
        0,
        bytes(4),
        0,
        0,
        0,
        0xF6D6,
        0x10000,
        0xD32D,
        bytes(4),
        bytes(16),
        bytes(28),
    )
    return header + struct.pack(">I", len(tags)) + table + body


#: EXIF fields of a TIFF's own IFD that a TIFF output keeps: Make, Model, Orientation, DateTime, Artist, Copyright.
EXIF_IFD0 = {
    271: "nlmeans test camera",
    272: "Model 1",
    274: 6,
    306: "2024:05:06 07:08:09",
    315: "A. Photographer",
    33432: "(c) nobody",
}
EXIF_SUB = {33434: 0.004, 36864: b"0232", 37386: 35.0}  # ExposureTime, ExifVersion, FocalLength


def _exif() -> bytes:
    exif = Image.Exif()
    for tag, value in EXIF_IFD0.items():
        exif[tag] = value
    exif[0x8769] = dict(EXIF_SUB)  # the EXIF sub-IFD
    data = exif.tobytes()
    assert data.startswith(b"Exif\x00\x00")
    return data


def _exif_fields(data: bytes) -> tuple[dict, dict]:
    exif = Image.Exif()
    exif.load(data)
    return {tag: exif.get(tag) for tag in EXIF_IFD0}, dict(exif.get_ifd(0x8769))


def _png_with_chunks(png: bytes, *chunks: tuple[bytes, bytes]) -> bytes:
    """``png`` with more chunks right after IHDR (written here, independently of nlmeans.io)."""
    extra = b"".join(
        struct.pack(">I", len(data))
        + ctype
        + data
        + struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)
        for ctype, data in chunks
    )
    return png[:33] + extra + png[33:]


def _iccp(profile: bytes) -> tuple[bytes, bytes]:
    return b"iCCP", b"test profile\x00\x00" + zlib.compress(profile)


def _png_chunk_types(data: bytes) -> list[bytes]:
    types, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        types.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return types


def _make_input(folder: Path, kind: str) -> tuple[Path, bytes, bytes | None]:
    """An input file of ``kind`` carrying a colour profile (and EXIF): (path, profile, EXIF data or None)."""
    rng = np.random.default_rng(7)
    exif = _exif()
    if kind == "rgb8.png":  # written by Pillow
        profile = _srgb_profile()
        pixels = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / kind, icc_profile=profile, exif=exif)
    elif kind == "rgba8.png":
        profile = _srgb_profile()
        pixels = rng.integers(0, 256, (24, 20, 4), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / kind, icc_profile=profile, exif=exif)
    elif kind == "graya8.png":  # nlmeans writes gray+alpha with its own NumPy encoder
        profile = _gray_profile()
        pixels = rng.integers(0, 256, (24, 20, 2), dtype=np.uint8)
        Image.fromarray(pixels, mode="LA").save(folder / kind, icc_profile=profile, exif=exif)
    elif kind == "gray8.png":
        profile = _gray_profile()
        pixels = rng.integers(0, 256, (24, 20), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / kind, icc_profile=profile, exif=exif)
    elif (
        kind == "rgb16.png"
    ):  # Pillow cannot write 16-bit colour: pixels by OpenCV, chunks added here
        profile = _srgb_profile()
        pixels = rng.integers(0, 65536, (24, 20, 3), dtype=np.uint16)
        ok, png = cv2.imencode(".png", pixels[..., ::-1])
        assert ok
        (folder / kind).write_bytes(
            _png_with_chunks(png.tobytes(), _iccp(profile), (b"eXIf", exif[6:]))
        )
    elif (
        kind == "rgb16.tif"
    ):  # written by tifffile: profile and the EXIF fields of its own IFD, no sub-IFD
        profile = _srgb_profile()
        pixels = rng.integers(0, 65536, (24, 20, 3), dtype=np.uint16)
        tags = [
            (tag, 3, 1, value, True) if tag == 274 else (tag, 2, 0, value, True)
            for tag, value in EXIF_IFD0.items()
        ]
        tifffile.imwrite(
            folder / kind, pixels, photometric="rgb", iccprofile=profile, extratags=tags
        )
        exif = None
    elif kind == "gray16.tif":
        profile = _gray_profile()
        tifffile.imwrite(
            folder / kind, rng.integers(0, 65536, (24, 20), dtype=np.uint16), iccprofile=profile
        )
        exif = None
    elif kind == "rgb8.tif":  # written by Pillow, with an EXIF sub-IFD
        profile = _srgb_profile()
        Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(
            folder / kind, icc_profile=profile, exif=exif
        )
    elif kind == "rgb8.jpg":
        profile = _srgb_profile()
        Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(
            folder / kind, icc_profile=profile, exif=exif, quality=95
        )
    else:  # pragma: no cover
        raise AssertionError(kind)
    return folder / kind, profile, exif


def _check_metadata(path: Path, profile: bytes, exif: bytes | None, source: Path) -> None:
    """``path`` carries ``profile`` byte for byte, and ``exif`` as far as its format allows."""
    image = read_image(path)
    assert image.icc_profile == profile
    if image.format == "PNG":
        data = path.read_bytes()
        types = _png_chunk_types(data)
        assert types.index(b"iCCP") < types.index(b"IDAT")
        with Image.open(path) as im:  # an independent reader agrees
            assert im.info["icc_profile"] == profile
            assert im.info.get("exif") == exif
        if exif is not None:
            assert types.index(b"eXIf") < types.index(b"IDAT")
    if image.format == "TIFF":
        with tifffile.TiffFile(path) as tif:  # tag 34675 InterColorProfile, verbatim
            assert tif.pages[0].tags[34675].value == profile
    if exif is None:
        return
    if image.format == "TIFF":  # the EXIF fields of the TIFF's own IFD; no sub-IFD
        fields, sub = _exif_fields(image.exif)
        assert fields == EXIF_IFD0 and sub == {}
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            assert tags["Make"].value == EXIF_IFD0[271] and tags["Orientation"].value == 6
            assert "ExifTag" not in tags
    elif read_image(source).format == "TIFF":  # EXIF data made from a TIFF: same fields, new bytes
        assert _exif_fields(image.exif) == _exif_fields(exif)
    else:
        assert image.exif == exif  # byte for byte


LAYOUTS = [
    "rgb8.png",
    "rgba8.png",
    "gray8.png",
    "graya8.png",
    "rgb16.png",
    "rgb16.tif",
    "gray16.tif",
    "rgb8.tif",
]


@pytest.mark.parametrize("kind", LAYOUTS)
def test_profile_and_exif_are_read(tmp_path, kind):
    path, profile, exif = _make_input(tmp_path, kind)
    image = read_image(path)
    assert image.icc_profile == profile
    if kind == "rgb16.tif":
        assert _exif_fields(image.exif) == (EXIF_IFD0, {})
    elif kind == "rgb8.tif":
        assert _exif_fields(image.exif) == _exif_fields(exif)
    elif exif is None:
        assert image.exif is None
    else:
        assert image.exif == exif


@pytest.mark.parametrize("kind", LAYOUTS)
def test_profile_and_exif_survive_the_library(tmp_path, kind):
    path, profile, exif = _make_input(tmp_path, kind)
    image = read_image(path)
    exif = image.exif  # what the TIFF had, as EXIF data
    out = tmp_path / f"out{path.suffix}"
    write_image(out, image.pixels, like=image)
    _check_metadata(out, profile, exif, path)
    again = read_image(out)
    np.testing.assert_array_equal(again.pixels, image.pixels)
    assert (again.mode, again.dtype) == (image.mode, image.dtype)


@pytest.mark.parametrize("kind", LAYOUTS)
def test_profile_and_exif_survive_the_cli(tmp_path, kind):
    from typer.testing import CliRunner

    from nlmeans_cli.main import app

    path, profile, _ = _make_input(tmp_path, kind)
    image = read_image(path)
    result = CliRunner().invoke(
        app, ["denoise", str(path), "--patch-size", "3", "--patch-distance", "2"]
    )
    assert result.exit_code == 0, result.output
    out = path.with_name(f"{path.stem}_denoised{path.suffix}")
    _check_metadata(out, profile, image.exif, path)
    denoised = read_image(out)
    assert (denoised.mode, denoised.dtype, denoised.pixels.shape) == (
        image.mode,
        image.dtype,
        image.pixels.shape,
    )
    if kind == "rgb16.png":  # still 16-bit colour, R first
        assert out.read_bytes()[24:26] == bytes([16, 2])
        assert len(np.unique(denoised.pixels)) > 256
    if image.has_alpha:
        np.testing.assert_array_equal(denoised.pixels[..., -1], image.pixels[..., -1])


@pytest.mark.parametrize(
    "kind, ext",
    [
        ("rgb8.png", ".tif"),
        ("rgb16.png", ".tif"),
        ("rgb16.tif", ".png"),
        ("rgb8.tif", ".png"),
        ("gray16.tif", ".png"),
        ("gray8.png", ".tif"),
        ("rgb8.jpg", ".png"),
        ("rgb8.jpg", ".tif"),
        ("rgb8.png", ".jpg"),
    ],
)
def test_profile_and_exif_cross_formats(tmp_path, kind, ext):
    from typer.testing import CliRunner

    from nlmeans_cli.main import app

    path, profile, _ = _make_input(tmp_path, kind)
    image = read_image(path)
    out = tmp_path / f"out{ext}"
    result = CliRunner().invoke(
        app, ["denoise", str(path), "-o", str(out), "--patch-size", "3", "--patch-distance", "2"]
    )
    assert result.exit_code == 0, result.output
    _check_metadata(out, profile, image.exif, path)
    assert read_image(out).dtype == image.dtype


def test_written_profile_and_exif_satisfy_libpng(tmp_path, capfd):
    """libpng (through OpenCV) reads the written chunks without a warning."""
    for kind in ("rgb8.png", "gray8.png", "rgb16.png", "rgb8.tif"):
        path, _, _ = _make_input(tmp_path, kind)
        image = read_image(path)
        out = tmp_path / f"{kind.replace('.', '_')}_out.png"
        write_image(out, image.pixels, like=image)
        capfd.readouterr()
        decoded = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert decoded is not None and decoded.shape[:2] == image.pixels.shape[:2]
        assert "libpng" not in capfd.readouterr().err, kind


def test_profile_of_the_wrong_colour_space_is_not_written(tmp_path):
    # A gray PNG with an RGB profile (libpng ignores it, with a warning): read as stored, not written on.
    path = tmp_path / "gray.png"
    path.write_bytes(
        _png_with_chunks(nio._encode_png(_random((8, 8), np.uint8)), _iccp(_srgb_profile()))
    )
    image = read_image(path)
    assert image.icc_profile == _srgb_profile()
    for ext in (".png", ".tif"):
        write_image(tmp_path / f"out{ext}", image.pixels, like=image)
        assert read_image(tmp_path / f"out{ext}").icc_profile is None
    # A colour array written like a gray image does not get the gray profile either.
    gray, _, _ = _make_input(tmp_path, "gray8.png")
    write_image(tmp_path / "rgb.png", _random((24, 20, 3), np.uint8), like=read_image(gray))
    assert read_image(tmp_path / "rgb.png").icc_profile is None
    assert b"iCCP" not in _png_chunk_types((tmp_path / "rgb.png").read_bytes())


def test_display_size_and_text_chunks_survive_the_cli(tmp_path):
    """gAMA, cHRM, sRGB, pHYs and text chunks reach a PNG output as they were;
    a wrongly sized or repeated one is left out (libpng ignores it too), and a
    TIFF output gets none."""
    gamma = (b"gAMA", struct.pack(">I", 45455))
    chrm = (b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000))
    phys = (b"pHYs", struct.pack(">IIB", 11811, 11811, 1))  # 300 dpi
    text = (b"tEXt", b"Author\x00somebody")
    bad = [
        (b"gAMA", b"\x00\x01"),  # short
        (b"pHYs", struct.pack(">IIB", 1, 1, 0)),  # repeated
        (b"sRGB", b"\x07"),  # not a rendering intent
    ]
    path = tmp_path / "photo.png"
    pixels = _random((24, 20, 3), np.uint8)
    path.write_bytes(_png_with_chunks(nio._encode_png(pixels), gamma, chrm, phys, text, *bad))
    image = read_image(path)
    assert image.png_chunks == (gamma, chrm, phys, text)
    np.testing.assert_array_equal(image.pixels, pixels)

    from typer.testing import CliRunner

    from nlmeans_cli.main import app

    for out in (tmp_path / "out.png", tmp_path / "out.tif"):
        result = CliRunner().invoke(
            app, ["denoise", str(path), "-o", str(out), "-p", "3", "-r", "2"]
        )
        assert result.exit_code == 0, result.output
    written = read_image(tmp_path / "out.png")
    assert written.png_chunks == (gamma, chrm, phys, text)
    with Image.open(tmp_path / "out.png") as im:  # an independent reader agrees
        assert im.info["gamma"] == pytest.approx(0.45455) and im.info["Author"] == "somebody"
        assert im.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    assert read_image(tmp_path / "out.tif").png_chunks == ()
    # the written chunks are where libpng wants them (it reads the file silently)
    assert _png_chunk_types((tmp_path / "out.png").read_bytes())[:5] == [
        b"IHDR",
        b"gAMA",
        b"cHRM",
        b"pHYs",
        b"tEXt",
    ]


@pytest.mark.parametrize("profile", [None, b"not applied" * 20])
def test_cmyk_jpeg_is_converted_and_says_so(tmp_path, profile):
    """A CMYK JPEG is read as RGB (Pillow's conversion); the line says so, and
    its profile (of CMYK samples) never reaches the RGB output."""
    cmyk = _random((30, 40, 4), np.uint8)
    path = tmp_path / "print.jpg"
    extra = {"icc_profile": profile} if profile else {}
    Image.fromarray(cmyk, mode="CMYK").save(path, quality=95, **extra)
    image = read_image(path)
    with Image.open(path) as im:
        expected = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(image.pixels, expected)
    assert image.converted_from == "CMYK" and image.icc_profile is None
    assert image.dropped_icc_profile is (profile is not None)
    assert "converted from CMYK" in image.describe()
    assert ("without its colour profile" in image.describe()) is (profile is not None)

    from typer.testing import CliRunner

    from nlmeans_cli.main import app

    out = tmp_path / "out.jpg"
    result = CliRunner().invoke(app, ["denoise", str(path), "-o", str(out), "-p", "3", "-r", "2"])
    assert result.exit_code == 0, result.output
    assert "converted from CMYK" in " ".join(result.output.split())
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.info.get("icc_profile") is None


def test_no_like_no_metadata(tmp_path):
    path, _, _ = _make_input(tmp_path, "rgb8.png")
    write_image(tmp_path / "plain.png", read_image(path).pixels)
    assert _png_chunk_types((tmp_path / "plain.png").read_bytes()) == [b"IHDR", b"IDAT", b"IEND"]
    plain = read_image(tmp_path / "plain.png")
    assert plain.icc_profile is None and plain.exif is None


@pytest.mark.parametrize(
    "chunk",
    [
        (b"iCCP", b"broken\x00\x00" + b"not zlib at all"),
        (b"iCCP", b"no separator" + zlib.compress(b"x" * 200)),
        (
            b"iCCP",
            b"bomb\x00\x00",
        ),  # + 32 MiB of zeros compressed to 32 KiB: more than a profile may inflate to
        (b"eXIf", b"not a TIFF header"),
    ],
)
def test_broken_profile_or_exif_is_ignored(tmp_path, chunk):
    if chunk[1].startswith(b"bomb"):
        chunk = (chunk[0], chunk[1] + zlib.compress(bytes(32 << 20)))
    pixels = _random((8, 8, 3), np.uint8)
    path = tmp_path / "in.png"
    path.write_bytes(_png_with_chunks(nio._encode_png(pixels), chunk))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(path)  # the pixels are fine: no error, no warning
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.icc_profile is None and image.exif is None
    write_image(tmp_path / "out.png", image.pixels, like=image)
    assert _png_chunk_types((tmp_path / "out.png").read_bytes()) == [b"IHDR", b"IDAT", b"IEND"]


def test_gray_test_profile_is_a_valid_gray_profile():
    import io

    from PIL import ImageCms

    assert ImageCms.ImageCmsProfile(io.BytesIO(_gray_profile())).profile.xcolor_space == "GRAY"
