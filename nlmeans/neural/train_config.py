"""Training settings and results: :class:`TrainConfig` (everything that
determines the trained weights, stored in checkpoints), :class:`TrainResult`
and :class:`TrainingInterrupted`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..synthetic import MOTIONS
from .model import DenoiserConfig

__all__ = ["NOISE_KINDS", "SCHEDULES", "TrainConfig", "TrainResult", "TrainingInterrupted"]

NOISE_KINDS = ("gaussian", "poisson-gaussian", "mixture", "camera")
SCHEDULES = ("cosine", "step", "constant")
VAL_CROP = 256  # validation images are centre-cropped to at most this size
#: Spacetime networks: the clips made from each training image, one per
#: motion of nlmeans.synthetic.make_sequence (each with its own seed).
CLIP_MOTIONS_DEFAULT = ("mixed", "static", "pan", "objects", "zoom", "mixed", "static")


class TrainingInterrupted(RuntimeError):
    """Training stopped by Ctrl-C (KeyboardInterrupt).

    Attributes:
        checkpoint: path of the last complete checkpoint, or None if none was
            written yet.
        step: the optimizer step that checkpoint holds (0 if none).
    """

    def __init__(self, message: str, checkpoint: Path | None, step: int) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.step = step


@dataclass(frozen=True)
class TrainConfig:
    """Every setting that determines the trained weights (stored in checkpoints).

    See :func:`train` for the meaning of each field.
    """

    sigma: tuple[float, float] = (0.0, 55.0)
    noise: str = "gaussian"
    poisson_peak: tuple[float, float] = (4.0, 255.0)
    gaussian_fraction: float = 0.5
    camera_fraction: float = 0.5
    epochs: int = 20
    steps: int | None = None
    steps_per_epoch: int | None = None
    batch_size: int = 64
    patch_size: int = 40
    lr: float = 1e-3
    schedule: str = "cosine"
    weight_decay: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    val_fraction: float = 0.1
    val_sigma: float = 25.0
    clip_motions: tuple[str, ...] = CLIP_MOTIONS_DEFAULT
    clip_ends: float = 0.2
    time_budget: float | None = None

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.sigma)
        if not (0.0 <= lo <= hi) or not math.isfinite(hi):
            raise ValueError(
                f"sigma must be a range (low, high) with 0 <= low <= high, got {self.sigma!r}"
            )
        object.__setattr__(self, "sigma", (lo, hi))
        plo, phi = (float(v) for v in self.poisson_peak)
        if not (0.0 < plo <= phi) or not math.isfinite(phi):
            raise ValueError(
                f"poisson_peak must be (low, high) with 0 < low <= high, got {self.poisson_peak!r}"
            )
        object.__setattr__(self, "poisson_peak", (plo, phi))
        if self.noise not in NOISE_KINDS:
            raise ValueError(f"noise must be one of {NOISE_KINDS}, got {self.noise!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("patch_size", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
        for name in ("steps", "steps_per_epoch"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if not (self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and not (self.grad_clip > 0):
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip!r}")
        if not (0.0 <= self.gaussian_fraction <= 1.0):
            raise ValueError(f"gaussian_fraction must be in [0, 1], got {self.gaussian_fraction!r}")
        if not (0.0 <= self.camera_fraction <= 1.0):
            raise ValueError(f"camera_fraction must be in [0, 1], got {self.camera_fraction!r}")
        if not (0.0 <= self.clip_ends <= 1.0):
            raise ValueError(f"clip_ends must be in [0, 1], got {self.clip_ends!r}")
        if not (0.0 <= self.val_fraction < 1.0):
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if not (self.val_sigma >= 0):
            raise ValueError(f"val_sigma must be >= 0, got {self.val_sigma!r}")
        if self.time_budget is not None:
            budget = self.time_budget
            if (
                isinstance(budget, bool)
                or not isinstance(budget, (int, float))
                or not (budget > 0 and math.isfinite(budget))
            ):
                raise ValueError(
                    f"time_budget must be a positive number of seconds or None, got {budget!r}"
                )
            if self.schedule == "step":
                raise ValueError(
                    "time_budget needs schedule 'cosine' or 'constant' (the 'step' schedule's "
                    "milestones are step counts)"
                )
            object.__setattr__(self, "time_budget", float(budget))
        motions = tuple(self.clip_motions)
        if not motions or any(m not in MOTIONS for m in motions):
            raise ValueError(
                f"clip_motions must be a non-empty sequence of {', '.join(MOTIONS)}; "
                f"got {self.clip_motions!r}"
            )
        object.__setattr__(self, "clip_motions", motions)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sigma"] = list(self.sigma)
        d["poisson_peak"] = list(self.poisson_peak)
        d["clip_motions"] = list(self.clip_motions)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        d = dict(data)
        # Checkpoints from before clip_ends existed were trained without it.
        d.setdefault("clip_ends", 0.0)
        for key in ("sigma", "poisson_peak", "clip_motions"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        out: the checkpoint file (training state + model).
        history: one dict per completed epoch: ``epoch``, ``step`` (global
            optimizer steps so far), ``train_loss`` (mean MSE of the epoch, on
            the [0, 1] scale), ``val_psnr`` (dB, None without validation),
            ``lr``, ``epoch_time`` and ``wall_time`` (seconds of training so
            far, summed over resumed runs).
        step: optimizer steps done; ``total_steps``: steps planned.
        completed: True when all planned steps are done (False when stopped
            early by ``max_steps``).
        config / settings: the network config and training settings used.
        parameters: number of model parameters.
        train_images / val_images: how many images were used for each.
    """

    out: Path
    history: list[dict[str, Any]]
    step: int
    total_steps: int
    completed: bool
    config: DenoiserConfig
    settings: TrainConfig
    parameters: int
    train_images: int
    val_images: int

    @property
    def final_val_psnr(self) -> float | None:
        return self.history[-1]["val_psnr"] if self.history else None
