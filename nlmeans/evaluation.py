"""Compare denoisers on images with the protocol of the published tables.

This is the machinery behind ``nlmeans compare`` (the command line is a thin
layer over :func:`compare_synthetic`, :func:`compare_paired` and
:func:`write_report`).

Protocol (the one of the DnCNN / BM3D / NLRN tables; README, "Reproducing every number"):

* the clean image as float in [0, 1] (``uint8 / 255``, ``uint16 / 65535``,
  float images as they are; an alpha channel is dropped);
* ``noisy = clean + N(0, (sigma / 255)^2)``, **not clipped, not quantised**;
  ``sigma`` is given in 8-bit gray levels whatever the file's bit depth. The
  noise of the ``i``-th image of the sorted list comes from
  ``numpy.random.default_rng(seed + i)`` (``seed`` is 0 unless asked
  otherwise), a fresh generator for every noise level;
* PSNR = ``peak_signal_noise_ratio(clean, clip(out, 0, 1), data_range=1)``,
  SSIM = ``structural_similarity(clean, clip(out, 0, 1), data_range=1)``
  (``channel_axis=-1`` for colour), averaged over images;
* ``seconds``: wall time of the one denoising call (each method first runs
  once, untimed, on a small crop so that compilation and model loading are not
  counted).

Methods (:data:`ALL_METHODS`):

``fast``, ``exact``, ``patchwise``, ``neural``
    :func:`nlmeans.denoise` with the given ``method`` and automatic parameters
    (``sigma`` estimated from the noisy image): what a user gets by default.
``neural-ensemble``
    ``neural`` with ``ensemble=True``: the mean of the network's outputs over
    the 8 flips and rotations of the image (8 times the time). Not in
    :data:`DEFAULT_METHODS`.
``skimage-same``
    :func:`skimage.restoration.denoise_nl_means`, fast mode, with the patch
    size, search distance, ``h`` and ``sigma`` that
    :func:`nlmeans.resolve_parameters` picks for ``fast`` on that image.
``skimage-best``
    scikit-image with its own good setting, given the true sigma: fast mode,
    ``patch_size=5, patch_distance=6`` (its docstring's example), ``h = 0.7
    sigma``, ``sigma = sigma``. On set12 images 01-07 (sigma 15/25/50) this
    was within 0.1 dB of the best of h in {0.6, 0.7, 0.8} sigma and beat
    patch 7 / distance 10. With ``--noisy/--clean`` pairs the sigma is
    estimated (:func:`nlmeans.estimate_noise_level`).
``opencv``
    :func:`cv2.fastNlMeansDenoising` on ``clip(round(noisy * 255), 0, 255)``
    as uint8, ``h = 0.95 * sigma`` gray levels, template 7, search window 21
    (OpenCV's defaults). ``k = 0.95`` was the best single factor of
    {0.85, 0.95, 1.05} over sigma 15/25/50 on set12 images 01-07. Colour
    images go to the same function as 3-channel images (one joint patch
    distance over the channels, as in :mod:`nlmeans`), with the same h:
    ``fastNlMeansDenoisingColored`` (Lab, ``hColor = h``) came out 3-6 dB
    worse on the sample images, at times below the noisy input.
    ``cv2.cuda`` is never called.
``bm3d``
    ``bm3d.bm3d(noisy, sigma_psd=sigma / 255)`` (``bm3d_rgb`` for colour)
    when the optional ``bm3d`` package is installed.

``skimage`` stands for both scikit-image entries, ``ours`` for the four
:mod:`nlmeans` methods, ``all`` for everything. A method whose package (or
shipped model) is missing is reported as ``not installed`` / ``unavailable``
in its records, never as a crash; an error on one image is recorded and the
comparison goes on.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import platform
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ._checks import METHODS
from .io import atomic_write_bytes, read_image, to_unit_float, write_image

__all__ = [
    "ALL_METHODS",
    "DEFAULT_METHODS",
    "DEFAULT_SIGMAS",
    "OUR_METHODS",
    "Comparison",
    "Record",
    "add_noise",
    "compare_paired",
    "compare_synthetic",
    "load_clean",
    "make_montage",
    "measure",
    "parse_methods",
    "parse_sigmas",
    "run_method",
    "write_report",
]

OUR_METHODS = METHODS  # nlmeans.denoise's methods
ENSEMBLE_METHODS = ("neural-ensemble",)  # nlmeans.denoise(method="neural", ensemble=True)
EXTERNAL_METHODS = ("skimage-same", "skimage-best", "opencv", "bm3d")
ALL_METHODS = OUR_METHODS + ENSEMBLE_METHODS + EXTERNAL_METHODS
DEFAULT_METHODS = OUR_METHODS + EXTERNAL_METHODS
DEFAULT_SIGMAS = (15.0, 25.0, 50.0)
_ALIASES = {
    "skimage": ("skimage-same", "skimage-best"),
    "ours": OUR_METHODS,
    "all": ALL_METHODS,
}

#: Settings of the reference methods (see the module docstring).
SKIMAGE_BEST = {"fast_mode": True, "patch_size": 5, "patch_distance": 6, "h_over_sigma": 0.7}
OPENCV = {"h_over_sigma_gray_levels": 0.95, "templateWindowSize": 7, "searchWindowSize": 21}

#: Status values of a :class:`Record`.
OK, NOT_INSTALLED, UNAVAILABLE, ERROR = "ok", "not installed", "unavailable", "error"


class MethodUnavailable(Exception):
    """Raised by a runner when the method cannot run here at all."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Record:
    """One method on one noisy image."""

    image: str
    sigma: float | None  #: noise level in 8-bit gray levels; None for given noisy/clean pairs
    method: str
    psnr: float | None = None
    ssim: float | None = None
    seconds: float | None = None
    status: str = OK
    message: str = ""
    parameters: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def best_of(key: str, values: Iterable[float | None]) -> float | None:
    """The best of ``values`` of the column ``key``: the lowest time, the highest PSNR or SSIM.

    None values (methods that did not run) are left out; None when nothing is
    left. Every renderer marks a value as the best with :func:`is_best`, so the
    terminal table and the Markdown report always agree.
    """
    present = [v for v in values if v is not None]
    if not present:
        return None
    return min(present) if key == "seconds" else max(present)


def is_best(value: float | None, best: float | None) -> bool:
    """Whether ``value`` is the column's best (as :func:`best_of` gave it).

    Exact equality: ``best`` is one of the values themselves, computed the same
    way, so no tolerance is needed, and an infinite PSNR (a perfect output)
    counts as the best like any other value.
    """
    return value is not None and best is not None and value == best


@dataclass
class Comparison:
    """The outcome of a comparison: records plus what is needed to redo it."""

    records: list[Record]
    methods: list[str]
    sigmas: list[float | None]
    images: list[str]
    mode: str  #: "synthetic" or "paired"
    seed: int | None
    threads: int | None = None  #: as given to nlmeans / OpenCV (None: all cores)
    #: (image, sigma) -> {"clean"/"noisy"/method: float image in [0, 1]}; only with keep_images
    images_data: dict = field(default_factory=dict, repr=False)

    def averages(self) -> list[dict]:
        """Mean PSNR / SSIM / seconds per (sigma, method) over the images where it ran."""
        rows = []
        for sigma in self.sigmas:
            for method in self.methods:
                recs = [r for r in self.records if r.sigma == sigma and r.method == method]
                good = [r for r in recs if r.status == OK]
                row = {"sigma": sigma, "method": method, "images": len(good)}
                for key in ("psnr", "ssim", "seconds"):
                    values = [getattr(r, key) for r in good if getattr(r, key) is not None]
                    row[key] = float(np.mean(values)) if values else None
                if good and len(good) == len(recs):
                    row["status"] = OK
                elif good:
                    row["status"] = f"{len(recs) - len(good)} of {len(recs)} failed"
                else:
                    row["status"] = recs[0].status if recs else "not run"
                    if recs and recs[0].message:
                        row["message"] = recs[0].message
                rows.append(row)
        return rows

    def best(self, sigma, key: str) -> float | None:
        """Best average value of ``key`` at ``sigma`` (see :func:`best_of`), among
        the methods that ran on every image (a mean over fewer images, the
        others failed, is not comparable)."""
        return best_of(
            key,
            [row[key] for row in self.averages() if row["sigma"] == sigma and row["status"] == OK],
        )

    def best_for_image(self, image: str, sigma, key: str = "psnr") -> float | None:
        """Best value of ``key`` among the methods run on one noisy image (see :func:`best_of`)."""
        return best_of(
            key,
            [getattr(r, key) for r in self.records if r.image == image and r.sigma == sigma],
        )

    def to_dict(self) -> dict:
        return {
            "protocol": protocol_description(self.mode, self.seed),
            "settings": method_settings(),
            "mode": self.mode,
            "seed": self.seed,
            "threads": self.threads,
            "sigmas": self.sigmas,
            "methods": self.methods,
            "images": self.images,
            "records": [r.as_dict() for r in self.records],
            "averages": self.averages(),
            "environment": _environment(),
        }


# --------------------------------------------------------------------------- parsing


def parse_sigmas(text: str | Iterable[float]) -> list[float]:
    """ "15,25,50" -> [15.0, 25.0, 50.0] (8-bit gray levels, 0 < sigma <= 255)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        if isinstance(item, str):
            item = item.strip()
            if not item:
                continue
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise ValueError(f"sigma values must be numbers (gray levels), got {item!r}") from None
        if not math.isfinite(value) or value <= 0 or value > 255:
            raise ValueError(f"sigma must be in (0, 255] gray levels, got {item!r}")
        if value not in out:
            out.append(value)
    if not out:
        raise ValueError("give at least one sigma value")
    return out


def parse_methods(text: str | Iterable[str]) -> list[str]:
    """ "fast,skimage,bm3d" -> ["fast", "skimage-same", "skimage-best", "bm3d"]."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        expanded = _ALIASES.get(name, (name,))
        for method in expanded:
            if method not in ALL_METHODS:
                known = ", ".join(list(ALL_METHODS) + list(_ALIASES))
                raise ValueError(f"unknown method {item.strip()!r}; choose from {known}")
            if method not in out:
                out.append(method)
    if not out:
        raise ValueError("give at least one method")
    return out


# --------------------------------------------------------------------------- data


def load_clean(path: str | os.PathLike, *, noisy: bool = False) -> tuple[np.ndarray, int | None]:
    """(float64 image in [0, 1] without alpha, channel_axis) from an image file.

    The protocol measures on [0, 1] (sigma in 8-bit gray levels, PSNR with a
    data range of 1): a float file on another scale (0-255 values: -36 dB
    for every method) is refused, naming the file, and so is a reference
    holding NaN. (A ``noisy`` input holding NaN is every method's error.)
    """
    from ._checks import UNIT_SCALE_LIMITS

    image = read_image(path)
    color, _alpha = image.split_alpha()
    floats = to_unit_float(color)
    finite = np.isfinite(floats)
    if not noisy and not finite.all():
        raise ValueError(f"{path}: the image contains NaN or infinite values")
    if not finite.any():
        return floats, (-1 if floats.ndim == 3 else None)
    low, high = float(floats[finite].min()), float(floats[finite].max())
    if low < UNIT_SCALE_LIMITS[0] or high > UNIT_SCALE_LIMITS[1]:
        raise ValueError(
            f"{path}: float values on [{low:.4g}, {high:.4g}], but compare measures on the "
            "[0, 1] scale; divide the file by its white level first"
        )
    return floats, (-1 if floats.ndim == 3 else None)


def add_noise(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """``clean + N(0, (sigma/255)^2)`` from ``default_rng(seed)``; not clipped."""
    rng = np.random.default_rng(seed)
    return clean + rng.normal(0.0, sigma / 255.0, size=clean.shape)


def measure(clean: np.ndarray, output: np.ndarray) -> tuple[float, float | None]:
    """(PSNR, SSIM) of ``clip(output, 0, 1)`` against ``clean`` (data range 1).

    SSIM uses scikit-image's 7x7 window; images smaller than that get the
    largest odd window that fits (SSIM is None below 3 pixels).
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    out = np.clip(np.asarray(output, dtype=np.float64), 0.0, 1.0)
    clean = np.asarray(clean, dtype=np.float64)
    with np.errstate(divide="ignore"):  # a perfect output has infinite PSNR
        psnr = peak_signal_noise_ratio(clean, out, data_range=1.0)
    kwargs = {"channel_axis": -1} if clean.ndim == 3 else {}
    side = min(clean.shape[:2])
    if side < 7:  # skimage's 7x7 window does not fit: use the largest odd one that does
        if side < 3:
            return float(psnr), None
        kwargs["win_size"] = side if side % 2 else side - 1
    ssim = structural_similarity(clean, out, data_range=1.0, **kwargs)
    return float(psnr), float(ssim)


# --------------------------------------------------------------------------- methods


def run_method(
    method: str,
    noisy: np.ndarray,
    *,
    sigma: float | None,
    channel_axis: int | None,
    threads: int | None = None,
) -> tuple[np.ndarray, dict]:
    """Denoise a float ``noisy`` image with one method of :data:`ALL_METHODS`.

    ``sigma``: the true noise level on the [0, 1] scale, used only by the
    reference methods that need one (``skimage-best``, ``opencv``, ``bm3d``);
    None means estimate it from ``noisy``. Returns ``(float64 output, settings)``.
    Raises :class:`MethodUnavailable` when the method cannot run here.
    """
    if method in OUR_METHODS:
        return _run_ours(method, noisy, channel_axis, threads)
    if method in ENSEMBLE_METHODS:
        return _run_ours("neural", noisy, channel_axis, threads, ensemble=True)
    if method == "skimage-same":
        return _run_skimage_same(noisy, channel_axis)
    if sigma is None:
        import nlmeans

        # The sigma nlmeans's automatic path uses (white or correlated noise).
        sigma = nlmeans.estimate_noise_level(noisy, channel_axis=channel_axis).sigma
    if method == "skimage-best":
        return _run_skimage_best(noisy, sigma, channel_axis)
    if method == "opencv":
        return _run_opencv(noisy, sigma, threads)
    if method == "bm3d":
        return _run_bm3d(noisy, sigma)
    raise ValueError(f"unknown method {method!r}")


def _run_ours(method, noisy, channel_axis, threads, ensemble=False):
    import nlmeans

    try:
        out, params = nlmeans.denoise(
            noisy,
            method=method,
            channel_axis=channel_axis,
            threads=threads,
            ensemble=ensemble,
            return_params=True,
        )
    except ImportError as exc:
        raise MethodUnavailable(NOT_INSTALLED, str(exc)) from None
    except FileNotFoundError as exc:  # e.g. no shipped neural weights
        raise MethodUnavailable(UNAVAILABLE, str(exc)) from None
    return np.asarray(out, dtype=np.float64), _params_dict(params)


def _params_dict(params) -> dict:
    out = {}
    for key in (
        "method",
        "sigma",
        "h",
        "patch_size",
        "patch_distance",
        "sigma_estimated",
        "color_space",
        "h_chroma",
        "ensemble",
    ):
        value = getattr(params, key, None)
        out[key] = float(value) if isinstance(value, (np.floating,)) else value
    return out


def _skimage():
    try:
        from skimage.restoration import denoise_nl_means
    except ImportError as exc:  # pragma: no cover - scikit-image is a dependency
        raise MethodUnavailable(NOT_INSTALLED, f"scikit-image is not installed ({exc})") from None
    return denoise_nl_means


def _skimage_output(out, noisy) -> np.ndarray:
    """``denoise_nl_means`` squeezes a length-1 axis (a 40x1 image comes back
    as (40,)); give the output the input's shape again."""
    out = np.asarray(out, dtype=np.float64)
    return out.reshape(noisy.shape) if out.size == noisy.size else out


def _run_skimage_same(noisy, channel_axis):
    import nlmeans

    denoise_nl_means = _skimage()
    # scikit-image compares channels jointly: the joint-RGB parameters.
    space = "rgb" if channel_axis is not None else "auto"
    p = nlmeans.resolve_parameters(
        noisy, method="fast", channel_axis=channel_axis, color_space=space
    )
    out = denoise_nl_means(
        noisy,
        patch_size=p.patch_size,
        patch_distance=p.patch_distance,
        h=p.h,
        sigma=p.sigma,
        fast_mode=True,
        channel_axis=channel_axis,
    )
    settings = {
        "fast_mode": True,
        "patch_size": p.patch_size,
        "patch_distance": p.patch_distance,
        "h": float(p.h),
        "sigma": float(p.sigma),
        "sigma_estimated": bool(p.sigma_estimated),
    }
    return _skimage_output(out, noisy), settings


def _run_skimage_best(noisy, sigma, channel_axis):
    denoise_nl_means = _skimage()
    h = SKIMAGE_BEST["h_over_sigma"] * sigma
    out = denoise_nl_means(
        noisy,
        patch_size=SKIMAGE_BEST["patch_size"],
        patch_distance=SKIMAGE_BEST["patch_distance"],
        h=h,
        sigma=sigma,
        fast_mode=True,
        channel_axis=channel_axis,
    )
    settings = {
        "fast_mode": True,
        "patch_size": SKIMAGE_BEST["patch_size"],
        "patch_distance": SKIMAGE_BEST["patch_distance"],
        "h": float(h),
        "sigma": float(sigma),
    }
    return _skimage_output(out, noisy), settings


def _run_opencv(noisy, sigma, threads):
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - OpenCV is a dependency
        raise MethodUnavailable(NOT_INSTALLED, f"OpenCV is not installed ({exc})") from None
    u8 = np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8)
    h = OPENCV["h_over_sigma_gray_levels"] * sigma * 255.0
    template, search = OPENCV["templateWindowSize"], OPENCV["searchWindowSize"]
    old_threads = cv2.getNumThreads()
    if threads is not None:
        cv2.setNumThreads(int(threads))
    try:
        # Colour: the 3-channel image directly (joint patch distance over the
        # channels, as in nlmeans), not fastNlMeansDenoisingColored (see above).
        out = cv2.fastNlMeansDenoising(np.ascontiguousarray(u8), None, float(h), template, search)
    finally:
        if threads is not None:
            cv2.setNumThreads(old_threads)
    settings = {
        "h_gray_levels": float(h),
        "templateWindowSize": template,
        "searchWindowSize": search,
    }
    return out.astype(np.float64) / 255.0, settings


def _run_bm3d(noisy, sigma):
    try:
        import bm3d
    except ImportError:
        raise MethodUnavailable(
            NOT_INSTALLED, 'pip install "nlmeans[bm3d]" (or pip install bm3d)'
        ) from None
    if noisy.ndim == 3:
        out = bm3d.bm3d_rgb(noisy, sigma_psd=sigma)
    else:
        out = bm3d.bm3d(noisy, sigma_psd=sigma)
    return np.asarray(out, dtype=np.float64), {"sigma_psd": float(sigma), "profile": "np"}


# --------------------------------------------------------------------------- running

ProgressCallback = Callable[[str, str, object, int, int], None]


class _Runner:
    """Runs methods over many noisy images, warming each up once, remembering failures."""

    def __init__(self, methods, threads):
        self.methods = list(methods)
        self.threads = threads
        self.unavailable: dict[str, MethodUnavailable] = {}
        self.warm: set = set()

    def run(self, method, noisy, sigma, channel_axis, record: Record) -> np.ndarray | None:
        if method in self.unavailable:
            exc = self.unavailable[method]
            record.status, record.message = exc.status, str(exc)
            return None
        if not np.isfinite(noisy).all():  # OpenCV would take it (as 0) and report a PSNR
            record.status = ERROR
            record.message = "the noisy image contains NaN or infinite values"
            return None
        key = (method, noisy.ndim)
        try:
            if key not in self.warm:
                self._warm_up(method, noisy, sigma, channel_axis)
                self.warm.add(key)
            start = time.perf_counter()
            out, settings = run_method(
                method, noisy, sigma=sigma, channel_axis=channel_axis, threads=self.threads
            )
            record.seconds = time.perf_counter() - start
        except MethodUnavailable as exc:
            self.unavailable[method] = exc
            record.status, record.message = exc.status, str(exc)
            return None
        except Exception as exc:  # noqa: BLE001 - any failure of one method is that method's
            # A third-party method (bm3d, OpenCV) raises what it likes: the
            # comparison records it and goes on (Ctrl-C still stops it).
            record.status = ERROR
            record.message = f"{type(exc).__name__}: {exc}"
            return None
        record.parameters = settings
        return out

    def _warm_up(self, method, noisy, sigma, channel_axis):
        """One untimed call on a small crop (JIT compilation, model loading)."""
        size = 48
        if min(noisy.shape[:2]) <= size:
            crop = noisy
        else:
            crop = np.ascontiguousarray(noisy[:size, :size])
        try:
            run_method(method, crop, sigma=sigma, channel_axis=channel_axis, threads=self.threads)
        except MethodUnavailable:
            raise
        except Exception:  # the timed call will report the problem, if it persists
            pass


def _image_name(path: Path, all_paths: Sequence[Path]) -> str:
    names = [p.name for p in all_paths]
    return path.name if names.count(path.name) == 1 else str(path)


def compare_synthetic(
    paths: Sequence[str | os.PathLike],
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    seed: int = 0,
    threads: int | None = None,
    keep_images: bool = False,
    progress: ProgressCallback | None = None,
) -> Comparison:
    """Add seeded noise to clean images and compare ``methods`` (see the module docstring).

    ``paths`` are sorted (the seed of each image is ``seed + its index``).
    ``keep_images``: keep clean, noisy and every output for montages.
    ``progress(image, method, sigma, done, total)`` is called after each run.
    """
    paths = sorted((Path(p) for p in paths), key=lambda p: str(p))
    if not paths:
        raise ValueError("no images to compare")
    sigmas = parse_sigmas(sigmas)
    methods = parse_methods(methods)
    runner = _Runner(methods, threads)
    result = Comparison([], methods, list(sigmas), [], "synthetic", seed, threads)
    total = len(paths) * len(sigmas) * len(methods)
    done = 0
    for index, path in enumerate(paths):
        name = _image_name(path, paths)
        result.images.append(name)
        clean, axis = load_clean(path)
        for sigma in sigmas:
            noisy = add_noise(clean, sigma, seed + index)
            store = _start_store(result, keep_images, name, sigma, clean, noisy)
            for method in methods:
                record = Record(name, sigma, method)
                out = runner.run(method, noisy, sigma / 255.0, axis, record)
                _finish(record, clean, out, store, result)
                done += 1
                if progress is not None:
                    progress(name, method, sigma, done, total)
    return result


def compare_paired(
    noisy_paths: Sequence[str | os.PathLike],
    clean_paths: Sequence[str | os.PathLike],
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    threads: int | None = None,
    keep_images: bool = False,
    progress: ProgressCallback | None = None,
) -> Comparison:
    """Compare methods on given noisy images against their clean versions.

    The i-th noisy file goes with the i-th clean file (same count, same size);
    one clean file goes with every noisy file (several shots of one scene).
    No noise is added; methods that need sigma get
    :func:`nlmeans.estimate_noise_level` of the noisy image (its ``sigma``). Records carry ``sigma=None``.
    """
    noisy_paths = [Path(p) for p in noisy_paths]
    clean_paths = [Path(p) for p in clean_paths]
    if not noisy_paths:
        raise ValueError("no noisy images given")
    if len(clean_paths) == 1:
        clean_paths = clean_paths * len(noisy_paths)
    if len(noisy_paths) != len(clean_paths):
        raise ValueError(
            f"{len(noisy_paths)} noisy file(s) but {len(clean_paths)} clean file(s): "
            "give one clean file per noisy file, or one for all"
        )
    methods = parse_methods(methods)
    runner = _Runner(methods, threads)
    result = Comparison([], methods, [None], [], "paired", None, threads)
    total = len(noisy_paths) * len(methods)
    done = 0
    for noisy_path, clean_path in zip(noisy_paths, clean_paths):
        name = _image_name(noisy_path, noisy_paths)
        clean, axis = load_clean(clean_path)
        noisy, noisy_axis = load_clean(noisy_path, noisy=True)
        if noisy.shape != clean.shape:
            raise ValueError(
                f"{noisy_path} is {noisy.shape} but {clean_path} is {clean.shape}: "
                "a noisy image and its clean version must have the same size and channels"
            )
        result.images.append(name)
        store = _start_store(result, keep_images, name, None, clean, noisy)
        for method in methods:
            record = Record(name, None, method)
            out = runner.run(method, noisy, None, axis, record)
            _finish(record, clean, out, store, result)
            done += 1
            if progress is not None:
                progress(name, method, None, done, total)
    return result


def _start_store(result, keep, name, sigma, clean, noisy):
    if not keep:
        return None
    store = {"clean": clean.astype(np.float32), "noisy": noisy.astype(np.float32)}
    result.images_data[(name, sigma)] = store
    return store


def _finish(record, clean, out, store, result):
    if out is not None:
        if out.shape != clean.shape:
            record.status = ERROR
            record.message = f"output shape {out.shape} differs from the input {clean.shape}"
        elif not np.all(np.isfinite(out)):
            record.status = ERROR
            record.message = "output contains NaN or infinite values"
        else:
            record.psnr, record.ssim = measure(clean, out)
            if store is not None:
                store[record.method] = out.astype(np.float32)
    result.records.append(record)


# --------------------------------------------------------------------------- describing


def protocol_description(mode: str, seed: int | None) -> str:
    if mode == "paired":
        return (
            "given noisy/clean pairs (no synthetic noise); PSNR/SSIM of clip(output, 0, 1) "
            "against the clean image, data range 1"
        )
    return (
        "clean image scaled to [0, 1]; noisy = clean + N(0, (sigma/255)^2), not clipped or "
        f"quantised; noise of the i-th image (sorted list) from numpy.random.default_rng({seed} + i); "
        "PSNR/SSIM (skimage.metrics) of clip(output, 0, 1), data range 1"
    )


def method_settings() -> dict:
    return {
        "fast/exact/patchwise/neural": "nlmeans.denoise(noisy, method=..., automatic parameters, sigma estimated)",
        "neural-ensemble": "nlmeans.denoise(noisy, method='neural', ensemble=True): the mean over "
        "the 8 flips and rotations",
        "skimage-same": "denoise_nl_means(fast_mode=True) with nlmeans.resolve_parameters(method='fast') "
        "patch_size, patch_distance, h and sigma",
        "skimage-best": "denoise_nl_means(fast_mode=True, patch_size=5, patch_distance=6, "
        "h=0.7*sigma, sigma=sigma)",
        "sigma": "for skimage-best, opencv and bm3d: the true sigma of synthetic noise; for "
        "--noisy/--clean pairs, nlmeans.estimate_noise_level's estimate",
        "opencv": "cv2.fastNlMeansDenoising(uint8(clip(round(noisy*255))), h=0.95*sigma_gray, "
        "templateWindowSize=7, searchWindowSize=21); colour as one 3-channel image",
        "bm3d": "bm3d.bm3d(noisy, sigma_psd=sigma) (bm3d_rgb for colour)",
    }


def _environment() -> dict:
    env = {"python": platform.python_version(), "machine": platform.machine()}
    for module in ("numpy", "skimage", "cv2", "bm3d", "nlmeans"):
        try:
            mod = __import__(module)
            env[module] = getattr(mod, "__version__", "?")
        except ImportError:
            env[module] = None
    env["cpu_count"] = os.cpu_count()
    return env


def sigma_label(sigma: float | None) -> str:
    if sigma is None:
        return "given"
    return f"{sigma:g}"


# --------------------------------------------------------------------------- writing

_CSV_FIELDS = ("image", "sigma", "method", "psnr", "ssim", "seconds", "status", "message")


def results_csv(result: Comparison) -> str:
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_CSV_FIELDS)
    for r in result.records:
        writer.writerow(
            [
                r.image,
                "" if r.sigma is None else f"{r.sigma:g}",
                r.method,
                "" if r.psnr is None else f"{r.psnr:.4f}",
                "" if r.ssim is None else f"{r.ssim:.5f}",
                "" if r.seconds is None else f"{r.seconds:.4f}",
                r.status,
                r.message,
            ]
        )
    return buf.getvalue()


def results_json(result: Comparison) -> str:
    """The comparison as strict JSON (an infinite PSNR, from a perfect output, becomes null)."""
    return (
        json.dumps(_finite(result.to_dict()), indent=2, default=_json_default, allow_nan=False)
        + "\n"
    )


def _finite(value):
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (Path,)):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _ssim_text(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _md_cell(value, best, fmt, status) -> str:
    if value is None:
        return status or "–"
    text = format(value, fmt)
    return f"**{text}**" if is_best(value, best) else text


def report_markdown(result: Comparison, montages: Sequence[str] = ()) -> str:
    lines = ["# Denoising comparison", ""]
    lines.append(f"Protocol: {protocol_description(result.mode, result.seed)}.")
    lines.append("")
    lines.append(f"Images ({len(result.images)}): " + ", ".join(result.images))
    lines.append("")
    averages = result.averages()
    for sigma in result.sigmas:
        title = "given noisy images" if sigma is None else f"σ = {sigma_label(sigma)}"
        lines += [f"## Averages, {title}", ""]
        lines.append("| Method | PSNR (dB) | SSIM | Time (s) | Images |")
        lines.append("|---|---:|---:|---:|---:|")
        best = {k: result.best(sigma, k) for k in ("psnr", "ssim", "seconds")}
        for row in (r for r in averages if r["sigma"] == sigma):
            status = row["status"] if row["status"] != OK else ""
            lines.append(
                f"| {row['method']} | {_md_cell(row['psnr'], best['psnr'], '.2f', status)} "
                f"| {_md_cell(row['ssim'], best['ssim'], '.4f', status)} "
                f"| {_md_cell(row['seconds'], best['seconds'], '.3f', status)} | {row['images']} |"
            )
        lines.append("")
    lines += ["## PSNR (dB) / SSIM per image", ""]
    header = "| Image | σ | " + " | ".join(result.methods) + " |"
    lines += [header, "|---|---|" + "---:|" * len(result.methods)]
    for image in result.images:
        for sigma in result.sigmas:
            recs = {r.method: r for r in result.records if r.image == image and r.sigma == sigma}
            top = result.best_for_image(image, sigma)
            cells = []
            for method in result.methods:
                r = recs.get(method)
                if r is None or r.psnr is None:
                    cells.append(r.status if r is not None else "–")
                    continue
                text = f"{r.psnr:.2f} / {_ssim_text(r.ssim)}"
                cells.append(f"**{text}**" if is_best(r.psnr, top) else text)
            name = image.replace("|", "\\|")  # a | would end the table cell
            lines.append(f"| {name} | {sigma_label(sigma)} | " + " | ".join(cells) + " |")
    lines.append("")
    problems = [r for r in result.records if r.status != OK]
    if problems:
        lines += ["## Methods that did not run", ""]
        seen = set()
        for r in problems:
            key = (r.method, r.status, r.message)
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"- **{r.method}** ({r.status}): {r.message}")
        lines.append("")
    lines += ["## Settings", ""]
    cores = os.cpu_count()
    threads = f"{result.threads}" if result.threads else f"all cores ({cores})"
    lines.append(
        f"Threads: nlmeans and OpenCV used {threads}; scikit-image runs single-threaded. "
        "Times are wall-clock seconds of one call, after an untimed warm-up call "
        "(compilation, model loading)."
    )
    lines.append("")
    for name, text in method_settings().items():
        lines.append(f"- **{name}**: {text}")
    lines.append("")
    if montages:
        lines += ["## Montages", ""]
        lines.append(
            "Each montage: clean | noisy | every method, the zoomed crop (red box) below, "
            "PSNR / SSIM in the caption."
        )
        lines.append("")
        for rel in montages:
            lines.append(f"![{rel}]({rel})")
            lines.append("")
    return "\n".join(lines)


def _display_u8(image: np.ndarray) -> np.ndarray:
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    return np.clip(np.rint(np.clip(rgb, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)


def _detail_crop(clean: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` x ``size`` window with the most detail (local variance)."""
    gray = clean.mean(axis=2) if clean.ndim == 3 else clean
    h, w = gray.shape
    if size >= h or size >= w:
        return 0, 0
    # Integral images of x and x^2 give every window's variance at once.
    ii = np.pad(gray, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    ii2 = np.pad(gray**2, ((1, 0), (1, 0))).cumsum(0).cumsum(1)

    def box(a):
        return a[size:, size:] - a[:-size, size:] - a[size:, :-size] + a[:-size, :-size]

    n = size * size
    var = box(ii2) / n - (box(ii) / n) ** 2
    y, x = np.unravel_index(int(np.argmax(var)), var.shape)
    return int(y), int(x)


def make_montage(
    panels: Sequence[tuple[str, Sequence[str], np.ndarray]],
    *,
    crop_from: np.ndarray | None = None,
    max_panel: int = 256,
    min_panel: int = 128,
) -> np.ndarray:
    """One RGB uint8 picture: the panels side by side, each with a zoomed crop and a caption.

    ``panels``: ``(title, caption lines, float image in [0, 1])``. The crop (the
    same place in every panel: the most detailed region of ``crop_from``, or
    of the first panel) is shown enlarged under each panel and marked with a
    red box. Large images are shrunk to ``max_panel`` pixels, small ones
    enlarged (whole factors, nearest neighbour) to at least ``min_panel``.
    """
    import cv2

    if not panels:
        raise ValueError("no panels to draw")
    first = panels[0][2]
    h, w = first.shape[:2]
    if max(h, w) > max_panel:
        scale = max_panel / max(h, w)
    elif max(h, w) < min_panel:
        scale = float(math.ceil(min_panel / max(h, w)))
    else:
        scale = 1.0
    pw, ph = max(1, round(w * scale)), max(1, round(h * scale))
    crop = max(8, min(h, w) // 4)
    cy, cx = _detail_crop(crop_from if crop_from is not None else first, crop)
    font = cv2.FONT_HERSHEY_SIMPLEX
    fscale = 0.4 if pw >= 120 else 0.3
    n_lines = 1 + max(len(lines) for _t, lines, _i in panels)
    caption_h = 6 + 15 * n_lines
    tiles = []
    for title, lines, image in panels:
        disp = _display_u8(image)
        if scale < 1:
            full = cv2.resize(disp, (pw, ph), interpolation=cv2.INTER_AREA)
        elif scale > 1:
            full = cv2.resize(disp, (pw, ph), interpolation=cv2.INTER_NEAREST)
        else:
            full = disp.copy()
        zoom = cv2.resize(
            np.ascontiguousarray(disp[cy : cy + crop, cx : cx + crop]),
            (pw, pw),
            interpolation=cv2.INTER_NEAREST,
        )
        x0, y0 = int(cx * scale), int(cy * scale)
        x1, y1 = int((cx + crop) * scale) - 1, int((cy + crop) * scale) - 1
        cv2.rectangle(full, (x0, y0), (max(x0, x1), max(y0, y1)), (255, 0, 0), 1)
        caption = np.full((caption_h, pw, 3), 255, np.uint8)
        for k, text in enumerate([title, *lines]):
            cv2.putText(caption, text, (3, 14 + 15 * k), font, fscale, (0, 0, 0), 1, cv2.LINE_AA)
        gap = np.full((2, pw, 3), 255, np.uint8)
        tiles.append(np.concatenate([caption, full, gap, zoom], axis=0))
    sep = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    row = [tiles[0]]
    for tile in tiles[1:]:
        row += [sep, tile]
    return np.concatenate(row, axis=1)


def _safe_stem(text: str) -> str:
    stem = Path(text).stem
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem) or "image"


def montage_for(result: Comparison, image: str, sigma) -> np.ndarray:
    store = result.images_data[(image, sigma)]
    recs = {r.method: r for r in result.records if r.image == image and r.sigma == sigma}
    clean = store["clean"].astype(np.float64)
    noisy = store["noisy"].astype(np.float64)
    n_psnr, n_ssim = measure(clean, noisy)
    title = "clean" if sigma is None else f"clean (sigma {sigma_label(sigma)})"
    panels = [
        (title, [], clean),
        ("noisy", [f"PSNR {n_psnr:.2f} dB", f"SSIM {_ssim_text(n_ssim)}"], noisy),
    ]
    for method in result.methods:
        if method in store:
            r = recs[method]
            panels.append(
                (method, [f"PSNR {r.psnr:.2f} dB", f"SSIM {_ssim_text(r.ssim)}"], store[method])
            )
    return make_montage(panels, crop_from=clean)


def _linked_montages(folder: Path) -> list[str]:
    """The montages an earlier report.md in ``folder`` links to (as paths)."""
    try:
        text = (folder / "report.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    names = re.findall(r"\]\((montages/[^()/\\]+\.png)\)", text)
    return [str(folder / name) for name in names]


def write_report(
    result: Comparison, folder: str | os.PathLike, *, force: bool = False
) -> list[Path]:
    """Write results.json, results.csv, report.md and (if images were kept) montages/*.png.

    The folder is created if needed. Existing files are replaced only with
    ``force``; the check is done for every file before anything is written.
    With ``force``, the montages an earlier report.md in the folder linked
    and this one does not write are removed (no other file).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--report {folder}: exists and is not a folder")
    montage_names = []
    for image, sigma in result.images_data:
        suffix = "" if sigma is None else f"_sigma{sigma_label(sigma)}"
        montage_names.append(((image, sigma), f"montages/{_safe_stem(image)}{suffix}.png"))
    # make names unique if two images share a stem (a numbered name may be
    # another image's own: a.png twice and a_1.png)
    taken = {name for _key, name in montage_names}
    used: set[str] = set()
    unique = []
    for key, name in montage_names:
        candidate, count = name, 0
        while candidate in used or (count > 0 and candidate in taken):
            count += 1
            candidate = name.replace(".png", f"_{count}.png")
        used.add(candidate)
        unique.append((key, candidate))
    targets = [folder / "results.json", folder / "results.csv", folder / "report.md"]
    targets += [folder / name for _key, name in unique]
    if not force:
        existing = [str(t) for t in targets if t.exists()]
        if existing:
            raise FileExistsError(
                f"{existing[0]} already exists"
                + (f" (and {len(existing) - 1} more report files)" if len(existing) > 1 else "")
                + "; use --force to overwrite"
            )
    earlier = _linked_montages(folder) if force else []
    folder.mkdir(parents=True, exist_ok=True)
    if unique:
        (folder / "montages").mkdir(exist_ok=True)
    written = []
    for key, name in unique:
        picture = montage_for(result, *key)
        written.append(write_image(folder / name, picture, force=force))
    atomic_write_bytes(folder / "results.json", results_json(result).encode(), force=force)
    atomic_write_bytes(folder / "results.csv", results_csv(result).encode(), force=force)
    md = report_markdown(result, [name for _key, name in unique])
    atomic_write_bytes(folder / "report.md", md.encode(), force=force)
    # Montages of an earlier report (other images or noise levels) would sit
    # beside this one's as if they belonged to it: those its report.md
    # linked go (never other files in the folder).
    for stale in set(earlier) - {str(p) for p in written}:
        Path(stale).unlink(missing_ok=True)
    written = [folder / "results.json", folder / "results.csv", folder / "report.md"] + written
    return written
