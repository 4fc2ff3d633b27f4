"""Gaussian noise of a different sigma per channel: one sigma, or each channel its own?

A Gaussian ``NoiseModel`` (``a = 0``) with a ``b`` per channel can be
denoised in two ways by the classical methods: with one sigma,
``sqrt(mean(b))`` (what ``nlmeans.denoise`` does), or by dividing each
channel by its own sigma first (the variance-stabilising path that
Poisson-Gaussian models take, which this script forces). The network takes
the per-channel sigma map either way. Two scikit-image photographs at one
third scale, three mixes of channel sigmas, seed 0; PSNR (dB) over all
channels. Run from the repository root::

    python benchmarks/per_channel_sigma.py --out benchmarks/results/per_channel_sigma.md

(a few seconds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_real_noise import write_table  # benchmarks/, the script's folder
from skimage import data

import nlmeans
from nlmeans.noise import NoiseModel

MIXES = ((0.02, 0.08, 0.15), (0.05, 0.05, 0.10), (0.10, 0.05, 0.07))


def _psnr(clean, out) -> float:
    return float(-10 * np.log10(np.mean((np.clip(out, 0, 1) - clean) ** 2)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    lines = [
        "Gaussian noise, a sigma per channel (R, G, B on the [0, 1] scale); PSNR (dB). "
        "`python benchmarks/per_channel_sigma.py`",
        "",
        "| image | sigmas | method | one sigma, sqrt(mean(b)) | each channel its own |",
        "|---|---|---|---:|---:|",
    ]
    rng = np.random.default_rng(0)
    for name in ("astronaut", "coffee"):
        clean = getattr(data, name)()[::3, ::3] / 255.0
        for sigmas in MIXES:
            noisy = clean + np.asarray(sigmas) * rng.standard_normal(clean.shape)
            model = NoiseModel("poisson-gaussian", [0.0] * 3, [s * s for s in sigmas])
            for method in ("fast", "patchwise"):
                one = nlmeans.denoise(noisy, channel_axis=-1, method=method, sigma=model.sigma)
                own = nlmeans.denoise(noisy, channel_axis=-1, method=method, noise=model)
                lines.append(
                    f"| {name} | {' / '.join(f'{s:g}' for s in sigmas)} | {method} | "
                    f"{_psnr(clean, one):.2f} | {_psnr(clean, own):.2f} |"
                )
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
