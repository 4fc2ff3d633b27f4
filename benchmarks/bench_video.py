"""Video benchmark: spatio-temporal nlmeans against frame-by-frame nlmeans and OpenCV.

Quality. Sequences are synthesised from the Set12 (gray) and McMaster
(colour) test images by :func:`nlmeans.synthetic.make_sequence`: sequence
``i`` of a set (files in sorted order) uses ``seed=i``, motion
``("pan", "zoom", "objects", "mixed")[i % 4]``, objects cut from image
``i + 1``, ``--frames`` frames of 3/4 of the image's size. Noise: AWGN sigma
= 25 (``--sigma``), ``default_rng(i)``, not clipped. Methods (see
:mod:`nlmeans.sequence_evaluation`): ``spacetime`` (``denoise_sequence``,
fast, automatic parameters), ``frames`` (``denoise`` on every frame, fast,
automatic), ``opencv-multi`` (``cv2.fastNlMeansDenoisingMulti`` with the
windows ``spacetime`` resolves and the best h of a grid, an oracle choice),
``spacetime-neural`` (the spacetime network, ``denoise_sequence(method=
"neural")``), ``frames-neural`` (the per-frame network on every frame, given
the same estimated sigma), and the noisy input; ``--methods`` picks some.
PSNR / SSIM are means over frames, then over sequences; flicker is in 8-bit
gray levels.

Speed. One 640x360 colour clip of 100 frames (``--speed-frames``) made from
McMaster image 1 (upscaled to 720x540, motion "mixed", seed 0), sigma 25:
``denoise_sequence`` fast with k = 2 against ``denoise`` frame by frame (both
automatic otherwise), each timed once after a warm-up on a small clip (so
compilation is not counted).

Usage::

    python benchmarks/bench_video.py [--out benchmarks/results/video]   # the full run
    python benchmarks/bench_video.py --quick                            # seconds: a smoke test
    python benchmarks/bench_video.py --sets set12 --methods spacetime,opencv-multi --no-speed
    python benchmarks/bench_video.py --methods spacetime-neural,frames-neural --no-speed \
        --out benchmarks/results/video_neural                           # the network rows
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

import nlmeans
from nlmeans.sequence_evaluation import compare_sequence
from nlmeans.synthetic import make_sequence

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data"
MOTIONS_CYCLE = ("pan", "zoom", "objects", "mixed")
METHODS = ("noisy", "spacetime", "frames", "opencv-multi", "spacetime-neural", "frames-neural")


def load_set(folder: Path, count: int | None, crop: int | None) -> list[np.ndarray]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".tif"))
    files = sorted(files, key=lambda p: (len(p.stem), p.stem))  # McMaster: 1, 2, ..., 18
    images = []
    for f in files[:count]:
        image = iio.imread(f).astype(np.float64) / 255.0
        if image.ndim == 3:
            image = image[..., :3]
        if crop:
            image = image[:crop, :crop]
        images.append(image)
    return images


def sequences(images, frames: int) -> list[np.ndarray]:
    return [
        make_sequence(
            image,
            frames,
            seed=i,
            motion=MOTIONS_CYCLE[i % len(MOTIONS_CYCLE)],
            objects=[images[(i + 1) % len(images)]],
        )
        for i, image in enumerate(images)
    ]


def quality(name, clips, sigma, threads, methods=METHODS) -> dict:
    per_method: dict[str, list] = {m: [] for m in methods}
    for i, clean in enumerate(clips):
        noisy = clean + np.random.default_rng(i).normal(0.0, sigma / 255.0, clean.shape)
        axis = -1 if clean.ndim == 4 else None
        records = compare_sequence(
            clean, noisy, sigma=sigma / 255.0, methods=methods, channel_axis=axis, threads=threads
        )
        for r in records:
            per_method[r.method].append(r)
        print(
            f"{name} {i}: "
            + ", ".join(
                f"{r.method} {r.psnr:.2f} dB / flicker {r.flicker * 255:.2f}" for r in records
            ),
            flush=True,
        )
    return {
        m: {
            "psnr": float(np.mean([r.psnr for r in rs])),
            "ssim": float(np.mean([r.ssim for r in rs])),
            "flicker": float(np.mean([r.flicker for r in rs]) * 255),
            "seconds": float(np.mean([r.seconds for r in rs])),
            "params": [r.params for r in rs],
        }
        for m, rs in per_method.items()
    }


def speed(frames: int, shape: tuple[int, int], sigma: float, threads) -> dict:
    from skimage.transform import resize

    image = load_set(DATA / "mcmaster", 1, None)[0]
    big = resize(image, (shape[0] * 3 // 2, shape[1] * 9 // 8), order=1, anti_aliasing=False)
    clean = make_sequence(big, frames, seed=0, motion="mixed", objects=[big], frame_shape=shape)
    noisy = clean + np.random.default_rng(0).normal(0.0, sigma / 255.0, clean.shape)
    noisy = noisy.astype(np.float32)
    # Warm-up: compile every kernel on a small clip.
    nlmeans.denoise_sequence(noisy[:3, :48, :48], channel_axis=-1, temporal_radius=1)
    nlmeans.denoise(noisy[0, :48, :48], channel_axis=-1)
    start = time.perf_counter()
    _, params = nlmeans.denoise_sequence(
        noisy, channel_axis=-1, temporal_radius=2, threads=threads, return_params=True
    )
    spacetime = time.perf_counter() - start
    start = time.perf_counter()
    _, frame_params = nlmeans.denoise(noisy[0], channel_axis=-1, return_params=True)
    for f in noisy:
        nlmeans.denoise(f, channel_axis=-1, threads=threads)
    by_frame = time.perf_counter() - start
    return {
        "clip": f"{shape[1]}x{shape[0]} colour, {frames} frames, sigma {sigma:g}",
        "spacetime_seconds": spacetime,
        "frames_seconds": by_frame,
        "ratio": spacetime / by_frame,
        "spacetime_params": params.as_dict(),
        "frame_params": {k: v for k, v in frame_params.as_dict().items() if k != "noise_model"},
    }


def markdown(results: dict, args) -> str:
    lines = [
        f"## Video denoising, AWGN sigma = {args.sigma:g} (`python benchmarks/bench_video.py"
        f"{' --quick' if args.quick else ''}"
        f"{' --methods ' + args.methods if args.methods != ','.join(METHODS) else ''}`)",
        "",
        f"Sequences of {args.frames} frames synthesised by `nlmeans.synthetic.make_sequence` "
        "(sequence i: seed i, motion pan/zoom/objects/mixed by i mod 4, objects from image i+1); "
        "noise default_rng(i). PSNR/SSIM: mean over frames, then sequences; flicker: mean "
        "absolute frame-to-frame change of the error, 8-bit levels.",
        "",
    ]
    for name, table in results["quality"].items():
        lines += [
            f"### {name}",
            "",
            "| method | PSNR (dB) | SSIM | flicker | time (s) |",
            "|---|---:|---:|---:|---:|",
        ]
        for method, row in table.items():
            lines.append(
                f"| {method} | {row['psnr']:.2f} | {row['ssim']:.4f} | {row['flicker']:.2f} | "
                f"{row['seconds']:.2f} |"
            )
        lines.append("")
    s = results.get("speed")
    if s:
        lines += [
            f"### Speed: {s['clip']}",
            "",
            "| | time (s) |",
            "|---|---:|",
            f"| spacetime fast, k = 2 | {s['spacetime_seconds']:.2f} |",
            f"| frame-by-frame fast | {s['frames_seconds']:.2f} |",
            f"| ratio | {s['ratio']:.2f}x |",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma", type=float, default=25.0)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--images", type=int, default=None, help="images per set (default all)")
    parser.add_argument("--speed-frames", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="write OUT.md and OUT.json")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated methods of the quality table"
    )
    parser.add_argument(
        "--sets", default="set12,mcmaster", help="comma-separated: set12 (gray), mcmaster (colour)"
    )
    parser.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    parser.add_argument("--quick", action="store_true", help="2 images per set, 5 frames, tiny")
    args = parser.parse_args()
    crop = None
    speed_shape = (360, 640)
    if args.quick:
        args.images, args.frames, args.speed_frames, crop = 2, 5, 4, 96
        speed_shape = (48, 80)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    titles = {"set12": "Set12 (gray)", "mcmaster": "McMaster (colour)"}
    chosen = [name.strip() for name in args.sets.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(titles))
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}: choose from set12, mcmaster")
    results: dict = {"quality": {}}
    for name in chosen:
        clips = sequences(load_set(DATA / name, args.images, crop), args.frames)
        results["quality"][titles[name]] = quality(name, clips, args.sigma, args.threads, methods)
    if not args.no_speed:
        results["speed"] = speed(args.speed_frames, speed_shape, args.sigma, args.threads)
    text = markdown(results, args)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(text + "\n")
        out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
