"""Colour images with an empty channel: the network path's choice of model.

A two-colour micrograph saved as RGB, or a picture with one channel unused,
has a channel that is exactly constant. Each McMaster image gets its blue
channel set to 0 and the protocol's white noise (``default_rng(i)`` for the
i-th image of the sorted list, not clipped) in red and green only. Rows:

* ``nlmeans.denoise(method="neural")``: the gray model on each channel that
  is not constant (what it does since it looks for constant channels);
* the colour model on the whole image (what it did before), the same sigma;
* ``nlmeans.denoise(method="fast")``, automatic.

PSNR (dB) over the red and green channels, output clipped to [0, 1]. Run
from the repository root::

    python benchmarks/empty_channel.py --out benchmarks/results/empty_channel.md

(about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from bench_real_noise import write_table  # benchmarks/, the script's folder

import nlmeans
from nlmeans.neural import denoise as network

ROOT = Path(__file__).resolve().parents[1]


def psnr(clean: np.ndarray, out: np.ndarray) -> float:
    error = np.clip(out[..., :2], 0, 1) - clean[..., :2]
    return float(10 * np.log10(1.0 / np.mean(error**2)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/mcmaster"))
    parser.add_argument("--sigma", type=float, default=25.0, help="gray levels")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    files = sorted(
        p for p in Path(args.data).iterdir() if p.suffix.lower() in (".png", ".tif", ".jpg")
    )
    rows = {"noisy": [], "neural (gray model per channel)": [], "colour model": [], "fast": []}
    sigma = args.sigma / 255.0
    for i, path in enumerate(files):
        clean = iio.imread(path)[..., :3].astype(np.float64) / 255.0
        clean[..., 2] = 0.0
        noisy = clean + np.random.default_rng(i).normal(0.0, sigma, clean.shape)
        noisy[..., 2] = 0.0
        level = nlmeans.estimate_sigma(noisy, channel_axis=-1)
        rows["noisy"].append(psnr(clean, noisy))
        rows["neural (gray model per channel)"].append(
            psnr(clean, nlmeans.denoise(noisy, method="neural", channel_axis=-1))
        )
        colour = network(noisy.astype(np.float32), sigma=level)
        rows["colour model"].append(psnr(clean, colour))
        rows["fast"].append(psnr(clean, nlmeans.denoise(noisy, channel_axis=-1)))
    lines = [
        f"McMaster ({len(files)} images), blue channel 0, white noise sigma = {args.sigma:g} "
        "in red and green; PSNR (dB) over red and green",
        "",
        "| method | PSNR (dB) |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {np.mean(values):.2f} |" for name, values in rows.items()]
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
