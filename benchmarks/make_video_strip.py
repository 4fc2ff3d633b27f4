"""The README's video picture: one frame of a moving clip, five ways.

Clip: ``sample_images/camera.png`` through
:func:`nlmeans.synthetic.make_sequence` (10 frames, motion "mixed", seed 0:
camera pan and zoom plus two moving objects), AWGN sigma = 25
(``default_rng(0)``). The strip shows frame 5: noisy | frame-by-frame
``fast`` | spacetime ``fast`` | per-frame network | spacetime network,
each labelled with its PSNR on that frame; everything automatic (sigma
estimated). Writes ``docs/video_strip.png`` and prints the PSNRs.

Usage::

    python benchmarks/make_video_strip.py [--out docs/video_strip.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage.metrics import peak_signal_noise_ratio as psnr

import nlmeans
from nlmeans.io import read_image
from nlmeans.synthetic import make_sequence

ROOT = Path(__file__).resolve().parents[1]
FRAME = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "video_strip.png"))
    args = parser.parse_args()
    image = read_image(ROOT / "sample_images" / "camera.png").pixels
    clean = make_sequence(image, 10, seed=0, motion="mixed")
    noisy = clean + np.random.default_rng(0).normal(0.0, 25 / 255, clean.shape)
    spacetime_fast = nlmeans.denoise_sequence(noisy)
    spacetime_net, params = nlmeans.denoise_sequence(noisy, method="neural", return_params=True)
    panels = {
        "noisy": noisy[FRAME],
        "frame by frame, fast": nlmeans.denoise(noisy[FRAME]),
        "spacetime, fast": spacetime_fast[FRAME],
        "per-frame network": nlmeans.denoise(noisy[FRAME], method="neural", sigma=params.sigma),
        "spacetime network": spacetime_net[FRAME],
    }
    crop = (slice(40, 200), slice(60, 220))
    tiles = []
    for name, frame in panels.items():
        frame = np.clip(frame, 0, 1)
        score = psnr(clean[FRAME], frame, data_range=1.0)
        print(f"{name}: {score:.2f} dB")
        tile = Image.fromarray((frame[crop] * 255).round().astype(np.uint8)).resize((320, 320))
        canvas = Image.new("L", (320, 348), 255)
        canvas.paste(tile, (0, 28))
        ImageDraw.Draw(canvas).text((6, 6), f"{name}  {score:.2f} dB", fill=0)
        tiles.append(canvas)
    gap = 6
    strip = Image.new("L", (len(tiles) * 320 + (len(tiles) - 1) * gap, 348), 255)
    for i, tile in enumerate(tiles):
        strip.paste(tile, (i * (320 + gap), 0))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
