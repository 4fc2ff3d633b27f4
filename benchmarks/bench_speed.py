"""Speed of nlmeans against scikit-image and OpenCV, as ratios from one run.

Every number in the table comes from the same process on the same machine,
so the *ratios* are what to read; absolute seconds depend on the machine and
on how busy it is (the load average at the start is printed with the table).

Method
------
* Each timed call is preceded by one untimed call (warm-up: Numba loads its
  cached machine code on the first call of a process, OpenCV and NumPy
  allocate their pools); the time reported is the best of ``--repeats``
  calls measured with :func:`time.perf_counter` (fewer repeats when one call
  is slow, see ``--budget``; the table says how many ran).
* nlmeans runs with ``threads=2`` (``--threads``), OpenCV with
  ``cv2.setNumThreads(2)``. scikit-image's ``denoise_nl_means`` is
  single-threaded; nlmeans with ``threads=1`` is listed too where that
  comparison is the fair one.
* Inputs are float32 in [0, 1] for nlmeans and scikit-image (both then
  compute in float32) and the same noisy image rounded to uint8 for OpenCV.
  Noise is additive white Gaussian, seeded, clipped to [0, 1].
* PSNR against the clean image is listed only to show that the runs did
  comparable work; the parameters are matched by name, not tuned.

Cases
-----
a. 512 x 512 gray (``camera``), sigma = 25/255, patch 7, search 21 x 21:
   nlmeans ``"fast"`` vs scikit-image ``fast_mode=True`` vs OpenCV
   ``fastNlMeansDenoising``.
b. nlmeans ``"exact"`` vs scikit-image ``fast_mode=False`` on a 128 x 128 crop
   (scikit-image's slow mode takes minutes at 512 x 512), plus nlmeans
   ``"exact"`` and ``"patchwise"`` at 512 x 512.
c. 512 x 512 RGB (``astronaut``): nlmeans ``"fast"`` with
   ``color_space="rgb"`` vs scikit-image fast mode (both joint distances over
   channels), nlmeans' default opponent path, and OpenCV
   ``fastNlMeansDenoisingColored`` (a different algorithm: it converts to
   CIELAB and denoises luminance and colour separately with ``h`` and
   ``hColor``).
d. 64^3 volume, patch 5, patch_distance 3: nlmeans ``"fast"`` vs scikit-image
   fast mode in 3-D (OpenCV has no 3-D NLM).
t. Thread scaling (many cores): 2048 x 2048 gray, sigma = 25/255, patch 7,
   search 21 x 21, h = 0.8 sigma, nlmeans ``"fast"`` and OpenCV
   ``fastNlMeansDenoising`` (``cv2.setNumThreads``) at 1, 2, 4, 8, 16 threads
   (those the machine has). To find where the scaling goes, each thread count
   also times the parallel kernel alone (``kernels.pixelwise_accumulate`` on
   prepared inputs: what is left of the full call is single-threaded NumPy
   work in the front end, Amdahl's serial share), the same kernel on a
   2048 x 256 image (same strips, 1/8 of each strip's working set: if that
   scales much better, the strips' working set against the caches is what
   limits), and a parallel triad ``a = b + s c`` over 3 x 128 MB (the memory
   bandwidth the threads can draw). Outputs at every thread count are
   compared bit for bit.
e. Start-up: a fresh subprocess with an empty ``NUMBA_CACHE_DIR`` (cold: the
   first call compiles), a second fresh subprocess on the same cache directory
   (warm start: the first call loads the compiled kernels), and the
   steady-state time of a call. The warm process must report cache hits and
   no cache misses (``Dispatcher.stats``); the table says whether it did.

Usage::

    python benchmarks/bench_speed.py                    # full run, writes benchmarks/results/speed.md
    python benchmarks/bench_speed.py --quick            # smoke test (small sizes, 1 repeat)
    python benchmarks/bench_speed.py --out /tmp/speed.md --repeats 7
    python benchmarks/bench_speed.py --cases t          # thread-scaling table only

Run the full benchmark on a quiet machine: it takes a few minutes (most of it
in scikit-image and the cold-start compilation).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIGMA = 25.0 / 255.0
H_FACTOR = 0.8
SEED = 20240611


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


def best_of(fn, repeats: int, budget: float):
    """(best seconds, number of timed runs, last result) after one warm-up.

    Stops early (after at least one timed run) once the timed runs have taken
    ``budget`` seconds in total.
    """
    fn()  # warm-up, untimed
    times = []
    result = None
    spent = 0.0
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - t0
        times.append(elapsed)
        spent += elapsed
        if spent >= budget:
            break
    return min(times), len(times), result


@dataclass
class Row:
    case: str
    impl: str
    threads: str
    size: str
    seconds: float | None
    runs: int | None = None
    ratio: str = ""
    psnr: float | None = None
    notes: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)  # Markdown tables of their own (case t)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(
            f"  {row.case:<3} {row.impl:<44} {row.size:<12} "
            + (f"{row.seconds:9.4f} s" if row.seconds is not None else "      n/a")
            + (f"  {row.ratio}" if row.ratio else ""),
            flush=True,
        )
        return row


def _ratio(other: float, ours: float) -> str:
    return f"{other / ours:.2f}x"


def _psnr(clean: np.ndarray, result: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    result = np.asarray(result)
    if result.dtype == np.uint8:
        result = result.astype(np.float64) / 255.0
    return float(
        peak_signal_noise_ratio(clean.astype(np.float64), result.astype(np.float64), data_range=1.0)
    )


def _noisy(clean: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = clean + SIGMA * rng.standard_normal(clean.shape)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    y0 = (image.shape[0] - size) // 2
    x0 = (image.shape[1] - size) // 2
    return image[y0 : y0 + size, x0 : x0 + size]


def _resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square, then resize (area-averaging) to size x size."""
    import cv2

    side = min(image.shape[:2])
    square = _centre_crop(image, side)
    if side == size:
        return np.ascontiguousarray(square)
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)


def synthetic_volume(n: int) -> np.ndarray:
    """Smooth piecewise volume in [0, 1]: blurred ball and slab over a gradient."""
    from scipy import ndimage

    z, y, x = np.meshgrid(*(np.linspace(-1.0, 1.0, n),) * 3, indexing="ij")
    volume = 0.25 + 0.2 * (x + 1.0) / 2.0
    volume = volume + 0.4 * ((x - 0.2) ** 2 + y**2 + (z + 0.1) ** 2 < 0.35)
    volume = volume + 0.25 * (np.abs(z - 0.45) < 0.15) * (y < 0.3)
    volume = ndimage.gaussian_filter(volume, 1.0)
    return np.clip(volume, 0.0, 1.0)


# --------------------------------------------------------------------------
# Machine information
# --------------------------------------------------------------------------


def load_average() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:  # pragma: no cover
        return "load average n/a"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return model


def machine_info(threads: int, load: str) -> str:
    import cv2
    import numba
    import skimage

    model = cpu_model()
    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = cores
    layer = numba.threading_layer() if _threading_layer_known() else "not yet chosen"
    return (
        f"Machine: {model}; {cores} logical cores ({usable} usable); {load} at start. "
        f"nlmeans threads={threads} (NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}, "
        f"threading layer {layer}); Python {platform.python_version()}, numpy {np.__version__}, "
        f"numba {numba.__version__}, scikit-image {skimage.__version__}, opencv {cv2.__version__}"
    )


def _threading_layer_known() -> bool:
    import numba

    try:
        numba.threading_layer()
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------


def case_gray(report: Report, cfg: dict) -> None:
    import cv2
    from skimage import data
    from skimage.restoration import denoise_nl_means

    import nlmeans

    size = cfg["size"]
    clean = _resize_square(data.camera(), size).astype(np.float64) / 255.0
    noisy = _noisy(clean, SEED)
    noisy8 = _to_uint8(noisy)
    h = H_FACTOR * SIGMA
    kw = dict(patch_size=7, patch_distance=10)
    label = f"{size}x{size}"
    reps, budget, threads = cfg["repeats"], cfg["budget"], cfg["threads"]

    t_ours, n, out = best_of(
        lambda: nlmeans.denoise(noisy, h=h, sigma=SIGMA, method="fast", threads=threads, **kw),
        reps,
        budget,
    )
    report.add(
        Row("a", "nlmeans fast", str(threads), label, t_ours, n, "1.00 (ref)", _psnr(clean, out))
    )
    if threads != 1:
        t1, n, out = best_of(
            lambda: nlmeans.denoise(noisy, h=h, sigma=SIGMA, method="fast", threads=1, **kw),
            reps,
            budget,
        )
        report.add(
            Row(
                "a",
                "nlmeans fast",
                "1",
                label,
                t1,
                n,
                _ratio(t1, t_ours),
                _psnr(clean, out),
                "single thread, for skimage",
            )
        )
    t_sk, n, out = best_of(
        lambda: denoise_nl_means(noisy, h=h, sigma=SIGMA, fast_mode=True, **kw), reps, budget
    )
    report.add(
        Row(
            "a",
            "skimage denoise_nl_means fast_mode=True",
            "1 (single-threaded)",
            label,
            t_sk,
            n,
            _ratio(t_sk, t_ours),
            _psnr(clean, out),
        )
    )
    cv2.setNumThreads(threads)
    t_cv, n, out = best_of(
        lambda: cv2.fastNlMeansDenoising(
            noisy8, None, h=H_FACTOR * 25.0, templateWindowSize=7, searchWindowSize=21
        ),
        reps,
        budget,
    )
    report.add(
        Row(
            "a",
            "OpenCV fastNlMeansDenoising (uint8)",
            str(threads),
            label,
            t_cv,
            n,
            _ratio(t_cv, t_ours),
            _psnr(clean, out),
            "h = 0.8*25 gray levels",
        )
    )


def case_exact(report: Report, cfg: dict) -> None:
    from skimage import data
    from skimage.restoration import denoise_nl_means

    import nlmeans

    size, crop = cfg["size"], cfg["crop"]
    clean_full = _resize_square(data.camera(), size).astype(np.float64) / 255.0
    noisy_full = _noisy(clean_full, SEED)
    clean = _centre_crop(clean_full, crop)
    noisy = np.ascontiguousarray(_centre_crop(noisy_full, crop))
    h = H_FACTOR * SIGMA
    kw = dict(patch_size=7, patch_distance=10)
    reps, budget, threads = cfg["repeats"], cfg["budget"], cfg["threads"]
    label = f"{crop}x{crop} crop"

    t_ours, n, out = best_of(
        lambda: nlmeans.denoise(noisy, h=h, sigma=SIGMA, method="exact", threads=threads, **kw),
        reps,
        budget,
    )
    report.add(
        Row("b", "nlmeans exact", str(threads), label, t_ours, n, "1.00 (ref)", _psnr(clean, out))
    )
    if threads != 1:
        t1, n, out = best_of(
            lambda: nlmeans.denoise(noisy, h=h, sigma=SIGMA, method="exact", threads=1, **kw),
            reps,
            budget,
        )
        report.add(
            Row(
                "b",
                "nlmeans exact",
                "1",
                label,
                t1,
                n,
                _ratio(t1, t_ours),
                _psnr(clean, out),
                "single thread, for skimage",
            )
        )
    t_sk, n, out = best_of(
        lambda: denoise_nl_means(noisy, h=h, sigma=SIGMA, fast_mode=False, **kw),
        min(reps, 3),
        budget,
    )
    report.add(
        Row(
            "b",
            "skimage denoise_nl_means fast_mode=False",
            "1 (single-threaded)",
            label,
            t_sk,
            n,
            _ratio(t_sk, t_ours),
            _psnr(clean, out),
            f"{crop}x{crop} centre crop of the {size}x{size} image: skimage slow mode "
            "takes minutes on 512x512",
        )
    )
    label = f"{size}x{size}"
    for method in ("exact", "patchwise"):
        t, n, out = best_of(
            lambda: nlmeans.denoise(
                noisy_full, h=h, sigma=SIGMA, method=method, threads=threads, **kw
            ),
            reps,
            budget,
        )
        report.add(
            Row(
                "b",
                f"nlmeans {method}",
                str(threads),
                label,
                t,
                n,
                "",
                _psnr(clean_full, out),
                "full image, time only",
            )
        )


def case_colour(report: Report, cfg: dict) -> None:
    import cv2
    from skimage import data
    from skimage.restoration import denoise_nl_means

    import nlmeans

    size = cfg["size"]
    clean = _resize_square(data.astronaut(), size).astype(np.float64) / 255.0
    noisy = _noisy(clean, SEED + 1)
    noisy8_bgr = np.ascontiguousarray(_to_uint8(noisy)[..., ::-1])
    h = H_FACTOR * SIGMA
    kw = dict(patch_size=7, patch_distance=10)
    label = f"{size}x{size}x3"
    reps, budget, threads = cfg["repeats"], cfg["budget"], cfg["threads"]

    # The joint-RGB path is the same algorithm as scikit-image's: the reference.
    rgb = dict(kw, color_space="rgb")
    t_ours, n, out = best_of(
        lambda: nlmeans.denoise(
            noisy, h=h, sigma=SIGMA, method="fast", channel_axis=-1, threads=threads, **rgb
        ),
        reps,
        budget,
    )
    report.add(
        Row(
            "c",
            "nlmeans fast, color_space=rgb",
            str(threads),
            label,
            t_ours,
            n,
            "1.00 (ref)",
            _psnr(clean, out),
        )
    )
    if threads != 1:
        t1, n, out = best_of(
            lambda: nlmeans.denoise(
                noisy, h=h, sigma=SIGMA, method="fast", channel_axis=-1, threads=1, **rgb
            ),
            reps,
            budget,
        )
        report.add(
            Row(
                "c",
                "nlmeans fast, color_space=rgb",
                "1",
                label,
                t1,
                n,
                _ratio(t1, t_ours),
                _psnr(clean, out),
                "single thread, for skimage",
            )
        )
    # The default opponent path: two kernel passes (luminance, chrominance),
    # h_chroma from the colour table.
    t_opp, n, out = best_of(
        lambda: nlmeans.denoise(
            noisy, h=h, sigma=SIGMA, method="fast", channel_axis=-1, threads=threads, **kw
        ),
        reps,
        budget,
    )
    report.add(
        Row(
            "c",
            "nlmeans fast, color_space=opponent (default)",
            str(threads),
            label,
            t_opp,
            n,
            _ratio(t_opp, t_ours),
            _psnr(clean, out),
            "luminance and chrominance passes; same h, automatic h_chroma",
        )
    )
    t_sk, n, out = best_of(
        lambda: denoise_nl_means(noisy, h=h, sigma=SIGMA, fast_mode=True, channel_axis=-1, **kw),
        reps,
        budget,
    )
    report.add(
        Row(
            "c",
            "skimage fast_mode=True, channel_axis=-1",
            "1 (single-threaded)",
            label,
            t_sk,
            n,
            _ratio(t_sk, t_ours),
            _psnr(clean, out),
        )
    )
    cv2.setNumThreads(threads)
    t_cv, n, out = best_of(
        lambda: cv2.fastNlMeansDenoisingColored(
            noisy8_bgr,
            None,
            h=H_FACTOR * 25.0,
            hColor=H_FACTOR * 25.0,
            templateWindowSize=7,
            searchWindowSize=21,
        ),
        reps,
        budget,
    )
    report.add(
        Row(
            "c",
            "OpenCV fastNlMeansDenoisingColored (uint8)",
            str(threads),
            label,
            t_cv,
            n,
            _ratio(t_cv, t_ours),
            _psnr(clean, out[..., ::-1]),
            "different algorithm: CIELAB, L and ab denoised separately (h, hColor = 20)",
        )
    )


def case_volume(report: Report, cfg: dict) -> None:
    from skimage.restoration import denoise_nl_means

    import nlmeans

    n_vox = cfg["volume"]
    clean = synthetic_volume(n_vox)
    noisy = _noisy(clean, SEED + 2)
    h = H_FACTOR * SIGMA
    kw = dict(patch_size=5, patch_distance=3)
    label = f"{n_vox}^3"
    reps, budget, threads = cfg["repeats"], cfg["budget"], cfg["threads"]

    t_ours, n, out = best_of(
        lambda: nlmeans.denoise(noisy, h=h, sigma=SIGMA, method="fast", threads=threads, **kw),
        reps,
        budget,
    )
    report.add(
        Row(
            "d",
            "nlmeans fast (3-D)",
            str(threads),
            label,
            t_ours,
            n,
            "1.00 (ref)",
            _psnr(clean, out),
        )
    )
    if threads != 1:
        t1, n, out = best_of(
            lambda: nlmeans.denoise(noisy, h=h, sigma=SIGMA, method="fast", threads=1, **kw),
            reps,
            budget,
        )
        report.add(
            Row(
                "d",
                "nlmeans fast (3-D)",
                "1",
                label,
                t1,
                n,
                _ratio(t1, t_ours),
                _psnr(clean, out),
                "single thread, for skimage",
            )
        )
    t_sk, n, out = best_of(
        lambda: denoise_nl_means(noisy, h=h, sigma=SIGMA, fast_mode=True, **kw), reps, budget
    )
    report.add(
        Row(
            "d",
            "skimage fast_mode=True (3-D)",
            "1 (single-threaded)",
            label,
            t_sk,
            n,
            _ratio(t_sk, t_ours),
            _psnr(clean, out),
            "OpenCV has no 3-D NLM",
        )
    )


# Runs in a fresh interpreter: import, first call, steady state, cache stats.
_STARTUP_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import nlmeans
t_import = time.perf_counter() - t0
from nlmeans import kernels
args = json.loads(sys.argv[1])
image = np.load(args["image"])
kw = dict(h=args["h"], sigma=args["sigma"], patch_size=7, patch_distance=10,
          threads=args["threads"])
report = {"import": t_import}
for method in args["methods"]:
    t = time.perf_counter()
    nlmeans.denoise(image, method=method, **kw)
    report[method + "_first"] = time.perf_counter() - t
    best = float("inf")
    for _ in range(args["repeats"]):
        t = time.perf_counter()
        nlmeans.denoise(image, method=method, **kw)
        best = min(best, time.perf_counter() - t)
    report[method + "_steady"] = best
for name in ("pixelwise_accumulate", "patchwise_aggregate"):
    stats = getattr(kernels, name).stats
    report[name] = {"hits": sum(stats.cache_hits.values()),
                    "misses": sum(stats.cache_misses.values()),
                    "cache_path": stats.cache_path}
print("RESULT " + json.dumps(report))
"""


def _run_startup_child(image_path: str, cache_dir: str, cfg: dict, methods) -> dict:
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = cache_dir
    # Measure this checkout even when it is not installed.
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    args = json.dumps(
        {
            "image": image_path,
            "h": H_FACTOR * SIGMA,
            "sigma": SIGMA,
            "threads": cfg["threads"],
            "repeats": cfg["repeats"],
            "methods": list(methods),
        }
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _STARTUP_CHILD, args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"start-up subprocess failed:\n{proc.stderr}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT ") :])
    result["wall"] = wall
    return result


def case_startup(report: Report, cfg: dict) -> None:
    from skimage import data

    size = cfg["size"]
    clean = _resize_square(data.camera(), size).astype(np.float64) / 255.0
    noisy = _noisy(clean, SEED)
    methods = ("fast", "patchwise")
    label = f"{size}x{size}"
    tmp = tempfile.mkdtemp(prefix="nlmeans-bench-")
    try:
        image_path = os.path.join(tmp, "noisy.npy")
        np.save(image_path, noisy)
        cache_dir = os.path.join(tmp, "numba-cache")
        os.mkdir(cache_dir)  # empty
        cold = _run_startup_child(image_path, cache_dir, cfg, methods)
        warm = _run_startup_child(image_path, cache_dir, cfg, methods)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    kernel_of = {
        "fast": ["pixelwise_accumulate"],
        "patchwise": ["pixelwise_accumulate", "patchwise_aggregate"],
    }
    threads = str(cfg["threads"])
    report.add(
        Row(
            "e",
            "import nlmeans (cold / warm process)",
            "-",
            "-",
            cold["import"],
            1,
            notes=f"warm process: {warm['import']:.3f} s",
        )
    )
    for method in methods:
        cold_ok = all(cold[k]["misses"] > 0 and cold[k]["hits"] == 0 for k in kernel_of[method])
        warm_ok = all(warm[k]["hits"] > 0 and warm[k]["misses"] == 0 for k in kernel_of[method])
        steady = warm[method + "_steady"]
        report.add(
            Row(
                "e",
                f"nlmeans {method}: first call, cold cache",
                threads,
                label,
                cold[method + "_first"],
                1,
                _ratio(cold[method + "_first"], steady),
                notes="compiles (cache misses: " + ("yes" if cold_ok else "UNEXPECTED: no") + ")",
            )
        )
        report.add(
            Row(
                "e",
                f"nlmeans {method}: first call, warm cache",
                threads,
                label,
                warm[method + "_first"],
                1,
                _ratio(warm[method + "_first"], steady),
                notes="loaded from cache (hits, no misses): "
                + ("yes" if warm_ok else "NO - CACHE NOT USED"),
            )
        )
        report.add(
            Row(
                "e",
                f"nlmeans {method}: steady state",
                threads,
                label,
                steady,
                cfg["repeats"],
                "1.00 (ref)",
                notes="best of the repeats in the warm process",
            )
        )
    report.notes.append(
        "e: the patchwise first call compiles only patchwise_aggregate (pixelwise_accumulate "
        "was compiled by the fast call before it); ratios in case e are first call / "
        "steady state."
    )


def _thread_counts(limit: int) -> list[int]:
    counts = [n for n in (1, 2, 4, 8, 16) if n <= limit]
    return counts + ([limit] if limit not in counts else [])


def _triad_gbs(threads: int, n: int, repeats: int) -> float:
    """GB/s of a parallel ``a = b + 3 c`` (3 arrays of n float64) on ``threads`` threads."""
    import numba

    kernel = _triad_kernel()
    b = np.ones(n)
    c = np.ones(n)
    a = np.empty(n)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        seconds, _, _ = best_of(lambda: kernel(a, b, c), repeats, 10.0)
    finally:
        numba.set_num_threads(previous)
    return 3 * 8 * n / seconds / 1e9


@functools.lru_cache(maxsize=None)
def _triad_kernel():
    from numba import njit, prange

    @njit(parallel=True)
    def triad(a, b, c):
        for i in prange(a.shape[0]):
            a[i] = b[i] + 3.0 * c[i]

    return triad


def _kernel_call(noisy: np.ndarray, h: float):
    """``kernels.pixelwise_accumulate`` on prepared inputs, as ``_nlm_pass`` calls it for "fast"."""
    from nlmeans import kernels

    data = np.ascontiguousarray(noisy, np.float32)[np.newaxis, np.newaxis]
    f, d = 3, 10
    padded = np.pad(data, ((0, 0), (0, 0), (f, f), (f, f)), mode="reflect")
    shifts = kernels.half_window_shifts(0, d)
    ones = kernels.patch_weights(7, "uniform")
    one = kernels.patch_weights(1, "uniform")
    norm = np.float32(1.0 / 49)
    two_sigma2, inv_h2 = np.float32(2 * SIGMA**2), np.float32(1.0 / h**2)

    def run():
        numerator = np.zeros_like(data)
        denominator = np.zeros(data.shape[1:], np.float32)
        max_weight = np.zeros((1, 1, 1), np.float32)
        kernels.pixelwise_accumulate(
            data, padded, shifts, 0, d, one, ones, ones, True, norm, two_sigma2, inv_h2,
            numerator, denominator, max_weight, False,
        )  # fmt: skip
        return numerator

    return run


def case_threads(report: Report, cfg: dict) -> None:
    import cv2
    import numba
    from skimage import data

    import nlmeans

    size = cfg["scaling_size"]
    clean = _resize_square(data.astronaut()[..., 1], size).astype(np.float64) / 255.0
    noisy = _noisy(clean, SEED + 5)
    noisy8 = _to_uint8(noisy)
    narrow = np.ascontiguousarray(noisy[:, : size // 8])
    h = H_FACTOR * SIGMA
    kw = dict(h=h, sigma=SIGMA, method="fast", patch_size=7, patch_distance=10)
    reps, budget = cfg["repeats"], cfg["budget"]
    limit = min(numba.config.NUMBA_NUM_THREADS, os.cpu_count() or 1)
    counts = _thread_counts(limit)
    kernel_wide, kernel_narrow = _kernel_call(noisy, h), _kernel_call(narrow, h)
    triad_n = (1 << 24) if not cfg["quick"] else (1 << 20)  # 128 MB per array (8 MB quick)

    rows, first = [], None
    identical = True
    previous = numba.get_num_threads()
    for n in counts:
        t_full, _, out = best_of(lambda: nlmeans.denoise(noisy, threads=n, **kw), reps, budget)
        numba.set_num_threads(n)
        try:
            t_kernel, _, _ = best_of(kernel_wide, reps, budget)
            t_narrow, _, _ = best_of(kernel_narrow, reps, budget)
        finally:
            numba.set_num_threads(previous)
        cv2.setNumThreads(n)
        t_cv, _, _ = best_of(
            lambda: cv2.fastNlMeansDenoising(
                noisy8, None, h=H_FACTOR * 25.0, templateWindowSize=7, searchWindowSize=21
            ),
            reps,
            budget,
        )
        gbs = _triad_gbs(n, triad_n, reps)
        if first is None:
            first = (t_full, t_kernel, t_narrow, out)
        else:
            identical &= bool(np.array_equal(out, first[3]))
        rows.append((n, t_full, t_kernel, t_narrow, t_cv, gbs))
        print(
            f"  t   {n:>2} threads: fast {t_full:.4f} s (kernel {t_kernel:.4f} s, "
            f"narrow {t_narrow:.4f} s), OpenCV {t_cv:.4f} s, triad {gbs:.1f} GB/s",
            flush=True,
        )
    cv2.setNumThreads(cfg["threads"])

    t1_full, t1_kernel, t1_narrow, _ = first
    lines = [
        f"### Thread scaling (case t): {size}x{size} gray, sigma 25/255, patch 7, "
        "search 21x21, h = 0.8 sigma",
        "",
        "| threads | nlmeans fast (s) | speed-up | efficiency | kernel alone (s) | "
        "kernel speed-up | serial front end (s) | 1/8-width kernel speed-up | "
        "OpenCV (s) | OpenCV / nlmeans | triad GB/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, t_full, t_kernel, t_narrow, t_cv, gbs in rows:
        lines.append(
            f"| {n} | {t_full:.4f} | {t1_full / t_full:.2f}x | {t1_full / t_full / n:.0%} | "
            f"{t_kernel:.4f} | {t1_kernel / t_kernel:.2f}x | {t_full - t_kernel:.4f} | "
            f"{t1_narrow / t_narrow:.2f}x | {t_cv:.4f} | {t_cv / t_full:.2f}x | {gbs:.1f} |"
        )
    lines += [
        "",
        f"Outputs bit-identical across thread counts: {'yes' if identical else 'NO'}. "
        "Speed-ups are against 1 thread of the same column. *serial front end* = full call "
        "minus kernel alone (input checks, scaling to float32, padding, the float64 "
        "correction, output conversion: single-threaded NumPy). *1/8-width kernel*: the "
        f"kernel on the {size}x{size // 8} left strip (same strip count, 1/8 of each strip's "
        "working set). *triad*: a parallel `a = b + 3c`, bytes read and written per second.",
    ]
    report.tables.append("\n".join(lines))
    report.notes.append(
        f"t: thread counts {', '.join(map(str, counts))} (limited by NUMBA_NUM_THREADS="
        f"{numba.config.NUMBA_NUM_THREADS} and {os.cpu_count()} logical cores)."
    )


CASES = {
    "a": case_gray,
    "b": case_exact,
    "c": case_colour,
    "d": case_volume,
    "e": case_startup,
    "t": case_threads,
}


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def to_markdown(report: Report, info: str, cfg: dict) -> str:
    lines = [
        "# nlmeans speed"
        + (" (--quick smoke test: small sizes, not for quoting)" if cfg["quick"] else ""),
        "",
        info,
        "",
        f"Best of up to {cfg['repeats']} timed runs after one untimed warm-up "
        f"(fewer when the runs passed {cfg['budget']:.0f} s; column *runs*), time.perf_counter. "
        f"AWGN sigma = 25/255 seeded; h = 0.8 sigma (OpenCV: h = 20 gray levels); "
        f"patch 7, search window 21 x 21 (patch_distance 10) unless noted. "
        "Ratio = other time / reference time of the case (the `1.00 (ref)` row); "
        "above 1 means the reference is faster. "
        "scikit-image's NLM is single-threaded; compare it with the `threads = 1` nlmeans row "
        "for a per-core ratio. nlmeans and scikit-image get float32 input; OpenCV the same noisy "
        "image as uint8. PSNR (dB, against the clean image) only shows that comparable work was "
        "done: the parameters are matched by name, not tuned.",
        "",
        "| case | implementation | threads | size | time (s) | runs | ratio | PSNR | notes |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in report.rows:
        seconds = f"{r.seconds:.4f}" if r.seconds is not None else "n/a"
        psnr = f"{r.psnr:.2f}" if r.psnr is not None else ""
        runs = str(r.runs) if r.runs is not None else ""
        lines.append(
            f"| {r.case} | {r.impl} | {r.threads} | {r.size} | {seconds} | {runs} | "
            f"{r.ratio} | {psnr} | {r.notes} |"
        )
    lines.append("")
    lines.append(
        "Cases: a = 2-D gray fast; b = exact (crop, vs skimage slow mode) and patchwise; "
        "c = RGB; d = 3-D volume; e = start-up (fresh subprocesses, empty then reused "
        "NUMBA_CACHE_DIR); t = thread scaling (its own table below)."
    )
    lines.extend(f"- {note}" for note in report.notes)
    for table in report.tables:
        lines += ["", table]
    return "\n".join(lines) + "\n"


def write_report(text: str, out: Path) -> None:
    """Print the Markdown report ``text`` and write it to ``out``."""
    print()
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: small sizes, 1 repeat (numbers not meaningful)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="Markdown output (default benchmarks/results/speed.md, speed_quick.md with --quick)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats per measurement (default 5, 1 with --quick)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="stop repeating a measurement once its timed runs took this long (s)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="threads for nlmeans and OpenCV (default 2)"
    )
    parser.add_argument(
        "--cases", default="abcdet", help="which cases to run, e.g. 'ace' (default all: abcdet)"
    )
    args = parser.parse_args(argv)

    import numba

    available = numba.config.NUMBA_NUM_THREADS
    threads = args.threads
    if threads > available:
        print(f"note: --threads {threads} > NUMBA_NUM_THREADS={available}; using {available}")
        threads = available
    cfg = {
        "quick": args.quick,
        "size": 128 if args.quick else 512,
        "crop": 48 if args.quick else 128,
        "volume": 24 if args.quick else 64,
        "scaling_size": 256 if args.quick else 2048,
        "repeats": args.repeats if args.repeats is not None else (1 if args.quick else 5),
        "budget": args.budget,
        "threads": threads,
    }
    out = args.out
    if out is None:
        out = ROOT / "benchmarks" / "results" / ("speed_quick.md" if args.quick else "speed.md")

    # Measure this checkout, installed or not.
    sys.path.insert(0, str(ROOT))
    load = load_average()
    print(machine_info(threads, load), flush=True)
    report = Report()
    for key in args.cases:
        if key not in CASES:
            parser.error(f"unknown case {key!r}; choose from {''.join(CASES)}")
        print(f"case {key} ...", flush=True)
        CASES[key](report, cfg)
    # The threading layer is known only after the first parallel call.
    text = to_markdown(report, machine_info(threads, load), cfg)
    write_report(text, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
