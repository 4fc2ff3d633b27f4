"""Checkpointing a training run: what a resumable checkpoint holds, how a
run is restored from one, and how a resumed run's settings are reconciled
with the caller's."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .model import DenoiserConfig, NonLocalDenoiser
from .train_config import TrainConfig

__all__ = ["read_resume", "restore", "save"]


def read_resume(
    resume: Path, requested: TrainConfig, config: DenoiserConfig | None
) -> tuple[dict[str, Any], TrainConfig, DenoiserConfig]:
    """The checkpoint ``resume``, with its training settings and network config.

    Arguments the caller changed from their defaults that conflict with the
    checkpoint are reported in one warning (defaults are silently replaced).
    """
    state = load_checkpoint(resume, map_location="cpu")
    if "train_settings" not in state or "optimizer" not in state:
        raise ValueError(
            f"{resume}: holds inference weights only, not a resumable training checkpoint"
        )
    settings = TrainConfig.from_dict(state["train_settings"])
    net_config = DenoiserConfig.from_dict(state["config"])
    defaults = TrainConfig()
    ignored = [
        f"{k}={getattr(requested, k)!r} (checkpoint: {getattr(settings, k)!r})"
        for k in settings.to_dict()
        if getattr(requested, k) != getattr(settings, k)
        and getattr(requested, k) != getattr(defaults, k)
    ]
    if config is not None and config != net_config:
        ignored.append("config (checkpoint's network config is used)")
    if ignored:
        warnings.warn(
            f"resuming {resume} with its stored settings; ignoring: " + ", ".join(ignored),
            stacklevel=3,
        )
    return state, settings, net_config


def restore(
    state: dict[str, Any],
    resume: Path,
    device: str,
    model: NonLocalDenoiser,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    gen: torch.Generator,
) -> tuple[int, int, list[dict[str, Any]], float]:
    """Load a checkpoint's training state; returns (step, epoch, history, wall time)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    try:
        gen.set_state(state["rng"]["data"])
    except RuntimeError:
        raise ValueError(
            f"{resume}: its random state was saved by a run on another kind of device; "
            f"resume it on that device (this run: device={str(device)!r})"
        ) from None
    torch.set_rng_state(state["rng"]["torch"])
    history = list(state.get("history", []))
    wall = float(history[-1]["wall_time"]) if history else 0.0
    return int(state["step"]), int(state["epoch"]), history, wall


def save(
    path: Path,
    *,
    net_config: DenoiserConfig,
    settings: TrainConfig,
    model: NonLocalDenoiser,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    gen: torch.Generator,
    step: int,
    epoch: int,
    total: int,
    history: list[dict[str, Any]],
    data: dict[str, Any],
) -> None:
    """Write the whole training state atomically (see :func:`save_checkpoint`)."""
    save_checkpoint(
        path,
        {
            "config": net_config.to_dict(),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": _to_cpu(optimizer.state_dict()),
            "scheduler": scheduler.state_dict(),
            "rng": {"data": gen.get_state(), "torch": torch.get_rng_state()},
            "step": step,
            "epoch": epoch,
            "total_steps": total,
            "history": history,
            "train_settings": settings.to_dict(),
            "data": data,
            "complete": step >= total,
        },
    )


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    return obj
