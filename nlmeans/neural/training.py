"""Training the non-local denoiser (gray or colour, blind or taking a noise
map) on a folder of clean images.

Entry point: :func:`train`. What it does, step by step:

* reads every PNG / TIFF / JPEG image under ``data_dir`` (recursively,
  sorted by path). Colour images are converted to gray with the Rec. 709
  luminance weights (as ``skimage.color.rgb2gray``), alpha is dropped;
  integers are scaled to [0, 1] by their dtype's range, floats are clipped
  to [0, 1]; a colour network (``in_channels=3``) reads RGB instead. A
  fixed, seed-independent subset (every k-th file,
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

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .data import (
    IMAGE_EXTENSIONS,
    PatchSampler,
    list_images,
    load_data,
    read_gray,
    read_rgb,
)
from .device import resolve_device
from .model import DenoiserConfig, NonLocalDenoiser
from .train_config import NOISE_KINDS, SCHEDULES, TrainConfig, TrainingInterrupted, TrainResult
from .train_loop import Run, _num_threads, fit, make_scheduler
from .train_state import read_resume, restore

__all__ = [
    "IMAGE_EXTENSIONS",
    "NOISE_KINDS",
    "SCHEDULES",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "list_images",
    "read_gray",
    "read_rgb",
    "resolve_device",
    "train",
    "warm_start",
]

# Kept under its former name for code that reaches into the module.
_PatchSampler = PatchSampler


def warm_start(model: NonLocalDenoiser, weights: str | os.PathLike) -> None:
    """Load another network's weights into ``model``, in place.

    The two must have the same architecture, except that ``model`` may take
    a noise-level map where the source is blind, may be a spacetime network
    (``frames > 1``) where the source takes one frame, and may add early
    fusion (``early_fusion``) to a spacetime source. The head's inputs for
    the map (or the other frames) then start at zero, and a new temporal
    block keeps its zero initialisation, so that the warm-started
    network computes exactly what the source does (on the middle frame),
    whatever map it is given, and training teaches it to use the map and
    the other frames from there (the paper's recipe for adding a non-local
    block).

    Raises:
        FileNotFoundError / ValueError: no such file, not a denoiser file, or
            an architecture that differs otherwise (the message says how).
    """
    import dataclasses

    from .checkpoint import load_model

    source = load_model(weights, device="cpu")
    src = source.config
    view = dataclasses.replace(
        model.config,
        noise_level_input=src.noise_level_input,
        frames=src.frames,
        # a source without early fusion: the other frames' head inputs start at zero
        early_fusion=src.early_fusion,
    )
    if src.frames == 1:
        view = dataclasses.replace(view, temporal_window=src.temporal_window)
    if (
        view != src
        or (src.noise_level_input and model.config.blind)
        or (src.spacetime and src.frames != model.config.frames)
        or (src.early_fusion and not model.config.early_fusion)
    ):
        raise ValueError(
            f"cannot start from {weights}: its network is {src}, this one is "
            f"{model.config} (only a blind source for a network taking a noise map, or a "
            "one-frame source for a spacetime network, may differ)"
        )
    mapped = source.state_dict()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name not in mapped and name.startswith("temporal."):
                continue  # the new temporal block keeps its zero initialisation
            value = mapped[name]
            if name == "head.weight" and value.shape[1] < tensor.shape[1]:
                tensor.zero_()
                tensor[:, : value.shape[1]] = value  # image inputs first, then the map
            else:
                tensor.copy_(value)


@contextmanager
def _fast_gpu_kernels(dev: torch.device) -> Iterator[None]:
    """On a GPU: let cuDNN pick its fastest convolution for the fixed patch
    size, and run float32 matrix products on TF32 tensor cores (the
    non-local block's products; cuDNN's convolutions already do). A CPU run
    is unchanged."""
    if dev.type != "cuda":
        yield
        return
    old = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old[0]
        torch.set_float32_matmul_precision(old[1])


def train(
    data_dir: str | os.PathLike,
    *,
    settings: TrainConfig | None = None,
    out: str | os.PathLike | None = None,
    sigma: tuple[float, float] | float = (0.0, 55.0),
    noise: str = "gaussian",
    poisson_peak: tuple[float, float] = (4.0, 255.0),
    gaussian_fraction: float = 0.5,
    camera_fraction: float = 0.5,
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
    clip_motions: tuple[str, ...] | None = None,
    clip_ends: float = 0.2,
    time_budget: float | None = None,
    config: DenoiserConfig | None = None,
    resume: str | os.PathLike | None = None,
    init: str | os.PathLike | None = None,
    device: str = "cpu",
    threads: int | None = None,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a :class:`NonLocalDenoiser` on a folder of clean images.

    Args:
        data_dir: folder of clean images (PNG / TIFF / JPEG, the files the CLI reads, searched
            recursively). For a gray network (``config.in_channels == 1``)
            colour is converted to gray (see module docstring); for a colour
            network (``in_channels == 3``) images are read as RGB, gray ones
            repeated on the three channels.
        settings: every training setting at once, as a :class:`TrainConfig`
            (instead of the keywords ``sigma`` ... ``val_sigma``, which must
            then be left at their defaults).
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
            ``"camera"`` (colour networks): per patch, with probability
            ``camera_fraction``, the noise of a simulated camera
            (:func:`nlmeans.neural.camera.camera_noise`: raw
            Poisson-Gaussian noise, demosaicking, colour processing,
            in-camera noise reduction, JPEG), else the ``"mixture"``; the
            map of a camera patch is its luminance noise level times a
            random factor from 0.5 to 2, so that the network does not trust
            the estimate it gets at inference (on simulated cameras its
            middle half reads 0.89 to 1.51 times the true level).
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
        clip_motions: spacetime networks (``config.frames > 1``): the clips
            made from each training image, one per motion of
            :func:`nlmeans.synthetic.make_sequence` (default
            :data:`~nlmeans.neural.train_config.CLIP_MOTIONS_DEFAULT`).
        clip_ends: spacetime networks: the share of training windows cut by
            a clip's start or end, the frames beyond it replaced by the end
            frame (noise included), as :func:`nlmeans.denoise_sequence`
            fills the windows of a clip's first and last frames. Without
            them a network mistakes the repeated frames for independent
            looks and does worse there than the per-frame network.
        time_budget: train for this many seconds (validation included,
            earlier calls of a resumed run counted): the cosine schedule
            runs over the time instead of the steps (whichever is further
            along), and the run is complete when the time is spent, at
            whatever step that is (``steps`` / ``epochs`` then only bound it
            from above). Stored in the checkpoint. The step count depends on
            the machine's speed, so such a run is not reproducible step for
            step; the checkpoint records where it ended.
        config: network architecture (default ``DenoiserConfig()``).
        resume: checkpoint to continue from. The network config and every
            training setting stored there are used (differing arguments are
            ignored with a warning); ``data_dir`` should be the same folder.
        init: start from the weights of this file (shipped ``.safetensors``
            or a checkpoint) instead of random ones (see :func:`warm_start`);
            ignored when resuming. The schedule, optimizer and data draws
            are those of a fresh run.
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
        camera_fraction=camera_fraction,
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
        **({} if clip_motions is None else {"clip_motions": tuple(clip_motions)}),
        clip_ends=clip_ends,
        time_budget=time_budget,
    )
    if settings is not None:
        if not isinstance(settings, TrainConfig):
            raise TypeError(f"settings must be a TrainConfig, got {type(settings).__name__}")
        if requested != TrainConfig():
            raise ValueError(
                "give the training settings either as settings=TrainConfig(...) or as "
                "keywords, not both"
            )
        requested = settings
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
        state, settings, net_config = read_resume(resume, requested, config)
    else:
        settings = requested
        net_config = config if config is not None else DenoiserConfig()
    out_path = (
        Path(out)
        if out is not None
        else (resume if resume is not None else Path("neural_denoiser.pt"))
    )

    if net_config.spacetime and settings.noise == "mixture":
        raise ValueError(
            "noise='mixture' draws a noise level per channel, which for a spacetime network "
            "would differ from frame to frame; train it with noise='gaussian' or "
            "'poisson-gaussian'"
        )
    if settings.noise == "camera" and (net_config.in_channels != 3 or net_config.spacetime):
        raise ValueError(
            "noise='camera' simulates a colour camera: it needs a colour network "
            "(in_channels=3, one frame)"
        )
    data = load_data(data_dir, settings, net_config.in_channels, net_config.frames)
    if state is not None and state.get("data", {}).get("fingerprint") not in (
        None,
        data.fingerprint,
    ):
        warnings.warn(
            f"resuming {resume}: the images in {data.root} differ from the ones it was trained "
            "on; the result will not match an uninterrupted run",
            stacklevel=2,
        )
    spe = data.steps_per_epoch(settings)
    total = settings.steps if settings.steps is not None else settings.epochs * spe
    stop_at = total if max_steps is None else min(total, max_steps)

    with torch.random.fork_rng(devices=[]), _num_threads(threads):
        torch.manual_seed(settings.seed)
        model = NonLocalDenoiser(net_config)
        if init is not None and state is None:
            warm_start(model, init)
        optimizer = torch.optim.Adam(
            model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        # The data generator lives on the training device, so that patches
        # and noise are drawn there (on CPU: the same draws as always).
        gen = torch.Generator(device=dev).manual_seed(settings.seed)
        run = Run(
            settings, net_config, data, model, optimizer, None, gen, dev, out_path, total, spe
        )
        # A time budget's schedule reads the run's clock.
        run.scheduler = scheduler = make_scheduler(
            optimizer,
            settings.schedule,
            total,
            time_fraction=run.time_fraction if settings.time_budget is not None else None,
        )
        if state is not None:
            run.step, run.epoch, run.history, run.wall = restore(
                state, resume, device, model, optimizer, scheduler, gen
            )
            if settings.time_budget is not None and (
                state.get("complete") or run.wall >= settings.time_budget
            ):
                run.total = stop_at = run.step  # its time budget was spent: complete
        model.to(dev)
        # optimizer state follows the parameters' device
        for st in optimizer.state.values():
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and k != "step":
                    st[k] = v.to(dev)
        with _fast_gpu_kernels(dev):
            fit(
                run,
                stop_at=stop_at,
                max_time=max_time,
                progress=progress,
                callback=callback,
                saved_path=resume,
            )

    return TrainResult(
        out=out_path,
        history=run.history,
        step=run.step,
        total_steps=run.total,
        completed=run.step >= run.total,
        config=net_config,
        settings=settings,
        parameters=model.num_parameters(),
        train_images=len(data.train_images),
        val_images=len(data.val_pairs),
    )
