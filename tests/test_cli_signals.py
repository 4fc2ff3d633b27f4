"""SIGINT (subprocesses running the installed ``nlmeans`` script) in the middle of
a batch and of a training run, and resuming that training run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_harness import (
    SAMPLES,
    _in,
    _snapshot,
    _torch_or_skip,
)

import nlmeans
from nlmeans.io import read_image, write_image

# --------------------------------------------------------------------------- SIGINT (installed script)


def _script() -> Path:
    if os.name == "nt":
        pytest.skip("SIGINT delivery differs on Windows")
    path = Path(sys.executable).parent / "nlmeans"
    if not path.exists():
        pytest.skip("the nlmeans script is not installed next to this Python")
    return path


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="100")
    env.pop("NLMEANS_MAX_PIXELS", None)
    return env


def _wait_for(predicate, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(
                f"the process ended (status {proc.returncode}) before it could be interrupted:\n{err}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail("timed out waiting for the first output")
        time.sleep(0.01)


#: Run as ``python -c _WITH_DEFAULT_SIGINT PROGRAM ARGS...``: resets SIGINT to
#: its default disposition, then execs PROGRAM. A test run started with SIGINT
#: ignored (``nohup``, a background job of a non-interactive shell, some CI
#: runners) hands SIG_IGN down through fork and exec; Python then installs no
#: KeyboardInterrupt handler in the child and the SIGINT these tests send is
#: dropped. With SIG_DFL at exec, the child's Python installs its handler as
#: under a terminal. (A wrapper, not ``preexec_fn``: that one runs Python code
#: between fork and exec, which is unsafe in this multi-threaded process.)
_WITH_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def _start(args: list, **kwargs) -> subprocess.Popen:
    """``subprocess.Popen(args, **kwargs)``, with SIGINT at its default whatever this process inherited."""
    return subprocess.Popen([sys.executable, "-c", _WITH_DEFAULT_SIGINT, *map(str, args)], **kwargs)


def _interrupt(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the process did not stop within 30 s of SIGINT")


def test_sigint_in_the_middle_of_a_batch(tmp_path):
    script = _script()
    folder = _in(tmp_path)
    pixels = read_image(
        SAMPLES / "camera.png"
    ).pixels  # 256 x 256: ~0.3 s per file with these settings
    write_image(folder / "img00.png", pixels)
    for i in range(1, 30):
        (folder / f"img{i:02d}.png").write_bytes((folder / "img00.png").read_bytes())
    args = [
        "-m",
        "patchwise",
        "-p",
        "7",
        "-r",
        "15",
        "--h",
        "0.05",
        "--sigma",
        "0.02",
        "--threads",
        "1",
    ]
    expected = nlmeans.denoise(
        pixels, method="patchwise", patch_size=7, patch_distance=15, h=0.05, sigma=0.02, threads=1
    )  # also fills the kernel cache the subprocess reads
    before = _snapshot(folder)
    out = tmp_path / "out"
    proc = _start(
        [script, "denoise", folder, "-d", out, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    _wait_for(
        lambda: out.is_dir() and any(p.name.endswith("_denoised.png") for p in out.iterdir()),
        proc,
        120,
    )
    stdout, stderr = _interrupt(proc)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout
    assert stderr.count("Interrupted.") == 1 and "Error" not in stderr, stderr
    done = sorted(out.iterdir())
    assert all(p.name.endswith("_denoised.png") and not p.name.startswith(".") for p in done), (
        done
    )  # no temp files
    assert 1 <= len(done) < 30, "the batch was not interrupted in the middle"
    for path in done:  # every output present is complete
        np.testing.assert_array_equal(read_image(path).pixels, expected)
    assert _snapshot(folder) == before  # inputs untouched


def test_sigint_in_the_middle_of_training_then_resume(tmp_path):
    _torch_or_skip()
    script = _script()
    data = tmp_path / "data"
    data.mkdir()
    camera = read_image(SAMPLES / "camera.png").pixels
    for i in range(
        3
    ):  # 16 x 16 images, patch 16: one step per epoch, so a checkpoint after every step
        write_image(data / f"{i}.png", camera[40 * i : 40 * i + 16, 60:76])
    before = _snapshot(data)
    ckpt = tmp_path / "model.pt"
    total = 60
    common = ["--data", str(data), "--threads", "1"]
    proc = _start(
        [
            script,
            "train-neural",
            *common,
            "--steps",
            str(total),
            "--batch-size",
            "4",
            "--patch-size",
            "16",
            "--out",
            str(ckpt),
            "--seed",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    _wait_for(ckpt.exists, proc, 120)
    stdout, stderr = _interrupt(proc)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout
    message = re.search(
        r"training interrupted at step \d+/60; the last complete checkpoint is \S*model\.pt "
        r"\(step (\d+)\)\. Resume with `nlmeans train-neural --resume",
        stderr,
    )
    assert message, stderr
    saved = int(message.group(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "data",
        "model.pt",
    ]  # no temporary checkpoint left
    import nlmeans.neural as nn_

    state = nn_.load_checkpoint(ckpt)
    assert state["step"] == saved and 1 <= saved < total
    assert [h["step"] for h in state["history"]] == list(range(1, saved + 1))

    resumed = subprocess.run(
        [str(script), "train-neural", *common, "--resume", str(ckpt)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {total}/{total} (done)" in resumed.stdout
    assert f"step {saved + 1}/{total}" in resumed.stderr  # the counter goes on from the checkpoint
    final = nn_.load_checkpoint(ckpt)
    assert final["step"] == total and final["complete"] is True
    assert [h["step"] for h in final["history"]] == list(range(1, total + 1))
    assert _snapshot(data) == before
