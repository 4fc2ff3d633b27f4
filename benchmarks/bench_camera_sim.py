"""Simulated camera noise on development images: every method, everything automatic.

Each image goes through the two simulated cameras of ``fit_correlated.py``
(``bayer``: Poisson-Gaussian noise on an RGGB mosaic, OpenCV demosaicking,
JPEG; ``unprocessed``: the same in linear camera RGB, with white balance,
colour matrix and sRGB curve around it). The reference is the noise-free
image through the same camera, JPEG included, as a mean of many shots would
be. The noise settings are drawn from ``default_rng(i)`` for the i-th image
(sorted names): raw variance ``a * y + b``, ``a`` log-uniform in [1e-4,
1e-2], ``b / a`` in [10^-2.5, 10^-1], JPEG quality 75 / 85 / 92 / 97.

Every method runs as ``nlmeans compare`` runs it (``nlmeans.evaluation``):
nlmeans's methods automatic, the reference methods given the sigma that
nlmeans estimates. ``--color-weights W.safetensors`` makes ``neural`` use
other weights for every colour image, in place of both the colour and the
camera model (to compare a candidate with the shipped models).
Run from the repository root::

    python benchmarks/bench_camera_sim.py --methods fast,exact,neural,opencv \\
        --out benchmarks/results/camera_sim_mcmaster.md

(about 4 minutes for McMaster's 18 images on 2 cores.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_real_noise import write_table  # noqa: E402
from fit_correlated import simulate  # noqa: E402

import nlmeans  # noqa: E402
from nlmeans import evaluation as ev  # noqa: E402
from nlmeans._denoise import uses_camera_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CAMERAS = ("bayer", "unprocessed")


def camera_pairs(clean: np.ndarray, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{camera: (noisy, reference)}`` for one clean RGB image in [0, 1]."""
    rng = np.random.default_rng(seed)
    clean = clean[: clean.shape[0] // 2 * 2, : clean.shape[1] // 2 * 2]
    pairs = {}
    for camera in CAMERAS:
        a = 10 ** rng.uniform(-4.0, -2.0)
        b = a * 10 ** rng.uniform(-2.5, -1.0)
        quality = int(rng.choice([75, 85, 92, 97]))
        pairs[camera] = simulate(clean, camera, a, b, quality, rng)
    return pairs


def use_color_weights(path: Path) -> None:
    """Make ``method="neural"`` load ``path`` for every 3-channel image (in
    place of both the colour and the camera model)."""
    from nlmeans.neural import inference

    shipped = inference.default_model_path

    def default_model_path(channels=1, *, camera=False):
        return path if channels == 3 else shipped(channels, camera=camera)

    inference.default_model_path = default_model_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/mcmaster")
    parser.add_argument("--methods", default="fast,exact,neural,opencv")
    parser.add_argument("--color-weights", type=Path, help="colour weights for neural")
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) here")
    args = parser.parse_args(argv)
    methods = ev.parse_methods(args.methods)
    if args.color_weights is not None:
        if not args.color_weights.is_file():
            sys.exit(f"{args.color_weights}: no such file")
        use_color_weights(args.color_weights)
    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in (".png", ".tif", ".jpg"))
    if not files:
        sys.exit(f"no images in {args.data}")
    scores = {(c, m): [] for c in CAMERAS for m in ["noisy", *methods]}
    # How many images per camera the network path sent to the camera model
    # (estimate_noise_level found their noise mostly correlated).
    to_camera_model = dict.fromkeys(CAMERAS, 0)
    start = time.perf_counter()
    for i, path in enumerate(files):
        clean, axis = ev.load_clean(path)
        if axis is None:
            sys.exit(f"{path.name} is not a colour image")
        for camera, (noisy, reference) in camera_pairs(clean, i).items():
            scores[camera, "noisy"].append(ev.measure(reference, noisy))
            params = nlmeans.resolve_parameters(noisy, channel_axis=axis, method="neural")
            to_camera_model[camera] += uses_camera_model(params)
            for method in methods:
                out, _ = ev.run_method(method, noisy, sigma=None, channel_axis=axis)
                scores[camera, method].append(ev.measure(reference, out))
        print(f"[{i + 1}/{len(files)}] {path.name}", file=sys.stderr, flush=True)
    weights = f", neural colour weights {args.color_weights}" if args.color_weights else ""
    lines = [
        f"# Simulated camera noise, {args.data.name} ({len(files)} images{weights})",
        "",
        "PSNR (dB) / SSIM against the noise-free image through the same camera; "
        f"{time.perf_counter() - start:.0f} s.",
        "",
        "| method | " + " | ".join(CAMERAS) + " | both |",
        "|---|" + "---:|" * (len(CAMERAS) + 1),
    ]
    for method in ["noisy", *methods]:
        cells = []
        for group in [[c] for c in CAMERAS] + [list(CAMERAS)]:
            values = np.array([s for c in group for s in scores[c, method]], dtype=float)
            cells.append(f"{values[:, 0].mean():.2f} / {values[:, 1].mean():.4f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    routed = ", ".join(f"{to_camera_model[c]} of {len(files)} ({c})" for c in CAMERAS)
    lines += [
        "",
        f"`neural` asks for the camera model on {routed} images"
        + (" (here both are the weights given)." if args.color_weights else "."),
    ]
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
