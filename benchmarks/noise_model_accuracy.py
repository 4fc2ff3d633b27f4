"""How close ``estimate_noise`` comes to a known Poisson-Gaussian model, against a bound.

The noise of ``bench_noise.py`` (``a = (40/255)^2 - (5/255)^2``, ``b =
(5/255)^2``), over several noise draws per image (``default_rng(i + 1000
* seed)`` for the i-th image of the sorted list; seed 0 is
``bench_noise.py``'s draw). Reports the mean of ``|estimate / truth - 1|``
for ``a`` and ``b`` over images, channels and draws.

The bound beside it is what an oracle would get: one that knows the clean
image and fits ``a`` and ``b`` by maximum likelihood to every pixel's noise
(expected ``|error|`` = sqrt(2/pi) times the Cramér-Rao standard deviation
in the Gaussian approximation of the noise). It is approximate: it holds
for unbiased estimators, and in the darkest places the scaled Poisson
noise is too coarse for the Gaussian approximation. ``b`` is the variance at black, so its error depends on how
much of an image is dark: an image without dark pixels holds little
information about it. Run from the repository root::

    python benchmarks/noise_model_accuracy.py --seeds 3 --out benchmarks/results/noise_model_accuracy.md

(about 15 s on 2 cores).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from bench_noise import A_TRUE, B_TRUE, poisson_gaussian  # benchmarks/, the script's folder
from bench_real_noise import write_table

import nlmeans

ROOT = Path(__file__).resolve().parents[1]


def oracle_errors(clean: np.ndarray) -> tuple[float, float]:
    """Expected |relative error| of ``a`` and ``b`` for the maximum-likelihood fit
    to every pixel of one channel, the clean values known."""
    y = clean.ravel()
    inverse_square = 1.0 / (A_TRUE * y + B_TRUE) ** 2
    fisher = 0.5 * np.array(
        [
            [np.sum(y * y * inverse_square), np.sum(y * inverse_square)],
            [np.sum(y * inverse_square), np.sum(inverse_square)],
        ]
    )
    deviation = np.sqrt(np.diag(np.linalg.inv(fisher)))
    return tuple(np.sqrt(2 / np.pi) * deviation / (A_TRUE, B_TRUE))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data"))
    parser.add_argument("--sets", default="set12,mcmaster")
    parser.add_argument("--seeds", type=int, default=3, help="noise draws per image")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    lines = [
        f"Poisson-Gaussian noise of bench_noise.py, {args.seeds} draw(s) per image; "
        "mean |estimate / truth - 1|",
        "",
        "| set | a: estimate_noise | a: oracle bound | b: estimate_noise | b: oracle bound "
        "| b: worst image (estimate / bound) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name in args.sets.split(","):
        files = sorted(
            p
            for p in (Path(args.data) / name).iterdir()
            if p.suffix.lower() in (".png", ".jpg", ".tif")
        )
        per_image = []  # (name, a error, b error, a bound, b bound), channel means
        for i, path in enumerate(files):
            clean = iio.imread(path).astype(np.float64) / 255.0
            clean = clean[..., :3] if clean.ndim == 3 else clean
            axis = -1 if clean.ndim == 3 else None
            planes = clean[None] if axis is None else np.moveaxis(clean, -1, 0)
            bounds = np.mean([oracle_errors(p) for p in planes], axis=0)
            errors = []
            for seed in range(args.seeds):
                noisy = poisson_gaussian(clean, np.random.default_rng(i + 1000 * seed))
                model = nlmeans.estimate_noise(noisy, channel_axis=axis, model="poisson-gaussian")
                errors += [
                    (abs(a / A_TRUE - 1), abs(b / B_TRUE - 1)) for a, b in zip(model.a, model.b)
                ]
            per_image.append((path.name, *np.mean(errors, axis=0), *bounds))
        names = [row[0] for row in per_image]
        a_err, b_err, a_bound, b_bound = np.mean([row[1:] for row in per_image], axis=0)
        worst = max(range(len(per_image)), key=lambda k: per_image[k][2])
        lines.append(
            f"| {name} | {a_err:.1%} | {a_bound:.1%} | {b_err:.1%} | {b_bound:.1%} "
            f"| {names[worst]}: {per_image[worst][2]:.0%} / {per_image[worst][4]:.0%} |"
        )
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
