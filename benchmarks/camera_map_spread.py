"""How far ``estimate_noise_level`` reads simulated camera noise from its true level.

The first ``--count`` photographs of a folder (sorted) go whole through the
simulated camera of ``nlmeans.neural.camera.camera_noise`` (seed = the
photograph's index), and the sigma that ``estimate_noise_level`` gives the
noisy photograph is divided by the true standard deviation of its
luminance noise (the level the camera model's training map starts from).
Two more rows: the photographs whose noise the estimate judged correlated
enough for ``method="neural"`` to run the camera model, and the camera's
error alone (``noisy - clean``, JPEG's error on the photograph's texture
included) added to flat grey, where the texture no longer adds to the
reading. The spread of these ratios is why the camera model is trained
with maps that are off by a random factor
(``nlmeans.neural.data._CAMERA_MAP_SPREAD``, see ``PatchSampler._camera``).
Run from the repository root::

    python benchmarks/camera_map_spread.py --data ../shared/data/cbsd432 --count 60 \\
        --out benchmarks/results/camera_map_spread.md

(about 20 s on 2 cores). With CBSD432, 1 in 10 of these photographs is one
that training holds out for validation; no evaluation set is read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from bench_real_noise import write_table  # benchmarks/, the script's folder

import nlmeans
from nlmeans._denoise import uses_camera_model
from nlmeans.neural.camera import camera_noise
from nlmeans.neural.data import list_images, read_rgb

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def _ratio(image: torch.Tensor, level: float) -> tuple[float, bool]:
    """The network path's estimated sigma over ``level``, and whether it picks the camera model."""
    pixels = image[0].permute(1, 2, 0).double().numpy()
    params = nlmeans.resolve_parameters(pixels, channel_axis=-1, method="neural")
    return params.sigma / level, uses_camera_model(params)


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
        photo.append(_ratio(noisy, float(level)))
        alone.append(_ratio(0.5 + (noisy - clean), float(level)))
    routed = [ratio for ratio, camera in photo if camera]
    rows = (
        ("the noisy photograph", [ratio for ratio, _ in photo]),
        ("the noisy photograph, when it goes to the camera model", routed),
        ("the camera's error alone, on flat grey", [ratio for ratio, _ in alone]),
    )
    header = " | ".join(f"{q:.0%}" for q in QUANTILES)
    lines = [
        f"{len(photo)} photographs of {args.data} through the simulated camera; "
        "estimate_noise_level's sigma / true luminance noise, quantiles over the photographs",
        "",
        f"| read on | photographs | {header} |",
        "|---|---:|" + "---:|" * len(QUANTILES),
    ]
    for name, ratios in rows:
        values = " | ".join(f"{v:.2f}" for v in np.quantile(ratios, QUANTILES))
        lines.append(f"| {name} | {len(ratios)} | {values} |")
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
