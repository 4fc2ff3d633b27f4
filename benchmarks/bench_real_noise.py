"""Real camera noise: reference denoisers given a multiple of the estimated sigma.

``nlmeans compare --noisy ... --clean ...`` measures every method with the
sigma that nlmeans estimates (``estimate_noise_level``). Real photographs'
noise is spatially correlated and no single-image estimate reads it fully, so
the issue's bar is a reference method given *the best single multiple* of
that estimate over the whole set, a value only an oracle could pick. This
script finds it: for each multiple ``k`` it runs the reference on every pair
with ``sigma = k * estimate_noise_level(noisy).sigma`` and prints the mean
PSNR / SSIM (``nlmeans.evaluation.measure``, float outputs clipped to
[0, 1]), the best row marked. Run from the repository root::

    python benchmarks/bench_real_noise.py --noisy "../shared/data/polyu/*_real.jpg" \\
        --clean "../shared/data/polyu/*_mean.jpg" --method bm3d --multiples 4,7,10 \\
        --out benchmarks/results/real_noise_bm3d.md

(CBM3D: about 11 s per 512x512 photograph per multiple on 2 cores, 22
minutes for the 40 PolyU pairs at three multiples; ``--every 3`` takes every
third pair.)
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

import numpy as np

import nlmeans
from nlmeans import evaluation as ev


def glob_pairs(noisy_pattern: str, clean_pattern: str) -> list[tuple[str, str]]:
    """The sorted files of two glob patterns, paired in order; exits on a count mismatch."""
    noisy, clean = sorted(glob.glob(noisy_pattern)), sorted(glob.glob(clean_pattern))
    if not noisy or len(noisy) != len(clean):
        sys.exit(f"need as many --clean as --noisy files, got {len(noisy)} and {len(clean)}")
    return list(zip(noisy, clean))


def write_table(lines: list[str], out: Path | None) -> None:
    """Print the Markdown lines, and write them to ``out`` when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noisy", required=True, help="glob of the noisy images")
    parser.add_argument("--clean", required=True, help="glob of the references, same order")
    parser.add_argument(
        "--method", default="bm3d", help="a method of nlmeans.evaluation (default: bm3d)"
    )
    parser.add_argument("--multiples", default="1,2,3,4,6", help="comma-separated k")
    parser.add_argument(
        "--every", type=int, default=1, help="every N-th pair of the sorted list (default: all)"
    )
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) here")
    args = parser.parse_args(argv)
    multiples = [float(k) for k in args.multiples.split(",")]
    pairs = glob_pairs(args.noisy, args.clean)[:: max(1, args.every)]
    scores = {k: [] for k in multiples}
    start = time.perf_counter()
    for i, (noisy_path, clean_path) in enumerate(pairs):
        noisy, axis = ev.load_clean(noisy_path)
        clean, _ = ev.load_clean(clean_path)
        sigma = nlmeans.estimate_noise_level(noisy, channel_axis=axis).sigma
        for k in multiples:
            out, _ = ev.run_method(args.method, noisy, sigma=k * sigma, channel_axis=axis)
            scores[k].append(ev.measure(clean, out))
        print(f"[{i + 1}/{len(pairs)}] {Path(noisy_path).name}", file=sys.stderr, flush=True)
    means = {k: np.mean(np.array(v, dtype=float), axis=0) for k, v in scores.items()}
    best = max(means, key=lambda k: means[k][0])
    lines = [
        f"{args.method} given k x estimate_noise_level(noisy).sigma, {len(pairs)} pairs "
        f"({args.noisy} against {args.clean}), {time.perf_counter() - start:.0f} s",
        "",
        "| k | PSNR (dB) | SSIM |",
        "|---:|---:|---:|",
    ]
    for k, (p, s) in means.items():
        mark = "**" if k == best else ""
        lines.append(f"| {mark}{k:g}{mark} | {p:.2f} | {s:.4f} |")
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
