"""Signal-dependent (Poisson-Gaussian) noise: estimated model against one global sigma.

Clean images (``uint8 / 255``) get scaled-Poisson plus Gaussian noise,
``z = a * Poisson(y / a) + N(0, b)``, with ``a = (40/255)^2 - (5/255)^2`` and
``b = (5/255)^2``: the noise standard deviation grows from 5 gray levels at
black to 40 at white. Not clipped, not quantised; ``default_rng(i)`` for the
i-th image of the sorted list. Every method runs twice, everything automatic:

* ``global sigma``: ``nlmeans.denoise(noisy, noise="white")``, one sigma
  estimated for the whole image (white Gaussian noise assumed; a network
  that takes a noise map gets that constant map);
* ``Poisson-Gaussian``: ``nlmeans.denoise(noisy, noise="poisson-gaussian")``,
  a and b estimated per channel by ``nlmeans.estimate_noise``, generalized
  Anscombe transform, exact unbiased inverse.

Also reports how far the estimated a and b are from the truth (mean of
|estimate / truth - 1| over images and channels). PSNR/SSIM as in
REFERENCE.md. Writes ``benchmarks/results/noise_poisson_gaussian.md`` and
``.json``.

Usage::

    python benchmarks/bench_noise.py [--sets set12,mcmaster] [--methods fast,exact,patchwise,neural]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import nlmeans

ROOT = Path(__file__).resolve().parents[1]
A_TRUE = (40 / 255) ** 2 - (5 / 255) ** 2
B_TRUE = (5 / 255) ** 2


def poisson_gaussian(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return A_TRUE * rng.poisson(clean / A_TRUE) + rng.normal(0, np.sqrt(B_TRUE), clean.shape)


def score(clean, out, axis):
    out = np.clip(out, 0, 1)
    kw = {"channel_axis": -1} if axis is not None else {}
    return (
        float(peak_signal_noise_ratio(clean, out, data_range=1.0)),
        float(structural_similarity(clean, out, data_range=1.0, **kw)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data"))
    parser.add_argument("--sets", default="set12,mcmaster")
    parser.add_argument("--methods", default="fast,exact,patchwise,neural")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/noise_poisson_gaussian"))
    args = parser.parse_args()

    results = []
    for name in args.sets.split(","):
        files = sorted(
            p
            for p in (Path(args.data) / name).iterdir()
            if p.suffix.lower() in (".png", ".jpg", ".tif")
        )
        clean = [iio.imread(f).astype(np.float64) / 255.0 for f in files]
        clean = [c[..., :3] if c.ndim == 3 else c for c in clean]
        noisy = [poisson_gaussian(c, np.random.default_rng(i)) for i, c in enumerate(clean)]
        axes = [-1 if c.ndim == 3 else None for c in clean]
        models = [
            nlmeans.estimate_noise(n, channel_axis=ax, model="poisson-gaussian")
            for n, ax in zip(noisy, axes)
        ]
        a_err = float(np.mean([abs(a / A_TRUE - 1) for m in models for a in m.a]))
        b_err = float(np.mean([abs(b / B_TRUE - 1) for m in models for b in m.b]))
        auto = [nlmeans.estimate_noise(n, channel_axis=ax).kind for n, ax in zip(noisy, axes)]
        entry = {
            "set": name,
            "n_images": len(clean),
            "noisy": dict(
                zip(
                    ("psnr", "ssim"),
                    np.mean([score(c, n, ax) for c, n, ax in zip(clean, noisy, axes)], axis=0),
                )
            ),
            "a_relative_error": a_err,
            "b_relative_error": b_err,
            "auto_picks_poisson_gaussian": sum(k == "poisson-gaussian" for k in auto),
            "methods": {},
        }
        print(
            f"{name}: a error {a_err:.1%}, b error {b_err:.1%}, "
            f"auto PG {entry['auto_picks_poisson_gaussian']}/{len(clean)}",
            flush=True,
        )
        for method in args.methods.split(","):
            row = {}
            for label, extra in (
                ("global sigma", {"noise": "white"}),
                ("Poisson-Gaussian", {"noise": "poisson-gaussian"}),
            ):
                started = time.perf_counter()
                scores = [
                    score(c, nlmeans.denoise(n, method=method, channel_axis=ax, **extra), ax)
                    for c, n, ax in zip(clean, noisy, axes)
                ]
                row[label] = dict(zip(("psnr", "ssim"), np.mean(scores, axis=0)))
                print(
                    f"  {method} {label}: {row[label]} ({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
            entry["methods"][method] = row
        results.append(entry)

    out = Path(args.out)
    out.with_suffix(".json").write_text(
        json.dumps({"a": A_TRUE, "b": B_TRUE, "results": results}, indent=1, default=float) + "\n"
    )
    lines = [
        "# Poisson-Gaussian noise: estimated model against one global sigma",
        "",
        "Made by `python benchmarks/bench_noise.py`: z = a·Poisson(y/a) + N(0, b), "
        "a = (40/255)² − (5/255)², b = (5/255)² (std 5 → 40 gray levels from black to white), "
        "`default_rng(i)`, everything automatic. PSNR (dB) / SSIM.",
        "",
        "| set | method | global σ | Poisson-Gaussian | gain (dB) |",
        "|---|---|---:|---:|---:|",
    ]
    for entry in results:
        noisy = entry["noisy"]
        lines.append(
            f"| {entry['set']} | noisy input | {noisy['psnr']:.2f} / {noisy['ssim']:.4f} | | |"
        )
        for method, row in entry["methods"].items():
            g, p = row["global sigma"], row["Poisson-Gaussian"]
            lines.append(
                f"| {entry['set']} | {method} | {g['psnr']:.2f} / {g['ssim']:.4f} | "
                f"{p['psnr']:.2f} / {p['ssim']:.4f} | {p['psnr'] - g['psnr']:+.2f} |"
            )
    lines += [
        "",
        "Estimated a and b against the truth (mean |estimate / truth − 1| over images and channels), "
        'and how often `model="auto"` chooses Poisson-Gaussian:',
        "",
    ]
    lines += [
        f"* {e['set']}: a {e['a_relative_error']:.1%}, b {e['b_relative_error']:.1%}; "
        f"auto: {e['auto_picks_poisson_gaussian']}/{e['n_images']}"
        for e in results
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
