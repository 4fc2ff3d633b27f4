"""GPU against all CPU cores: classical kernels, the network, training steps (issue 9).

Every GPU number is set against the CPU run measured in the same process, on
all the cores Numba and torch are given (16 on the machine the ``device`` tool
lends), so the ratios are what to read.

Tables
------
1. Classical methods on 2048 x 2048 gray (sigma = 25/255, patch 7, search
   21 x 21, h = 0.8 sigma), plus ``"fast"`` on 2048 x 2048 RGB (opponent path)
   and on a 128^3 volume (patch 5, search 7^3): the CPU call, the GPU call
   through the front door (``nlmeans.denoise(device="cuda")``: checks, float
   conversion, transfers and kernels), and the GPU pass alone with its
   transfers (``nlmeans._cuda.nlm_pass`` on a prepared float32 array: host to
   device, kernels, device to host). Also the first GPU call (compilation)
   and the largest difference from the CPU result.
2. The network (``method="neural"``): CPU (512-pixel tiles, torch on all
   cores) against the GPU with the tile chosen from free GPU memory, with
   512-pixel tiles and untiled.
3. Training steps (forward, backward, Adam; batch 32 of 40 x 40 patches of the
   shipped architecture): the CPU with the batch made on the CPU, the GPU
   with the batch made on the CPU and copied (crops in a Python loop, a
   ``loss.item()`` every step: how ``nlmeans.neural.training`` works today),
   and the GPU with images, crops and noise on the device.

Timing: best of ``--repeats`` after one untimed warm-up (the warm-up of a GPU
method compiles its kernels and is reported separately); GPU work is
synchronised before the clock stops.

Usage::

    python benchmarks/bench_gpu.py                   # writes benchmarks/results/gpu.md
    python benchmarks/bench_gpu.py --quick           # small sizes, not for quoting
    # check the script without a GPU, on Numba's CUDA simulator (tiny sizes):
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_gpu.py --quick --size 16 \\
        --patch-distance 1 --skip neural,training --out /tmp/gpu.md

Without a usable GPU the CPU rows are still measured and the GPU cells say why
they are empty.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_speed import (  # noqa: E402
    H_FACTOR,
    SEED,
    SIGMA,
    _noisy,
    _resize_square,
    best_of,
    cpu_model,
    load_average,
    synthetic_volume,
    write_report,
)

TARGETS = {"fast": 0.015, "exact": 0.030, "neural": 0.030}


def _gpu_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            return (
                f"{torch.cuda.get_device_name()} ({total / 2**30:.0f} GiB, "
                f"{free / 2**30:.0f} GiB free)"
            )
    except ImportError:
        pass
    return "no GPU seen by torch"


def machine_info(threads: int) -> str:
    import numba

    model = cpu_model()
    versions = f"numba {numba.__version__}"
    try:
        import numba_cuda

        versions += f", numba-cuda {getattr(numba_cuda, '__version__', '?')}"
    except ImportError:
        versions += ", no numba-cuda"
    try:
        import torch

        versions += f", torch {torch.__version__}"
    except ImportError:
        pass
    return (
        f"Machine: {model}, {os.cpu_count()} logical cores; CPU runs on {threads} threads; "
        f"GPU: {_gpu_name()}; {load_average()} at start; Python {platform.python_version()}, "
        f"{versions}."
    )


def _sync_torch():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# --------------------------------------------------------------------------
# 1. Classical methods
# --------------------------------------------------------------------------


def classical(cfg: dict, gpu_reason: str | None) -> list[str]:
    from skimage import data

    import nlmeans
    from nlmeans._denoise import _to_kernel_layout

    size, threads, reps, budget = cfg["size"], cfg["threads"], cfg["repeats"], cfg["budget"]
    d = cfg["patch_distance"]
    gray = _noisy(_resize_square(data.camera(), size).astype(np.float64) / 255.0, SEED)
    rgb = _noisy(_resize_square(data.astronaut(), size).astype(np.float64) / 255.0, SEED + 1)
    volume = _noisy(synthetic_volume(cfg["volume"]), SEED + 2)
    cases = [
        ("fast", f"{size}x{size} gray", gray, None, dict(patch_size=7, patch_distance=d)),
        ("exact", f"{size}x{size} gray", gray, None, dict(patch_size=7, patch_distance=d)),
        ("patchwise", f"{size}x{size} gray", gray, None, dict(patch_size=7, patch_distance=d)),
        ("fast", f"{size}x{size} RGB opponent", rgb, -1, dict(patch_size=7, patch_distance=d)),
        (
            "fast",
            f"{cfg['volume']}^3 volume",
            volume,
            None,
            dict(patch_size=5, patch_distance=min(3, d)),
        ),
    ]
    lines = [
        "| method | image | CPU (s) | GPU call (s) | GPU pass + transfers (s) | "
        "CPU / GPU call | CPU / GPU pass | target (GPU call) | first GPU call (s) | "
        "max abs diff |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for method, label, image, axis, kw in cases:
        kw = dict(kw, method=method, h=H_FACTOR * SIGMA, sigma=SIGMA, channel_axis=axis)
        t_cpu, _, cpu_out = best_of(
            lambda: nlmeans.denoise(image, threads=threads, **kw), reps, budget
        )
        row = f"| {method} | {label} | {t_cpu:.4f} |"
        if gpu_reason is not None:
            lines.append(row + f" n/a | n/a | | | {_target(method, label)} | | |")
            print(f"  {method:<9} {label:<24} CPU {t_cpu:.4f} s; GPU n/a", flush=True)
            continue
        from nlmeans import _cuda

        t0 = time.perf_counter()
        nlmeans.denoise(image, device="cuda", **kw)
        first = time.perf_counter() - t0
        t_gpu, _, gpu_out = best_of(
            lambda: nlmeans.denoise(image, device="cuda", **kw), reps, budget
        )
        pass_text = ratio_text = "n/a (two passes)"
        t_pass = float("nan")
        if axis is None:  # the opponent path is two passes; time single-pass images only
            params = nlmeans.resolve_parameters(image, **kw)
            data_ = _to_kernel_layout(image, axis)
            is_volume = image.ndim == 3
            t_pass, _, _ = best_of(
                lambda: _cuda.nlm_pass(data_, data_, params, is_volume, SIGMA, H_FACTOR * SIGMA),
                reps,
                budget,
            )
            pass_text, ratio_text = f"{t_pass:.4f}", f"{t_cpu / t_pass:.1f}x"
        diff = float(np.abs(gpu_out - cpu_out).max())
        lines.append(
            row + f" {t_gpu:.4f} | {pass_text} | {t_cpu / t_gpu:.1f}x | {ratio_text} | "
            f"{_target(method, label)} | {first:.2f} | {diff:.1e} |"
        )
        print(
            f"  {method:<9} {label:<24} CPU {t_cpu:.4f} s, GPU call {t_gpu:.4f} s, "
            f"GPU pass {t_pass:.4f} s, max diff {diff:.1e}",
            flush=True,
        )
    return lines


def _target(method: str, label: str) -> str:
    if "gray" in label and method in TARGETS:
        return f"<= {TARGETS[method] * 1000:.0f} ms"
    return ""


# --------------------------------------------------------------------------
# 2. The network
# --------------------------------------------------------------------------


def network(cfg: dict, torch_reason: str | None) -> list[str]:
    from skimage import data

    import nlmeans
    from nlmeans import neural
    from nlmeans.device import neural_tile_size

    size, threads, reps, budget = cfg["size"], cfg["threads"], cfg["repeats"], cfg["budget"]
    image = _noisy(_resize_square(data.camera(), size).astype(np.float64) / 255.0, SEED)
    floats = image.astype(np.float32)
    lines = [
        "| network | image | tile | time (s) | CPU / this | target |",
        "|---|---|---|---:|---:|---|",
    ]
    t_cpu, _, _ = best_of(
        lambda: nlmeans.denoise(image, method="neural", sigma=SIGMA, threads=threads),
        max(1, reps // 2),
        budget,
    )
    label = f"{size}x{size} gray"
    lines.append(f"| CPU, {threads} threads | {label} | 512 | {t_cpu:.4f} | 1.0x | |")
    print(f"  network CPU {t_cpu:.4f} s", flush=True)
    if torch_reason is not None:
        lines.append(f"| GPU | {label} | | n/a ({torch_reason}) | | |")
        return lines

    def on_gpu(tile):
        def run():
            out = neural.denoise(floats, device="cuda", tile_size=tile)
            _sync_torch()
            return out

        return run

    auto_tile = neural_tile_size(size, size)
    t_front, _, _ = best_of(
        lambda: nlmeans.denoise(image, method="neural", sigma=SIGMA, device="cuda"),
        reps,
        budget,
    )
    lines.append(
        f"| GPU, nlmeans.denoise(device='cuda') | {label} | "
        f"{auto_tile if auto_tile else 'untiled'} (from free memory) | {t_front:.4f} | "
        f"{t_cpu / t_front:.1f}x | <= 30 ms |"
    )
    for tile in (512, None):
        t, _, _ = best_of(on_gpu(tile), reps, budget)
        lines.append(
            f"| GPU, neural.denoise | {label} | {tile or 'untiled'} | {t:.4f} | "
            f"{t_cpu / t:.1f}x | {'<= 30 ms' if tile else ''} |"
        )
        print(f"  network GPU tile {tile}: {t:.4f} s", flush=True)
    return lines


# --------------------------------------------------------------------------
# 3. Training steps
# --------------------------------------------------------------------------


def _step_runner(device: str, on_device: bool, batch: int, patch: int, images):
    """One optimiser step per call, the batch made as ``on_device`` says."""
    import torch
    import torch.nn.functional as F

    from nlmeans.neural import NonLocalDenoiser
    from nlmeans.neural.inference import get_model

    model = NonLocalDenoiser(get_model().config).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    cpu_gen = torch.Generator().manual_seed(0)
    stack = torch.from_numpy(np.stack(images)).float()  # (n, H, W), CPU
    n, height, width = stack.shape
    if on_device:
        stack_dev = stack.to(device)
        gen = torch.Generator(device=device).manual_seed(0)

    def make_batch_on_device():
        idx = torch.randint(0, n, (batch,), device=device, generator=gen)
        ys = torch.randint(0, height - patch + 1, (batch,), device=device, generator=gen)
        xs = torch.randint(0, width - patch + 1, (batch,), device=device, generator=gen)
        r = torch.arange(patch, device=device)
        rows = (ys[:, None] + r)[:, :, None]
        cols = (xs[:, None] + r)[:, None, :]
        clean = stack_dev[idx[:, None, None], rows, cols][:, None]
        flip = torch.rand((batch, 1, 1, 1), device=device, generator=gen) < 0.5
        clean = torch.where(flip, clean.flip(-1), clean)
        sigma = torch.rand((batch,), device=device, generator=gen) * (55.0 / 255.0)
        noise = torch.randn(clean.shape, device=device, generator=gen)
        return clean + sigma.view(batch, 1, 1, 1) * noise, clean, sigma

    def make_batch_on_cpu():
        # As nlmeans.neural.training's sampler does today: a Python loop of crops.
        idx = torch.randint(0, n, (batch,), generator=cpu_gen)
        clean = torch.empty((batch, 1, patch, patch))
        for k in range(batch):
            y = int(torch.randint(0, height - patch + 1, (1,), generator=cpu_gen))
            x = int(torch.randint(0, width - patch + 1, (1,), generator=cpu_gen))
            clean[k, 0] = torch.rot90(stack[int(idx[k]), y : y + patch, x : x + patch], k & 3)
        sigma = torch.rand((batch,), generator=cpu_gen) * (55.0 / 255.0)
        noisy = clean + sigma.view(batch, 1, 1, 1) * torch.randn(clean.shape, generator=cpu_gen)
        return noisy.to(device), clean.to(device), sigma.to(device)

    def step():
        noisy, clean, sigma = make_batch_on_device() if on_device else make_batch_on_cpu()
        optimizer.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(noisy, sigma), clean)
        loss.backward()
        optimizer.step()
        if not on_device:
            loss.item()  # today's loop reads the loss every step (a synchronisation)
        elif device != "cpu":
            torch.cuda.synchronize()

    return step


def training(cfg: dict, torch_reason: str | None) -> list[str]:
    import torch
    from skimage import data

    batch, patch, threads = 32, 40, cfg["threads"]
    images = [
        _resize_square(im, cfg["train_size"]).astype(np.float32) / 255.0
        for im in (data.camera(), data.moon(), data.astronaut()[..., 0], data.coins())
    ]
    steps = cfg["train_steps"]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        variants = [("CPU, batch made on the CPU", "cpu", False)]
        if torch_reason is None:
            variants += [
                ("GPU, batch made on the CPU and copied (today)", "cuda", False),
                ("GPU, images, crops and noise on the GPU", "cuda", True),
            ]
        for name, device, on_device in variants:
            step = _step_runner(device, on_device, batch, patch, images)

            def run(step=step):
                for _ in range(steps):
                    step()

            seconds, _, _ = best_of(run, cfg["repeats"], cfg["budget"])
            rows.append((name, seconds / steps))
            print(f"  training {name}: {seconds / steps:.4f} s/step", flush=True)
    finally:
        torch.set_num_threads(previous)
    cpu_step = rows[0][1]
    lines = [
        f"| training step (batch {batch}, {patch}x{patch} patches) | s / step | steps / s | "
        "rate / CPU rate |",
        "|---|---:|---:|---:|",
    ]
    for name, sec in rows:
        lines.append(f"| {name} | {sec:.4f} | {1 / sec:.1f} | {cpu_step / sec:.1f}x |")
    if torch_reason is not None:
        lines.append(f"| GPU | n/a ({torch_reason}) | | |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repeat")
    parser.add_argument("--size", type=int, default=None, help="image side (2048; quick 128)")
    parser.add_argument("--patch-distance", type=int, default=10, help="search radius (10)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (5; quick 1)")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per measurement")
    parser.add_argument(
        "--skip", default="", help="comma-separated tables to leave out: classical,neural,training"
    )
    parser.add_argument("--out", type=Path, default=None, help="Markdown output")
    args = parser.parse_args(argv)

    import numba

    from nlmeans.device import cuda_unavailable_reason

    threads = numba.config.NUMBA_NUM_THREADS
    size = args.size or (128 if args.quick else 2048)
    cfg = {
        "quick": args.quick,
        "size": size,
        "volume": max(8, size // 16) if args.quick else 128,
        "patch_distance": args.patch_distance,
        "repeats": args.repeats or (1 if args.quick else 5),
        "budget": args.budget,
        "threads": threads,
        "train_size": 96 if args.quick else 512,
        "train_steps": 2 if args.quick else 10,
    }
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    out = args.out or ROOT / "benchmarks" / "results" / ("gpu_quick.md" if args.quick else "gpu.md")
    gpu_reason = cuda_unavailable_reason()
    torch_reason = cuda_unavailable_reason("neural")
    info = machine_info(threads)
    print(info, flush=True)
    print(f"classical kernels on the GPU: {gpu_reason or 'yes'}; network: {torch_reason or 'yes'}")
    text = [
        "# nlmeans on the GPU" + (" (--quick: small sizes, not for quoting)" if args.quick else ""),
        "",
        info,
        "",
        f"sigma = 25/255, h = 0.8 sigma, search radius {args.patch_distance}; best of "
        f"{cfg['repeats']} timed runs after a warm-up. CPU / GPU above 1: the GPU is faster.",
    ]
    if gpu_reason:
        text.append(f"\nClassical kernels on the GPU: not run ({gpu_reason}).")
    if torch_reason:
        text.append(f"\nNetwork and training on the GPU: not run ({torch_reason}).")
    if "classical" not in skip:
        print("classical ...", flush=True)
        text += ["", "## Classical methods", ""] + classical(cfg, gpu_reason)
    if "neural" not in skip:
        print("network ...", flush=True)
        text += ["", "## Network", ""] + network(cfg, torch_reason)
    if "training" not in skip:
        print("training ...", flush=True)
        text += ["", "## Training steps", ""] + training(cfg, torch_reason)
    write_report("\n".join(text) + "\n", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
