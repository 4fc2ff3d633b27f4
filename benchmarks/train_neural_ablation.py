"""Ablation of the non-local blocks of the learned denoiser, at equal budget.

Trains the same network (``DenoiserConfig`` with the given channels / depth /
window) several times with identical training settings (steps, batch, patch,
learning rate, seed, sigma range):

* without any non-local block (``mode="none"``),
* with one block in each of the four modes,
* with several embedded-Gaussian blocks (``--multi-blocks``, default 2 and 3),

then evaluates each on the test folder (default Set12) at one sigma with the
protocol of ``/work/shared/REFERENCE.md``: clean = uint8 / 255, noisy = clean +
N(0, (sigma/255)^2) unclipped, ``numpy.random.default_rng(i)`` for the i-th
image of the sorted file list, PSNR / SSIM on the output clipped to [0, 1],
``data_range=1``. Writes a Markdown table.

Checkpoints go to ``--workdir`` (one per variant); a finished one is reused
and an unfinished one is resumed, so an interrupted ablation can simply be
started again with the same arguments.

Example (the real run; hours on 2 CPU cores)::

    python benchmarks/train_neural_ablation.py --steps 3000 --threads 2

Smoke test::

    python benchmarks/train_neural_ablation.py --steps 2 --batch-size 4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "train400"
DEFAULT_TEST = REPO.parent / "shared" / "data" / "set12"
MODES = ("embedded_gaussian", "gaussian", "dot_product", "concatenation")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="training images (default ../shared/data/train400)",
    )
    p.add_argument(
        "--test", type=Path, default=DEFAULT_TEST, help="test images (default ../shared/data/set12)"
    )
    p.add_argument(
        "--sigma", type=float, default=25.0, help="test noise sigma on the /255 scale (default 25)"
    )
    p.add_argument(
        "--train-sigma", default="0,55", help="training sigma range low,high (default 0,55: blind)"
    )
    p.add_argument(
        "--steps", type=int, default=3000, help="optimizer steps per variant (default 3000)"
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--patch-size", type=int, default=40)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", type=int, default=48)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument(
        "--window",
        type=int,
        default=3,
        help="block window radius at the reduced resolution; -1 = global",
    )
    p.add_argument(
        "--multi-blocks",
        default="2,3",
        help="block counts for the 'several blocks' rows (default 2,3)",
    )
    p.add_argument(
        "--variants",
        default=None,
        help="comma list of variant names to run (default: all), e.g. none,embedded_gaussian",
    )
    p.add_argument("--workdir", type=Path, default=REPO / "results" / "neural_ablation")
    p.add_argument("--out", type=Path, default=REPO / "results" / "neural_ablation.md")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def variants(args) -> list[tuple[str, str, int]]:
    """(name, mode, blocks) rows."""
    rows = [("none", "none", 0)] + [(m, m, 1) for m in MODES]
    for n in (int(v) for v in args.multi_blocks.split(",") if v.strip()):
        rows.append((f"embedded_gaussian x{n}", "embedded_gaussian", n))
    if args.variants:
        wanted = {v.strip() for v in args.variants.split(",")}
        rows = [r for r in rows if r[0] in wanted or r[0].replace(" ", "") in wanted]
    return rows


def load_test_images(folder: Path) -> list[tuple[str, np.ndarray]]:
    from nlmeans.neural.training import list_images, read_gray

    files = list_images(folder)
    if not files:
        raise SystemExit(f"no test images in {folder}")
    return [(f.name, read_gray(f).astype(np.float64)) for f in files]


def evaluate(weights: Path, images, sigma255: float, device: str) -> tuple[float, float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    import nlmeans.neural as nn_

    model = nn_.load_model(weights, device=device)
    psnrs, ssims, secs = [], [], 0.0
    for i, (_, clean) in enumerate(images):
        rng = np.random.default_rng(i)
        noisy = clean + rng.normal(0.0, sigma255 / 255.0, clean.shape)
        t0 = time.perf_counter()
        out = nn_.denoise(noisy, weights=model, device=device)
        secs += time.perf_counter() - t0
        out = np.clip(out.astype(np.float64), 0, 1)
        psnrs.append(peak_signal_noise_ratio(clean, out, data_range=1.0))
        ssims.append(structural_similarity(clean, out, data_range=1.0))
    return float(np.mean(psnrs)), float(np.mean(ssims)), secs / len(images)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    import nlmeans.neural as nn_
    from nlmeans.neural import DenoiserConfig

    lo, hi = (float(v) for v in args.train_sigma.split(","))
    window = None if args.window < 0 else args.window
    images = load_test_images(args.test)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, mode, blocks in variants(args):
        cfg = DenoiserConfig(
            channels=args.channels, depth=args.depth, mode=mode, blocks=blocks, window=window
        )
        ckpt = args.workdir / f"{name.replace(' ', '')}.pt"
        resume = None
        if ckpt.exists():
            state = nn_.load_checkpoint(ckpt)
            same = (
                state.get("config") == cfg.to_dict()
                and state.get("train_settings", {}).get("steps") == args.steps
            )
            if same and state.get("complete"):
                print(f"[{name}] reusing finished {ckpt}", file=sys.stderr)
            elif same:
                resume = ckpt
            else:
                ckpt.unlink()
        if not ckpt.exists() or resume is not None:
            print(f"[{name}] training {args.steps} steps -> {ckpt}", file=sys.stderr)
            nn_.train(
                args.data,
                out=ckpt,
                resume=resume,
                config=cfg,
                sigma=(lo, hi),
                steps=args.steps,
                steps_per_epoch=max(1, args.steps // 10),
                batch_size=args.batch_size,
                patch_size=args.patch_size,
                lr=args.lr,
                seed=args.seed,
                val_fraction=0.0,
                device=args.device,
                threads=args.threads,
                progress=not args.no_progress,
            )
        state = nn_.load_checkpoint(ckpt)
        history = state.get("history") or [{}]
        train_s = float(history[-1].get("wall_time", float("nan")))
        params = nn_.load_model(ckpt).num_parameters()
        psnr, ssim, infer_s = evaluate(ckpt, images, args.sigma, args.device)
        print(f"[{name}] {psnr:.2f} dB  SSIM {ssim:.4f}", file=sys.stderr)
        rows.append(
            (
                name,
                mode,
                cfg.num_blocks,
                params,
                train_s,
                train_s / max(1, int(state["step"])),
                psnr,
                ssim,
                infer_s,
            )
        )

    lines = [
        f"# Non-local block ablation (sigma = {args.sigma:g}, {args.test.name}, {len(images)} images)",
        "",
        f"Same network ({args.channels} channels, depth {args.depth}, window {window}) and budget for every row: "
        f"{args.steps} steps, batch {args.batch_size}, patch {args.patch_size}, lr {args.lr:g} (cosine), "
        f"seed {args.seed}, blind training sigma in [{lo:g}, {hi:g}], data {args.data.name}, "
        f"device {args.device}, threads {args.threads or torch.get_num_threads()}.",
        "",
        "| variant | mode | blocks | params | train s | s/step | PSNR (dB) | SSIM | s/image |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, mode, nb, params, train_s, sps, psnr, ssim, infer_s in rows:
        lines.append(
            f"| {name} | {mode} | {nb} | {params} | {train_s:.1f} | {sps:.2f} "
            f"| {psnr:.2f} | {ssim:.4f} | {infer_s:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
