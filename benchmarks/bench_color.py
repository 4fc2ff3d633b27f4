"""Colour AWGN quality on McMaster: nlmeans against scikit-image's best-tuned colour setting.

For each sigma (8-bit gray levels), every image gets the protocol's noise
(clean + N(0, (sigma/255)^2), ``default_rng(i)`` for the i-th image of the
sorted list, not clipped) and is denoised by

* nlmeans ``fast``, ``exact`` and ``patchwise`` with every parameter
  automatic (sigma estimated, ``color_space="auto"``, i.e. the opponent path);
* nlmeans ``fast`` with ``color_space="rgb"`` (joint RGB distance, the colour
  behaviour of earlier versions), automatic;
* nlmeans ``neural`` (the colour network when it is shipped), with sigma
  estimated and with the true sigma given, and (``neural-ensemble``) with
  ``ensemble=True``, sigma estimated;
* scikit-image ``denoise_nl_means`` fast mode, joint RGB, given the true
  sigma, at the best setting of a grid (patch size x search distance x
  h/sigma): the grid is scored on every ``--stage1``-th image first, and its
  ``--finalists`` best cells are then run on every image; the best mean wins;
* optionally (``--bm3d``) colour BM3D (``bm3d.bm3d_rgb``, true sigma).

PSNR/SSIM follow REFERENCE.md (output clipped to [0, 1], ``data_range=1``,
SSIM with ``channel_axis=-1``). Writes ``benchmarks/results/color_mcmaster.md``
and ``.json``.

Usage::

    python benchmarks/bench_color.py [--data ../shared/data/mcmaster] [--sigmas 15,25,50] [--bm3d]
        [--methods fast,exact,patchwise,rgb,neural,neural-true,neural-ensemble] [--no-skimage]
        [--out PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.restoration import denoise_nl_means

import nlmeans

ROOT = Path(__file__).resolve().parents[1]
SKIMAGE_GRID = dict(
    patch_size=(3, 5, 7),
    patch_distance=(5, 7, 10),
    h_over_sigma=(0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8),
)


#: --methods key -> (row name, nlmeans.denoise options; true_sigma: give it sigma).
OURS = {
    "fast": ("nlmeans fast", dict(method="fast")),
    "exact": ("nlmeans exact", dict(method="exact")),
    "patchwise": ("nlmeans patchwise", dict(method="patchwise")),
    "rgb": ("nlmeans fast, color_space=rgb", dict(method="fast", color_space="rgb")),
    "neural": ("nlmeans neural", dict(method="neural")),
    "neural-true": ("nlmeans neural, true σ", dict(method="neural", true_sigma=True)),
    "neural-ensemble": (
        "nlmeans neural, ensemble=True (mean over 8 flips and rotations)",
        dict(method="neural", ensemble=True),
    ),
    # The colour weights hidden: method="neural" falls back to the gray network per channel.
    "neural-gray": ("gray network on each channel", dict(method="neural", hide_colour=True)),
}


def score(clean: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    out = np.clip(out, 0, 1)
    return (
        float(peak_signal_noise_ratio(clean, out, data_range=1.0)),
        float(structural_similarity(clean, out, data_range=1.0, channel_axis=-1)),
    )


def skimage_run(noisy, sigma, cell):
    patch, distance, k = cell
    return denoise_nl_means(
        noisy,
        patch_size=patch,
        patch_distance=distance,
        h=k * sigma,
        sigma=sigma,
        fast_mode=True,
        channel_axis=-1,
    )


def skimage_best(clean, noisy, sigma, stage1: int, finalists: int):
    cells = list(itertools.product(*SKIMAGE_GRID.values()))
    subset = list(range(0, len(clean), stage1))
    first = {
        cell: np.mean([score(clean[i], skimage_run(noisy[i], sigma, cell))[0] for i in subset])
        for cell in cells
    }
    best = None
    for cell in sorted(cells, key=lambda c: -first[c])[:finalists]:
        scores = [score(c, skimage_run(n, sigma, cell)) for c, n in zip(clean, noisy)]
        mean = tuple(np.mean(scores, axis=0))
        if best is None or mean[0] > best[1][0]:
            best = (cell, mean)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/mcmaster"))
    parser.add_argument("--sigmas", default="15,25,50")
    parser.add_argument("--bm3d", action="store_true", help="also run colour BM3D (slow)")
    parser.add_argument(
        "--stage1",
        type=int,
        default=3,
        help="score the whole scikit-image grid on every N-th image first",
    )
    parser.add_argument("--finalists", type=int, default=5)
    parser.add_argument(
        "--methods",
        default="fast,exact,patchwise,rgb",
        help=f"nlmeans rows, from {','.join(OURS)}",
    )
    parser.add_argument(
        "--no-skimage", action="store_true", help="skip the scikit-image grid search"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/color_mcmaster"))
    args = parser.parse_args()

    files = sorted(
        p for p in Path(args.data).iterdir() if p.suffix.lower() in (".png", ".tif", ".jpg")
    )
    clean = [iio.imread(f)[..., :3].astype(np.float64) / 255.0 for f in files]
    unknown = set(args.methods.split(",")) - set(OURS)
    if unknown:
        parser.error(f"unknown --methods {sorted(unknown)}; choose from {','.join(OURS)}")
    ours = {OURS[key][0]: OURS[key][1] for key in args.methods.split(",")}
    results = []
    for level in (float(s) for s in args.sigmas.split(",")):
        sigma = level / 255.0
        noisy = [
            c + np.random.default_rng(i).normal(0, sigma, c.shape) for i, c in enumerate(clean)
        ]
        rows = {}
        for name, options in ours.items():
            started = time.perf_counter()
            options = dict(options)
            restore = None
            if options.pop("true_sigma", False):
                options["sigma"] = sigma
            if options.pop("hide_colour", False):
                from nlmeans.neural import inference

                shipped = restore = inference.default_weights_path
                inference.default_weights_path = lambda c=1, _s=shipped: (
                    Path("/nonexistent.safetensors") if c == 3 else _s(c)
                )
            scores = [
                score(c, nlmeans.denoise(n, channel_axis=-1, **options))
                for c, n in zip(clean, noisy)
            ]
            if restore is not None:
                from nlmeans.neural import inference

                inference.default_weights_path = restore
            rows[name] = dict(zip(("psnr", "ssim"), np.mean(scores, axis=0)))
            print(
                f"sigma {level:g} {name}: {rows[name]} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        if not args.no_skimage:
            started = time.perf_counter()
            cell, (psnr, ssim) = skimage_best(clean, noisy, sigma, args.stage1, args.finalists)
            rows["scikit-image fast, best of grid"] = dict(
                psnr=psnr,
                ssim=ssim,
                setting=dict(zip(("patch_size", "patch_distance", "h_over_sigma"), cell)),
            )
            print(
                f"sigma {level:g} skimage best {cell}: {psnr:.3f} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        if args.bm3d:
            import bm3d

            scores = [score(c, bm3d.bm3d_rgb(n, sigma_psd=sigma)) for c, n in zip(clean, noisy)]
            rows["colour BM3D (bm3d_rgb)"] = dict(zip(("psnr", "ssim"), np.mean(scores, axis=0)))
        results.append({"sigma": level, "rows": rows})

    out = Path(args.out)
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "data": Path(args.data).name,
                "n_images": len(clean),
                "grid": SKIMAGE_GRID,
                "results": results,
            },
            indent=1,
            default=float,
        )
        + "\n"
    )
    names = list(results[0]["rows"])
    lines = [
        f"# Colour AWGN on {Path(args.data).name} ({len(clean)} images)",
        "",
        "Made by `python benchmarks/bench_color.py` (protocol in its docstring). PSNR (dB) / SSIM.",
        "",
        "| method | " + " | ".join(f"σ = {r['sigma']:g}" for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    for name in names:
        cells = [f"{r['rows'][name]['psnr']:.2f} / {r['rows'][name]['ssim']:.4f}" for r in results]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if not args.no_skimage:
        lines += ["", "scikit-image's best cell (patch size, search distance, h/σ):", ""]
        lines += [
            f"* σ = {r['sigma']:g}: {r['rows']['scikit-image fast, best of grid']['setting']}"
            for r in results
        ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
