"""Threads: results are bit-identical for 1, 2 and 3 threads (odd sizes, every
classical path; Numba's pool size is fixed when a process starts, so three
threads need a fresh interpreter started with ``NUMBA_NUM_THREADS=3``); a batch
with ``--threads 2`` gives the same bytes as each file alone with ``--threads 1``;
library calls from several Python threads agree with sequential calls.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_harness import (
    _in,
    _noisy,
    run_cli,
)

import nlmeans
from nlmeans.io import write_image

# --------------------------------------------------------------------------- concurrency


def test_batch_with_two_threads_gives_the_same_bytes_as_one_file_at_a_time(tmp_path, capfd, caplog):
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has a single thread here")
    folder = _in(tmp_path)
    pixels = [
        _noisy((40, 44), seed=1),
        _noisy((40, 44, 3), seed=2),
        _noisy((33, 41), np.uint16, seed=3),
        _noisy((40, 44, 3), np.uint16, seed=4),
        _noisy((36, 36), np.float32, seed=5),
        np.concatenate([_noisy((40, 44, 3), seed=6), _noisy((40, 44, 1), seed=7)], axis=2),
    ]
    names = ["a.png", "b.png", "c.png", "d.png", "e.tif", "f.png"]
    for name, px in zip(names, pixels):
        write_image(folder / name, px)
    args = ["-m", "patchwise", "-p", "5", "-r", "4", "--h", "0.06", "--sigma", "0.02"]
    batch = run_cli(
        [
            "denoise",
            *[folder / n for n in names],
            "-d",
            tmp_path / "batch",
            "--threads",
            "2",
            *args,
        ],
        capfd,
        caplog,
    )
    assert batch.exit_code == 0, batch.stderr
    for name in names:
        single = run_cli(
            ["denoise", folder / name, "-d", tmp_path / "single", "--threads", "1", *args],
            capfd,
            caplog,
        )
        assert single.exit_code == 0, single.stderr
    outputs = sorted(p.name for p in (tmp_path / "batch").iterdir())
    assert outputs == sorted(p.name for p in (tmp_path / "single").iterdir()) and len(outputs) == 6
    for name in outputs:
        assert (tmp_path / "batch" / name).read_bytes() == (
            tmp_path / "single" / name
        ).read_bytes(), name


def test_library_calls_from_several_threads_agree_with_sequential_calls():
    jobs = [
        (
            _noisy((40, 40), seed=s),
            dict(method=m, patch_size=3, patch_distance=3, h=0.07, sigma=0.02, threads=t),
        )
        for s, (m, t) in enumerate(
            [
                ("fast", 1),
                ("exact", 2),
                ("patchwise", 1),
                ("fast", None),
                ("exact", 1),
                ("patchwise", 2),
                ("fast", 2),
                ("exact", None),
            ]
        )
    ]
    import numba

    jobs = [
        (
            img,
            {
                **kw,
                "threads": min(kw["threads"], numba.config.NUMBA_NUM_THREADS)
                if kw["threads"]
                else None,
            },
        )
        for img, kw in jobs
    ]
    sequential = [nlmeans.denoise(img, **kw) for img, kw in jobs]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda job: nlmeans.denoise(job[0], **job[1]), jobs * 2))
    for i, out in enumerate(parallel):
        np.testing.assert_array_equal(out, sequential[i % len(jobs)])


# --------------------------------------------------------------------------- thread counts

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


_FORKED_POOL = """
import multiprocessing as mp
import numpy as np
import nlmeans

def work(seed):
    image = np.random.default_rng(seed).random((48, 48)).astype(np.float32)
    return float(nlmeans.denoise(image, method="fast").sum())

if __name__ == "__main__":
    first = work(0)  # the parent has run the kernels before forking
    with mp.get_context("fork").Pool(2) as pool:
        print(pool.map(work, [0, 1])[0] == first)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_pool_forked_after_a_call_does_not_hang(tmp_path):
    # GNU OpenMP, Numba's default layer here, terminates forked children: the
    # pool waited forever. nlmeans picks a fork-safe layer.
    script = tmp_path / "forked.py"
    script.write_text(_FORKED_POOL)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert "Terminating" not in done.stderr


def test_threads_none_follows_the_callers_numba_setting():
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert nlmeans.check_threads(None) == 1
    finally:
        numba.set_num_threads(previous)
    assert nlmeans.check_threads(None) == previous
