"""The optimisation loop of :func:`nlmeans.neural.train`: steps, per-epoch
validation and checkpoints, the time and step limits, Ctrl-C."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from skimage.metrics import peak_signal_noise_ratio

from . import train_state
from .data import PatchSampler, TrainingData
from .model import DenoiserConfig, NonLocalDenoiser
from .train_config import TrainConfig, TrainingInterrupted

__all__ = ["Run", "fit"]

#: Steps between two reads of the loss on the host when training on a GPU.
SYNC_EVERY = 50


@dataclass
class Run:
    """One training run: what it optimises and where it stands."""

    settings: TrainConfig
    net_config: DenoiserConfig
    data: TrainingData
    model: NonLocalDenoiser
    optimizer: torch.optim.Optimizer
    #: set right after the run is made: a time budget's schedule reads the run's clock
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    gen: torch.Generator
    device: torch.device
    out: Path
    total: int
    steps_per_epoch: int
    step: int = 0
    epoch: int = 0
    wall: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    #: _clock() when this call's training started (None before)
    started: float | None = None
    #: run.wall when this call's training started
    wall_at_start: float = 0.0

    def elapsed(self) -> float:
        """Seconds of training so far, earlier (resumed) calls included."""
        if self.started is None:
            return self.wall
        return self.wall_at_start + _clock() - self.started

    def time_fraction(self) -> float:
        """Share of ``settings.time_budget`` spent (0 without a budget)."""
        budget = self.settings.time_budget
        return 0.0 if budget is None else self.elapsed() / budget

    def save(self) -> None:
        train_state.save(
            self.out,
            net_config=self.net_config,
            settings=self.settings,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            gen=self.gen,
            step=self.step,
            epoch=self.epoch,
            total=self.total,
            history=self.history,
            data={
                "dir": str(self.data.root.resolve()),  # --resume finds it from anywhere
                "files": len(self.data.files),
                "fingerprint": self.data.fingerprint,
            },
        )


def fit(
    run: Run,
    *,
    stop_at: int,
    max_time: float | None,
    progress: bool,
    callback: Callable[[dict[str, Any]], None] | None,
    saved_path: Path | None,
) -> None:
    """Optimise until ``stop_at`` steps (or ``max_time`` seconds), validating
    and checkpointing at every epoch end and when stopping.

    Raises :class:`TrainingInterrupted` on Ctrl-C (the last complete
    checkpoint, ``saved_path`` before the first one of this call, stays).
    """
    settings, model, optimizer, scheduler = run.settings, run.model, run.optimizer, run.scheduler
    dev, spe = run.device, run.steps_per_epoch
    sampler = PatchSampler(run.data.train_images, settings, run.gen, frames=model.config.frames)
    saved_step = run.step
    model.train()
    deadline = None if max_time is None else _clock() + float(max_time)
    budget = settings.time_budget
    # Reading the loss on the host waits for the device: on a GPU that
    # happens every SYNC_EVERY steps only, so that the host queues the next
    # steps while the device computes (on the CPU it costs nothing).
    sync_every = _sync_every(dev)
    run.started, run.wall_at_start = _clock(), run.wall
    try:
        with _progress_bar(progress) as bar:
            # A time-budget run ends when its time is spent, not at a known
            # step: its bar has no step total (and so no misleading ETA).
            bar_total = run.total if budget is None else None
            task = bar.add_task("train", total=bar_total, completed=run.step, info="")
            while run.step < stop_at:
                t0 = _clock()
                epoch_end = min(run.total, (run.step // spe + 1) * spe, stop_at)
                loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
                n_losses = 0
                while run.step < epoch_end:
                    noisy, clean, sig = sampler.batch()
                    noisy, clean, sig = noisy.to(dev), clean.to(dev), sig.to(dev)
                    optimizer.zero_grad(set_to_none=True)
                    # a spacetime network denoises the middle frame of each clip
                    loss = F.mse_loss(model(noisy, sig), model.middle_frame(clean))
                    if sync_every == 1 and not torch.isfinite(loss):
                        _diverged(loss.item(), f"at step {run.step + 1}", saved_path)
                    loss.backward()
                    if settings.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    run.step += 1
                    loss_sum += loss.detach()
                    n_losses += 1
                    # One reading of the clock per step, so that the check
                    # below runs whenever the loop is about to stop.
                    spent = budget is not None and run.elapsed() >= budget
                    stop_now = spent or (deadline is not None and _clock() >= deadline)
                    if stop_now or run.step % sync_every == 0 or run.step == epoch_end:
                        if not torch.isfinite(loss_sum):
                            first = run.step - n_losses + 1
                            _diverged(
                                loss_sum.item(), f"between steps {first} and {run.step}", saved_path
                            )
                        bar.update(
                            task, completed=run.step, info=f"loss {loss.detach().item():.2e}"
                        )
                    if spent:
                        # The time budget is spent: the run is complete here.
                        run.total = stop_at = run.step
                        bar.update(task, total=run.total)
                        break
                    if stop_now:
                        stop_at = run.step  # checkpoint now, then stop
                        break
                epoch_done = run.step % spe == 0 or run.step >= run.total
                if epoch_done:
                    run.epoch += 1
                val = _validate(model, run.data.val_pairs, settings.val_sigma, dev)
                dt = _clock() - t0
                # Training time so far, checkpoints and callbacks included:
                # what the time budget counts, so that a resumed run agrees.
                run.wall = run.elapsed()
                record = {
                    "epoch": run.epoch,
                    "partial": not epoch_done,  # stopped by max_steps / max_time mid-epoch
                    "step": run.step,
                    "train_loss": loss_sum.item() / n_losses if n_losses else None,
                    "val_psnr": val,
                    "lr": scheduler.get_last_lr()[0],
                    "epoch_time": dt,
                    "wall_time": run.wall,
                }
                run.history.append(record)
                run.save()
                saved_step, saved_path = run.step, run.out
                val_txt = f"val {val:.2f} dB" if val is not None else "no val"
                loss_txt = (
                    f"{record['train_loss']:.2e}" if record["train_loss"] is not None else "-"
                )
                bar.update(task, completed=run.step, info=f"loss {loss_txt} | {val_txt}")
                if progress:
                    where = (
                        f"{run.step}/{run.total}"
                        if budget is None
                        else f"{run.step} ({run.elapsed():.0f} of {budget:.0f} s)"
                    )
                    bar.console.log(f"step {where}  loss {loss_txt}  {val_txt}  -> {run.out}")
                if callback is not None:
                    callback(dict(record))
    except KeyboardInterrupt:
        if saved_path is None:
            msg = (
                f"training interrupted at step {run.step}/{run.total} before the first checkpoint; "
                "nothing was saved"
            )
        else:
            msg = (
                f"training interrupted at step {run.step}/{run.total}; the last complete checkpoint "
                f"is {saved_path} (step {saved_step}). Resume with "
                f"`nlmeans train-neural --resume {saved_path}` or "
                f"nlmeans.neural.train(..., resume={str(saved_path)!r})"
            )
        raise TrainingInterrupted(
            msg, Path(saved_path) if saved_path else None, saved_step
        ) from None


def _clock() -> float:
    """Seconds on a monotonic clock (one place, so tests can replace it)."""
    return time.monotonic()


def _sync_every(device: torch.device) -> int:
    """Steps between two reads of the loss on the host."""
    return 1 if device.type == "cpu" else SYNC_EVERY


def _diverged(loss: float, when: str, saved_path: Path | None) -> None:
    where = f"; the last complete checkpoint is {saved_path}" if saved_path else ""
    raise FloatingPointError(
        f"training diverged (loss {loss}) {when}{where}; try a lower lr or grad_clip"
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    total: int,
    time_fraction: Callable[[], float] | None = None,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule over ``total`` steps (one scheduler step per batch).

    ``"cosine"``: from lr down to 1 % of it, in closed form through
    :class:`~torch.optim.lr_scheduler.LambdaLR` (``CosineAnnealingLR``
    updates the rate recursively, which drifts from the closed form by about
    1e-8 relative and would change seeded results); ``"step"``: x0.1 at 60 %
    and 85 % of the steps (``MultiStepLR``); ``"constant"``: ``ConstantLR``
    with factor 1.

    ``time_fraction`` (a run with a time budget): the share of the budget
    spent so far; the cosine then follows whichever of the steps and the
    time is further along.
    """
    sched = torch.optim.lr_scheduler
    if schedule == "step":
        return sched.MultiStepLR(optimizer, [int(total * 0.6), int(total * 0.85)], gamma=0.1)
    if schedule == "constant":
        return sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    floor = 0.01

    def cosine(step: int) -> float:
        t = min(step, total) / max(total, 1)
        if time_fraction is not None:
            t = max(t, min(time_fraction(), 1.0))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return sched.LambdaLR(optimizer, cosine)


@torch.inference_mode()
def _validate(
    model: NonLocalDenoiser, pairs, sigma255: float, device: torch.device
) -> float | None:
    if not pairs:
        return None
    was_training = model.training
    model.eval()
    try:
        scores = []
        for noisy, clean in pairs:
            out = model(noisy.to(device), sigma255 / 255.0).cpu()
            with np.errstate(divide="ignore"):  # a perfect result: inf dB
                scores.append(
                    peak_signal_noise_ratio(
                        clean.double().numpy(), out.double().clamp(0, 1).numpy(), data_range=1.0
                    )
                )
        return float(np.mean(scores))
    finally:
        model.train(was_training)


@contextmanager
def _num_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _progress_bar(enabled: bool) -> Progress:
    """The Rich progress bar of a run, on stderr (drawn only when ``enabled``)."""
    return Progress(
        TextColumn("[bold]train-neural"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True, log_path=False),
        disable=not enabled,
    )
