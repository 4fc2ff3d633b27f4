"""The examples in examples/ run (tiny settings) and show what they claim."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_video_classification_nonlocal(capsys):
    example = _load("video_classification_nonlocal")
    result = example.main(["--quick"])
    # Zero-initialised block: the trained network's outputs are unchanged at insertion.
    assert result["change_at_insertion"] == 0.0
    # ... and the block trains from there (only its parameters were updated).
    assert result["block_gamma_abs_max"] > 0
    assert result["block_loss_end"] < result["block_loss_start"]
    assert "largest output change" in capsys.readouterr().out
