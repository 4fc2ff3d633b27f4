"""Regenerate ``sample_images/`` from images shipped with scikit-image.

Usage: ``python benchmarks/make_sample_images.py [--force]``

Every source image is CC0 / public domain (see ``sample_images/README.md``).
The 16-bit files are resized in floating point from the 8-bit originals, so
they hold genuinely more than 256 levels (not just ``x * 257``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from nlmeans.io import write_image

HERE = Path(__file__).resolve().parent.parent / "sample_images"


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-average resize in float64 (values stay on the input's scale)."""
    return cv2.resize(image.astype(np.float64), (width, height), interpolation=cv2.INTER_AREA)


def _to(dtype, values: np.ndarray) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.clip(np.rint(values * top), 0, top).astype(dtype)


def build() -> dict[str, np.ndarray]:
    camera = data.camera() / 255.0  # 512 x 512 gray
    astronaut = data.astronaut() / 255.0  # 512 x 512 RGB
    coffee = data.coffee() / 255.0  # 400 x 600 RGB
    brick = data.brick() / 255.0  # 512 x 512 gray
    small_camera = _resize(camera, 256, 256)
    # A noisy file as a user would have it: AWGN of 25 gray levels (seed 0),
    # then clipped and quantised to 8 bits by saving.
    noise = np.random.default_rng(0).normal(0.0, 25 / 255, small_camera.shape)
    # Signal-dependent noise as a sensor makes it: a * Poisson(y / a) + N(0, b)
    # with a = 0.01, b = 1e-4 (std 2.6 gray levels at black, 25.7 at white).
    small_astronaut = _to(np.uint8, _resize(astronaut, 256, 256)) / 255.0
    rng = np.random.default_rng(0)
    photon = 0.01 * rng.poisson(small_astronaut / 0.01) + rng.normal(
        0.0, 0.01, small_astronaut.shape
    )
    return {
        "camera.png": _to(np.uint8, small_camera),
        "camera_noisy25.png": _to(
            np.uint8, np.clip(_to(np.uint8, small_camera) / 255.0 + noise, 0, 1)
        ),
        "astronaut.png": _to(np.uint8, _resize(astronaut, 256, 256)),
        "astronaut_poisson.png": _to(np.uint8, np.clip(photon, 0, 1)),
        "coffee16.png": _to(np.uint16, _resize(coffee, 192, 128)),
        "brick16.png": _to(np.uint16, _resize(brick, 128, 128)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument("--out", type=Path, default=HERE, help="target folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, pixels in build().items():
        path = write_image(args.out / name, pixels, force=args.force)
        print(f"{path}: {pixels.shape} {pixels.dtype}, {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
