"""Fit the automatic parameters of nlmeans.denoise_sequence on synthetic sequences.

Sequences are made from training images only (Train400 gray, CBSD432 colour;
never Set12 or McMaster, which the video benchmark measures on) by
:func:`nlmeans.synthetic.make_sequence`: sequence ``i`` uses seed ``i``, the
motion ``MOTIONS_CYCLE[i % 4]`` (pan, zoom, objects, mixed), and objects cut
from the next image of the list. Noise: AWGN, ``default_rng(200_000 + i)``,
not clipped. Colour sequences are denoised on the opponent path (the
default), with the chrominance h the image table gives.

For each noise level and method, a grid over the temporal radius k, patch
size, search distance d and h / sigma_hat is scored by the mean PSNR over all
frames of all sequences, sigma_hat estimated as ``denoise_sequence`` does
(median over the first frames). Only settings whose search costs at most
``--max-cost`` times the frame-by-frame search of the image table at that
level are tried (cost ~ (2k + 1)(2d + 1)^2): the issue's speed target is
``fast`` with k = 2 within 3x frame-by-frame. The winning rows go to the
``"sequence"`` section of ``nlmeans/data/parameters.json``, indexed by the
sigma estimate (band edges halfway between the mean estimates of adjacent
levels). Methods not fitted in a call keep their rows.

Usage::

    python benchmarks/fit_sequence_parameters.py [--images 16] [--color-images 8] \
        [--frames 10] [--crop 128] [--methods fast,patchwise,exact]
    python benchmarks/fit_sequence_parameters.py --quick   # minutes, a first table
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from fit_parameters import write_method_rows  # benchmarks/, the script's folder

import nlmeans
from nlmeans._denoise import _table_row
from nlmeans._sequence import ESTIMATE_FRAMES
from nlmeans.sequence_evaluation import measure_sequence
from nlmeans.synthetic import make_sequence

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = (5, 10, 15, 20, 25, 30, 40, 50, 60, 75)
MOTIONS_CYCLE = ("pan", "zoom", "objects", "mixed")
PATCHES_LOW, PATCHES_HIGH, HIGH_FROM = (3, 5, 7), (5, 7, 9), 30
GRIDS = {
    "fast": dict(k=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1)),
    "exact": dict(k=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)),
    "patchwise": dict(k=(0.25, 0.3, 0.35, 0.4, 0.45, 0.55, 0.65)),
}
RADII = (1, 2, 3)
DISTANCES = (3, 4, 5, 7)


def _load(folder: Path, count: int, color: bool, crop: int) -> list[np.ndarray]:
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise SystemExit(f"no PNG or JPEG images in {folder}")
    step = max(1, len(files) // max(count, 1))
    images = []
    for f in files[::step][:count]:
        image = iio.imread(f).astype(np.float64) / 255.0
        if color and image.ndim == 2:
            continue
        image = image[..., :3] if color else (image if image.ndim == 2 else image.mean(axis=2))
        # Room for the camera: frames are 3/4 of the crop.
        y0 = max(0, (image.shape[0] - crop) // 2)
        x0 = max(0, (image.shape[1] - crop) // 2)
        images.append(np.ascontiguousarray(image[y0 : y0 + crop, x0 : x0 + crop]))
    return images


def make_sequences(images: list[np.ndarray], frames: int, offset: int = 0) -> list[np.ndarray]:
    """Clean sequences from ``images``: seed ``offset + i``, motions cycling."""
    out = []
    for i, image in enumerate(images):
        other = images[(i + 1) % len(images)]
        out.append(
            make_sequence(
                image,
                frames,
                seed=offset + i,
                motion=MOTIONS_CYCLE[(offset + i) % len(MOTIONS_CYCLE)],
                objects=[other],
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gray-data", default=str(ROOT.parent / "shared/data/train400"))
    parser.add_argument("--color-data", default=str(ROOT.parent / "shared/data/cbsd432"))
    parser.add_argument("--images", type=int, default=16, help="gray sequences (Train400)")
    parser.add_argument("--color-images", type=int, default=8, help="colour sequences (CBSD432)")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--crop", type=int, default=128, help="square crop the clip is cut from")
    parser.add_argument("--methods", default="fast,patchwise,exact")
    parser.add_argument("--sigmas", default=None, help="default: all levels (--quick: 10,25,50)")
    parser.add_argument("--max-cost", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "nlmeans/data/parameters.json"))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny fit (3 gray + 1 colour sequences of 6 frames, 64x64 crops, sigma 10,25,50 "
        "unless --sigmas, "
        "a smaller grid): a first table in minutes",
    )
    args = parser.parse_args()
    radii, distances, grids = RADII, DISTANCES, GRIDS
    if args.quick:
        args.images, args.color_images, args.frames, args.crop = 3, 1, 6, 64
        if args.sigmas is None:
            args.sigmas = "10,25,50"
        radii, distances = (1, 2), (3, 5)
        grids = {m: dict(k=g["k"][1::2]) for m, g in GRIDS.items()}

    gray = _load(Path(args.gray_data), args.images, False, args.crop) if args.images else []
    color = (
        _load(Path(args.color_data), args.color_images, True, args.crop)
        if args.color_images
        else []
    )
    clean = make_sequences(gray, args.frames) + make_sequences(color, args.frames, len(gray))
    axes = [None] * len(gray) + [-1] * len(color)
    levels = [int(s) for s in args.sigmas.split(",")] if args.sigmas else list(SIGMAS)

    out = Path(args.out)
    table = json.loads(out.read_text())
    section = table.setdefault("sequence", {"methods": {}})
    section["note"] = (
        "Automatic parameters of denoise_sequence, fitted by "
        "benchmarks/fit_sequence_parameters.py (fitted_by says how, per method); rows indexed "
        "by the sigma estimate in gray levels (/255)."
    )
    fitted_by = (
        f"{'--quick: ' if args.quick else ''}{len(gray)} Train400 and {len(color)} CBSD432 "
        f"synthetic sequences ({args.frames} frames, {args.crop}px crops, motions "
        f"{'/'.join(MOTIONS_CYCLE)}); search cost at most {args.max_cost}x frame-by-frame"
    )
    for method in args.methods.split(","):
        rows = []
        for level in levels:
            started = time.perf_counter()
            noisy = [
                c + np.random.default_rng(200_000 + i).normal(0, level / 255, c.shape)
                for i, c in enumerate(clean)
            ]
            # As denoise_sequence estimates it: the median over the first frames.
            sigma_hat = [
                float(
                    np.median(
                        [nlmeans.estimate_sigma(f, channel_axis=a) for f in n[:ESTIMATE_FRAMES]]
                    )
                )
                for n, a in zip(noisy, axes)
            ]
            image_d = _table_row(method, level / 255)["patch_distance"]
            budget = args.max_cost * (2 * image_d + 1) ** 2
            patches = PATCHES_HIGH if level >= HIGH_FROM else PATCHES_LOW
            cache: dict = {}

            def run(radius, patch, distance, k):
                key = (radius, patch, distance, k)
                if key not in cache:
                    scores = []
                    for c, n, s, a in zip(clean, noisy, sigma_hat, axes):
                        result = nlmeans.denoise_sequence(
                            n,
                            channel_axis=a,
                            method=method,
                            temporal_radius=radius,
                            patch_size=patch,
                            patch_distance=distance,
                            sigma=s,
                            h=k * s,
                            threads=args.threads,
                        )
                        scores.append(measure_sequence(c, result, channel_axis=a)["psnr"])
                    cache[key] = float(np.mean(scores))
                return cache[key]

            candidates = [
                (r, p, d)
                for r, p, d in itertools.product(radii, patches, distances)
                if (2 * r + 1) * (2 * d + 1) ** 2 <= budget
            ]
            # h first at the middle of the grid for every window, then h for the best window.
            k_grid = grids[method]["k"]
            middle = k_grid[len(k_grid) // 2]
            radius, patch, distance = max(candidates, key=lambda c: run(*c, middle))
            k = max(k_grid, key=lambda v: run(radius, patch, distance, v))
            row = {
                "sigma": level,
                "sigma_hat_mean": round(float(np.mean(sigma_hat)) * 255, 3),
                "temporal_radius": radius,
                "patch_size": patch,
                "patch_distance": distance,
                "h_over_sigma": k,
                "train_psnr": round(run(radius, patch, distance, k), 3),
            }
            rows.append(row)
            print(
                f"{method} sigma={level}: {row} ({time.perf_counter() - started:.0f} s)", flush=True
            )
        section.setdefault("fitted_by", {})[method] = fitted_by
        write_method_rows(table, section, method, rows, "n_sequences", len(clean), out)


if __name__ == "__main__":
    main()
