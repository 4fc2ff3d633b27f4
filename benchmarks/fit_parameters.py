"""Fit the automatic-parameter table of nlmeans on Train400 (gray) or CBSD432 (colour).

For each noise level and method, a grid over patch size, search distance and
h / sigma_hat is scored by mean PSNR on a subset of the training images (never
on the evaluation images), with sigma_hat estimated from each noisy image,
exactly as ``nlmeans.denoise`` does when parameters are left automatic. The
winning rows are written to ``nlmeans/data/parameters.json``, indexed by the
sigma estimate (band edges halfway between the mean estimates of adjacent
levels).

With ``--color`` the images are the CBSD432 colour photographs, denoised on
the opponent path (``color_space="opponent"``), and the grid also covers the
chrominance h as a multiple of h; the rows go to the table's ``"color"``
section.

Usage::

    python benchmarks/fit_parameters.py [--data ../shared/data/train400] \
        [--images 24] [--out nlmeans/data/parameters.json]
    python benchmarks/fit_parameters.py --color --images 24 --crop 256

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
# Opponent colour path: luminance-only distances are noisier than joint ones,
# so h/sigma sits higher than on gray images; kc = h_chroma / h. The colour
# grid is searched by coordinates (patch and k at the middle kc, then kc,
# then k again) rather than exhaustively, for 3x fewer runs.
COLOR_GRIDS = {
    "fast": dict(distance=(7,), k=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0), kc=(1.0, 1.25, 1.5, 2.0, 2.5)),
    "exact": dict(distance=(7,), k=(0.6, 0.7, 0.8, 0.9, 1.0, 1.2), kc=(1.0, 1.25, 1.5, 2.0, 2.5)),
    "patchwise": dict(distance=(7,), k=(0.3, 0.4, 0.5, 0.6, 0.7), kc=(1.0, 1.25, 1.5, 2.0, 2.5)),
}


def _load(files, color: bool, crop: int | None) -> list[np.ndarray]:
    images = []
    for f in files:
        image = iio.imread(f).astype(np.float64) / 255.0
        if color and image.ndim == 2:
            continue
        if crop:
            y0 = max(0, (image.shape[0] - crop) // 2)
            x0 = max(0, (image.shape[1] - crop) // 2)
            image = image[y0 : y0 + crop, x0 : x0 + crop]
        images.append(np.ascontiguousarray(image[..., :3] if color else image))
    return images


def write_method_rows(table, section, method, rows, count_key, count, out) -> None:
    """Give ``rows`` their ``sigma_max``, store them in ``section`` and write ``table`` to ``out``.

    A row serves estimated sigmas up to halfway to the next row's
    ``sigma_hat_mean`` (the last row: all above). ``count_key`` records how
    many images (or sequences) the rows were fitted on.
    """
    for row, following in zip(rows, rows[1:] + [None]):
        row["sigma_max"] = (
            1e9
            if following is None
            else round((row["sigma_hat_mean"] + following["sigma_hat_mean"]) / 2, 3)
        )
    section["methods"][method] = rows
    section.setdefault(count_key, {})[method] = count
    out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {method} to {out}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--color", action="store_true", help="fit the opponent colour rows on CBSD432"
    )
    parser.add_argument(
        "--data",
        default=None,
        help="training images (default ../shared/data/train400, "
        "with --color ../shared/data/cbsd432)",
    )
    parser.add_argument(
        "--images", type=int, default=16, help="images used (evenly spaced in the sorted list)"
    )
    parser.add_argument(
        "--crop", type=int, default=None, help="use the central CROP x CROP part of each image"
    )
    parser.add_argument("--methods", default="fast,exact,patchwise")
    parser.add_argument("--sigmas", default=",".join(str(s) for s in SIGMAS))
    parser.add_argument("--out", default=str(ROOT / "nlmeans/data/parameters.json"))
    args = parser.parse_args()

    data = Path(
        args.data or ROOT.parent / "shared/data" / ("cbsd432" if args.color else "train400")
    )
    files = sorted(f for f in data.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise SystemExit(f"no PNG or JPEG images in {data}")
    step = max(1, len(files) // args.images)
    files = files[::step][: args.images]
    clean = _load(files, args.color, args.crop)
    levels = [int(s) for s in args.sigmas.split(",")]

    out = Path(args.out)
    # Methods are fitted one call at a time if wanted: keep the others' rows.
    table = json.loads(out.read_text()) if out.exists() else {"methods": {}}
    section = table.setdefault("color", {"methods": {}}) if args.color else table
    section["note"] = (
        f"Fitted by benchmarks/fit_parameters.py{' --color' if args.color else ''} on "
        f"{data.name} subsets{f' (central {args.crop}x{args.crop} crops)' if args.crop else ''}; "
        "rows indexed by the sigma estimate in gray levels (/255); n_images per method."
    )
    channel_axis = -1 if args.color else None
    for method in args.methods.split(","):
        grid = (COLOR_GRIDS if args.color else GRIDS)[method]
        rows = []
        for level in levels:
            started = time.perf_counter()
            noisy = [
                c + np.random.default_rng(100_000 + i).normal(0, level / 255, c.shape)
                for i, c in enumerate(clean)
            ]
            sigma_hat = [nlmeans.estimate_sigma(n, channel_axis=channel_axis) for n in noisy]
            patches = PATCHES_HIGH if level >= HIGH_FROM else PATCHES_LOW
            cache = {}

            def run(patch, distance, k, kc):
                key = (patch, distance, k, kc)
                if key not in cache:
                    options = dict(patch_size=patch, patch_distance=distance, method=method)
                    if kc is not None:
                        options.update(channel_axis=-1, color_space="opponent")
                    cache[key] = float(
                        np.mean(
                            [
                                peak_signal_noise_ratio(
                                    c,
                                    np.clip(
                                        nlmeans.denoise(
                                            n,
                                            sigma=s,
                                            h=k * s,
                                            **(
                                                dict(options, h_chroma=kc * k * s)
                                                if kc
                                                else options
                                            ),
                                        ),
                                        0,
                                        1,
                                    ),
                                    data_range=1.0,
                                )
                                for c, n, s in zip(clean, noisy, sigma_hat)
                            ]
                        )
                    )
                return cache[key]

            if args.color:
                kcs = grid["kc"]
                kc = kcs[len(kcs) // 2]
                patch, distance, k = max(
                    itertools.product(patches, grid["distance"], grid["k"]),
                    key=lambda c: run(*c, kc),
                )
                kc = max(kcs, key=lambda v: run(patch, distance, k, v))
                k = max(grid["k"], key=lambda v: run(patch, distance, v, kc))
            else:
                kc = None
                patch, distance, k = max(
                    itertools.product(patches, grid["distance"], grid["k"]),
                    key=lambda c: run(*c, None),
                )
            best = (run(patch, distance, k, kc), patch, distance, k, kc)
            row = {
                "sigma": level,
                "sigma_hat_mean": round(float(np.mean(sigma_hat)) * 255, 3),
                "patch_size": best[1],
                "patch_distance": best[2],
                "h_over_sigma": best[3],
            }
            if args.color:
                row["h_chroma_over_h"] = best[4]
            row["train_psnr"] = round(best[0], 3)
            rows.append(row)
            print(
                f"{method} sigma={level}: {row} ({time.perf_counter() - started:.0f} s)", flush=True
            )
        write_method_rows(table, section, method, rows, "n_images", len(clean), out)


if __name__ == "__main__":
    main()
