"""Volumes over time (3-D + t): spacetime NLM against volume-by-volume NLM.

Series are made by :func:`nlmeans.synthetic.make_volume_sequence` (a
photograph's texture through a tilted stack, stage drift, moving
ellipsoidal cells): series ``i`` of a set (files in sorted order) uses
``seed=i``, ``--frames`` time points of ``--depth`` slices of half the
image's size. Noise: AWGN, ``default_rng(i)``, not clipped.

Evaluation (default), on Set12, sigma 15 / 25 / 50, for each method of
``--methods`` (default ``fast``; ``fast,patchwise`` for both):

* ``volumes``: :func:`nlmeans.denoise` on every volume on its own (3-D
  patches and window, every parameter automatic, sigma estimated);
* ``spacetime``: :func:`nlmeans.denoise_sequence` on the series (3-D patches,
  window over +-k time points; every parameter automatic, sigma estimated).

PSNR and SSIM (3-D, ``skimage.metrics.structural_similarity``) are means
over time points, then over series; flicker is the mean absolute change of
the error from one time point to the next, in 8-bit gray levels; seconds
per series (compilation excluded by a warm-up).

``--fit`` instead grids the windows (temporal radius, search radius,
patch size, h / sigma) on series made from Train400 images (seeds 100 +
i), sigma given, and prints the mean PSNR of each setting, for each method
of ``--methods``: what ``nlmeans._sequence.VOLUME_PARAMETERS`` was chosen
from.

Usage::

    python benchmarks/bench_volume_sequence.py            # writes benchmarks/results/volume_sequence.md
    python benchmarks/bench_volume_sequence.py --methods fast,patchwise \
        --out benchmarks/results/volume_sequence_patchwise.md
    python benchmarks/bench_volume_sequence.py --fit      # the parameter grid of `fast` (about 15 min)
    python benchmarks/bench_volume_sequence.py --fit --methods patchwise  # about 35 min
    python benchmarks/bench_volume_sequence.py --fit --methods exact  # about 7 min
    python benchmarks/bench_volume_sequence.py --quick    # a smoke test
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from skimage.metrics import structural_similarity

import nlmeans
from nlmeans.synthetic import make_volume_sequence

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data"


def load(folder: Path, count: int | None) -> list[np.ndarray]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".tif"))
    return [iio.imread(f) for f in files[:count]]


def psnr(x: np.ndarray, clean: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.clip(x, 0, 1) - clean) ** 2)))


def scores(result: np.ndarray, clean: np.ndarray) -> dict:
    error = result - clean
    return {
        "psnr": float(np.mean([psnr(r, c) for r, c in zip(result, clean)])),
        "ssim": float(
            np.mean(
                [
                    structural_similarity(np.clip(r, 0, 1), c, data_range=1.0)
                    for r, c in zip(result, clean)
                ]
            )
        ),
        "flicker": float(np.mean(np.abs(np.diff(error, axis=0))) * 255),
    }


# h / sigma tried by --fit: 3-D patches need a lower h than 2-D ones, and
# the patch-wise estimate (every voxel averaged over the patches covering
# it) a lower one again. `exact` (the IPOL weights, d^2 - 2 sigma^2) needs a
# higher one: 0.8, the top of a (0.4 ... 0.8) grid, won at every sigma.
H_GRID = {"fast": (0.4, 0.5, 0.6, 0.8), "exact": (0.8, 1.0, 1.2, 1.4)}
H_GRID["patchwise"] = (0.25, 0.3, 0.35, 0.4, 0.5)


def evaluate(images, sigmas, frames, depth, methods, out: Path | None) -> None:
    warm = make_volume_sequence(images[0], 3, depth=6, seed=0, frame_shape=(24, 24))
    for method in methods:  # compile before timing
        nlmeans.denoise_sequence(warm, method=method)
        nlmeans.denoise(warm[0], method=method)
    lines = [
        f"<!-- python benchmarks/bench_volume_sequence.py --frames {frames} --depth {depth} "
        f"--methods {','.join(methods)} -->",
        "| sigma | method | PSNR | SSIM | flicker | s / series |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    # Row names keep the old table's for `fast` alone.
    suffix = {m: "" if methods == ["fast"] else f" {m}" for m in methods}
    for sigma in sigmas:
        rows: dict[str, list] = {"noisy": []}
        for method in methods:
            rows[f"volumes{suffix[method]}"] = []
            rows[f"spacetime{suffix[method]}"] = []
        for i, image in enumerate(images):
            clean = make_volume_sequence(image, frames, depth=depth, seed=i)
            noise = np.random.default_rng(i).normal(0.0, sigma / 255.0, clean.shape)
            noisy = clean + noise
            rows["noisy"].append({**scores(noisy, clean), "seconds": 0.0})
            settings = []
            for method in methods:
                start = time.perf_counter()
                volumes = np.stack([nlmeans.denoise(v, method=method) for v in noisy])
                volumes_s = time.perf_counter() - start
                start = time.perf_counter()
                spacetime, params = nlmeans.denoise_sequence(
                    noisy, method=method, return_params=True
                )
                spacetime_s = time.perf_counter() - start
                rows[f"volumes{suffix[method]}"].append(
                    {**scores(volumes, clean), "seconds": volumes_s}
                )
                rows[f"spacetime{suffix[method]}"].append(
                    {**scores(spacetime, clean), "seconds": spacetime_s}
                )
                settings.append(
                    f"{method}: k={params.temporal_radius}, patch={params.patch_size}, "
                    f"d={params.patch_distance}"
                )
            print(
                f"sigma {sigma} series {i}: "
                + ", ".join(f"{m} {r[-1]['psnr']:.2f} dB" for m, r in rows.items())
                + f" ({'; '.join(settings)})",
                flush=True,
            )
        for name, rs in rows.items():
            mean = {key: np.mean([r[key] for r in rs]) for key in rs[0]}
            seconds = f"{mean['seconds']:.2f}" if name != "noisy" else ""
            lines.append(
                f"| {sigma} | {name} | {mean['psnr']:.2f} | {mean['ssim']:.4f} | "
                f"{mean['flicker']:.2f} | {seconds} |"
            )
    shape = f"{frames} x {depth} x {images[0].shape[0] // 2}²"
    lines += [
        "",
        f"{len(images)} series of {shape} voxels; sigma estimated, every parameter automatic.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if out is not None:
        out.write_text(text)


def fit(images, sigmas, frames, depth, methods) -> None:
    # Windows that cost at most 3x volume-by-volume `fast` (7**3 shifts).
    budget = 3 * 7**3
    windows = [
        (k, d, p)
        for k, d, p in itertools.product((1, 2), (2, 3), (3, 5))
        if (2 * k + 1) * (2 * d + 1) ** 3 <= budget
    ]
    for method in methods:
        for sigma in sigmas:
            s = sigma / 255.0
            results: dict[tuple, list] = {}
            for i, image in enumerate(images):
                clean = make_volume_sequence(image, frames, depth=depth, seed=100 + i)
                noisy = clean + np.random.default_rng(i).normal(0.0, s, clean.shape)
                for (k, d, p), h in itertools.product(windows, H_GRID[method]):
                    out = nlmeans.denoise_sequence(
                        noisy,
                        method=method,
                        sigma=s,
                        temporal_radius=k,
                        patch_distance=d,
                        patch_size=p,
                        h=h * s,
                    )
                    results.setdefault((k, d, p, h), []).append(psnr(out, clean))
            print(
                f"{method}, sigma {sigma}: (temporal radius, search radius, patch, h/sigma) "
                "mean PSNR"
            )
            for key, values in sorted(results.items(), key=lambda kv: -np.mean(kv[1]))[:6]:
                print(f"  {key}: {np.mean(values):.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="grid the parameters on Train400")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (checks the script)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--methods", default="fast", help="comma-separated: fast,patchwise,exact")
    parser.add_argument("--out", default=None, help="default benchmarks/results/volume_sequence.md")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in H_GRID]
    if unknown or not methods:
        parser.error(f"--methods takes fast, patchwise and exact; got {args.methods!r}")
    if args.fit:
        images = load(DATA / "train400", 2 if args.quick else 4)
        fit(images, (15, 25, 50), args.frames, args.depth, methods)
        return
    images = load(DATA / "set12", 2 if args.quick else None)
    out = Path(args.out) if args.out else ROOT / "benchmarks/results/volume_sequence.md"
    frames, depth = (4, 8) if args.quick else (args.frames, args.depth)
    evaluate(
        images,
        (25,) if args.quick else (15, 25, 50),
        frames,
        depth,
        methods,
        None if args.quick else out,
    )


if __name__ == "__main__":
    main()
