"""How strong real camera noise is, and how much of it the estimate reads.

For noisy/clean pairs (PolyU: one shot and the mean of many shots), prints
the standard deviation of ``noisy - clean`` on the orthonormal opponent
channels (luminance (R + G + B)/sqrt(3), then the two chrominance channels
that ``color_space="opponent"`` uses), ``estimate_noise_level``'s
``coarse_sigma`` (read on the luminance) and its ratio to the true luminance
noise, and the mean PSNR of ``fast`` given ``m`` times each photograph's
true luminance noise (an oracle that no single-image method has) beside the
automatic ``fast``. Diagnostics only: nothing here sets a parameter. Run
from the repository root::

    python benchmarks/real_noise_strength.py --noisy "../shared/data/polyu/*_real.jpg" \\
        --clean "../shared/data/polyu/*_mean.jpg" --out benchmarks/results/real_noise_strength.md

(about 2 minutes for the 40 PolyU pairs on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from bench_real_noise import glob_pairs, write_table  # benchmarks/, the script's folder

import nlmeans
from nlmeans import evaluation as ev
from nlmeans._color import OPPONENT

MULTIPLES = (0.8, 1.0, 1.2, 1.5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noisy", required=True)
    parser.add_argument("--clean", required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for noisy_path, clean_path in glob_pairs(args.noisy, args.clean):
        noisy, axis = ev.load_clean(noisy_path)
        clean, _ = ev.load_clean(clean_path)
        if axis is None:
            sys.exit(f"{noisy_path}: colour pairs only")
        noise = np.tensordot(OPPONENT, np.moveaxis(noisy - clean, -1, 0), axes=1)
        strength = noise.std(axis=(1, 2))
        level = nlmeans.estimate_noise_level(noisy, channel_axis=-1)
        oracle = [
            ev.measure(clean, nlmeans.denoise(noisy, channel_axis=-1, sigma=m * strength[0]))[0]
            for m in MULTIPLES
        ]
        automatic = ev.measure(clean, nlmeans.denoise(noisy, channel_axis=-1))[0]
        rows.append(
            [*strength, level.coarse_sigma, level.coarse_sigma / strength[0], *oracle, automatic]
        )
    m = np.mean(rows, axis=0)
    lines = [
        f"{len(rows)} pairs ({args.noisy} against {args.clean}); means over the pairs, gray levels",
        "",
        "| noise std: luminance | chrominance 1 | chrominance 2 | coarse_sigma | coarse_sigma / luminance noise |",
        "|---:|---:|---:|---:|---:|",
        "| " + " | ".join(f"{v * 255:.2f}" for v in m[:4]) + f" | {m[4]:.2f} |",
        "",
        "| fast given | "
        + " | ".join(f"{k:g} x true luminance noise" for k in MULTIPLES)
        + " | automatic |",
        "|---|" + "---:|" * (len(MULTIPLES) + 1),
        "| PSNR (dB) | " + " | ".join(f"{v:.2f}" for v in m[5:]) + " |",
    ]
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
