"""nlmeans.io: lossless round trips, clear read errors, safe (atomic, no-clobber) writes."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
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
    [((7, 9), "gray", False), ((7, 9, 2), "gray+alpha", True), ((7, 9, 3), "rgb", False), ((7, 9, 4), "rgba", True)],
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


def test_png_encoder_filters_roundtrip():
    """The NumPy PNG encoder (used for gray+alpha) picks all five filters correctly."""
    rng = np.random.default_rng(1)
    for dtype in (np.uint8, np.uint16):
        for channels in (1, 2, 3, 4):
            base = np.cumsum(np.cumsum(rng.integers(0, 3, (30, 40, channels)), 0), 1)
            spikes = rng.integers(0, 200, (30, 40, channels)) * (rng.random((30, 1, 1)) < 0.3)
            pixels = (base + spikes).astype(dtype)
            pixels = pixels[..., 0] if channels == 1 else pixels
            data = nio._encode_png_numpy(pixels)
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
    assert image.format == "JPEG" and image.pixels.dtype == np.uint8 and image.pixels.shape == pixels.shape
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
    return nio._encode_png_numpy(pixels)


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
    broken = bytearray(data)
    broken[40] ^= 0xFF  # inside IDAT: CRC mismatch
    (tmp_path / "crc.png").write_bytes(bytes(broken))
    with pytest.raises(ImageReadError, match="checksum"):
        read_image(tmp_path / "crc.png")
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
    assert path.read_bytes() == before


def test_unwritable_destination(tmp_path):
    with pytest.raises(ImageWriteError, match="does not exist"):
        write_image(tmp_path / "missing" / "x.png", _random((4, 4), np.uint8))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageWriteError, match="not a folder"):
        write_image(tmp_path / "file" / "x.png", _random((4, 4), np.uint8))
    with pytest.raises(ImageWriteError, match="extension"):
        write_image(tmp_path / "x.bmp", _random((4, 4), np.uint8))


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
