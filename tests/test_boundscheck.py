"""The Numba kernels never index out of bounds (NUMBA_BOUNDSCHECK=1).

The kernels skip all bounds checks for speed, so an off-by-one at a border
would read or write neighbouring memory silently. Here they run on inputs
whose patches and search windows hit every border (windows larger than the
image, patches as large as the image, images taller than two row strips,
search radii beyond a strip) in subprocesses started with
``NUMBA_BOUNDSCHECK=1`` and an empty temporary ``NUMBA_CACHE_DIR``:

* ``parallel``: the real kernels, compiled with bounds checks. Numba does not
  reliably propagate exceptions out of a ``prange`` body (numba/numba#2811):
  a failing check surfaces as ``SystemError`` ("returned a result with an
  exception set") or merely ends that worker's chunk, so this run is also
  checked by comparing its results with the normal run.
* ``serial``: the same kernel source (``py_func``) compiled with
  ``parallel=False`` and bounds checks, where an out-of-bounds index raises
  ``IndexError`` at the offending access.

Both must finish without any exception and agree with the normal (unchecked)
run of this process to 1e-6. (Checked to fail, in both modes, when the
pixelwise kernel's halo is made one row too short.)
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
from nlmeans import kernels

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 1200  # seconds per subprocess: compiling with bounds checks is slower
METHODS = ("fast", "exact", "patchwise")
TALL = 2 * kernels.STRIP_ROWS + 3  # three row strips, the last one short

# name: (shape, channel_axis, patch_size, patch_distance)
CASES = {
    "gray_9x11_p5_d4": ((9, 11), None, 5, 4),
    "gray_9x11_p3_d12_window_beyond_image": ((9, 11), None, 3, 12),
    "gray_9x11_p9_patch_as_tall_as_image": ((9, 11), None, 9, 2),
    "gray_9x11_p1_d0": ((9, 11), None, 1, 0),
    "gray_tall_p5_d4": ((TALL, 13), None, 5, 4),
    "gray_tall_p7_d35_radius_beyond_strip": ((TALL, 9), None, 7, kernels.STRIP_ROWS + 3),
    "rgb_9x11_p5_d4": ((9, 11, 3), -1, 5, 4),
    "rgb_tall_channels_first_p3_d5": ((3, TALL, 10), 0, 3, 5),
    "volume_7x9x8_p5_d3": ((7, 9, 8), None, 5, 3),
    "volume_5x6x7_p3_d6_window_beyond_volume": ((5, 6, 7), None, 3, 6),
    "volume_5x5x6_p5_d2_patch_as_deep_as_volume": ((5, 5, 6), None, 5, 2),
    "volume_tall_p3_d2": ((4, TALL, 5), None, 3, 2),
    "volume_2ch_6x7x8_p3_d2": ((6, 7, 8, 2), -1, 3, 2),
}
H = 0.3
SIGMA = 0.05

# Runs with NUMBA_BOUNDSCHECK=1 and an empty NUMBA_CACHE_DIR.
_CHILD = r"""
import json, sys
import numba
import numpy as np
from numba import njit
mode, inputs_path, spec_path, output_path = sys.argv[1:5]
assert numba.config.BOUNDSCHECK, "NUMBA_BOUNDSCHECK is not in effect"

@njit
def _probe(a, i):
    return a[i]

try:
    _probe(np.zeros(3), 3)
    probe = "no IndexError"
except IndexError:
    probe = "IndexError"

import nlmeans
from nlmeans import kernels

if mode == "serial":
    # Same source, one thread: an IndexError surfaces at the failing access.
    for name in ("pixelwise_accumulate", "patchwise_aggregate"):
        dispatcher = getattr(kernels, name)
        options = dict(dispatcher.targetoptions, parallel=False, boundscheck=True)
        options.pop("nopython", None)
        setattr(kernels, name, njit(**options)(dispatcher.py_func))

spec = json.loads(open(spec_path).read())
inputs = np.load(inputs_path)
outputs, errors = {}, {}
for name, (channel_axis, patch_size, patch_distance) in spec["cases"].items():
    for method in spec["methods"]:
        key = name + "/" + method
        try:
            outputs[key] = nlmeans.denoise(
                inputs[name], h=spec["h"], sigma=spec["sigma"], method=method,
                patch_size=patch_size, patch_distance=patch_distance,
                channel_axis=channel_axis,
            )
        except Exception as exc:
            errors[key] = type(exc).__name__ + ": " + str(exc)
np.savez(output_path, **{k.replace("/", "__"): v for k, v in outputs.items()})
print("RESULT " + json.dumps({"probe": probe, "errors": errors}))
"""


def _inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    return {name: rng.random(shape) for name, (shape, *_rest) in CASES.items()}


@pytest.fixture(scope="module")
def bounds_checked_runs(tmp_path_factory):
    """Start both checked subprocesses at once (two cores: two compilations)."""
    tmp = tmp_path_factory.mktemp("boundscheck")
    np.savez(tmp / "inputs.npz", **_inputs())
    spec = {
        "cases": {name: [axis, p, d] for name, (_, axis, p, d) in CASES.items()},
        "methods": list(METHODS),
        "h": H,
        "sigma": SIGMA,
    }
    (tmp / "spec.json").write_text(json.dumps(spec))
    procs = {}
    for mode in ("parallel", "serial"):
        cache_dir = tmp / f"numba-cache-{mode}"
        cache_dir.mkdir()
        env = dict(os.environ)
        env.pop("NUMBA_DISABLE_JIT", None)
        env["NUMBA_BOUNDSCHECK"] = "1"
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        procs[mode] = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CHILD,
                mode,
                str(tmp / "inputs.npz"),
                str(tmp / "spec.json"),
                str(tmp / f"out_{mode}.npz"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    runs = {}
    try:
        for mode, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
            runs[mode] = (proc.returncode, stdout, stderr, tmp / f"out_{mode}.npz")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return runs


@pytest.fixture(scope="module")
def normal_results():
    inputs = _inputs()
    return {
        f"{name}/{method}": nlmeans.denoise(
            inputs[name],
            h=H,
            sigma=SIGMA,
            method=method,
            patch_size=p,
            patch_distance=d,
            channel_axis=axis,
        )
        for name, (_, axis, p, d) in CASES.items()
        for method in METHODS
    }


@pytest.mark.parametrize("mode", ["parallel", "serial"])
def test_kernels_stay_in_bounds(mode, bounds_checked_runs, normal_results):
    returncode, stdout, stderr, output = bounds_checked_runs[mode]
    assert returncode == 0, f"{mode} run failed (rc={returncode}):\n{stderr}"
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"{mode} run printed no result:\n{stdout}\n{stderr}"
    report = json.loads(lines[-1][len("RESULT ") :])
    # The checks were really on: an out-of-range read raises in that process.
    assert report["probe"] == "IndexError"
    assert report["errors"] == {}, "\n".join(f"{k}: {v}" for k, v in report["errors"].items())

    with np.load(output) as checked:
        assert sorted(checked.files) == sorted(k.replace("/", "__") for k in normal_results)
        mismatched = []
        for key, expected in normal_results.items():
            got = checked[key.replace("/", "__")]
            assert got.shape == expected.shape and got.dtype == expected.dtype, key
            if not np.allclose(got, expected, rtol=1e-6, atol=1e-6):
                mismatched.append(f"{key}: max |diff| {np.abs(got - expected).max():.3g}")
    assert not mismatched, "bounds-checked run differs from the normal run:\n" + "\n".join(
        mismatched
    )
