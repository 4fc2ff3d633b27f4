"""Read and write image sequences: video files, multi-page TIFF stacks, folders of frames.

Frames are streamed both ways (one frame at a time, never the whole clip),
so that :func:`nlmeans.denoise_sequence` can denoise a clip of any length
between :func:`open_sequence` and :class:`SequenceWriter`.

* Video files (``.mp4``, ``.mkv``, ``.avi``, ``.mov``) are read and written
  with PyAV (``pip install av``, or ``pip install nlmeans[video]``). Frames
  come out as 8-bit RGB (``uint8`` ``(H, W, 3)``), 8-bit gray for gray
  video, and 16-bit for pixel formats of more than 8 bits. The output keeps
  the frame rate and the frame count, and by default the input's codec at
  high quality (H.264/HEVC ``crf 17``, VP9 ``crf 20``, others at a high bit
  rate); ``lossless=True`` writes FFV1 (into ``.mkv``). Audio and subtitle
  tracks are not copied.
* Multi-page TIFF stacks: one frame per page (:mod:`tifffile`). ImageJ
  hyperstacks with axes ``TZYX`` are volumes over time: one frame per time
  point, a ``(Z, Y, X)`` volume, written back as a ``TZYX`` hyperstack with
  the input's voxel size, unit and frame interval.
* Folders of frames: the folder's PNG, TIFF and JPEG files in name order, all
  of the same size; written as PNG (TIFF for float frames) under the input
  frames' names when the input is a folder too (``img_0001.jpg`` becomes
  ``img_0001.png``), otherwise (or when two inputs share a name but for the
  suffix) as ``frame_000000.png`` ....

Outputs are written under a temporary name next to the destination and
renamed only once every frame is in: an interrupted or failed run leaves no
half-written file under the destination's name. Bad input (an unreadable or
truncated video, frames of different sizes, an output container that cannot
hold the codec) raises :class:`SequenceError` (a ``ValueError``) with one
clear message.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

# How many leading frames the sequence parameters (sigma) are estimated from:
# readers that stream a clip hold that many back before denoising.
from ._sequence import ESTIMATE_FRAMES
from .io import holds, same_file

__all__ = [
    "ESTIMATE_FRAMES",
    "VIDEO_SUFFIXES",
    "SequenceError",
    "SequenceSource",
    "SequenceWriter",
    "is_sequence_file",
    "open_sequence",
]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov")
TIFF_SUFFIXES = (".tif", ".tiff")
FRAME_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
#: FFmpeg muxer of each video suffix (given explicitly: outputs are written
#: under a temporary name first).
CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi", ".mov": "mov"}
#: Frame rate given to a video made from frames that have none (a folder, a TIFF stack).
DEFAULT_FPS = Fraction(25)


class SequenceError(ValueError):
    """A sequence could not be read or written; the message says which and why."""


def _av():
    try:
        import av
    except ImportError:
        raise SequenceError(
            "reading and writing video files needs PyAV: pip install av "
            "(or pip install nlmeans[video])"
        ) from None
    return av


@dataclass
class SequenceSource:
    """An input sequence: what it is and how to stream its frames (:meth:`frames`)."""

    path: Path
    kind: str  #: "video", "tiff" or "folder"
    n_frames: int
    frame_shape: tuple
    dtype: np.dtype
    fps: Fraction | None = None
    codec: str | None = None  #: video codec name (FFmpeg's), e.g. "h264"
    pix_fmt: str | None = None
    bit_rate: int | None = None
    has_audio: bool = False
    files: list = field(default_factory=list, repr=False)
    #: Slices per frame for volumes over time (a TZYX hyperstack), else None.
    depth: int | None = None
    #: What a TIFF stack's output keeps: the resolution; for an ImageJ stack
    #: its axes ("TZYX", "ZYX", ...) and metadata (voxel size, unit, interval).
    tiff_metadata: dict = field(default_factory=dict, repr=False)

    @property
    def is_color(self) -> bool:
        return len(self.frame_shape) == 3 and self.depth is None

    def describe(self) -> str:
        if self.depth is not None:
            d, h, w = self.frame_shape
            return f"{w}x{h}x{d} gray volumes (TZYX hyperstack), {self.n_frames} time points"
        h, w = self.frame_shape[:2]
        what = {"video": f"{self.codec} video", "tiff": "TIFF stack", "folder": "frame folder"}
        rate = f", {float(self.fps):g} fps" if self.fps else ""
        mode = "rgb" if self.is_color else "gray"
        return f"{w}x{h} {mode} {what[self.kind]}, {self.n_frames} frames{rate}"

    def frames(self) -> Iterator[np.ndarray]:
        """Yield the frames in order, one at a time (channel-last, RGB)."""
        if self.kind == "video":
            yield from _video_frames(self)
        elif self.kind == "tiff":
            yield from _tiff_frames(self)
        else:
            yield from _folder_frames(self)


def is_sequence_file(path) -> bool:
    """True for a video file name, or a TIFF file holding more than one page."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return True
    if suffix in TIFF_SUFFIXES and path.is_file():
        import logging

        import tifffile

        # A damaged TIFF is the image reader's to report, in one line:
        # tifffile's own log messages would add more.
        log = logging.getLogger("tifffile")
        disabled, log.disabled = log.disabled, True
        try:
            with tifffile.TiffFile(path) as tif:
                # thumbnails (reduced-resolution pages) do not make a stack
                return sum(1 for page in tif.pages if not page.is_reduced) > 1
        except Exception:  # noqa: BLE001 - not a readable TIFF: the image reader reports it
            return False
        finally:
            log.disabled = disabled
    return False


def open_sequence(path) -> SequenceSource:
    """Probe a video file, a multi-page TIFF or a folder of frames (nothing is decoded in bulk).

    Raises :class:`SequenceError` for a file that cannot be read as a
    sequence, a folder without frames or with frames of different sizes,
    and ``FileNotFoundError`` for a missing path.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or folder", str(path))
    if path.is_dir():
        return _open_folder(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _open_tiff(path)
    return _open_video(path)


# --------------------------------------------------------------------------- video


def _frame_format(pix_fmt: str) -> tuple[str, np.dtype, bool]:
    """PyAV ndarray format, dtype and colour for a stream's pixel format."""
    gray = pix_fmt.startswith(("gray", "ya", "mono"))
    deep = any(tag in pix_fmt for tag in ("10", "12", "14", "16"))
    if gray:
        return ("gray16le" if deep else "gray"), np.dtype(np.uint16 if deep else np.uint8), False
    return ("rgb48le" if deep else "rgb24"), np.dtype(np.uint16 if deep else np.uint8), True


def _open_video(path: Path) -> SequenceSource:
    av = _av()
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise SequenceError(
            f"{path}: cannot read it as a video: the file is truncated, corrupt or not a video "
            f"({_reason(exc)})"
        ) from None
    try:
        if not container.streams.video:
            raise SequenceError(f"{path}: the file holds no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        pix_fmt = ctx.pix_fmt or "yuv420p"
        fmt, dtype, colour = _frame_format(pix_fmt)
        width, height = ctx.width, ctx.height
        if not width or not height:
            raise SequenceError(f"{path}: the video stream has no frame size (corrupt file?)")
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        has_audio = bool(container.streams.audio)
        n_frames = int(stream.frames or 0)
        if n_frames <= 0:
            # Matroska and others do not store the count: count the packets.
            n_frames, last_end = 0, None  # last_end: where the last packet ends, in seconds
            try:
                for packet in container.demux(stream):
                    if not packet.size:
                        continue
                    n_frames += 1
                    if packet.pts is not None and packet.duration and stream.time_base:
                        end = float((packet.pts + packet.duration) * stream.time_base)
                        last_end = end if last_end is None else max(last_end, end)
            except av.error.FFmpegError as exc:
                raise SequenceError(
                    f"{path}: the video is truncated or corrupt ({_reason(exc)})"
                ) from None
            # The header's duration (written last by the muxer) tells a
            # truncated file: fewer packets than the duration holds. Rounding
            # can make an intact file look one frame short, so one missing
            # frame counts only where the packets also end half a frame or
            # more before the duration.
            duration = (
                float(stream.duration * stream.time_base)
                if stream.duration and stream.time_base
                else (container.duration or 0) / 1e6
            )
            expected = int(round(duration * float(fps))) if fps and duration else 0
            start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
            # The container's duration spans every stream: with audio it may
            # run past the video's last frame, so only the video's own
            # duration (or a file with no other stream) can tell.
            own = bool(stream.duration) or len(container.streams) == 1
            short = (
                own
                and bool(fps)
                and last_end is not None
                and last_end - start < duration - 0.5 / float(fps)
            )
            if expected and (n_frames < expected - 1 or (n_frames < expected and short)):
                raise SequenceError(
                    f"{path}: the video is truncated: {n_frames} frames where its header "
                    f"says {expected}"
                )
        if n_frames <= 0:
            raise SequenceError(f"{path}: the video holds no frame")
        return SequenceSource(
            path,
            "video",
            n_frames,
            (height, width, 3) if colour else (height, width),
            dtype,
            Fraction(fps) if fps else None,
            ctx.name,
            pix_fmt,
            int(ctx.bit_rate or stream.bit_rate or container.bit_rate or 0) or None,
            has_audio,
            [fmt],
        )
    finally:
        container.close()


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:200] or type(exc).__name__


def _video_frames(source: SequenceSource) -> Iterator[np.ndarray]:
    av = _av()
    fmt = source.files[0]
    count = 0
    try:
        with av.open(str(source.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                pixels = frame.to_ndarray(format=fmt)
                if pixels.shape != source.frame_shape:
                    raise SequenceError(
                        f"{source.path}: frame {count} is {pixels.shape[1]}x{pixels.shape[0]}, "
                        f"the video {source.frame_shape[1]}x{source.frame_shape[0]} "
                        "(size changes within a video are not supported)"
                    )
                count += 1
                yield pixels
    except av.error.FFmpegError as exc:
        raise SequenceError(
            f"{source.path}: the video is truncated or corrupt: decoding failed after "
            f"{count} of {source.n_frames} frames ({_reason(exc)})"
        ) from None
    if count != source.n_frames:
        raise SequenceError(
            f"{source.path}: the video is truncated or corrupt: {count} of "
            f"{source.n_frames} frames could be decoded"
        )


# --------------------------------------------------------------------------- TIFF, folders


def _open_tiff(path: Path) -> SequenceSource:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = _frame_pages(tif)
            n = len(pages)
            if n == 0:
                raise SequenceError(f"{path}: the TIFF file holds no image")
            series = tif.series[0]
            if "T" in series.axes and "Z" in series.axes:
                return _open_hyperstack(path, tif, series)
            first = pages[0]
            shape, dtype = _page_frame_shape(first), np.dtype(first.dtype)
            extra = {"resolution": _resolution(first)}
            if (
                tif.is_imagej
                and len(series.axes) == 3
                and series.axes.endswith("YX")
                and dtype.type in (np.uint8, np.uint16, np.float32)
            ):
                # An ImageJ stack (a Z-stack, a time-lapse): written back as
                # one, with its axis, voxel size, unit and frame interval.
                extra["axes"] = series.axes
                extra["metadata"] = _imagej_metadata(tif)
            for i in range(1, n):
                page = pages[i]
                if _page_frame_shape(page) != shape or np.dtype(page.dtype) != dtype:
                    raise SequenceError(
                        f"{path}: page {i} has shape {_page_frame_shape(page)} and sample type "
                        f"{page.dtype}, page 0 {shape} and {dtype}: all frames of a sequence "
                        "must match"
                    )
    except SequenceError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for bad files
        raise SequenceError(f"{path}: cannot read it as a TIFF stack ({_reason(exc)})") from None
    _check_frame(path, shape, dtype)
    return SequenceSource(path, "tiff", n, shape, dtype, tiff_metadata=extra)


def _frame_pages(tif) -> list:
    """A stack's frames: its pages without reduced-resolution ones (thumbnails)."""
    return [page for page in tif.pages if not page.is_reduced]


def _page_frame_shape(page) -> tuple:
    """A page's frame shape, channels last (an RGB page stored plane by plane,
    ``PlanarConfiguration`` 2, has shape ``(3, Y, X)`` in tifffile)."""
    shape = tuple(page.shape)
    if _planar(page):
        shape = shape[1:] + shape[:1]
    return shape


def _planar(page) -> bool:
    return int(page.planarconfig) == 2 and len(page.shape) == 3


def _imagej_metadata(tif) -> dict:
    """What an ImageJ output keeps of the input's: voxel size, unit, frame interval."""
    keep = ("spacing", "unit", "finterval")
    return {k: v for k, v in (tif.imagej_metadata or {}).items() if k in keep}


def _resolution(page):
    """``(x, y)`` pixels per unit from a page's resolution tags, or None
    (:func:`nlmeans.io._tiff_resolution`, the unit left to the stack's metadata)."""
    from .io import _tiff_resolution

    found = _tiff_resolution(page, keep_one_to_one=True)
    return None if found is None else found[:2]


def _open_hyperstack(path: Path, tif, series) -> SequenceSource:
    """A TZYX hyperstack: volumes over time."""
    if series.axes != "TZYX":
        raise SequenceError(
            f"{path}: a {series.axes} hyperstack; volumes over time are read from gray TZYX "
            "stacks only (split the channels into files first)"
        )
    dtype = np.dtype(series.dtype)
    if dtype.type not in (np.uint8, np.uint16, np.float32):
        raise SequenceError(f"{path}: volumes of sample type {dtype} are not supported")
    metadata = _imagej_metadata(tif)
    resolution = _resolution(tif.pages[0])
    return SequenceSource(
        path,
        "tiff",
        int(series.shape[0]),
        tuple(int(n) for n in series.shape[1:]),
        dtype,
        depth=int(series.shape[1]),
        tiff_metadata={"metadata": metadata, "resolution": resolution, "axes": "TZYX"},
    )


def _check_frame(path, shape, dtype) -> None:
    if dtype.type not in (np.uint8, np.uint16, np.float32, np.float64):
        raise SequenceError(f"{path}: frames of sample type {dtype} are not supported")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3)):
        raise SequenceError(
            f"{path}: frames of shape {shape} are not gray or RGB images (alpha is not supported)"
        )


def _tiff_frames(source: SequenceSource) -> Iterator[np.ndarray]:
    import tifffile

    with tifffile.TiffFile(source.path) as tif:
        if source.depth is not None:
            # The hyperstack's pages are in T, Z order: a time point is
            # ``depth`` consecutive pages of the series.
            for t in range(source.n_frames):
                pages = range(t * source.depth, (t + 1) * source.depth)
                yield tif.asarray(key=pages, series=0).reshape(source.frame_shape)
            return
        for page in _frame_pages(tif)[: source.n_frames]:
            frame = page.asarray()
            yield np.moveaxis(frame, 0, -1) if _planar(page) else frame


def _open_folder(path: Path) -> SequenceSource:
    from PIL import Image

    files = sorted(
        (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES),
        key=lambda p: p.name,
    )
    files = [p for p in files if not p.name.startswith(".")]
    if not files:
        raise SequenceError(f"{path}: the folder holds no PNG, TIFF or JPEG frame")
    # Sizes from the headers alone, so that a folder of mixed sizes is
    # refused before any frame is denoised.
    sizes = []
    for p in files:
        try:
            with Image.open(p) as im:
                sizes.append(im.size)
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files
            raise SequenceError(f"{p}: cannot read it as an image ({_reason(exc)})") from None
    for p, size in zip(files, sizes):
        if size != sizes[0]:
            raise SequenceError(
                f"{path}: frames of different sizes: {files[0].name} is {sizes[0][0]}x{sizes[0][1]}, "
                f"{p.name} is {size[0]}x{size[1]}"
            )
    first = _read_frame(files[0])
    _check_frame(files[0], first.shape, first.dtype)
    return SequenceSource(path, "folder", len(files), first.shape, first.dtype, files=files)


def _read_frame(path: Path) -> np.ndarray:
    from .io import read_image

    image = read_image(path)
    if image.has_alpha:
        raise SequenceError(f"{path}: frames with an alpha channel are not supported")
    return image.pixels


def _folder_frames(source: SequenceSource) -> Iterator[np.ndarray]:
    for p in source.files:
        pixels = _read_frame(p)
        if pixels.shape != source.frame_shape or pixels.dtype != source.dtype:
            raise SequenceError(
                f"{p}: shape {pixels.shape} {pixels.dtype} differs from the first frame's "
                f"{source.frame_shape} {source.dtype}"
            )
        yield pixels


# --------------------------------------------------------------------------- writing


def _encoder_settings(codec: str, source: SequenceSource) -> tuple[dict, int | None]:
    """Encoder options and bit rate for high quality in ``codec``."""
    if codec in ("hevc", "libx265"):
        # x265 prints its banner and settings on stderr unless told not to.
        return {"crf": "17", "preset": "medium", "x265-params": "log-level=error"}, None
    if codec in ("h264", "libx264"):
        return {"crf": "17", "preset": "medium"}, None
    if codec in ("vp9", "libvpx-vp9", "vp8", "libvpx"):
        return {"crf": "20", "b": "0"}, None
    if codec == "ffv1":
        return {"level": "3", "slicecrc": "1"}, None
    h, w = source.frame_shape[:2]
    fps = float(source.fps or DEFAULT_FPS)
    # Intra or older codecs: a generous bit rate (about 1 bit per pixel).
    high = int(w * h * fps)
    return {}, max(high, 2 * (source.bit_rate or 0))


def output_kind(dst) -> str:
    """``"video"``, ``"tiff"`` or ``"folder"``: what :class:`SequenceWriter`
    writes at ``dst``, by its suffix; :class:`SequenceError` for another."""
    suffix = Path(dst).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix == "":
        return "folder"
    raise SequenceError(
        f"{dst}: cannot tell the output kind from {suffix!r}; use "
        f"{', '.join(VIDEO_SUFFIXES)}, .tif, or a folder name without a suffix"
    )


# FFmpeg's AVCOL_RANGE_JPEG: full-range samples.
_FULL_RANGE = 2


class SequenceWriter:
    """Write frames to a video file, a multi-page TIFF or a folder, one at a time.

    Use as a context manager; :meth:`write` each frame, in order. The output
    is assembled under a temporary name in the destination's folder and moved
    to ``dst`` when the block exits without an error and every expected
    frame was written; otherwise the temporary output is removed.

    Parameters
    ----------
    dst : path
        ``.mp4``/``.mkv``/``.avi``/``.mov`` (video), ``.tif``/``.tiff`` (TIFF
        stack) or a name without a suffix (a folder of frames).
    like : SequenceSource
        The input: frame count, size, frame rate, codec.
    lossless : bool
        Video: FFV1 (``.mkv`` only) instead of the input's codec.
    force : bool
        Replace an existing ``dst``.

    Notes
    -----
    Everything that can be refused is checked in the constructor (before any
    frame is denoised): an existing destination, a container that cannot
    hold the codec, a missing PyAV.
    """

    def __init__(self, dst, *, like: SequenceSource, lossless: bool = False, force: bool = False):
        self.dst = Path(dst)
        self.like = like
        self.count = 0
        suffix = self.dst.suffix.lower()
        if self.dst.exists() and not force:
            raise FileExistsError(f"{self.dst} already exists (use --force to overwrite)")
        if self.dst.exists() and same_file(self.dst, like.path):
            raise SequenceError(f"{self.dst}: refusing to write onto the input")
        self.kind = output_kind(self.dst)
        self._frame_names = _frame_names(like) if self.kind == "folder" else []
        if self.dst.is_dir():
            _check_replaceable_folder(self.dst, Path(like.path), self._frame_names)
        if lossless and self.kind == "video" and suffix != ".mkv":
            raise SequenceError(
                f"{self.dst}: lossless video is FFV1 in Matroska: name the output .mkv "
                "(or a .tif stack or a folder of frames)"
            )
        if self.kind == "video" and like.dtype.kind == "f":
            raise SequenceError(
                f"{self.dst}: float frames cannot go into a video; write a .tif stack or a folder"
            )
        self.tmp = self.dst.with_name(f".{self.dst.stem}.partial-{os.getpid()}{self.dst.suffix}")
        self._handle = None
        self._stream = None
        self._full_range = False
        if self.kind == "video":
            self._open_video(lossless)
        elif self.kind == "tiff" and (like.depth is not None or "axes" in like.tiff_metadata):
            self._handle = _HyperstackWriter(self.tmp, like)
        elif self.kind == "tiff":
            import tifffile

            big = like.n_frames * int(np.prod(like.frame_shape)) * like.dtype.itemsize > 2**31
            self._handle = tifffile.TiffWriter(self.tmp, bigtiff=big)
        else:
            self.tmp.mkdir(parents=False)

    def _open_video(self, lossless: bool) -> None:
        av = _av()
        like = self.like
        codec = "ffv1" if lossless else (like.codec or "h264")
        fmt = CONTAINERS[self.dst.suffix.lower()]
        try:
            container = av.open(str(self.tmp), "w", format=fmt)
        except (av.error.FFmpegError, OSError) as exc:
            raise SequenceError(f"{self.dst}: cannot write it ({_reason(exc)})") from None
        self._handle = container
        try:
            if codec not in container.supported_codecs:
                raise SequenceError(
                    f"{self.dst}: a {self.dst.suffix} file cannot hold {codec} video; "
                    "choose another container (.mkv holds most codecs) or --lossless with .mkv"
                )
            try:
                stream = container.add_stream(codec, rate=like.fps or DEFAULT_FPS)
            except (av.error.FFmpegError, ValueError) as exc:
                raise SequenceError(
                    f"{self.dst}: no encoder for {codec} video in this PyAV build ({_reason(exc)})"
                ) from None
            h, w = like.frame_shape[:2]
            stream.width, stream.height = w, h
            formats = [f.name for f in (stream.codec_context.codec.video_formats or [])]
            want = like.pix_fmt if like.kind == "video" else ("gray" if not like.is_color else None)
            deep = like.dtype.itemsize > 1
            if lossless:
                # Every bit of the frames: 16-bit frames (from 10-bit video,
                # say) stay 16-bit, colour stays RGB (no 4:2:0).
                if like.is_color:
                    want = "rgb48le" if deep else "bgr0"
                else:
                    want = "gray16le" if deep else "gray"
            odd = w % 2 or h % 2
            if want is not None and (want in formats or not formats):
                stream.pix_fmt = want  # no list: the encoder takes any format (rawvideo)
            elif odd and "yuv444p" in formats:
                # 4:2:0 halves the chroma: its encoders refuse odd sizes.
                stream.pix_fmt = "yuv444p"
            elif formats:
                stream.pix_fmt = formats[0] if "yuv420p" not in formats else "yuv420p"
            # Gray frames go in as they are, full range (0 is black, 255 or
            # 65535 white); unmarked, players and decoders take them for
            # limited-range video and stretch them (y = 1.16 x - 18).
            self._full_range = stream.pix_fmt.startswith("gray")
            if self._full_range:
                stream.codec_context.color_range = _FULL_RANGE
            options, bit_rate = _encoder_settings(codec, like)
            stream.options = options
            if bit_rate:
                stream.bit_rate = bit_rate
            self._stream = stream
        except BaseException:
            self._discard()
            raise

    def write(self, frame: np.ndarray) -> None:
        """Append one frame (the input's shape and dtype)."""
        frame = np.asarray(frame)
        if self.kind == "video":
            av = _av()
            fmt = self.like.files[0] if self.like.kind == "video" else None
            if fmt is None:
                deep = frame.dtype == np.uint16
                fmt = (
                    ("rgb48le" if deep else "rgb24")
                    if frame.ndim == 3
                    else ("gray16le" if deep else "gray")
                )
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=fmt)
            if self._full_range:
                video_frame.color_range = _FULL_RANGE
            video_frame.pts = self.count
            video_frame.time_base = 1 / Fraction(
                self._stream.codec_context.framerate or DEFAULT_FPS
            )
            try:
                for packet in self._stream.encode(video_frame):
                    self._handle.mux(packet)
            except av.error.FFmpegError as exc:
                raise SequenceError(f"{self.dst}: encoding failed ({_reason(exc)})") from None
        elif self.kind == "tiff" and self.like.depth is not None:
            self._handle.write(frame)  # a volume
        elif self.kind == "tiff" and "axes" in self.like.tiff_metadata:
            self._handle.write(frame[np.newaxis])  # one page of an ImageJ stack
        elif self.kind == "tiff":
            self._handle.write(
                frame,
                contiguous=True,
                photometric="rgb" if frame.ndim == 3 else "minisblack",
                resolution=self.like.tiff_metadata.get("resolution"),
            )
        else:
            from .io import write_image

            suffix = ".tif" if frame.dtype.kind == "f" else ".png"
            write_image(self.tmp / f"{self._frame_names[self.count]}{suffix}", frame)
        self.count += 1

    def _close_handle(self) -> None:
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        handle.close()

    def _discard(self) -> None:
        try:
            self._close_handle()
        except Exception:  # noqa: BLE001 - already failing: the temporary output goes anyway
            pass
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp, ignore_errors=True)
        elif self.tmp.exists():
            self.tmp.unlink()

    def finish(self) -> Path:
        """Flush, check the frame count and move the output to its name."""
        if self.count != self.like.n_frames:
            raise SequenceError(
                f"{self.dst}: {self.count} of {self.like.n_frames} frames were written"
            )
        if self.kind == "video":
            av = _av()
            try:
                for packet in self._stream.encode(None):
                    self._handle.mux(packet)
            except av.error.FFmpegError as exc:
                raise SequenceError(f"{self.dst}: encoding failed ({_reason(exc)})") from None
        self._close_handle()
        if self.dst.is_dir():
            old = self.dst.with_name(f".{self.dst.name}.old-{os.getpid()}")
            self.dst.rename(old)
            self.tmp.rename(self.dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.dst)
        return self.dst

    def __enter__(self) -> SequenceWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.finish()
            except BaseException:
                self._discard()
                raise
        else:
            self._discard()


class _HyperstackWriter:
    """An ImageJ stack written a volume (TZYX) or a frame (ZYX, TYX) at a time.

    tifffile writes an ImageJ hyperstack from an iterator of pages when it is
    given the whole shape first (ImageJ keeps the shape in the first page).
    That write runs in a thread that takes the pages of each volume from a
    short queue, so only a volume or two are held at a time. An incomplete
    or failed write raises in :meth:`write` or :meth:`close`.
    """

    def __init__(self, path: Path, like: SequenceSource):
        if like.dtype.type not in (np.uint8, np.uint16, np.float32):
            raise SequenceError(f"{path}: ImageJ stacks hold uint8, uint16 or float32 images")
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._ended = False  # the end marker was taken from the queue
        shape = (like.n_frames,) + tuple(like.frame_shape)
        self._thread = threading.Thread(
            target=self._run, args=(path, shape, like), name="nlmeans-tiff", daemon=True
        )
        self._thread.start()

    def _pages(self):
        while (volume := self._queue.get()) is not None:
            yield from volume
        self._ended = True

    def _run(self, path: Path, shape, like: SequenceSource) -> None:
        import tifffile

        extra = like.tiff_metadata
        metadata = {"axes": extra.get("axes", "TZYX"), **extra.get("metadata", {})}
        try:
            with tifffile.TiffWriter(path, imagej=True) as tif:
                tif.write(
                    self._pages(),
                    shape=shape,
                    dtype=like.dtype,
                    photometric="minisblack",
                    metadata=metadata,
                    resolution=extra.get("resolution"),
                )
        except BaseException as exc:  # noqa: BLE001 - handed to the writing thread
            self._error = exc
            while not self._ended:  # let a waiting producer finish
                self._ended = self._queue.get() is None

    def _put(self, item) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise SequenceError(f"writing the hyperstack failed ({_reason(self._error)})")

    def write(self, volume: np.ndarray) -> None:
        self._raise()
        self._put(np.asarray(volume))

    def close(self) -> None:
        if self._thread.is_alive():
            self._put(None)
        self._thread.join()
        self._raise()


# The files of a folder-of-frames output numbered by SequenceWriter.write.
_FRAME_FILE = re.compile(r"frame_\d{6}\.(png|tif)")


def _frame_names(like: SequenceSource) -> list[str]:
    """The names (without suffix) of a folder output's frames, in order: the
    input frames' own for a folder input whose names stay distinct once their
    suffixes go (compared without case: a.PNG and a.png would clash on some
    file systems), else ``frame_000000`` ...."""
    stems = [Path(f).stem for f in like.files] if like.kind == "folder" else []
    if len(stems) == like.n_frames and len({s.lower() for s in stems}) == len(stems):
        return stems
    return [f"frame_{i:06d}" for i in range(like.n_frames)]


def _check_replaceable_folder(folder: Path, source: Path, names=()) -> None:
    """Refuse to replace ``folder`` (``force`` or not) unless it holds only the
    frames of an earlier folder output (numbered, or the ``names`` this output
    gives its frames): replacing removes it whole, and the input, or files
    that are not ours, must never go with it."""
    if holds(folder, source):
        raise SequenceError(
            f"{folder}: the input {source} is inside it; refusing to replace the folder"
        )
    ours = {f"{name}{suffix}" for name in names for suffix in (".png", ".tif")}
    others = sorted(
        p.name
        for p in folder.iterdir()
        if not ((_FRAME_FILE.fullmatch(p.name) or p.name in ours) and p.is_file())
    )
    if others:
        raise SequenceError(
            f"{folder}: holds {len(others)} entr{'y' if len(others) == 1 else 'ies'} that "
            f"{'is' if len(others) == 1 else 'are'} not frames that this output writes "
            f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); refusing to "
            "replace it, even with --force: name another output folder"
        )
