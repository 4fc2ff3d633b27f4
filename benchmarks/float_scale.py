"""Float images on another scale: automatic parameters against the same data on [0, 1].

Raw counts and 0-255 floats are denoised on their own scale; the automatic
table is fitted on [0, 1]. Each image of the sorted list gets the protocol's
white noise (``default_rng(i)`` for the i-th image, not clipped) on [0, 1],
then is multiplied by ``scale``; ``nlmeans.denoise`` runs everything
automatic (sigma estimated, ``fast``; colour: ``channel_axis=-1``), and the
output is divided by ``scale`` again. PSNR (dB, output clipped to [0, 1])
per set and sigma, for scale 1 and each other scale. Run from the
repository root::

    python benchmarks/float_scale.py --out benchmarks/results/float_scale.md

(about three minutes on 2 cores).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from bench_real_noise import write_table  # benchmarks/, the script's folder
from skimage.metrics import peak_signal_noise_ratio

import nlmeans

ROOT = Path(__file__).resolve().parents[1]


def mean_psnr(files, sigma: float, scale: float) -> float:
    values = []
    for i, path in enumerate(files):
        clean = iio.imread(path).astype(np.float64) / 255.0
        clean = clean[..., :3] if clean.ndim == 3 else clean
        axis = -1 if clean.ndim == 3 else None
        noisy = clean + np.random.default_rng(i).normal(0, sigma / 255.0, clean.shape)
        out = nlmeans.denoise((noisy * scale).astype(np.float32), channel_axis=axis) / scale
        values.append(peak_signal_noise_ratio(clean, np.clip(out, 0, 1), data_range=1.0))
    return float(np.mean(values))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data"))
    parser.add_argument("--sets", default="set12,mcmaster")
    parser.add_argument("--sigmas", default="15,25,50")
    parser.add_argument("--scales", default="255,4000")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    scales = [float(s) for s in args.scales.split(",")]
    lines = [
        "Automatic `fast` on float data: PSNR (dB) on [0, 1] and on other scales",
        "",
        "| set | sigma | [0, 1] | " + " | ".join(f"x {s:g}" for s in scales) + " |",
        "|---|---:|---:|" + "---:|" * len(scales),
    ]
    for name in args.sets.split(","):
        files = sorted(
            p for p in (Path(args.data) / name).iterdir() if p.suffix.lower() in (".png", ".tif")
        )
        for sigma in (float(s) for s in args.sigmas.split(",")):
            row = [mean_psnr(files, sigma, scale) for scale in [1.0, *scales]]
            lines.append(f"| {name} | {sigma:g} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
            print(lines[-1], flush=True)
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
