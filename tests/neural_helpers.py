"""Helpers shared by the network's test files (importable as ``neural_helpers``).

Import it after ``pytest.importorskip("torch")``: it needs torch.
"""

from __future__ import annotations

from pathlib import Path

import torch

from nlmeans.neural import checkpoint as ckpt_mod
from nlmeans.neural.model import NonLocalDenoiser


def activate(model: NonLocalDenoiser, seed: int = 0) -> NonLocalDenoiser:
    """Make the zero-initialised blocks and the small tail non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "w_z.1" in name or name.startswith("tail"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


class Evil:
    """Unpickling this creates a marker file, i.e. runs code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def save_evil_checkpoint(model: NonLocalDenoiser, path: Path, marker: Path) -> None:
    """A checkpoint of ``model`` whose pickle would create ``marker`` if fully unpickled."""
    torch.save(
        {
            "format": ckpt_mod.CHECKPOINT_FORMAT,
            "format_version": 1,
            "config": model.config.to_dict(),
            "model": model.state_dict(),
            "payload": Evil(str(marker)),
        },
        path,
    )
