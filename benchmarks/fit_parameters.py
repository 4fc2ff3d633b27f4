"""Fit the automatic-parameter table of nlmeans on Train400.

For each noise level and method, a grid over patch size, search distance and
h / sigma_hat is scored by mean PSNR on a subset of Train400 (never on the
evaluation images), with sigma_hat estimated from each noisy image, exactly
as ``nlmeans.denoise`` does when parameters are left automatic. The winning
rows are written to ``nlmeans/data/parameters.json``, indexed by the sigma
estimate (band edges halfway between the mean estimates of adjacent levels).

Usage::

    python benchmarks/fit_parameters.py [--data ../shared/data/train400] \
        [--images 24] [--out nlmeans/data/parameters.json]

Noise seeds are ``default_rng(100_000 + i)`` so they never coincide with the
evaluation protocol's ``default_rng(i)``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from skimage.metrics import peak_signal_noise_ratio

import nlmeans

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = (5, 10, 15, 20, 25, 30, 40, 50, 60, 75)
# Patch sizes searched grow with the noise: small patches win at low sigma,
# large ones at high sigma (IPOL 2011's table shows the same trend).
PATCHES_LOW, PATCHES_HIGH, HIGH_FROM = (3, 5, 7), (5, 7, 9), 30
GRIDS = {
    "fast": dict(distance=(7, 10), k=(0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0)),
    "exact": dict(distance=(7, 10), k=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)),
    "patchwise": dict(distance=(7, 10), k=(0.25, 0.3, 0.35, 0.4, 0.45, 0.55)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/train400"))
    parser.add_argument("--images", type=int, default=16,
                        help="Train400 images used (evenly spaced in the sorted list)")
    parser.add_argument("--methods", default="fast,exact,patchwise")
    parser.add_argument("--out", default=str(ROOT / "nlmeans/data/parameters.json"))
    args = parser.parse_args()

    files = sorted(Path(args.data).glob("*.png"))
    if not files:
        raise SystemExit(f"no PNG images in {args.data}")
    step = max(1, len(files) // args.images)
    files = files[::step][: args.images]
    clean = [iio.imread(f).astype(np.float64) / 255.0 for f in files]

    out = Path(args.out)
    # Methods are fitted one call at a time if wanted: keep the others' rows.
    table = json.loads(out.read_text()) if out.exists() else {"methods": {}}
    table["note"] = (
        "Fitted by benchmarks/fit_parameters.py on Train400 subsets; rows "
        "indexed by the sigma estimate in gray levels (/255); n_images per method."
    )
    for method in args.methods.split(","):
        grid = GRIDS[method]
        rows = []
        for level in SIGMAS:
            started = time.perf_counter()
            noisy = [
                c + np.random.default_rng(100_000 + i).normal(0, level / 255, c.shape)
                for i, c in enumerate(clean)
            ]
            sigma_hat = [nlmeans.estimate_sigma(n) for n in noisy]
            best = None
            patches = PATCHES_HIGH if level >= HIGH_FROM else PATCHES_LOW
            for patch, distance in itertools.product(patches, grid["distance"]):
                for k in grid["k"]:
                    scores = [
                        peak_signal_noise_ratio(
                            c,
                            np.clip(
                                nlmeans.denoise(
                                    n, sigma=s, h=k * s, patch_size=patch,
                                    patch_distance=distance, method=method,
                                ), 0, 1),
                            data_range=1.0,
                        )
                        for c, n, s in zip(clean, noisy, sigma_hat)
                    ]
                    score = float(np.mean(scores))
                    if best is None or score > best[0]:
                        best = (score, patch, distance, k)
            rows.append({
                "sigma": level,
                "sigma_hat_mean": round(float(np.mean(sigma_hat)) * 255, 3),
                "patch_size": best[1],
                "patch_distance": best[2],
                "h_over_sigma": best[3],
                "train_psnr": round(best[0], 3),
            })
            print(f"{method} sigma={level}: {rows[-1]} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
        for row, following in zip(rows, rows[1:] + [None]):
            row["sigma_max"] = (
                1e9 if following is None
                else round((row["sigma_hat_mean"] + following["sigma_hat_mean"]) / 2, 3)
            )
        table["methods"][method] = rows
        table.setdefault("n_images", {})[method] = len(clean)
        out.write_text(json.dumps(table, indent=1) + "\n")
        print(f"wrote {method} to {out}", flush=True)


if __name__ == "__main__":
    main()
