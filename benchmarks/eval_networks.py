"""Quick scores of candidate network weights, to choose which to ship.

Runs wherever torch runs (``--device cuda`` on a GPU machine), with the
noise level given (true sigma), on the shared development sets:

* ``--gray W.safetensors``: Set12, AWGN sigma 15 / 25 / 50, ``default_rng(i)``
  for the i-th image;
* ``--color W.safetensors``: McMaster, colour AWGN sigma 15 / 25 / 50, the same;
* ``--spacetime W.safetensors`` (with ``--frame-model W.safetensors``, the
  per-frame network it is compared with): Set12 sequences of
  ``bench_video.py`` (10 frames, sigma 25), the spacetime network against the
  per-frame network on every frame, and the gain at each frame position
  (the first and last two frames' windows reach past the clip's ends).

The images are in ``bench_video.load_set``'s order (McMaster 1, 2, ..., 18;
``bench_color.py`` sorts the names as text, so its noise falls on other
images and its means differ slightly).

Each option may be given several times (one row each). The tables that go
into the README come from the benchmarks that run on the CPU with the
estimated noise level (``bench_noise.py``, ``bench_color.py``,
``bench_video.py``); this script only compares candidates quickly.

Usage::

    python benchmarks/eval_networks.py --device cuda --gray a.safetensors \\
        --gray nlmeans/neural/weights/denoiser.safetensors --out scores.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_video import load_set, sequences  # noqa: E402

from nlmeans._sequence_neural import run_neural  # noqa: E402
from nlmeans.neural.inference import denoise_array, get_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = (15, 25, 50)


def psnr(clean: np.ndarray, out: np.ndarray) -> float:
    return float(peak_signal_noise_ratio(clean, np.clip(out, 0, 1), data_range=1.0))


def still_scores(weights: str, folder: Path, device: str) -> list[float]:
    """Mean PSNR at each sigma of SIGMAS (channels last for colour)."""
    model = get_model(weights, device)
    images = load_set(folder, None, None)
    scores = []
    for sigma in SIGMAS:
        values = []
        for i, clean in enumerate(images):
            noisy = clean + np.random.default_rng(i).normal(0, sigma / 255.0, clean.shape)
            out = denoise_array(model, noisy.astype(np.float32), sigma / 255.0)
            values.append(psnr(clean, np.asarray(out, np.float64)))
        scores.append(float(np.mean(values)))
    return scores


def sequence_scores(weights: str, frame_weights: str, folder: Path, device: str):
    """Mean PSNR of the spacetime network and of the per-frame network, and
    the spacetime network's mean gain at each frame position."""
    model = get_model(weights, device)
    frame_model = get_model(frame_weights, device)
    clips = sequences(load_set(folder, None, None), 10)
    spacetime, per_frame = [], []  # (clip, frame) PSNRs
    sigma = 25 / 255.0
    for i, clean in enumerate(clips):
        noisy = clean + np.random.default_rng(i).normal(0.0, sigma, clean.shape)
        out = np.stack(list(run_neural(iter(noisy), model, sigma, None, None)))
        spacetime.append([psnr(c, o) for c, o in zip(clean, out)])
        frames = [denoise_array(frame_model, f.astype(np.float32), sigma) for f in noisy]
        per_frame.append([psnr(c, o) for c, o in zip(clean, frames)])
    spacetime, per_frame = np.array(spacetime), np.array(per_frame)
    by_position = (spacetime - per_frame).mean(axis=0)
    return float(spacetime.mean()), float(per_frame.mean()), by_position


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data"))
    parser.add_argument("--gray", action="append", default=[])
    parser.add_argument("--color", action="append", default=[])
    parser.add_argument("--spacetime", action="append", default=[])
    parser.add_argument("--frame-model", default=None, help="per-frame network (--spacetime)")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    if args.spacetime and args.frame_model is None:
        parser.error("--spacetime needs --frame-model (the per-frame network to compare with)")
    data = Path(args.data)
    lines = ["| set | weights | σ = 15 | σ = 25 | σ = 50 | s |", "|---|---|---:|---:|---:|---:|"]

    def emit(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    for label, paths, folder in (
        ("Set12", args.gray, data / "set12"),
        ("McMaster", args.color, data / "mcmaster"),
    ):
        for weights in paths:
            t0 = time.perf_counter()
            try:
                s15, s25, s50 = still_scores(weights, folder, args.device)
            except Exception as exc:  # one bad candidate must not hide the others
                emit(f"| {label} | {weights} | failed: {exc!r} | | | |")
                continue
            dt = time.perf_counter() - t0
            emit(f"| {label} | {weights} | {s15:.2f} | {s25:.2f} | {s50:.2f} | {dt:.0f} |")
    for weights in args.spacetime:
        t0 = time.perf_counter()
        try:
            st, pf, by_position = sequence_scores(
                weights, args.frame_model, data / "set12", args.device
            )
        except Exception as exc:
            emit(f"| Set12 clips | {weights} | | failed: {exc!r} | | |")
            continue
        dt = time.perf_counter() - t0
        emit(
            f"| Set12 clips | {weights} (per-frame {args.frame_model}: {pf:.2f}) | | "
            f"{st:.2f} ({st - pf:+.2f}) | | {dt:.0f} |"
        )
        gains = ", ".join(f"{t}: {g:+.2f}" for t, g in enumerate(by_position))
        emit(f"| Set12 clips, gain at frame | {weights} | | {gains} | | |")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
