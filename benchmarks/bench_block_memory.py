"""Peak memory of one NonLocalBlock2d forward + backward pass, per mode.

Each configuration runs in a fresh subprocess. The subprocess builds the block
and the input, warms up on a small input (so that lazily loaded kernels do
not count), records ``ru_maxrss`` as the baseline, runs forward + backward on
the full input and reports the growth of ``ru_maxrss`` (peak resident memory
above the baseline). The reference point: one float32 ``N x N`` affinity of
a 128 x 128 map (N = 16384) is 1 GiB, and autograd would keep it (and its
softmax) for the backward pass.

Usage::

    python benchmarks/bench_block_memory.py            # 1 x 64 x 128 x 128, all modes
    python benchmarks/bench_block_memory.py --size 64 --window 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MODES = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
TARGET_MIB = 500.0


def _maxrss_mib() -> float:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # kilobytes on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def worker(mode: str, window: int | None, size: int, channels: int, threads: int) -> dict:
    # Measure the code of this checkout, installed or not.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import torch

    from nlmeans.neural.block import NonLocalBlock2d

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    block = NonLocalBlock2d(channels, mode=mode, window=window, zero_init=False)
    # Warm-up on a small map: loads kernels and allocator pools, not counted.
    small = torch.randn(1, channels, 16, 16, requires_grad=True)
    block(small).sum().backward()
    block.zero_grad(set_to_none=True)
    x = torch.randn(1, channels, size, size, requires_grad=True)  # (B, C, H, W)
    baseline = _maxrss_mib()
    start = time.perf_counter()
    z = block(x)
    forward_s = time.perf_counter() - start
    z.square().mean().backward()
    total_s = time.perf_counter() - start
    peak = _maxrss_mib()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    return {
        "mode": mode,
        "window": window,
        "peak_above_baseline_mib": peak - baseline,
        "baseline_mib": baseline,
        "forward_s": forward_s,
        "forward_backward_s": total_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="height = width of the input")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="also measure every mode with this window radius",
    )
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "WINDOW"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        mode, window = args.worker
        result = worker(
            mode, None if window == "none" else int(window), args.size, args.channels, args.threads
        )
        print(json.dumps(result))
        return 0

    configs = [(mode, None) for mode in args.modes]
    if args.window is not None:
        configs += [(mode, args.window) for mode in args.modes]
    n = args.size * args.size
    print(
        f"NonLocalBlock2d, input 1 x {args.channels} x {args.size} x {args.size} (N = {n}), "
        f"float32, forward + backward, {args.threads} thread(s), sub_sample=False"
    )
    print(f"for scale: one float32 N x N affinity = {n * n * 4 / 2**20:.0f} MiB\n")
    header = f"{'mode':<20}{'window':>8}{'peak above baseline':>22}{'forward':>10}{'fwd+bwd':>10}"
    print(header)
    print("-" * len(header))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    worst = 0.0
    for mode, window in configs:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--size",
            str(args.size),
            "--channels",
            str(args.channels),
            "--threads",
            str(args.threads),
            "--worker",
            mode,
            "none" if window is None else str(window),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(f"{mode:<20}{str(window):>8}  FAILED:\n{proc.stderr[-2000:]}")
            worst = float("inf")
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        mib = res["peak_above_baseline_mib"]
        worst = max(worst, mib)
        print(
            f"{mode:<20}{'-' if window is None else window:>8}{mib:>18.1f} MiB"
            f"{res['forward_s']:>9.2f}s{res['forward_backward_s']:>9.2f}s"
        )
    verdict = "OK" if worst < TARGET_MIB else "ABOVE TARGET"
    print(f"\nworst: {worst:.1f} MiB (target < {TARGET_MIB:.0f} MiB): {verdict}")
    return 0 if worst < TARGET_MIB else 1


if __name__ == "__main__":
    raise SystemExit(main())
