"""Results are bit-identical for 1, 2 and 3 threads (odd sizes, every classical path).

Numba's pool size is fixed when a process starts (``NUMBA_NUM_THREADS``,
the core count by default), so three threads on a two-core machine need a
fresh interpreter started with ``NUMBA_NUM_THREADS=3``; the child compares the
thread counts itself and reports the largest difference it saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Sizes straddle the kernels' strips (STRIP_ROWS = 32 rows): a partial last
# strip and strips whose halo reaches two strips down.
_CHILD = r"""
import json
import numpy as np
import numba
import nlmeans
from nlmeans import kernels

assert numba.config.NUMBA_NUM_THREADS == 3, numba.config.NUMBA_NUM_THREADS
rng = np.random.default_rng(7)
rows = kernels.STRIP_ROWS * 2 + 5
cases = {
    "gray fast": (rng.random((rows, 19)), dict(method="fast")),
    "gray exact": (rng.random((rows, 17)), dict(method="exact")),
    "gray patchwise": (rng.random((rows, 13)), dict(method="patchwise")),
    "opponent patchwise": (rng.random((rows, 11, 3)), dict(method="patchwise", channel_axis=-1)),
    "rgb exact": (rng.random((rows, 9, 3)), dict(method="exact", color_space="rgb", channel_axis=-1)),
    "volume fast": (rng.random((5, 37, 7)), dict(method="fast", patch_size=3, patch_distance=2)),
}
report = {}
for name, (image, kw) in cases.items():
    kw = {"h": 0.25, "sigma": 0.05, "patch_size": 5, "patch_distance": 3, **kw}
    outs = [nlmeans.denoise(image, threads=n, **kw) for n in (1, 2, 3)]
    report[name] = {
        "identical": all(np.array_equal(outs[0], o) for o in outs[1:]),
        "max_diff": max(float(np.abs(outs[0] - o).max()) for o in outs[1:]),
        "changed": float(np.abs(outs[0] - image).max()),
    }
print(json.dumps(report))
"""


def test_one_two_and_three_threads_give_the_same_bits():
    env = dict(os.environ, NUMBA_NUM_THREADS="3")
    run = subprocess.run(
        [sys.executable, "-c", _CHILD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(report) == 6
    for name, row in report.items():
        assert row["identical"], (name, row)
        assert row["changed"] > 1e-3, (name, row)  # the filter did work
