"""How far ``estimate_noise_level`` reads simulated camera noise from its true level.

Each training photograph goes whole through the simulated camera of
``nlmeans.neural.camera.camera_noise`` (seed = its index in the sorted
list), and the sigma that ``estimate_noise_level`` gives the noisy
photograph is divided by the true standard deviation of its luminance
noise. The same is done for the noise alone, on a flat grey image of the
photograph's size: there only the noise's spectrum decides the reading,
while on the photograph its texture adds to it. The spread of these ratios
is why the camera model is trained with maps that are off by a random
factor (``nlmeans.neural.data._CAMERA_MAP_SPREAD``, see
``PatchSampler._camera``).
Run from the repository root::

    python benchmarks/camera_map_spread.py --data ../shared/data/cbsd432 --count 60 \\
        --out benchmarks/results/camera_map_spread.md

(about a minute on 2 cores). Training images only: nothing here looks at an
evaluation set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from bench_real_noise import write_table  # benchmarks/, the script's folder

import nlmeans
from nlmeans.neural.camera import camera_noise
from nlmeans.neural.data import list_images, read_rgb

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--count", type=int, default=60, help="the first COUNT photographs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    photo, alone = [], []
    for index, path in enumerate(list_images(args.data)[: args.count]):
        clean = torch.from_numpy(read_rgb(path))[None]  # (1, 3, H, W) in [0, 1]
        noisy, level = camera_noise(clean, torch.Generator().manual_seed(index))
        noise = noisy - clean
        for target, image in ((photo, noisy), (alone, 0.5 + noise)):
            pixels = image[0].permute(1, 2, 0).double().numpy()
            sigma = nlmeans.estimate_noise_level(pixels, channel_axis=-1).sigma
            target.append(sigma / float(level))
    header = " | ".join(f"{q:.0%}" for q in QUANTILES)
    lines = [
        f"{len(photo)} photographs of {args.data} through the simulated camera; "
        "estimate_noise_level's sigma / true luminance noise, quantiles over the photographs",
        "",
        f"| read on | {header} |",
        "|---|" + "---:|" * len(QUANTILES),
    ]
    for name, ratios in (("the noisy photograph", photo), ("the noise alone, on flat grey", alone)):
        values = " | ".join(f"{v:.2f}" for v in np.quantile(ratios, QUANTILES))
        lines.append(f"| {name} | {values} |")
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
