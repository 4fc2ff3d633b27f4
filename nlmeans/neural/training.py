"""Training the blind non-local denoiser on a folder of clean images.

Entry point: :func:`train`. What it does, step by step:

* reads every PNG / TIFF / JPEG / BMP image under ``data_dir`` (recursively,
  sorted by path). Colour images are converted to gray with the Rec. 709
  luminance weights (as ``skimage.color.rgb2gray``), alpha is dropped;
  integers are scaled to [0, 1] by their dtype's range, floats are clipped
  to [0, 1]. A fixed, seed-independent subset (every k-th file,
  ``val_fraction`` of them) is held out for validation;
* draws random ``patch_size`` patches (uniform over positions, images chosen
  in proportion to their area) with a random flip / 90 degree rotation (the
  8 symmetries of the square), adds synthetic noise with a standard deviation
  drawn uniformly per patch from ``sigma`` (on the /255 scale), optionally
  Poisson-Gaussian;
* minimises the mean squared error of the predicted noise with Adam and a
  cosine (or step) learning-rate schedule, one step per batch;
* after every epoch validates (PSNR of the held-out images at
  ``val_sigma``, noise from fixed seeds), and writes a checkpoint atomically
  (temporary file + ``os.replace``) holding model, optimizer, scheduler, RNG
  states, step counter and history.

``resume=path`` continues from such a checkpoint; on CPU the resumed run ends
with exactly the weights an uninterrupted run would have. A Ctrl-C leaves the
last complete checkpoint in place and raises :class:`TrainingInterrupted`,
whose message says how to resume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import load_checkpoint, save_checkpoint
from .device import resolve_device
from .model import DenoiserConfig, NonLocalDenoiser

__all__ = [
    "IMAGE_EXTENSIONS",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "list_images",
    "read_gray",
    "resolve_device",
    "train",
]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
NOISE_KINDS = ("gaussian", "poisson-gaussian", "mixture")
SCHEDULES = ("cosine", "step", "constant")
VAL_CROP = 256  # validation images are centre-cropped to at most this size


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


# ---------------------------------------------------------------------------
# settings and results
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Every setting that determines the trained weights (stored in checkpoints).

    See :func:`train` for the meaning of each field.
    """

    sigma: tuple[float, float] = (0.0, 55.0)
    noise: str = "gaussian"
    poisson_peak: tuple[float, float] = (4.0, 255.0)
    gaussian_fraction: float = 0.5
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
        if not (0.0 <= self.val_fraction < 1.0):
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if not (self.val_sigma >= 0):
            raise ValueError(f"val_sigma must be >= 0, got {self.val_sigma!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sigma"] = list(self.sigma)
        d["poisson_peak"] = list(self.poisson_peak)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        d = dict(data)
        for key in ("sigma", "poisson_peak"):
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


# ---------------------------------------------------------------------------
# devices, images
# ---------------------------------------------------------------------------
def list_images(data_dir: str | os.PathLike) -> list[Path]:
    """Image files (by extension, case-insensitive) under ``data_dir``, sorted."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"training data folder not found: {root}")
    files = [
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _read_pixels(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            arr = iio.imread(path)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read image ({exc})") from None
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{path}: unsupported pixel type {arr.dtype}")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 2:  # gray + alpha
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 4:  # drop alpha
        arr = arr[..., :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise ValueError(f"{path}: expected a 2-D gray or colour image, got shape {arr.shape}")
    return arr


def _unit_float(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == bool:
        return arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float64) / float(np.iinfo(arr.dtype).max)
    return np.clip(np.nan_to_num(arr.astype(np.float64)), 0.0, 1.0)


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """Read an image as 2-D float32 gray in [0, 1] (see module docstring)."""
    arr = _unit_float(_read_pixels(Path(path)))
    if arr.ndim == 3:
        arr = arr @ np.array([0.2125, 0.7154, 0.0721])
    return np.ascontiguousarray(arr, dtype=np.float32)


def read_rgb(path: str | os.PathLike, *, keep_uint8: bool = False) -> np.ndarray:
    """Read an image as ``(3, H, W)`` RGB in [0, 1] (gray is repeated 3 times).

    float32, or with ``keep_uint8`` the file's own uint8 values when it has
    them (a quarter of the memory; the sampler scales patches by 1/255).
    """
    arr = _read_pixels(Path(path))
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if not (keep_uint8 and arr.dtype == np.uint8):
        arr = _unit_float(arr).astype(np.float32)
    return np.ascontiguousarray(np.moveaxis(arr, -1, 0))


def _split(n: int, val_fraction: float) -> tuple[list[int], list[int]]:
    """Seed-independent split: evenly spaced files go to validation."""
    n_val = 0
    if val_fraction > 0 and n >= 2:
        n_val = min(n - 1, max(1, round(n * val_fraction)))
    val = sorted({int((i + 0.5) * n / n_val) for i in range(n_val)}) if n_val else []
    val_set = set(val)
    return [i for i in range(n) if i not in val_set], val


def _fingerprint(files: Sequence[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(root).as_posix().encode())
        h.update(str(p.stat().st_size).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------
# batches
# ---------------------------------------------------------------------------
class _PatchSampler:
    """Random noisy/clean patch batches, driven only by one torch.Generator.

    Every image lives in one flat buffer on the generator's device, so that
    a batch is gathered with one indexing operation and its noise drawn
    there too: no Python loop over patches and no host-to-device copy of
    the batch. Images are ``(H, W)`` (gray) or ``(C, H, W)`` tensors, float
    in [0, 1] or uint8 (scaled by 1/255 after the gather).

    ``batch()`` returns ``(noisy, clean, sigma)``; ``sigma`` is one level per
    patch, ``(B,)``, for ``"gaussian"`` and ``"poisson-gaussian"``, and the
    true per-pixel standard deviation ``(B, C, p, p)`` for ``"mixture"``.
    """

    def __init__(
        self, images: list[torch.Tensor], settings: TrainConfig, generator: torch.Generator
    ):
        self.s = settings
        self.g = generator
        dev = generator.device
        p = settings.patch_size
        planes = [im if im.ndim == 3 else im[None] for im in images]
        self.channels = planes[0].shape[0]
        if any(im.shape[0] != self.channels for im in planes):
            raise ValueError("training images must all have the same number of channels")
        self.uint8 = all(im.dtype == torch.uint8 for im in planes)
        if not self.uint8:
            planes = [im if im.dtype == torch.float32 else _to_float(im) for im in planes]
        heights = torch.tensor([im.shape[1] for im in planes], dtype=torch.int64)
        widths = torch.tensor([im.shape[2] for im in planes], dtype=torch.int64)
        sizes = heights * widths
        self.offsets = (torch.cumsum(sizes, 0) - sizes).to(dev)
        self.heights, self.widths = heights.to(dev), widths.to(dev)
        self.flat = torch.cat([im.reshape(self.channels, -1) for im in planes], dim=1).to(dev)
        counts = ((heights - p + 1) * (widths - p + 1)).to(torch.float64)
        self.weights = (counts / counts.sum()).to(dev)
        self.grid = torch.arange(p, device=dev)

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.g, dtype=torch.float64, device=self.g.device)

    def _gather(self) -> torch.Tensor:
        s, g, p, dev = self.s, self.g, self.s.patch_size, self.g.device
        b = s.batch_size
        idx = torch.multinomial(self.weights, b, replacement=True, generator=g)
        u = self._rand(b, 2)
        sym = torch.randint(0, 8, (b,), generator=g, device=dev)
        heights, widths = self.heights[idx], self.widths[idx]
        y = (u[:, 0] * (heights - p + 1)).long()  # truncation: floor of a positive number
        x = (u[:, 1] * (widths - p + 1)).long()
        start = self.offsets[idx] + y * widths + x
        where = start[:, None, None] + self.grid[None, :, None] * widths[:, None, None] + self.grid
        clean = self.flat[:, where].transpose(0, 1)  # (b, C, p, p)
        clean = _to_float(clean) if self.uint8 else clean.clone()
        # The 8 symmetries of the square: a flip, then 0-3 quarter turns.
        for t in range(8):
            sel = (sym == t).nonzero().flatten()
            if len(sel) and t:
                part = clean[sel]
                if t & 4:
                    part = part.flip(-1)
                clean[sel] = torch.rot90(part, t & 3, (-2, -1))
        return clean

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s, g = self.s, self.g
        clean = self._gather()
        b = clean.shape[0]
        lo, hi = s.sigma
        if s.noise == "mixture":
            return self._mixture(clean, lo / 255.0, hi / 255.0)
        sigma = (lo + (hi - lo) * self._rand(b)).float() / 255.0
        if s.noise == "poisson-gaussian":
            plo, phi = s.poisson_peak
            logp = math.log(plo) + (math.log(phi) - math.log(plo)) * self._rand(b)
            peak = torch.exp(logp).float().view(b, 1, 1, 1)
            noisy = torch.poisson(clean * peak, generator=g) / peak
        else:
            noisy = clean.clone()
        noise = torch.randn(clean.shape, generator=g, device=g.device)
        noisy = noisy + sigma.view(b, 1, 1, 1) * noise
        return noisy, clean, sigma

    def _mixture(self, clean: torch.Tensor, lo: float, hi: float):
        """Gaussian or Poisson-Gaussian noise per patch, with its true sigma map.

        Gaussian patches: one sigma, uniform in [lo, hi], for every pixel and
        channel. Poisson-Gaussian patches: variance ``a * y + b`` per channel
        (the Gaussian approximation of Foi et al. 2008), with two standard
        deviations drawn uniformly in [lo, hi] per channel, the smaller the
        one at black (``b``) and the larger the one at white (``a + b``), so
        that the noise level spans the same range across intensities.
        """
        b, c = clean.shape[:2]
        gaussian = self._rand(b) < self.s.gaussian_fraction
        flat = (lo + (hi - lo) * self._rand(b, 1)).expand(b, c)
        ends = lo + (hi - lo) * self._rand(b, c, 2)
        dark, bright = ends.min(-1).values, ends.max(-1).values
        a_ = torch.where(gaussian[:, None], 0.0, bright**2 - dark**2)
        b_ = torch.where(gaussian[:, None], flat**2, dark**2)
        variance = a_[..., None, None] * clean.double() + b_[..., None, None]
        sigma = variance.clamp_min(0).sqrt().float()
        noise = torch.randn(clean.shape, generator=self.g, device=self.g.device)
        return clean + sigma * noise, clean, sigma


def _to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1], rounded exactly as ``uint8 / 255.0`` in float64."""
    return (pixels.double() / 255.0).float()


def _lr_lambda(schedule: str, total: int) -> Callable[[int], float]:
    if schedule == "cosine":
        floor = 0.01

        def f(step: int) -> float:
            t = min(step, total) / max(total, 1)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    elif schedule == "step":
        milestones = (int(total * 0.6), int(total * 0.85))

        def f(step: int) -> float:
            return 0.1 ** sum(step >= m for m in milestones)
    else:

        def f(step: int) -> float:
            return 1.0

    return f


def _psnr(clean: torch.Tensor, out: torch.Tensor) -> float:
    mse = float(torch.mean((clean.double() - out.double().clamp(0, 1)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _validation_set(
    images: list[torch.Tensor], sigma255: float
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    pairs = []
    for i, im in enumerate(images):
        h, w = im.shape[-2:]
        ch, cw = min(h, VAL_CROP), min(w, VAL_CROP)
        y, x = (h - ch) // 2, (w - cw) // 2
        clean = im[..., y : y + ch, x : x + cw].clone()
        clean = clean[None, None] if clean.ndim == 2 else clean[None]
        gen = torch.Generator().manual_seed(10_000 + i)
        noisy = clean + (sigma255 / 255.0) * torch.randn(clean.shape, generator=gen)
        pairs.append((noisy, clean))
    return pairs


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
            scores.append(_psnr(clean, out))
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


class _Progress:
    """Rich progress bar on stderr (or nothing)."""

    def __init__(self, enabled: bool, total: int, start: int):
        self.bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]train-neural"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True, log_path=False),
        )
        self.task = self.bar.add_task("train", total=total, completed=start, info="")

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False

    def update(self, step: int, info: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)

    def log(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.log(text)


# ---------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------
def train(
    data_dir: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    sigma: tuple[float, float] | float = (0.0, 55.0),
    noise: str = "gaussian",
    poisson_peak: tuple[float, float] = (4.0, 255.0),
    gaussian_fraction: float = 0.5,
    epochs: int = 20,
    steps: int | None = None,
    steps_per_epoch: int | None = None,
    max_steps: int | None = None,
    max_time: float | None = None,
    batch_size: int = 64,
    patch_size: int = 40,
    lr: float = 1e-3,
    schedule: str = "cosine",
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    val_sigma: float = 25.0,
    config: DenoiserConfig | None = None,
    resume: str | os.PathLike | None = None,
    device: str = "cpu",
    threads: int | None = None,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a :class:`NonLocalDenoiser` on a folder of clean images.

    Args:
        data_dir: folder of clean images (PNG / TIFF / JPEG / BMP, searched
            recursively). For a gray network (``config.in_channels == 1``)
            colour is converted to gray (see module docstring); for a colour
            network (``in_channels == 3``) images are read as RGB, gray ones
            repeated on the three channels.
        out: checkpoint file, rewritten atomically after every epoch
            (default: the ``resume`` file, else ``./neural_denoiser.pt``).
        sigma: noise standard deviation range (low, high) on the /255 scale,
            drawn uniformly per patch; a single number trains at that sigma.
        noise: ``"gaussian"``, ``"poisson-gaussian"`` (Poisson noise at a
            peak drawn log-uniformly from ``poisson_peak`` per patch, plus the
            Gaussian part) or ``"mixture"``: per patch, with probability
            ``gaussian_fraction``, Gaussian noise of one sigma drawn from
            ``sigma``, else signal-dependent noise of variance ``a * y + b``
            per channel whose standard deviation goes from one value drawn
            from ``sigma`` at black to another at white. A non-blind network
            (``config.noise_level_input``) is given the true per-pixel
            standard deviation of that noise as its noise-level map (with
            the other kinds: the Gaussian sigma of each patch).
        epochs: number of epochs (ignored when ``steps`` is given).
        steps: total optimizer steps (overrides ``epochs``; the last epoch may
            be shorter).
        steps_per_epoch: steps between validations/checkpoints; default: the
            number of non-overlapping patches of the training images divided
            by ``batch_size`` (at least 1).
        max_steps: stop this call once the global step reaches ``max_steps``
            (checkpoint written; the schedule is unchanged, so a later
            ``resume`` continues the same run). Not stored in the checkpoint.
        max_time: stop this call after the first optimizer step that ends
            ``max_time`` seconds of training after it started (checkpoint
            written, resumable like ``max_steps``). Not stored in the
            checkpoint.
        batch_size, patch_size: patches per step, patch side in pixels.
        lr, schedule, weight_decay, grad_clip: Adam learning rate; schedule
            ``"cosine"`` (to 1 % of lr), ``"step"`` (x0.1 at 60 % and 85 %) or
            ``"constant"``; Adam weight decay; gradient-norm clipping (None =
            off).
        seed: seeds the initial weights and every random draw; same seed and
            settings -> same weights on CPU (with the same thread count).
        val_fraction: share of the files held out for validation (an evenly
            spaced, seed-independent subset; 0 disables validation).
        val_sigma: sigma (/255 scale) of the validation noise (fixed seeds).
        config: network architecture (default ``DenoiserConfig()``).
        resume: checkpoint to continue from. The network config and every
            training setting stored there are used (differing arguments are
            ignored with a warning); ``data_dir`` should be the same folder.
        device: ``"cpu"`` or ``"cuda"`` (``RuntimeError`` if unavailable).
        threads: torch CPU threads during training (None: leave as is).
        progress: show a Rich progress bar on stderr.
        callback: called with each epoch's history dict after its
            checkpoint is written.

    Returns:
        :class:`TrainResult`.

    Raises:
        TrainingInterrupted: on KeyboardInterrupt; the last complete
            checkpoint is intact and the message says how to resume.
        FloatingPointError: the loss became NaN/inf (nothing is saved for
            that epoch).
        FileNotFoundError / ValueError: bad folder, no usable image, bad
            settings, or an invalid ``resume`` file.
    """
    dev = resolve_device(device)
    if isinstance(sigma, (int, float)):
        sigma = (float(sigma), float(sigma))
    requested = TrainConfig(
        sigma=tuple(sigma),
        noise=noise,
        poisson_peak=tuple(poisson_peak),
        gaussian_fraction=gaussian_fraction,
        epochs=epochs,
        steps=steps,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        patch_size=patch_size,
        lr=lr,
        schedule=schedule,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        seed=seed,
        val_fraction=val_fraction,
        val_sigma=val_sigma,
    )
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
    ):
        raise ValueError(f"max_steps must be a positive integer or None, got {max_steps!r}")
    if max_time is not None and (
        isinstance(max_time, bool) or not isinstance(max_time, (int, float)) or not max_time > 0
    ):
        raise ValueError(f"max_time must be a positive number of seconds or None, got {max_time!r}")
    if config is not None and not isinstance(config, DenoiserConfig):
        raise TypeError(f"config must be a DenoiserConfig, got {type(config).__name__}")

    state: dict[str, Any] | None = None
    if resume is not None:
        resume = Path(resume)
        state = load_checkpoint(resume, map_location="cpu")
        if "train_settings" not in state or "optimizer" not in state:
            raise ValueError(
                f"{resume}: holds inference weights only, not a resumable training checkpoint"
            )
        settings = TrainConfig.from_dict(state["train_settings"])
        net_config = DenoiserConfig.from_dict(state["config"])
        # Warn about arguments the caller changed from their defaults that
        # conflict with the checkpoint (defaults are silently replaced).
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
                stacklevel=2,
            )
    else:
        settings = requested
        net_config = config if config is not None else DenoiserConfig()

    out_path = (
        Path(out)
        if out is not None
        else (resume if resume is not None else Path("neural_denoiser.pt"))
    )

    # -- data -------------------------------------------------------------
    root = Path(data_dir)
    files = list_images(root)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {root}")
    fingerprint = _fingerprint(files, root)
    if state is not None and state.get("data", {}).get("fingerprint") not in (None, fingerprint):
        warnings.warn(
            f"resuming {resume}: the images in {root} differ from the ones it was trained on; "
            "the result will not match an uninterrupted run",
            stacklevel=2,
        )
    if net_config.in_channels not in (1, 3):
        raise ValueError(
            f"training reads gray (in_channels=1) or RGB (in_channels=3) images; the network "
            f"config has in_channels={net_config.in_channels}"
        )
    color = net_config.in_channels == 3
    train_idx, val_idx = _split(len(files), settings.val_fraction)
    p = settings.patch_size
    train_images: list[torch.Tensor] = []
    skipped = []
    for i in train_idx:
        # RGB patches stay uint8 until they are drawn: CBSD432 takes 200 MB
        # instead of 800 MB.
        im = read_rgb(files[i], keep_uint8=True) if color else read_gray(files[i])
        if im.shape[-2] < p or im.shape[-1] < p:
            skipped.append(files[i].name)
            continue
        train_images.append(torch.from_numpy(im))
    if skipped:
        warnings.warn(
            f"{len(skipped)} training image(s) smaller than patch_size={p} skipped: {skipped[:5]}",
            stacklevel=2,
        )
    if not train_images:
        raise ValueError(f"no training image in {root} is at least {p}x{p} pixels")
    read = read_rgb if color else read_gray
    val_pairs = _validation_set(
        [torch.from_numpy(read(files[i])) for i in val_idx], settings.val_sigma
    )

    spe = settings.steps_per_epoch
    if spe is None:
        n_patches = sum((im.shape[-2] // p) * (im.shape[-1] // p) for im in train_images)
        spe = max(1, round(n_patches / settings.batch_size))
    total = settings.steps if settings.steps is not None else settings.epochs * spe
    stop_at = total if max_steps is None else min(total, max_steps)

    # -- model, optimizer, RNG ------------------------------------------------
    with torch.random.fork_rng(devices=[]), _num_threads(threads):
        torch.manual_seed(settings.seed)
        model = NonLocalDenoiser(net_config)
        optimizer = torch.optim.Adam(
            model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _lr_lambda(settings.schedule, total)
        )
        # The data generator lives on the training device, so that patches
        # and noise are drawn there (on CPU: the same draws as always).
        gen = torch.Generator(device=dev).manual_seed(settings.seed)
        step, epoch, history, wall = 0, 0, [], 0.0
        if state is not None:
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
            step, epoch = int(state["step"]), int(state["epoch"])
            history = list(state.get("history", []))
            wall = float(history[-1]["wall_time"]) if history else 0.0
        model.to(dev)
        # optimizer state follows the parameters' device
        for st in optimizer.state.values():
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and k != "step":
                    st[k] = v.to(dev)
        sampler = _PatchSampler(train_images, settings, gen)
        saved_step = step
        saved_path = resume  # last complete checkpoint (None before the first one)

        def checkpoint() -> None:
            save_checkpoint(
                out_path,
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
                    "data": {"dir": str(root), "files": len(files), "fingerprint": fingerprint},
                    "complete": step >= total,
                },
            )

        model.train()
        deadline = None if max_time is None else time.monotonic() + float(max_time)
        try:
            with _Progress(progress, total, step) as bar:
                while step < stop_at:
                    t0 = time.perf_counter()
                    epoch_end = min(total, (step // spe + 1) * spe, stop_at)
                    losses = []
                    while step < epoch_end:
                        noisy, clean, sig = sampler.batch()
                        noisy, clean, sig = noisy.to(dev), clean.to(dev), sig.to(dev)
                        optimizer.zero_grad(set_to_none=True)
                        loss = F.mse_loss(model(noisy, sig), clean)
                        if not torch.isfinite(loss):
                            where = (
                                f"; the last complete checkpoint is {saved_path}"
                                if saved_path
                                else ""
                            )
                            raise FloatingPointError(
                                f"training diverged (loss {loss.detach().item()}) at step {step + 1}{where}; "
                                "try a lower lr or grad_clip"
                            )
                        loss.backward()
                        if settings.grad_clip is not None:
                            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                        optimizer.step()
                        scheduler.step()
                        step += 1
                        losses.append(loss.detach().item())
                        bar.update(step, f"loss {losses[-1]:.2e}")
                        if deadline is not None and time.monotonic() >= deadline:
                            stop_at = step  # checkpoint now, then stop
                            break
                    epoch_done = step % spe == 0 or step >= total
                    if epoch_done:
                        epoch += 1
                    val = _validate(model, val_pairs, settings.val_sigma, dev)
                    dt = time.perf_counter() - t0
                    wall += dt
                    record = {
                        "epoch": epoch,
                        "partial": not epoch_done,  # stopped by max_steps mid-epoch
                        "step": step,
                        "train_loss": float(np.mean(losses)) if losses else None,
                        "val_psnr": val,
                        "lr": scheduler.get_last_lr()[0],
                        "epoch_time": dt,
                        "wall_time": wall,
                    }
                    history.append(record)
                    checkpoint()
                    saved_step, saved_path = step, out_path
                    val_txt = f"val {val:.2f} dB" if val is not None else "no val"
                    bar.update(step, f"loss {record['train_loss']:.2e} | {val_txt}")
                    bar.log(
                        f"step {step}/{total}  loss {record['train_loss']:.3e}  {val_txt}  -> {out_path}"
                    )
                    if callback is not None:
                        callback(dict(record))
        except KeyboardInterrupt:
            if saved_path is None:
                msg = (
                    f"training interrupted at step {step}/{total} before the first checkpoint; "
                    "nothing was saved"
                )
            else:
                msg = (
                    f"training interrupted at step {step}/{total}; the last complete checkpoint is "
                    f"{saved_path} (step {saved_step}). Resume with "
                    f"`nlmeans train-neural --resume {saved_path}` or "
                    f"nlmeans.neural.train(..., resume={str(saved_path)!r})"
                )
            raise TrainingInterrupted(
                msg, Path(saved_path) if saved_path else None, saved_step
            ) from None

    return TrainResult(
        out=out_path,
        history=history,
        step=step,
        total_steps=total,
        completed=step >= total,
        config=net_config,
        settings=settings,
        parameters=model.num_parameters(),
        train_images=len(train_images),
        val_images=len(val_pairs),
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
