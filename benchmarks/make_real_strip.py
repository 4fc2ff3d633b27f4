"""Crops of one real photograph, denoised every way: a picture for your own eyes.

PolyU's licence (non-commercial use only) keeps its photographs and
anything cut from them out of this BSD-licensed repository, so the README
cannot show this picture: the script makes it from your own copy of the
pairs and writes it outside the repository (``results/`` is git-ignored).

Panels: the noisy shot | ``fast`` | ``patchwise`` | ``neural`` | OpenCV |
colour BM3D (if installed) | the reference (mean of many shots), all at
the same crop, each labelled with its PSNR on the whole photograph. Every
nlmeans method is automatic; OpenCV gets the sigma nlmeans estimates and
BM3D ``--bm3d-multiple`` times it (default 4, its best multiple over the 40
PolyU pairs in ``benchmarks/results/real_noise_bm3d.md``). The crop is the ``--size`` square
window (stride 32) whose luminance differs most between the shot and the
reference, unless ``--crop Y,X`` is given. Run from the repository root::

    python benchmarks/make_real_strip.py \\
        --noisy ../shared/data/polyu/Canon5D2_5_160_6400_desk_5_real.jpg \\
        --clean ../shared/data/polyu/Canon5D2_5_160_6400_desk_5_mean.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from nlmeans import evaluation as ev
from nlmeans.noise_level import estimate_noise_level

ROOT = Path(__file__).resolve().parents[1]
TILE = 256  # pixels per panel side on the canvas
LABEL = 24


def _noisiest_window(noisy: np.ndarray, clean: np.ndarray, size: int) -> tuple[int, int]:
    difference = (noisy - clean).sum(axis=-1)
    best, corner = -1.0, (0, 0)
    for y in range(0, noisy.shape[0] - size + 1, 32):
        for x in range(0, noisy.shape[1] - size + 1, 32):
            energy = float(np.var(difference[y : y + size, x : x + size]))
            if energy > best:
                best, corner = energy, (y, x)
    return corner


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noisy", required=True, type=Path)
    parser.add_argument("--clean", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "real_strip.png")
    parser.add_argument("--size", type=int, default=128, help="crop side in pixels")
    parser.add_argument("--crop", help="top-left corner Y,X of the crop")
    parser.add_argument("--bm3d-multiple", type=float, default=4.0)
    args = parser.parse_args(argv)
    noisy, axis = ev.load_clean(args.noisy)
    clean, _ = ev.load_clean(args.clean)
    if axis is None or noisy.shape != clean.shape:
        raise SystemExit("need a colour pair of the same shape")
    sigma = estimate_noise_level(noisy, channel_axis=-1).sigma
    panels = {"noisy": noisy}
    for method, given in (
        ("fast", None),
        ("patchwise", None),
        ("neural", None),
        ("opencv", sigma),
        ("bm3d", args.bm3d_multiple * sigma),
    ):
        try:
            panels[method], _ = ev.run_method(method, noisy, sigma=given, channel_axis=-1)
        except ev.MethodUnavailable as exc:
            print(f"{method}: skipped ({exc})")
    panels["reference"] = clean
    if args.crop:
        y, x = (int(v) for v in args.crop.split(","))
    else:
        y, x = _noisiest_window(noisy, clean, args.size)
    window = (slice(y, y + args.size), slice(x, x + args.size))
    tiles = []
    for name, image in panels.items():
        image = np.clip(image, 0, 1)
        label = name if name == "reference" else f"{name}  {ev.measure(clean, image)[0]:.2f} dB"
        print(label)
        crop = Image.fromarray((image[window] * 255).round().astype(np.uint8))
        canvas = Image.new("RGB", (TILE, TILE + LABEL), "white")
        canvas.paste(crop.resize((TILE, TILE), Image.NEAREST), (0, LABEL))
        ImageDraw.Draw(canvas).text((6, 6), label, fill="black")
        tiles.append(canvas)
    gap = 6
    strip = Image.new("RGB", (len(tiles) * (TILE + gap) - gap, TILE + LABEL), "white")
    for i, tile in enumerate(tiles):
        strip.paste(tile, (i * (TILE + gap), 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(args.out)
    print(f"crop at y={y}, x={x}, {args.size} pixels; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
