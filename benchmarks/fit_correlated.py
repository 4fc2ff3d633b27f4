"""How strongly to denoise spatially correlated (camera) noise, fitted on simulated cameras.

``nlmeans.estimate_noise_level`` reads correlated noise at the 2x2 scale
(``coarse_sigma``, on the luminance of colour images). This script checks
which multiple ``k`` of that estimate ``fast`` does best with (the
library's ``_COARSE_SCALE``), on CBSD432 training photographs put through two
simulated cameras, never on evaluation images:

* ``bayer``: Poisson-Gaussian noise on an RGGB mosaic of the photograph,
  OpenCV demosaicking, JPEG (quality 75-97);
* ``unprocessed``: the same after "unprocessing" the photograph to linear
  camera RGB (inverse sRGB curve, inverse colour matrix, inverse white
  balance; Brooks et al., CVPR 2019), and the camera's processing back
  after the noise. The reference is the noise-free image through the same
  pipeline, JPEG included (as PolyU's mean of many camera JPEGs is).

For each noisy image it records the estimator's features and the PSNR of
``fast`` over a grid of sigma, then prints the mean PSNR at ``k * coarse``
per camera and pooled. Run from the repository root::

    python benchmarks/fit_correlated.py --images 24 --out benchmarks/results/fit_correlated.md

(about 3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from skimage.metrics import peak_signal_noise_ratio as psnr

import nlmeans
from nlmeans.io import read_image

LEVELS = (2, 3, 4, 6, 8, 11, 15, 20, 27, 36)  # gray levels
FACTORS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
CAM2RGB = np.array([[1.75, -0.55, -0.20], [-0.25, 1.60, -0.35], [0.05, -0.55, 1.50]])
GAINS = np.array([2.0, 1.0, 1.6])


def _srgb_to_linear(c):
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x):
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.maximum(x, 0) ** (1 / 2.4) - 0.055)


def _mosaic(rgb):
    raw = np.empty(rgb.shape[:2])
    raw[0::2, 0::2] = rgb[0::2, 0::2, 0]
    raw[0::2, 1::2] = rgb[0::2, 1::2, 1]
    raw[1::2, 0::2] = rgb[1::2, 0::2, 1]
    raw[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return raw


def _demosaic(raw):
    # A black-level pedestal keeps the noise around black unclipped until the end.
    r16 = np.clip(np.rint((raw + 0.05) * 60000), 0, 65535).astype(np.uint16)
    return cv2.cvtColor(r16, cv2.COLOR_BayerBG2RGB) / 60000 - 0.05


def _jpeg(x, quality):
    u8 = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
    _, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] / 255.0


def simulate(clean, camera, a, b, quality, rng):
    """(noisy, reference) float RGB in [0, 1] from a clean photograph."""
    if camera == "bayer":
        raw = _mosaic(clean)

        def develop(r):
            return np.clip(_demosaic(r), 0, 1)
    else:
        cam = np.clip(_srgb_to_linear(clean) @ np.linalg.inv(CAM2RGB).T / GAINS, 0, 1)
        raw = _mosaic(cam)

        def develop(r):
            return _linear_to_srgb(np.clip((_demosaic(r) * GAINS) @ CAM2RGB.T, 0, 1))

    noisy = raw + np.sqrt(np.maximum(a * raw + b, 0)) * rng.standard_normal(raw.shape)
    return _jpeg(develop(noisy), quality), _jpeg(develop(raw), quality)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cbsd432"))
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if not files:
        print(f"no images in {args.data}", file=sys.stderr)
        return 1
    files = files[:: max(1, len(files) // args.images)][: args.images]
    rng = np.random.default_rng(args.seed)
    rows = []
    for path in files:
        clean = read_image(path).pixels / 255.0
        clean = clean[: clean.shape[0] // 2 * 2, : clean.shape[1] // 2 * 2]
        for camera in ("bayer", "unprocessed"):
            a = 10 ** rng.uniform(-4.0, -2.0)
            b = a * 10 ** rng.uniform(-2.5, -1.0)
            quality = int(rng.choice([75, 85, 92, 97]))
            noisy, ref = simulate(clean, camera, a, b, quality, rng)
            level = nlmeans.estimate_noise_level(noisy, channel_axis=-1)
            scores = [
                psnr(
                    ref,
                    np.clip(nlmeans.denoise(noisy, channel_axis=-1, sigma=s / 255), 0, 1),
                    data_range=1,
                )
                for s in LEVELS
            ]
            # The true strength, on the luminance that coarse_sigma reads.
            true = float(np.std((noisy - ref).sum(axis=-1) / np.sqrt(3.0)))
            rows.append((camera, level, psnr(ref, noisy, data_range=1), scores, true))
            print(
                f"{path.name} {camera:11s} a={a:.1e} q={quality} correlated {level.correlated:.2f} "
                f"coarse {level.coarse_sigma * 255:.2f} best {LEVELS[int(np.argmax(scores))]}",
                flush=True,
            )

    def at(scores, sigma255):
        log_levels = np.log(LEVELS)
        return float(
            np.interp(np.log(np.clip(sigma255, LEVELS[0], LEVELS[-1])), log_levels, scores)
        )

    lines = [
        "# fast on simulated camera noise, sigma = k x coarse_sigma (CBSD432)",
        "",
        f"`python benchmarks/fit_correlated.py --images {args.images} --seed {args.seed}`; "
        "mean PSNR (dB) over the noisy images of each camera.",
        "",
        "| k | bayer | unprocessed | pooled |",
        "|---:|---:|---:|---:|",
    ]
    for k in FACTORS:
        means = []
        for camera in ("bayer", "unprocessed", None):
            sel = [r for r in rows if camera is None or r[0] == camera]
            means.append(np.mean([at(s, k * lv.coarse_sigma * 255) for _, lv, _, s, _ in sel]))
        lines.append(f"| {k:g} | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    for label, pick in (
        ("noisy", lambda r: r[2]),
        ("oracle (best sigma per image)", lambda r: max(r[3])),
    ):
        means = [
            np.mean([pick(r) for r in rows if c is None or r[0] == c])
            for c in ("bayer", "unprocessed", None)
        ]
        lines.append(f"| {label} | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    for label, pick in (
        ("coarse_sigma / true luminance noise", lambda r: r[1].coarse_sigma / r[4]),
        ("best sigma / true luminance noise", lambda r: LEVELS[int(np.argmax(r[3]))] / 255 / r[4]),
    ):
        means = [
            np.mean([pick(r) for r in rows if c is None or r[0] == c])
            for c in ("bayer", "unprocessed", None)
        ]
        lines.append(f"| {label} | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
