"""Start-up behaviour in fresh interpreters: light import, Numba cache, concurrency.

Every test runs ``python`` subprocesses, because what is tested is what a new
process sees: which modules ``import nlmeans`` pulls in, whether the compiled
kernels are written to and read back from ``NUMBA_CACHE_DIR``, and whether two
processes compiling into the same empty cache at the same moment both get the
right answer. Each cold subprocess pays one compilation of
``pixelwise_accumulate`` (20-40 s on a small machine), hence ``slow``.
No timings are asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nlmeans

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 900  # seconds per subprocess: a cold compile on a loaded CI runner

PARAMS = dict(h=0.15, sigma=0.05, patch_size=5, patch_distance=4, method="fast")

# Denoise one image in a fresh interpreter and report what happened.
_CHILD = r"""
import json, sys
args = json.loads(sys.argv[1])
import numpy as np
import nlmeans
torch_after_import = "torch" in sys.modules
from nlmeans import kernels
image = np.load(args["input"])
out = nlmeans.denoise(image, **args["params"])
np.save(args["output"], out)
stats = kernels.pixelwise_accumulate.stats
print("RESULT " + json.dumps({
    "torch_after_import": torch_after_import,
    "torch_after_denoise": "torch" in sys.modules,
    "cache_path": stats.cache_path,
    "cache_hits": sum(stats.cache_hits.values()),
    "cache_misses": sum(stats.cache_misses.values()),
}))
"""


def _env(cache_dir: Path | None = None) -> dict:
    env = dict(os.environ)
    # Test this checkout even if another copy is installed.
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # A compiled run is what is under test: never let the JIT be disabled.
    env.pop("NUMBA_DISABLE_JIT", None)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    return env


_RUNNING: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _kill_leftover_children():
    """End this test's subprocesses if it failed before waiting for them."""
    yield
    while _RUNNING:
        proc = _RUNNING.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _start_child(tmp_path: Path, cache_dir: Path, tag: str) -> tuple[subprocess.Popen, Path]:
    output = tmp_path / f"out_{tag}.npy"
    args = json.dumps(
        {
            "input": str(tmp_path / "input.npy"),
            "output": str(output),
            "params": PARAMS,
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, args],
        env=_env(cache_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _RUNNING.append(proc)
    return proc, output


def _finish_child(proc: subprocess.Popen, output: Path) -> tuple[dict, np.ndarray]:
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, f"child failed (rc={proc.returncode}):\n{stderr}"
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"child printed no result:\n{stdout}\n{stderr}"
    return json.loads(lines[-1][len("RESULT ") :]), np.load(output)


@pytest.fixture
def image_and_expected(tmp_path):
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:37, 0:45]
    clean = 0.5 + 0.3 * np.sin(yy / 5.0) * np.cos(xx / 7.0)
    image = np.clip(clean + 0.05 * rng.standard_normal(clean.shape), 0.0, 1.0)
    np.save(tmp_path / "input.npy", image)
    expected = nlmeans.denoise(image, **PARAMS)  # in this process
    return image, expected


def test_import_does_not_import_torch():
    code = (
        "import json, sys\n"
        "import nlmeans\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "                        if m.split('.')[0] == 'torch' or m.startswith('nlmeans.neural'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.mark.slow
def test_kernels_compile_into_empty_cache_then_load_from_it(tmp_path, image_and_expected):
    _, expected = image_and_expected
    cache_dir = tmp_path / "numba-cache"
    cache_dir.mkdir()

    cold, cold_out = _finish_child(*_start_child(tmp_path, cache_dir, "cold"))
    assert Path(cold["cache_path"]).resolve().is_relative_to(cache_dir.resolve()), cold[
        "cache_path"
    ]
    assert cold["cache_misses"] > 0 and cold["cache_hits"] == 0, cold
    assert any(cache_dir.rglob("*.nbi")) and any(cache_dir.rglob("*.nbc"))

    warm, warm_out = _finish_child(*_start_child(tmp_path, cache_dir, "warm"))
    assert warm["cache_hits"] > 0, warm
    assert warm["cache_misses"] == 0, warm

    # Classical denoising never needs torch, before or after the first call.
    for report in (cold, warm):
        assert not report["torch_after_import"] and not report["torch_after_denoise"]
    np.testing.assert_array_equal(cold_out, expected)
    np.testing.assert_array_equal(warm_out, expected)


@pytest.mark.slow
def test_two_processes_compiling_into_one_empty_cache(tmp_path, image_and_expected):
    _, expected = image_and_expected
    cache_dir = tmp_path / "numba-cache"
    cache_dir.mkdir()

    # Started together: both find the cache empty and compile at the same time.
    first = _start_child(tmp_path, cache_dir, "a")
    second = _start_child(tmp_path, cache_dir, "b")
    results = [_finish_child(*first), _finish_child(*second)]
    for _, out in results:
        np.testing.assert_array_equal(out, expected)

    # Whatever the two writers left behind must be a usable cache.
    after, after_out = _finish_child(*_start_child(tmp_path, cache_dir, "after"))
    assert after["cache_hits"] > 0 and after["cache_misses"] == 0, after
    np.testing.assert_array_equal(after_out, expected)
