"""Reading and writing images without losing bits, channels or files.

:func:`read_image` returns an :class:`ImageFile`: the pixels as a channel-last
NumPy array in the file's own sample type (``uint8``, ``uint16``, ``float32``
or ``float64``) plus what is needed to write a result back in the same form.
:func:`write_image` writes an array atomically and refuses to overwrite.

Formats: PNG (gray, gray+alpha, RGB, RGBA; 8 and 16 bits), TIFF (the same
layouts, plus ``float32``/``float64`` samples) and JPEG (8-bit gray or RGB).

Choices worth knowing:

* **The content decides the format when reading, the name decides it when
  writing.** A file is recognised by its first bytes, not by its extension, so
  a JPEG named ``photo.png`` is read as the JPEG it is (:attr:`ImageFile.format`
  is ``"JPEG"`` and :attr:`ImageFile.extension_mismatch` is true). A written
  file always is what its name says: ``photo_denoised.png`` becomes a real,
  lossless PNG. Nothing is lost that way and the output stops lying about its
  type.
* Maintained codecs do the work. PNG: pypng reads the header and walks the
  chunks (lengths, CRCs, truncation), the image data is inflated once with
  zlib to refuse what libpng would only complain about on stderr, and OpenCV
  decodes the pixels, 16-bit colour included (Pillow would reduce 16-bit RGB
  to 8 bits); OpenCV's BGR order is turned into RGB here, and its
  ``None``-on-failure into :class:`ImageReadError`. OpenCV encodes PNG
  (imagecodecs the gray+alpha layout OpenCV cannot write) and pypng adds the
  colour-profile and EXIF chunks. JPEG goes through Pillow, which, unlike
  OpenCV, refuses truncated files instead of filling them grey. TIFF goes
  through tifffile.
* Image size is read from the header and checked against a pixel limit before
  anything is decoded (decompression-bomb guard): ``max_pixels``, default from
  the environment variable ``NLMEANS_MAX_PIXELS`` or :data:`DEFAULT_MAX_PIXELS`.
* Every problem with an input file is one :class:`ImageReadError` (a
  ``ValueError``) whose message names the file and the problem.
* Writes go to a temporary file in the destination folder which then replaces
  (or, without ``force``, is hard-linked to) the destination, so a reader never
  sees half a file and a failed write leaves nothing behind. An existing file
  is never replaced unless ``force=True``; the input file (``like.path``) is
  never replaced, not even with ``force``.
* JPEG output is written at quality 95 without chroma subsampling.
* The ICC colour profile and the EXIF data of the ``like`` image travel to the
  output, across formats too (PNG iCCP and eXIf chunks, TIFF tag 34675
  InterColorProfile, JPEG APP2 and APP1 segments). The profile is copied byte
  for byte when its colour space fits the output (``GRAY`` for gray and
  gray+alpha, ``RGB `` for colour; libpng ignores any other). EXIF goes into
  PNG and JPEG byte for byte (JPEG: up to the 64 KiB of one segment); a TIFF
  gets only the EXIF fields that belong in its own IFD (Make, Model,
  Orientation, DateTime, Artist, Copyright): tifffile cannot write the EXIF and
  GPS sub-IFDs. A JPEG ``like`` gives JPEG output its EXIF and ICC data as read.
* A PNG ``like`` gives PNG output its display chunks (gAMA, cHRM, sRGB), its
  pixel size (pHYs) and its text chunks, byte for byte
  (:attr:`ImageFile.png_chunks`).
"""

from __future__ import annotations

import ast
import contextlib
import io as _io
import logging
import os
import re
import struct
import tempfile
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "max_value",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageFile",
    "ImageReadError",
    "ImageWriteError",
    "OutputExistsError",
    "atomic_write_bytes",
    "check_format_holds",
    "detect_format",
    "format_from_extension",
    "merge_alpha",
    "read_image",
    "same_file",
    "split_alpha",
    "to_unit_float",
    "from_unit_float",
    "write_image",
]

#: Refuse images with more pixels than this unless told otherwise (about
#: 11585 x 11585). Non-local means on such an image would run for hours anyway.
DEFAULT_MAX_PIXELS = 1 << 27

#: Extensions understood when writing, and looked for when listing folders.
IMAGE_EXTENSIONS = {
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
}

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_EXIF_PREFIX = b"Exif\x00\x00"  #: how a JPEG APP1 segment (and ImageFile.exif) starts EXIF data
_TIFF_HEADERS = (b"II*\x00", b"MM\x00*")  #: how EXIF data itself starts (a classic TIFF header)
#: A compressed colour profile larger than this is dropped, not inflated (libpng's own limit is 8 MB).
_MAX_ICC_BYTES = 1 << 24
#: EXIF fields of a TIFF's own IFD that are carried between a TIFF and EXIF data (Make, Model,
#: Orientation, DateTime, Artist, Copyright). Not ImageDescription: in a TIFF it often holds
#: tifffile/ImageJ/OME layout metadata, which must not be copied onto another layout.
_TIFF_EXIF_TAGS = (271, 272, 274, 306, 315, 33432)
_EXIF_SUB_IFDS = (0x8769, 0x8825)  #: the EXIF and GPS sub-IFDs
_SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


class ImageReadError(ValueError):
    """An input file could not be read as an image; the message says which and why."""


class ImageWriteError(OSError):
    """An image could not be written; the message says where and why."""


class OutputExistsError(ImageWriteError, FileExistsError):
    """The destination exists and overwriting was not allowed."""


@dataclass(frozen=True, eq=False)
class ImageFile:
    """An image read from disk.

    ``pixels`` is channel-last: ``(H, W)`` for gray, ``(H, W, 2)`` gray+alpha,
    ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA (always RGB order, never BGR).

    ``icc_profile``: the embedded ICC profile as stored (decompressed for PNG),
    or None. ``exif``: the EXIF data in the form a JPEG APP1 segment holds it
    (``b"Exif\\0\\0"`` and a TIFF header), or None; for a TIFF file, the EXIF
    fields of its IFD (Make, Model, Orientation, DateTime, Artist, Copyright)
    and its EXIF and GPS sub-IFDs, re-encoded by Pillow. ``png_chunks``: a
    PNG file's chunks that describe how its values display (``gAMA``,
    ``cHRM``, ``sRGB``), its pixel size (``pHYs``) and its text (``tEXt``,
    ``zTXt``, ``iTXt``), as ``(type, payload)`` pairs in file order; written
    back when the output is a PNG too.
    """

    path: Path
    pixels: np.ndarray
    format: str  #: "PNG", "TIFF" or "JPEG", from the file's content
    has_alpha: bool
    exif: bytes | None = field(default=None, repr=False)
    icc_profile: bytes | None = field(default=None, repr=False)
    png_chunks: tuple[tuple[bytes, bytes], ...] = field(default=(), repr=False)
    #: What the file's samples were converted from on reading: ``"CMYK"`` (a
    #: CMYK JPEG or TIFF, now RGB), ``"a palette"`` (a palette TIFF, now RGB),
    #: ``"min-is-white"`` (a TIFF whose 0 is white, now 0 = black),
    #: ``"premultiplied alpha"`` (colour divided by alpha), ``"1-bit"`` (now
    #: 8-bit 0 and 255); None when they are the file's own.
    converted_from: str | None = None
    #: The file's colour profile was left out: it described the samples
    #: before that conversion (the conversion does not apply it).
    dropped_icc_profile: bool = False
    #: Pixel density ``(x, y, unit)``: pixels per ``unit`` ("inch" or "cm";
    #: None: no unit, an aspect ratio only), from TIFF resolution tags, a
    #: JPEG's JFIF density or a PNG's pHYs chunk; None when the file has none.
    resolution: tuple[float, float, str | None] | None = None
    #: An ImageJ TIFF's calibration unit (``"um"``, ``"micron"``...); its
    #: pixel size is ``resolution``. Written back when the output is a TIFF.
    imagej_unit: str | None = None

    @property
    def dtype(self) -> np.dtype:
        return self.pixels.dtype

    @property
    def bit_depth(self) -> int:
        """Bits per sample: 8, 16, 32 (float32) or 64 (float64)."""
        return self.pixels.dtype.itemsize * 8

    @property
    def channels(self) -> int:
        return 1 if self.pixels.ndim == 2 else self.pixels.shape[2]

    @property
    def color_channels(self) -> int:
        return self.channels - (1 if self.has_alpha else 0)

    @property
    def is_color(self) -> bool:
        return self.color_channels >= 3

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def mode(self) -> str:
        """ "gray", "gray+alpha", "rgb" or "rgba"."""
        base = "rgb" if self.is_color else "gray"
        if self.has_alpha:
            return "rgba" if self.is_color else "gray+alpha"
        return base

    @property
    def max_value(self) -> float:
        """The value of full white: 255, 65535, or 1.0 for float samples."""
        return max_value(self.pixels.dtype)

    @property
    def extension_mismatch(self) -> bool:
        """True when the file's name claims another format than its content."""
        claimed = IMAGE_EXTENSIONS.get(self.path.suffix.lower())
        return claimed is not None and claimed != self.format

    def split_alpha(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``(colour, alpha)``: gray as ``(H, W)``, colour as ``(H, W, 3)``; alpha or None."""
        return split_alpha(self.pixels, self.has_alpha)

    def describe(self) -> str:
        converted = ""
        if self.converted_from:
            converted = f", converted from {self.converted_from}" + (
                " without its colour profile" if self.dropped_icc_profile else ""
            )
        return (
            f"{self.width}x{self.height} {self.mode} {self.format} "
            f"{self.bit_depth}-bit{' float' if self.pixels.dtype.kind == 'f' else ''}{converted}"
        )


# --------------------------------------------------------------------------- helpers


def max_value(dtype: np.dtype) -> float:
    """The largest value of a sample type: 1.0 for floats, the integer maximum otherwise."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return 1.0
    return float(np.iinfo(dtype).max)


def split_alpha(pixels: np.ndarray, has_alpha: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Split off the last channel as alpha; a single colour channel becomes 2-D."""
    if not has_alpha:
        return pixels, None
    color = pixels[..., :-1]
    if color.shape[-1] == 1:
        color = color[..., 0]
    return color, pixels[..., -1]


def merge_alpha(color: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Inverse of :func:`split_alpha`."""
    if alpha is None:
        return color
    if color.ndim == 2:
        color = color[..., None]
    return np.concatenate([color, alpha[..., None].astype(color.dtype)], axis=-1)


def to_unit_float(pixels: np.ndarray) -> np.ndarray:
    """Integers to float64 in [0, 1] (like skimage's ``img_as_float``); floats as float64."""
    if pixels.dtype.kind == "f":
        return pixels.astype(np.float64)
    return pixels.astype(np.float64) / max_value(pixels.dtype)


def from_unit_float(values: np.ndarray, dtype) -> np.ndarray:
    """[0, 1] floats to ``dtype``: integers are rounded and clipped, floats kept as they are."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.asarray(values).astype(dtype)
    top = max_value(dtype)
    return np.clip(np.rint(np.asarray(values, dtype=np.float64) * top), 0, top).astype(dtype)


def format_from_extension(path: str | os.PathLike) -> str:
    """ "PNG", "TIFF" or "JPEG" from the file name, else :class:`ImageWriteError`."""
    suffix = Path(path).suffix.lower()
    try:
        return IMAGE_EXTENSIONS[suffix]
    except KeyError:
        known = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise ImageWriteError(
            f"{path}: cannot tell the image format from the extension "
            f"{suffix or '(none)'!r}; use one of {known}"
        ) from None


def detect_format(head: bytes) -> str | None:
    """ "PNG", "TIFF", "JPEG" from a file's first bytes, or None."""
    if head.startswith(_PNG_MAGIC):
        return "PNG"
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    return None


def _guess_content(head: bytes) -> str:
    """Words for an unrecognised file, for the error message."""
    if head.startswith(b"GIF8"):
        return "a GIF image"
    if head.startswith(b"BM"):
        return "a BMP image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1"):
        return "an AVIF/HEIF image"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head[:2] == b"PK":
        return "a ZIP archive"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "of unknown type"
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "text"
    return "of unknown type"


def _env_max_pixels() -> int:
    raw = os.environ.get("NLMEANS_MAX_PIXELS")
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"NLMEANS_MAX_PIXELS must be an integer, got {raw!r}") from None
    return value


# --------------------------------------------------------------------------- reading


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> ImageFile:
    """Read a PNG, TIFF or JPEG file.

    ``max_pixels``: refuse larger images before decoding (``0`` or a negative
    value disables the check); default: ``$NLMEANS_MAX_PIXELS`` or
    :data:`DEFAULT_MAX_PIXELS`. Raises :class:`ImageReadError` for anything
    that is not a readable image of a supported kind.
    """
    path = Path(path)
    if max_pixels is None:
        max_pixels = _env_max_pixels()
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise ImageReadError(f"{path}: file is empty (0 bytes)")
    fmt = detect_format(data[:16])
    if fmt is None:
        what = _guess_content(data[:64])
        raise ImageReadError(f"{path}: not a PNG, TIFF or JPEG image (the content is {what})")
    reader = {"PNG": _read_png, "JPEG": _read_jpeg, "TIFF": _read_tiff}[fmt]
    image = reader(path, data, max_pixels)
    if min(image.pixels.shape[:2]) < 1:
        raise ImageReadError(f"{path}: image has no pixels ({image.pixels.shape})")
    return image


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{path}: corrupt header (size {width}x{height})")
    if max_pixels > 0 and width * height > max_pixels:
        raise ImageReadError(
            f"{path}: image is {width}x{height} = {width * height:,} pixels, more than the "
            f"limit of {max_pixels:,} (raise it with the NLMEANS_MAX_PIXELS environment variable)"
        )


def _silent_cv2():
    import contextlib

    import cv2

    # OpenCV 5 has cv2.utils.logging; OpenCV 4 has cv2.getLogLevel/setLogLevel
    # (silent is 0 there).
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is not None:
        get_level, set_level, silent = log.getLogLevel, log.setLogLevel, log.LOG_LEVEL_SILENT
    elif hasattr(cv2, "setLogLevel"):  # pragma: no cover - OpenCV 4
        get_level, set_level, silent = cv2.getLogLevel, cv2.setLogLevel, 0
    else:  # pragma: no cover - a build without either
        get_level, set_level, silent = (lambda: None), (lambda level: None), None

    @contextlib.contextmanager
    def quiet():
        old = get_level()
        set_level(silent)
        try:
            yield cv2
        finally:
            set_level(old)

    return quiet()


def _png_reader(path: Path, data: bytes):
    """pypng's chunk reader, with its errors in our words; yields (type, payload) up to IEND.

    pypng checks every chunk's length and CRC; a file that ends before IEND
    is truncated.
    """
    import png

    reader = png.Reader(bytes=data)
    while True:
        try:
            ctype, payload = reader.chunk()
        except (png.ChunkError, png.FormatError) as exc:
            raise ImageReadError(f"{path}: {_png_problem(exc)}") from None
        yield ctype, payload
        if ctype == b"IEND":
            return


def _png_problem(exc) -> str:
    """pypng's error in the words of this module's messages."""
    text = str(exc.args[0] if exc.args else exc).rstrip(".")
    checksum = re.match(r"Checksum error in (\S+) chunk", text)
    if checksum:
        return f"corrupt PNG file (checksum error in chunk {checksum.group(1).encode('latin-1')!r})"
    cut = re.match(r"Chunk (b'.*') too short", text)
    if cut:
        return f"truncated PNG file (chunk {cut.group(1)} is cut off)"
    if text.startswith(("End of file", "No more chunks")):
        return "truncated PNG file (it ends before the IEND chunk)"
    name = re.match(r"Chunk (\[[\d, ]*\]) has invalid Chunk Type", text)
    if name:
        return f"corrupt PNG file (invalid chunk type {bytes(ast.literal_eval(name.group(1)))!r})"
    if text.startswith("IHDR chunk has incorrect length"):
        return "corrupt PNG file (no IHDR header)"
    if not text[:2].isupper():  # "Unknown filter method 1": lower case inside the message
        text = text[:1].lower() + text[1:]
    return f"corrupt PNG file ({text})"


def _png_row_starts(
    width: int, height: int, bits_per_pixel: int, interlaced: bool
) -> tuple[int, np.ndarray]:
    """(size of the decompressed image data, offset of every row's filter byte in it)."""
    from png import adam7  # the passes: (first column, first row, column step, row step)

    passes = (
        [((width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy) for x0, y0, dx, dy in adam7]
        if interlaced
        else [(width, height)]
    )
    starts, total = [], 0
    for w, h in passes:
        if w <= 0 or h <= 0:
            continue  # an empty pass has no rows at all, not even filter bytes
        row = 1 + (w * bits_per_pixel + 7) // 8
        starts.append(total + np.arange(h, dtype=np.int64) * row)
        total += row * h
    return total, np.concatenate(starts)


def _check_png_data(path: Path, idat: list, expected: int, row_starts: np.ndarray) -> bool:
    """Decompress the IDAT stream as libpng would, without keeping it; refuse what libpng refuses.

    libpng (inside OpenCV) reports broken image data on stderr, so it is
    found here first. Returns True when the stream holds more than the image
    (libpng would decode it but print warnings): the caller then hands the
    decoder only the image's own bytes.
    """
    inflater = zlib.decompressobj()
    produced = 0
    extra = False
    step = 1 << 20
    try:
        for payload in idat:
            if inflater.eof:
                extra = extra or len(payload) > 0
                continue
            pending = payload
            while pending and not inflater.eof and not extra:
                out = inflater.decompress(pending, step)
                pending = inflater.unconsumed_tail
                if out:
                    lo, hi = np.searchsorted(row_starts, [produced, produced + len(out)])
                    if hi > lo:
                        filters = np.frombuffer(out, np.uint8)[row_starts[lo:hi] - produced]
                        bad = filters[filters > 4]
                        if bad.size:
                            raise ImageReadError(
                                f"{path}: corrupt PNG file (invalid row filter type {int(bad[0])})"
                            )
                    produced += len(out)
                    if produced > expected:
                        extra = True
            if inflater.eof and (inflater.unused_data or pending):
                extra = True
            if extra:
                break
    except zlib.error as exc:
        raise ImageReadError(f"{path}: corrupt PNG file (compressed image data: {exc})") from None
    if produced < expected:
        raise ImageReadError(
            f"{path}: corrupt PNG file (the image data is incomplete: {produced:,} of {expected:,} bytes)"
        )
    if not extra and not inflater.eof:
        raise ImageReadError(f"{path}: corrupt PNG file (the compressed image data does not end)")
    return extra


def _read_png(path: Path, data: bytes, max_pixels: int) -> ImageFile:
    import png

    if data[12:16] != b"IHDR":
        if len(data) < 16:
            raise ImageReadError(f"{path}: truncated PNG file (it ends before the IEND chunk)")
        raise ImageReadError(f"{path}: corrupt PNG file (no IHDR header)")
    chunks = _png_reader(path, data)
    _, ihdr = next(chunks)
    # pypng reads the header and refuses impossible ones (bit depth and colour
    # type, compression, filter and interlace methods) before any pixel data.
    header = png.Reader(bytes=data)
    try:
        header.process_chunk()
    except (png.ChunkError, png.FormatError) as exc:
        raise ImageReadError(f"{path}: {_png_problem(exc)}") from None
    width, height = header.width, header.height
    _check_size(path, width, height, max_pixels)
    color_type = header.color_type
    # Walk the whole file, up to IEND. Only what the pixels need is handed to
    # the decoder: libpng prints warnings on stderr for many harmless defects
    # of ancillary chunks (colour profiles, text, ...), and errors for broken
    # image data, which are found here first and reported as ImageReadError.
    palette = None
    transparency = None
    iccp = exif = None
    carried: list[tuple[bytes, bytes]] = []
    idat: list = []
    idat_done = False
    for ctype, payload in chunks:
        if ctype == b"IDAT":
            if idat_done:
                raise ImageReadError(f"{path}: corrupt PNG file (IDAT chunks are not consecutive)")
            idat.append(payload)
            continue
        if idat:
            idat_done = True
        if ctype == b"IEND":
            break
        if ctype == b"IHDR":
            raise ImageReadError(f"{path}: corrupt PNG file (a second IHDR chunk)")
        if ctype == b"PLTE":
            if idat or palette is not None:
                raise ImageReadError(f"{path}: corrupt PNG file (misplaced PLTE chunk)")
            palette = payload
        elif ctype == b"tRNS":
            if not idat and transparency is None:
                transparency = payload
        elif ctype == b"iCCP":
            if not idat and palette is None and iccp is None:  # where libpng takes it
                iccp = payload
        elif ctype == b"eXIf":
            if exif is None:
                exif = payload
        elif _carried_png_chunk(ctype, payload, before_data=not idat, seen=carried):
            carried.append((ctype, payload))
        elif not ctype[:1].islower():  # an unknown critical chunk: libpng refuses the file
            name = ctype.decode("latin-1")
            raise ImageReadError(f"{path}: unsupported PNG file (unknown critical chunk {name!r})")
    if not idat:
        raise ImageReadError(f"{path}: corrupt PNG file (no image data)")
    keep = []
    if color_type == 3:
        if palette is None:
            raise ImageReadError(f"{path}: corrupt PNG file (palette image without a PLTE chunk)")
        entries, rest = divmod(len(palette), 3)
        if rest or not 1 <= entries <= min(256, 1 << header.bitdepth):
            raise ImageReadError(
                f"{path}: corrupt PNG file (invalid palette of {len(palette)} bytes)"
            )
        keep.append((b"PLTE", palette))
    if transparency is not None:
        allowed = {
            0: len(transparency) == 2,
            2: len(transparency) == 6,
            3: palette is not None and 1 <= len(transparency) <= len(palette) // 3,
        }
        if allowed.get(color_type, False):  # otherwise libpng ignores it, with a warning
            keep.append((b"tRNS", transparency))

    expected, row_starts = _png_row_starts(
        width, height, header.bitdepth * header.planes, header.interlace == 1
    )
    if _check_png_data(path, idat, expected, row_starts):
        # More data than the image holds: pass on exactly the image's bytes.
        raw = zlib.decompressobj().decompress(b"".join(idat), expected)
        idat = [zlib.compress(raw, 1)]
    clean = _io.BytesIO()
    png.write_chunks(
        clean, [(b"IHDR", ihdr), *keep, *((b"IDAT", part) for part in idat), (b"IEND", b"")]
    )

    with _silent_cv2() as cv2:
        try:
            pixels = cv2.imdecode(np.frombuffer(clean.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error as exc:  # pragma: no cover - OpenCV normally returns None
            raise ImageReadError(f"{path}: corrupt PNG file ({str(exc).strip()})") from None
    if pixels is None:
        raise ImageReadError(f"{path}: corrupt PNG file (the image data cannot be decoded)")
    gray = color_type in (0, 4)
    if pixels.ndim == 2 and color_type == 0 and any(c == b"tRNS" for c, _ in keep):
        # A gray PNG's transparent colour (tRNS): OpenCV drops it (it makes a
        # colour PNG's key an alpha channel); here it becomes gray+alpha too.
        key = int.from_bytes(transparency[:2], "big")
        if header.bitdepth < 8:  # the decoder scaled 1-, 2- and 4-bit gray to 8 bits
            key *= 255 // ((1 << header.bitdepth) - 1)
        top = np.iinfo(pixels.dtype).max
        alpha = np.where(pixels == key, 0, top).astype(pixels.dtype)
        pixels, has_alpha = np.stack([pixels, alpha], axis=2), True
    elif pixels.ndim == 2:
        has_alpha = False
    elif pixels.shape[2] == 4:
        has_alpha = True
        pixels = pixels[..., [0, 3]] if gray else pixels[..., [2, 1, 0, 3]]
    elif pixels.shape[2] == 3:
        has_alpha = False
        pixels = pixels[..., 0] if gray else pixels[..., ::-1]
    else:  # pragma: no cover - OpenCV gives 1, 3 or 4 channels for PNG
        raise ImageReadError(f"{path}: unsupported PNG layout {pixels.shape}")
    return ImageFile(
        path=path,
        pixels=np.ascontiguousarray(pixels),
        format="PNG",
        has_alpha=has_alpha,
        resolution=_phys_resolution(carried),
        exif=_EXIF_PREFIX + exif if exif is not None and exif[:4] in _TIFF_HEADERS else None,
        icc_profile=_png_icc_profile(iccp),
        png_chunks=tuple(carried),
    )


# PNG chunks carried from an input to a PNG output, with the payload size each
# must have (None: any). The first four belong before the image data and occur
# once; text chunks may be anywhere and repeat. Values such as sBIT that
# depend on the samples are not carried.
_CARRIED_PNG_CHUNKS = {
    b"gAMA": 4,
    b"cHRM": 32,
    b"sRGB": 1,
    b"pHYs": 9,
    b"tEXt": None,
    b"zTXt": None,
    b"iTXt": None,
}


def _phys_resolution(chunks) -> tuple[float, float, str | None] | None:
    """A PNG's pHYs chunk (pixels per metre, or an aspect ratio) as a resolution."""
    for ctype, payload in chunks:
        if ctype == b"pHYs":
            x, y, unit = struct.unpack(">IIB", payload)
            if not (x and y) or unit not in (0, 1) or (unit == 0 and x == y):
                return None
            return (x / 100.0, y / 100.0, "cm") if unit == 1 else (float(x), float(y), None)
    return None


def _phys_chunk(resolution: tuple[float, float, str | None]) -> tuple[bytes, bytes] | None:
    """A pHYs chunk for ``resolution``, or None where PNG cannot hold it
    (its values are whole numbers from 1 to 2**31 - 1)."""
    x, y, unit = resolution
    if unit is None:  # an aspect ratio: scaled so that rounding keeps it
        scale = 1e6 / max(x, y)
        values, flag = (round(x * scale), round(y * scale)), 0
    else:
        per_metre = 100.0 if unit == "cm" else 100.0 / 2.54
        values, flag = (round(x * per_metre), round(y * per_metre)), 1
    if not all(1 <= v <= 2**31 - 1 for v in values):
        return None
    return b"pHYs", struct.pack(">IIB", *values, flag)


def _carried_png_chunk(ctype: bytes, payload: bytes, *, before_data: bool, seen) -> bool:
    """Whether a chunk read from a PNG file is one to write back (:attr:`ImageFile.png_chunks`).

    A misplaced, repeated or wrongly sized one is what libpng ignores: it is
    not carried either.
    """
    if ctype not in _CARRIED_PNG_CHUNKS:
        return False
    size = _CARRIED_PNG_CHUNKS[ctype]
    if size is None:
        return True
    if ctype == b"sRGB" and payload[:1] not in (b"\x00", b"\x01", b"\x02", b"\x03"):
        return False  # not one of the four rendering intents
    if ctype == b"pHYs" and payload[8:9] not in (b"\x00", b"\x01"):
        return False  # neither "unknown" nor "metre"
    return before_data and len(payload) == size and all(t != ctype for t, _ in seen)


def _png_icc_profile(payload: bytes | None) -> bytes | None:
    """The profile in an iCCP chunk's payload; None for a malformed one (libpng ignores those too)."""
    if payload is None:
        return None
    name_end = payload.find(b"\x00", 0, 80)
    if (
        name_end < 1 or payload[name_end + 1 : name_end + 2] != b"\x00"
    ):  # name, then method 0 (zlib)
        return None
    inflater = zlib.decompressobj()
    try:
        profile = inflater.decompress(payload[name_end + 2 :], _MAX_ICC_BYTES)
    except zlib.error:
        return None
    if not inflater.eof or not profile:  # cut off, or larger than _MAX_ICC_BYTES
        return None
    return profile


def _read_jpeg(path: Path, data: bytes, max_pixels: int) -> ImageFile:
    import warnings

    from PIL import JpegImagePlugin

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Pillow's JPEG reader reads the markers up to the frame header, not the
        # pixels. Used directly rather than through Image.open, which would apply
        # Pillow's own pixel limit (a process-wide setting) instead of ours.
        try:
            im = JpegImagePlugin.JpegImageFile(_io.BytesIO(data))
        except OSError as exc:  # the file ends inside the header
            raise ImageReadError(f"{path}: corrupt or truncated JPEG file ({exc})") from None
        except Exception as exc:  # Pillow raises many kinds for a header it cannot read
            bits = re.search(r"cannot handle (\d+)-bit layers", str(exc))
            if bits:
                raise ImageReadError(
                    f"{path}: {bits.group(1)}-bit JPEG is not supported (only 8-bit)"
                ) from None
            raise ImageReadError(
                f"{path}: corrupt or truncated JPEG file (no frame header)"
            ) from None
        with im:
            _check_size(path, im.width, im.height, max_pixels)
            try:
                im.load()
                exif = im.info.get("exif")
                icc = im.info.get("icc_profile")
                resolution = _jfif_resolution(im.info)
                converted = "CMYK" if im.mode == "CMYK" else None
                dropped = bool(converted and icc)
                if converted:
                    # Pillow's plain conversion: the profile describes the
                    # CMYK samples, not these RGB ones, so it must not travel
                    # to the output (a viewer would apply it to RGB data).
                    icc = None
                if im.mode in ("L", "RGB"):
                    pixels = np.asarray(im)
                elif im.mode in ("CMYK", "YCbCr", "P", "LA", "RGBA", "I;16"):
                    pixels = np.asarray(im.convert("RGB"))
                else:
                    raise ImageReadError(f"{path}: unsupported JPEG colour mode {im.mode}")
            except ImageReadError:
                raise
            except (OSError, ValueError, SyntaxError) as exc:
                raise ImageReadError(f"{path}: corrupt or truncated JPEG file ({exc})") from None
    return ImageFile(
        path=path,
        pixels=np.ascontiguousarray(pixels),
        format="JPEG",
        has_alpha=False,
        exif=exif,
        icc_profile=icc,
        converted_from=converted,
        dropped_icc_profile=dropped,
        resolution=resolution,
    )


def _jfif_resolution(info: dict) -> tuple[float, float, str | None] | None:
    """A JPEG's JFIF density (APP0): unit 1 is inches, 2 centimetres, 0 none."""
    unit, density = info.get("jfif_unit"), info.get("jfif_density")
    if unit not in (0, 1, 2) or not density or len(density) != 2 or 0 in density:
        return None
    x, y = (float(v) for v in density)
    if unit == 0 and x == y:
        return None  # the default 1:1 with no unit
    return (x, y, {0: None, 1: "inch", 2: "cm"}[unit])


class _TiffLog(logging.Handler):
    """Keeps tifffile's log records of the reading thread away from the user's stderr.

    tifffile reports many defects of a file (wrong strip counts, corrupted tag
    lists, ...) as log records at level ERROR and then carries on. While a
    TIFF file is read here, the ``tifffile`` logger passes its records to this
    handler only (not to the root logger); records of level ERROR and above
    are kept per thread so that :func:`_read_tiff` can refuse the file, the
    others (harmless oddities) are dropped.
    """

    _lock = threading.Lock()
    _users = 0
    _saved: tuple[bool, int] = (True, logging.NOTSET)

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        records = getattr(self.local, "records", None)
        if records is not None:
            records.append(record)

    @contextlib.contextmanager
    def capture(self):
        logger = logging.getLogger("tifffile")
        with self._lock:
            if _TiffLog._users == 0:
                _TiffLog._saved = (logger.propagate, logger.level)
                logger.addHandler(self)
                logger.propagate = False
                if logger.level == logging.NOTSET or logger.level > logging.ERROR:
                    logger.setLevel(logging.ERROR)
            _TiffLog._users += 1
        records: list[logging.LogRecord] = []
        self.local.records = records
        try:
            yield records
        finally:
            self.local.records = None
            with self._lock:
                _TiffLog._users -= 1
                if _TiffLog._users == 0:
                    logger.removeHandler(self)
                    logger.propagate, level = _TiffLog._saved
                    logger.setLevel(level)


_TIFF_LOG = _TiffLog()


def _tiff_problem(records: list) -> str | None:
    """The first problem tifffile logged, without its ``<tifffile.TiffPage 0 @8>`` prefix."""
    for record in records:
        text = " ".join(str(record.getMessage()).split())
        text = re.sub(r"^(<[^>]*>\s*)+", "", text)
        return text or "unspecified problem"
    return None


def _read_tiff(path: Path, data: bytes, max_pixels: int) -> ImageFile:
    import io

    import tifffile

    try:
        with _TIFF_LOG.capture() as problems, tifffile.TiffFile(io.BytesIO(data)) as tif:
            if not tif.pages:
                raise ImageReadError(f"{path}: TIFF file has no images")
            # Reduced-resolution pages (thumbnails, NewSubfileType bit 0) are
            # previews of the image, not other images.
            images = sum(1 for p in tif.pages if not p.is_reduced)
            if len(tif.series) != 1 or images != 1:
                raise ImageReadError(
                    f"{path}: TIFF file holds {max(images, len(tif.series))} images "
                    "(pages); only single-image TIFF files are supported"
                )
            page = tif.pages[0]
            series = tif.series[0]
            # A one-frame stack (tifffile writes (1, H, W) as axes "QYX"):
            # axes of length 1 other than Y, X and the samples say nothing.
            keep = [i for i, a in enumerate(series.axes) if a in "YXS" or series.shape[i] != 1]
            axes = "".join(series.axes[i] for i in keep)
            shape = tuple(series.shape[i] for i in keep)
            if axes not in ("YX", "YXS", "SYX"):
                raise ImageReadError(
                    f"{path}: unsupported TIFF layout (axes {axes}, shape {shape})"
                )
            height, width = (shape[1], shape[2]) if axes == "SYX" else (shape[0], shape[1])
            _check_size(path, width, height, max_pixels)
            extrasamples = tuple(int(x) for x in (page.extrasamples or ()))
            photometric = int(page.photometric)
            colormap = page.colormap if photometric == _TIFF_PALETTE else None
            imagej_unit = (tif.imagej_metadata or {}).get("unit") if tif.is_imagej else None
            # An ImageJ unit gives even 1 pixel per unit (no unit tag) a meaning.
            resolution = _tiff_resolution(page, keep_one_to_one=bool(imagej_unit))
            _check_tiff_colour_model(path, photometric, int(page.compression))
            icc = page.iccprofile
            problem = _tiff_problem(problems)
            if problem is None:
                pixels = series.asarray().reshape(shape)
                problem = _tiff_problem(problems)
            if problem is not None:
                raise ImageReadError(f"{path}: corrupt TIFF file ({problem})")
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises many kinds; all mean "unreadable"
        raise ImageReadError(f"{path}: corrupt or unsupported TIFF file ({exc})") from None
    if axes == "SYX":
        pixels = np.moveaxis(pixels, 0, -1)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.dtype == np.float16:
        pixels = pixels.astype(np.float32)
    bilevel = pixels.dtype == np.bool_
    if bilevel:  # 1-bit (a scan, a fax): indices 0 and 1 here, gray 0 and 255 below
        pixels = pixels.astype(np.uint8)
    if pixels.dtype.type not in _SUPPORTED_DTYPES:
        raise ImageReadError(
            f"{path}: TIFF sample type {pixels.dtype} is not supported "
            "(use uint8, uint16, float32 or float64)"
        )
    converted = None
    premultiplied = extrasamples[:1] == (_TIFF_ASSOCIATED_ALPHA,)
    if photometric == _TIFF_PALETTE:
        pixels, converted = _tiff_palette_to_rgb(path, pixels, colormap), "a palette"
    else:
        if bilevel:  # as a 1-bit PNG is read
            pixels, converted = pixels * np.uint8(255), "1-bit"
        if photometric == _TIFF_MINISWHITE:
            pixels = _tiff_min_is_white(pixels, extrasamples)
            converted = "1-bit min-is-white" if bilevel else "min-is-white"
        elif photometric == _TIFF_SEPARATED:
            if premultiplied and pixels.ndim == 3 and pixels.shape[2] == 5:
                # premultiplied inks: straight ones first, then to RGB
                pixels, premultiplied = _unpremultiply(pixels), False
            pixels, converted = _tiff_cmyk_to_rgb(path, pixels, extrasamples), "CMYK"
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels > 4:
        raise ImageReadError(f"{path}: TIFF with {channels} channels is not supported (at most 4)")
    has_alpha = channels in (2, 4) or (bool(extrasamples) and channels > 1)
    if has_alpha and premultiplied:
        # Premultiplied colour: written back as it is, the output's alpha
        # (unassociated, as PNG and our TIFFs have it) would darken it again.
        pixels, converted = _unpremultiply(pixels), "premultiplied alpha"
    dropped = bool(icc) and photometric == _TIFF_SEPARATED  # it describes the inks
    return ImageFile(
        path=path,
        pixels=np.ascontiguousarray(pixels),
        format="TIFF",
        has_alpha=has_alpha,
        exif=_tiff_exif(data),
        icc_profile=bytes(icc) if icc and not dropped else None,
        converted_from=converted,
        dropped_icc_profile=dropped,
        resolution=resolution,
        imagej_unit=str(imagej_unit) if imagej_unit else None,
    )


_TIFF_UNITS = {1: None, 2: "inch", 3: "cm"}  # ResolutionUnit (tag 296)


def _tiff_resolution(page, keep_one_to_one=False) -> tuple[float, float, str | None] | None:
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
    if not (xn and xd and yn and yd):
        return None
    unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2  # TIFF default
    x, y = xn / xd, yn / yd
    if unit not in _TIFF_UNITS or (unit == 1 and x == y == 1.0 and not keep_one_to_one):
        return None  # no unit and 1:1 says nothing
    return (x, y, _TIFF_UNITS[unit])


# TIFF colour models (tag 262, PhotometricInterpretation) and ExtraSamples.
_TIFF_MINISWHITE, _TIFF_MINISBLACK, _TIFF_RGB, _TIFF_PALETTE = 0, 1, 2, 3
_TIFF_SEPARATED, _TIFF_YCBCR = 5, 6
_TIFF_JPEG_COMPRESSIONS = (6, 7)  # old-style and new-style JPEG: decoded to RGB
_TIFF_ASSOCIATED_ALPHA = 1


def _check_tiff_colour_model(path: Path, photometric: int, compression: int) -> None:
    """Refuse what nlmeans would misread: Lab, raw sensor data, uncompressed YCbCr."""
    known = (_TIFF_MINISWHITE, _TIFF_MINISBLACK, _TIFF_RGB, _TIFF_PALETTE, _TIFF_SEPARATED)
    if photometric in known:
        return
    if photometric == _TIFF_YCBCR and compression in _TIFF_JPEG_COMPRESSIONS:
        return  # the JPEG decoder gives RGB
    import tifffile

    try:
        name = tifffile.PHOTOMETRIC(photometric).name
    except ValueError:
        name = str(photometric)
    raise ImageReadError(
        f"{path}: TIFF colour model {name} is not supported (gray, RGB, palette, "
        "min-is-white and CMYK are); convert the file to RGB first"
    )


def _tiff_palette_to_rgb(path: Path, indices: np.ndarray, colormap) -> np.ndarray:
    """RGB of a palette TIFF: 16-bit colour map entries, 8-bit when all are (x 257)."""
    if colormap is None or indices.ndim != 2 or indices.dtype.kind != "u":
        raise ImageReadError(f"{path}: palette TIFF without a usable colour map")
    table = np.asarray(colormap, dtype=np.uint16).T  # (entries, 3)
    if int(indices.max()) >= table.shape[0]:
        raise ImageReadError(f"{path}: palette TIFF with indices beyond its colour map")
    if not np.any(table % 257):  # 8-bit entries scaled to 16 bits (x 257)
        table = (table // 257).astype(np.uint8)
    elif not np.any(table % 256):  # ... or shifted (x 256, as Pillow writes them)
        table = (table >> 8).astype(np.uint8)
    return table[indices]


def _tiff_min_is_white(pixels: np.ndarray, extrasamples: tuple) -> np.ndarray:
    """0 = white turned into 0 = black (alpha, if any, left as it is)."""
    top = max_value(pixels.dtype)
    out = pixels.copy()
    if out.ndim == 2:
        return (top - out).astype(pixels.dtype)
    gray = out.shape[2] - len(extrasamples) if extrasamples else out.shape[2]
    out[..., :gray] = top - out[..., :gray]
    return out


def _tiff_cmyk_to_rgb(path: Path, pixels: np.ndarray, extrasamples: tuple) -> np.ndarray:
    """Inks to RGB by the plain formula R = (1 - C)(1 - K) (as Pillow converts a CMYK JPEG)."""
    if pixels.ndim != 3 or pixels.shape[2] - len(extrasamples) != 4:
        raise ImageReadError(f"{path}: TIFF with inks other than CMYK is not supported")
    top = max_value(pixels.dtype)
    inks = pixels[..., :4].astype(np.float64) / top
    rgb = (1.0 - inks[..., :3]) * (1.0 - inks[..., 3:4])
    rgb = rgb if pixels.dtype.kind == "f" else np.rint(rgb * top)
    return np.concatenate([rgb.astype(pixels.dtype), pixels[..., 4:]], axis=2)


def _unpremultiply(pixels: np.ndarray) -> np.ndarray:
    """Colour divided by alpha (where alpha is not 0), on the samples' own scale."""
    top = max_value(pixels.dtype)
    colour = pixels[..., :-1].astype(np.float64)
    alpha = pixels[..., -1:].astype(np.float64) / top
    straight = np.where(alpha > 0, colour / np.where(alpha > 0, alpha, 1.0), 0.0)
    if pixels.dtype.kind != "f":
        straight = np.clip(np.rint(straight), 0, top)
    return np.concatenate([straight.astype(pixels.dtype), pixels[..., -1:]], axis=2)


def _tiff_exif(data: bytes) -> bytes | None:
    """EXIF data (see :attr:`ImageFile.exif`) from a TIFF file's IFD: its EXIF fields and sub-IFDs.

    Pillow reads the IFD (a TIFF file is laid out like EXIF data) and writes
    the fields kept, with the EXIF, GPS (and interoperability) IFDs they point
    to, as new EXIF data. None when there is nothing to keep or Pillow cannot.
    """
    import warnings

    from PIL import Image

    keep = (*_TIFF_EXIF_TAGS, *_EXIF_SUB_IFDS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore"
            )  # Pillow warns about odd tags; they are not the user's problem
            exif = Image.Exif()
            exif.load(data)
            for tag in list(exif):
                if tag not in keep:
                    del exif[tag]
                elif isinstance(
                    exif[tag], str
                ):  # Pillow decodes ASCII as Latin-1: back to the bytes as stored
                    exif[tag] = exif[tag].encode("latin-1", "replace")
            return exif.tobytes() if len(exif) else None
    except Exception:  # Pillow raises many kinds for broken tags; all mean "nothing to keep"
        return None


# --------------------------------------------------------------------------- writing


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file: the same path, or (when both
    exist) a hard or symbolic link to it."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def holds(folder: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (links resolved): what
    replacing ``folder`` whole would remove."""
    inside, folder = Path(path).resolve(), Path(folder).resolve()
    return inside == folder or folder in inside.parents


def atomic_write_bytes(
    path: str | os.PathLike,
    data: bytes,
    *,
    force: bool = False,
    protect: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    Without ``force`` an existing ``path`` is never replaced (not even one that
    appears while writing: the final step is a hard link, which fails if the
    name exists). ``protect``: paths that must never be written, whatever
    ``force`` says. Raises :class:`OutputExistsError` / :class:`ImageWriteError`.
    """
    path = Path(path)
    for other in protect:
        if other is not None and same_file(path, other):
            raise ImageWriteError(f"{path}: refusing to write onto the input file")
    if path.is_dir():
        raise ImageWriteError(f"{path}: is a folder")
    if not force and (path.exists() or path.is_symlink()):
        raise OutputExistsError(f"{path}: already exists (use --force / force=True to overwrite)")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise ImageWriteError(f"{path}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise ImageWriteError(f"{path}: {folder} is not a folder")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ImageWriteError(f"{path}: cannot write in {folder} ({exc.strerror or exc})") from None
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            if force:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise OutputExistsError(
                        f"{path}: already exists (use --force / force=True to overwrite)"
                    ) from None
                except OSError:  # no hard links here (some network/FAT file systems)
                    if path.exists():
                        raise OutputExistsError(
                            f"{path}: already exists (use --force / force=True to overwrite)"
                        ) from None
                    os.replace(tmp, path)
        except ImageWriteError:
            raise
        except OSError as exc:
            raise ImageWriteError(f"{path}: write failed ({exc.strerror or exc})") from None
    finally:
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:  # pragma: no cover - nothing better to do
                pass
    return path


def _umask() -> int:
    """The process's umask: files written here get ``0o666 & ~umask``, like ``open()`` gives.

    Linux reports it in /proc without changing it. Elsewhere it can only be
    read by setting another one for an instant; that one is the strictest
    (0o077), so that a file another thread creates in that instant is too
    private rather than too open.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def write_image(
    path: str | os.PathLike,
    array: np.ndarray,
    *,
    like: ImageFile | None = None,
    force: bool = False,
    protect: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Write ``array`` (channel-last, RGB order) as the format named by ``path``'s extension.

    ``like``: the image the array was made from. Its file is never replaced;
    a float array is converted to its sample type (``[0, 1]`` scale, rounded
    and clipped); a 2- or 4-channel array is written with an alpha channel
    when ``like`` had one (otherwise 2 and 4 channels are taken as alpha
    anyway); its ICC profile and EXIF data are written with the array as far
    as the format allows (see the module's notes). ``protect``: other files
    that must never be written, whatever ``force`` says (the input of a
    picture that is not written ``like`` it, for example).

    Integer arrays are written as they are (``uint8`` or ``uint16``); float
    arrays go to TIFF, or need ``like`` to say which integer type to use for
    PNG/JPEG. Raises :class:`ImageWriteError` (:class:`OutputExistsError` for
    an existing file without ``force``) and ``ValueError`` for arrays that the
    format cannot hold.
    """
    path = Path(path)
    fmt = format_from_extension(path)
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
        raise ValueError(
            f"cannot write an array of shape {array.shape} as an image "
            "(expected (H, W), (H, W, 2), (H, W, 3) or (H, W, 4))"
        )
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if like is not None and array.dtype != like.pixels.dtype:
        if array.dtype.kind == "f":
            array = from_unit_float(array, like.pixels.dtype)
        else:
            raise ValueError(
                f"array has sample type {array.dtype} but the image it is written like has "
                f"{like.pixels.dtype}; convert it first"
            )
    check_format_holds(path, array.shape, array.dtype)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)

    protect = (*((like.path,) if like is not None else ()), *protect)
    # Fail early (before encoding) on the cheap checks; atomic_write_bytes checks again.
    for other in protect:
        if same_file(path, other):
            raise ImageWriteError(f"{path}: refusing to write onto the input file")
    if not force and path.exists():
        raise OutputExistsError(f"{path}: already exists (use --force / force=True to overwrite)")

    icc, exif = _metadata_for(like, array, fmt)
    resolution = like.resolution if like is not None else None
    if fmt == "PNG":
        carried = like.png_chunks if like is not None else ()
        phys = None if resolution is None else _phys_chunk(resolution)
        if phys is not None and not any(c == b"pHYs" for c, _ in carried):
            carried = (*carried, phys)  # from a TIFF's or JPEG's density
        data = _with_png_metadata(_encode_png(array), icc, exif, carried)
    elif fmt == "TIFF":
        imagej_unit = like.imagej_unit if like is not None else None
        data = _encode_tiff(array, icc, exif, resolution=resolution, imagej_unit=imagej_unit)
    else:
        data = _encode_jpeg(array, icc, exif, resolution=resolution)
    return atomic_write_bytes(path, data, force=force, protect=protect)


def check_format_holds(path: str | os.PathLike, shape, dtype) -> str:
    """The format of ``path`` (by extension), if it can store an array of
    ``shape`` (channel-last) and ``dtype``; else ``ValueError`` /
    :class:`ImageWriteError` naming what does not fit.

    :func:`write_image` checks this before encoding; a caller can check it
    before computing what it will write.
    """
    fmt = format_from_extension(path)
    dtype = np.dtype(dtype)
    if dtype.type not in _SUPPORTED_DTYPES:
        raise ValueError(
            f"cannot write samples of type {dtype} (use uint8, uint16, float32 or float64)"
        )
    if dtype.kind == "f" and fmt != "TIFF":
        raise ValueError(
            f"{path}: {fmt} cannot store float samples; write a .tif file "
            "(or, in Python, convert to uint8/uint16 first: nlmeans.io.from_unit_float)"
        )
    if fmt == "JPEG":
        if dtype != np.uint8:
            raise ValueError(
                f"{path}: JPEG holds 8-bit samples only, got {dtype}; use .png or .tif"
            )
        if len(shape) == 3 and shape[2] in (2, 4):
            raise ValueError(f"{path}: JPEG cannot store an alpha channel; use .png or .tif")
    return fmt


def _metadata_for(
    like: ImageFile | None, array: np.ndarray, fmt: str
) -> tuple[bytes | None, bytes | None]:
    """(ICC profile, EXIF data) of ``like`` to write with ``array`` as ``fmt``; None for what does not fit."""
    if like is None:
        return None, None
    if fmt == "JPEG" and like.format == "JPEG":
        return like.icc_profile or None, like.exif or None  # as read, as before
    icc = like.icc_profile
    gray = array.ndim == 2 or array.shape[2] == 2
    if not icc or len(icc) < 128 or icc[16:20] != (b"GRAY" if gray else b"RGB "):
        icc = None  # bytes 16-19 of the header: the profile's colour space
    exif = like.exif
    if not exif or not exif.startswith(_EXIF_PREFIX) or exif[6:10] not in _TIFF_HEADERS:
        exif = None
    elif fmt == "JPEG" and len(exif) > 65533:
        exif = None  # more than one APP1 segment holds
    return icc, exif


def _with_png_metadata(
    data: bytes, icc: bytes | None, exif: bytes | None, carried: tuple = ()
) -> bytes:
    """A PNG file with an iCCP and an eXIf chunk right after IHDR (before PLTE and IDAT, where both belong),
    and the ``carried`` chunks (:attr:`ImageFile.png_chunks`) after them.

    The PNG encoders in use (OpenCV, imagecodecs) cannot write either, and
    Pillow, which can, does not write 16-bit colour PNG: pypng splits the
    encoded file into its chunks and writes them back with the two added.
    """
    import png

    extra = []
    if icc:
        # keyword (the profile's name), NUL, compression method 0 (zlib), compressed profile
        extra.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc, 9)))
    if exif:
        extra.append((b"eXIf", exif[len(_EXIF_PREFIX) :]))
    extra.extend(carried)
    if not extra:
        return data
    chunks = list(png.Reader(bytes=data).chunks())
    assert chunks[0][0] == b"IHDR"
    out = _io.BytesIO()
    png.write_chunks(out, [chunks[0], *extra, *chunks[1:]])
    return out.getvalue()


def _encode_png(array: np.ndarray) -> bytes:
    if array.ndim == 3 and array.shape[2] == 2:
        import imagecodecs  # OpenCV cannot write gray+alpha

        return imagecodecs.png_encode(array, level=6)
    import cv2

    if array.ndim == 3:
        order = [2, 1, 0] if array.shape[2] == 3 else [2, 1, 0, 3]
        array = np.ascontiguousarray(array[..., order])
    ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:  # pragma: no cover - imencode fails only on unsupported layouts
        raise ImageWriteError("OpenCV could not encode the PNG image")
    return buf.tobytes()


def _encode_tiff(
    array: np.ndarray,
    icc: bytes | None = None,
    exif: bytes | None = None,
    *,
    resolution: tuple[float, float, str | None] | None = None,
    imagej_unit: str | None = None,
) -> bytes:
    import io

    import tifffile

    channels = 1 if array.ndim == 2 else array.shape[2]
    kwargs: dict = {"photometric": "rgb" if channels >= 3 else "minisblack", "metadata": None}
    if channels in (2, 4):
        kwargs["extrasamples"] = ["unassalpha"]
    if icc:
        kwargs["iccprofile"] = icc  # tag 34675 InterColorProfile, verbatim
    tags = _tiff_tags_from_exif(exif)
    if tags:
        kwargs["extratags"] = tags
    if resolution is not None:
        x, y, unit = resolution
        kwargs["resolution"] = (x, y)
        kwargs["resolutionunit"] = {"inch": 2, "cm": 3, None: 1}[unit]
        # An ImageJ calibration (a micrograph's pixel size) is its unit in
        # the ImageJ description; ImageJ's own form holds gray or 8-bit RGB.
        imagej_ok = channels == 1 or (channels == 3 and array.dtype == np.uint8)
        if imagej_unit and imagej_ok and array.dtype.type in (np.uint8, np.uint16, np.float32):
            kwargs.update(imagej=True, metadata={"unit": imagej_unit}, resolutionunit=None)
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, compression="zlib", **kwargs)
    return buf.getvalue()


def _tiff_tags_from_exif(exif: bytes | None) -> list[tuple]:
    """tifffile ``extratags`` for the EXIF fields that belong in a TIFF's own IFD (read by Pillow).

    The EXIF and GPS sub-IFDs are left out: tifffile writes no IFD-type tags.
    """
    import warnings

    from PIL import Image

    if not exif:
        return []
    tags = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fields = Image.Exif()
            fields.load(exif)
            for tag in _TIFF_EXIF_TAGS:
                value = fields.get(tag)
                if tag == 274:  # Orientation, a SHORT from 1 to 8
                    if isinstance(value, int) and 1 <= value <= 8:
                        tags.append((tag, 3, 1, value, True))
                elif isinstance(value, (str, bytes)):  # ASCII; Pillow decodes it as Latin-1
                    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
                    raw = raw.split(b"\x00")[0]
                    if raw:
                        tags.append((tag, 2, 0, raw, True))
    except Exception:  # unreadable EXIF data: write the pixels without it
        return []
    return tags


def _encode_jpeg(
    array: np.ndarray,
    icc: bytes | None = None,
    exif: bytes | None = None,
    *,
    resolution: tuple[float, float, str | None] | None = None,
) -> bytes:
    import io

    from PIL import Image

    im = Image.fromarray(array)
    extra = {}
    if resolution is not None and resolution[2] is not None:
        # Pillow writes JFIF densities in dots per inch, 16-bit whole numbers
        scale = 2.54 if resolution[2] == "cm" else 1.0
        dpi = (resolution[0] * scale, resolution[1] * scale)
        if all(1 <= round(v) <= 65535 for v in dpi):
            extra["dpi"] = dpi
    if exif:
        extra["exif"] = exif
    if icc:
        extra["icc_profile"] = icc
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95, subsampling=0, **extra)
    return buf.getvalue()
