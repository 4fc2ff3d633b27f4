"""``nlmeans train-neural``: train the non-local neural denoiser on clean images."""

import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import error, handle_errors, note, parse_pair, warn
from ._options import ThreadsOption

# Names a checkpoint must not take: an image (it could be, or become, one of
# the training images) or the formats of the exported weights.
_NOT_CHECKPOINT_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".safetensors", ".json")


def _checkpoint_data(resume: Path) -> Optional[Path]:
    """The folder of training images a checkpoint was trained on (None when it
    does not say: the training reports the file)."""
    try:
        from nlmeans.neural.checkpoint import load_checkpoint

        stored = (load_checkpoint(resume).get("data") or {}).get("dir")
    except (ImportError, ValueError, OSError):
        return None
    if not stored:
        return None
    if not Path(stored).is_dir():
        raise typer.BadParameter(
            f"{resume} was trained on {stored}, which is not a folder here; give --data DIR",
            param_hint="--data",
        )
    return Path(stored)


def _default_train_data() -> Optional[Path]:
    here = Path(__file__).resolve().parent.parent  # the project root for a source checkout
    for candidate in (
        Path("../shared/data/train400"),
        here.parent / "shared" / "data" / "train400",
    ):
        if candidate.is_dir():
            return candidate
    return None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|m|min|h)?\s*$")
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def _check_output_place(path: Path, option: str) -> None:
    """A file can be written at ``path``: not a folder, in a folder that exists."""
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a folder; give a file name", param_hint=option)
    parent = path.absolute().parent
    if not parent.is_dir():
        raise typer.BadParameter(
            f"the folder of {path} does not exist (or is not a folder)", param_hint=option
        )


def _parse_duration(text: Optional[str], option: str = "--max-time") -> Optional[float]:
    """``"90"``, ``"90s"``, ``"40m"``, ``"1.5h"`` -> seconds."""
    if text is None:
        return None
    found = _DURATION.match(text)
    seconds = float(found.group(1)) * _UNIT_SECONDS[found.group(2)] if found else 0.0
    if seconds <= 0:
        raise typer.BadParameter(
            f"expected a positive duration such as 90s, 40m or 1.5h, got {text!r}",
            param_hint=option,
        )
    return seconds


@handle_errors
def train_neural(
    data: Annotated[
        Optional[Path],
        typer.Option(
            "--data",
            help="Folder of clean training images (default: ../shared/data/train400 if it exists).",
        ),
    ] = None,
    sigma: Annotated[
        str,
        typer.Option(
            "--sigma",
            help="Noise range MIN,MAX in 8-bit gray levels, drawn per patch (one number: fixed).",
        ),
    ] = "0,55",
    noise: Annotated[
        str,
        typer.Option(
            "--noise",
            help="gaussian, poisson-gaussian (Poisson at a random peak, plus the Gaussian "
            "part) or mixture (per patch: Gaussian, or variance a*y+b per channel with the "
            "noise level going from one --sigma value at black to another at white) or "
            "camera (colour networks: per patch, a simulated camera's noise -- raw "
            "Poisson-Gaussian, demosaicking, colour processing, noise reduction, JPEG -- "
            "or the mixture; see --camera-fraction).",
        ),
    ] = "gaussian",
    camera_fraction: Annotated[
        float,
        typer.Option(
            "--camera-fraction",
            min=0.0,
            max=1.0,
            help="With --noise camera: the share of patches with camera noise (the others "
            "get the mixture).",
        ),
    ] = 0.5,
    channels: Annotated[
        int,
        typer.Option(
            "--channels",
            min=1,
            max=3,
            help="1: gray network (colour images converted to gray); "
            "3: colour network (RGB in, RGB out).",
        ),
    ] = 1,
    noise_map: Annotated[
        bool,
        typer.Option(
            "--noise-map",
            help="Non-blind network: give it the true per-pixel noise level as extra input "
            "channels (FFDNet style).",
        ),
    ] = False,
    frames: Annotated[
        int,
        typer.Option(
            "--frames",
            min=1,
            help="Spacetime network: take this many consecutive frames (odd) and denoise the "
            "middle one; trained on clips with motion made from the training images (gray).",
        ),
    ] = 1,
    early_fusion: Annotated[
        bool,
        typer.Option(
            "--early-fusion",
            help="With --frames: the middle frame's first layer also sees the other frames' "
            "pixels (their weights start at zero).",
        ),
    ] = False,
    clip_motions: Annotated[
        Optional[str],
        typer.Option(
            "--clip-motions",
            help="With --frames: the clips made from each training image, one per motion "
            "(comma-separated: static, pan, zoom, objects, mixed; default "
            "mixed,static,pan,objects,zoom,mixed,static).",
            show_default=False,
        ),
    ] = None,
    clip_ends: Annotated[
        float,
        typer.Option(
            "--clip-ends",
            min=0.0,
            max=1.0,
            help="With --frames: the share of training windows cut by a clip's start or end "
            "(the end frame repeated beyond it, as denoise fills a clip's first and last frames).",
        ),
    ] = 0.2,
    features: Annotated[
        int, typer.Option("--features", min=1, help="Feature channels of the hidden layers.")
    ] = 48,
    depth: Annotated[int, typer.Option("--depth", min=3, help="Number of 3x3 convolutions.")] = 12,
    steps: Annotated[
        Optional[int],
        typer.Option(
            "--steps", min=1, help="Total optimizer steps (overrides --epochs).", show_default=False
        ),
    ] = None,
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, help="Epochs (when --steps is not given).")
    ] = 20,
    steps_per_epoch: Annotated[
        Optional[int],
        typer.Option(
            "--steps-per-epoch",
            min=1,
            help="Steps between validations and checkpoints (default: the training images' "
            "non-overlapping patches / batch size).",
            show_default=False,
        ),
    ] = None,
    time_budget: Annotated[
        Optional[str],
        typer.Option(
            "--time-budget",
            help="Train for this long, e.g. 7m: the cosine schedule runs over the time, and "
            "the run is complete when it is spent (--steps / --epochs only bound it). The "
            "step count then depends on the machine's speed.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Patches per step.")] = 64,
    patch_size: Annotated[
        int, typer.Option("--patch-size", min=2, help="Training patch side in pixels.")
    ] = 40,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Adam learning rate.")] = 1e-3,
    grad_clip: Annotated[
        Optional[float],
        typer.Option(
            "--grad-clip",
            help="Clip the gradient's norm to this value (guards against loss spikes at high "
            "learning rates).",
            show_default=False,
        ),
    ] = None,
    max_steps: Annotated[
        Optional[int],
        typer.Option(
            "--max-steps",
            min=1,
            help="Stop this run at this global step (resume later); the schedule is unchanged.",
            show_default=False,
        ),
    ] = None,
    max_time: Annotated[
        Optional[str],
        typer.Option(
            "--max-time",
            help="Stop this run after this much training time, e.g. 40m or 2h (checkpoint "
            "written; resume later); the schedule is unchanged.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="Checkpoint file, rewritten after every epoch. "
            "(default: neural_denoiser.pt, or the --resume file)",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        Optional[Path],
        typer.Option(
            "--resume",
            help="Continue from this checkpoint (its settings are used, and its training "
            "images unless --data is given).",
        ),
    ] = None,
    init_from: Annotated[
        Optional[Path],
        typer.Option(
            "--init-from",
            exists=True,
            dir_okay=False,
            help="Start from these weights (.safetensors or checkpoint) instead of random ones; "
            "a blind model can start a network that takes --noise-map (its map inputs start at 0).",
            show_default=False,
        ),
    ] = None,
    export: Annotated[
        Optional[Path],
        typer.Option(
            "--export",
            help="Also write inference weights (.safetensors) here when done.",
            show_default=False,
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.")] = "cpu",
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Seed of the weights and of every random draw.")
    ] = 0,
    threads: ThreadsOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", "-f", help="Overwrite an existing --out checkpoint (other than --resume)."
        ),
    ] = False,
) -> None:
    """Train the non-local neural denoiser (nlmeans.neural.train) on clean images."""
    if data is None and resume is not None and resume.is_file():
        data = _checkpoint_data(resume)  # a resumed run goes on with its own images
    if data is None:
        data = _default_train_data()
        if data is None:
            raise typer.BadParameter(
                "no default training folder found; give --data DIR", param_hint="--data"
            )
    if not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="--data")
    parts = [p for p in sigma.split(",") if p.strip()]
    if len(parts) == 1:
        try:
            value = float(parts[0])
        except ValueError:
            raise typer.BadParameter(
                f"expected MIN,MAX gray levels, got {sigma!r}", param_hint="--sigma"
            ) from None
        sigma_range = (value, value)
    else:
        sigma_range = parse_pair(sigma, "--sigma")
    if not (0 <= sigma_range[0] <= sigma_range[1] <= 255):
        raise typer.BadParameter(
            f"expected 0 <= MIN <= MAX <= 255 gray levels, got {sigma!r}", param_hint="--sigma"
        )
    if channels == 2:
        raise typer.BadParameter("expected 1 (gray) or 3 (colour)", param_hint="--channels")
    if frames % 2 == 0:
        raise typer.BadParameter(
            f"expected an odd number of frames (the middle one and as many on each side), "
            f"got {frames}",
            param_hint="--frames",
        )
    motions = None
    if clip_motions is not None:
        from nlmeans.synthetic import MOTIONS

        motions = tuple(m.strip() for m in clip_motions.split(",") if m.strip())
        if not motions or any(m not in MOTIONS for m in motions):
            raise typer.BadParameter(
                f"expected motions among {', '.join(MOTIONS)}, got {clip_motions!r}",
                param_hint="--clip-motions",
            )
    if camera_fraction != 0.5 and noise != "camera":
        raise typer.BadParameter("applies only to --noise camera", param_hint="--camera-fraction")
    if noise == "camera" and (channels != 3 or frames > 1):
        raise typer.BadParameter(
            "camera noise is a colour camera's: it needs --channels 3 (one frame)",
            param_hint="--noise",
        )
    if early_fusion and frames == 1:
        raise typer.BadParameter("--early-fusion needs --frames 3 or more", param_hint="--frames")
    if frames > 1 and channels != 1:
        raise typer.BadParameter(
            "spacetime networks are gray (--channels 1); colour clips are denoised one "
            "channel at a time",
            param_hint="--frames",
        )
    if grad_clip is not None and not grad_clip > 0:
        raise typer.BadParameter(
            f"expected a positive number, got {grad_clip}", param_hint="--grad-clip"
        )
    seconds = _parse_duration(max_time)
    budget = _parse_duration(time_budget, "--time-budget")
    if resume is not None and resume.is_dir():
        raise typer.BadParameter(
            f"{resume}: is a folder, not a checkpoint file", param_hint="--resume"
        )
    if resume is not None and not resume.is_file():
        raise typer.BadParameter(f"{resume}: no such file", param_hint="--resume")
    if resume is not None and init_from is not None:
        raise typer.BadParameter(
            "a resumed run goes on from its checkpoint's weights; --init-from starts a new "
            "run (give one of the two)",
            param_hint="--init-from",
        )
    target = (
        out if out is not None else (resume if resume is not None else Path("neural_denoiser.pt"))
    )
    same_as_resume = resume is not None and target.resolve() == resume.resolve()
    if target.exists() and not same_as_resume and not force:
        raise typer.BadParameter(
            f"{target} already exists (use --force to overwrite)", param_hint="--out"
        )
    if export is not None and export.exists() and not force:
        raise typer.BadParameter(
            f"{export} already exists (use --force to overwrite)", param_hint="--export"
        )
    # Where the results go is checked now, not after the training.
    if target.suffix.lower() in _NOT_CHECKPOINT_SUFFIXES:
        raise typer.BadParameter(
            f"{target}: the checkpoint is a torch file, name it .pt ({target.suffix} would "
            "pass for an image or weights file; --export writes the .safetensors weights)",
            param_hint="--out",
        )
    _check_output_place(target, "--out")
    if export is not None:
        _check_output_place(export, "--export")
        if export.absolute() == target.absolute():
            raise typer.BadParameter(
                f"{export} is also the checkpoint (--out); the inference weights need their own name",
                param_hint="--export",
            )
        if export.suffix.lower() != ".safetensors":
            raise typer.BadParameter(
                f"{export}: the inference weights are safetensors, name them .safetensors",
                param_hint="--export",
            )
        sidecar = export.with_suffix(".json")  # export_weights writes the config beside them
        if sidecar.absolute() == target.absolute() or (sidecar.exists() and not force):
            raise typer.BadParameter(
                f"{sidecar} (the weights' config, written beside {export.name}) "
                + (
                    "is the checkpoint"
                    if sidecar.absolute() == target.absolute()
                    else "already exists (use --force to overwrite)"
                ),
                param_hint="--export",
            )

    import warnings

    try:
        from nlmeans.neural import DenoiserConfig, TrainingInterrupted, export_weights, train
    except ImportError as exc:
        raise ValueError(f"train-neural needs torch: {exc}") from None
    architecture = dict(
        in_channels=channels,
        noise_level_input=noise_map,
        channels=features,
        depth=depth,
        frames=frames,
        early_fusion=early_fusion,
    )
    # A resumed run keeps its checkpoint's network unless one was asked for.
    config = (
        None
        if resume is not None and DenoiserConfig(**architecture) == DenoiserConfig()
        else DenoiserConfig(**architecture)
    )

    def show_warning(message, category, filename, lineno, file=None, line=None):
        warn(str(message))

    old_show = warnings.showwarning
    warnings.showwarning = show_warning
    try:
        result = train(
            data,
            out=out,
            sigma=sigma_range,
            noise=noise,
            camera_fraction=camera_fraction,
            epochs=epochs,
            steps=steps,
            steps_per_epoch=steps_per_epoch,
            time_budget=budget,
            max_steps=max_steps,
            max_time=seconds,
            config=config,
            batch_size=batch_size,
            patch_size=patch_size,
            lr=lr,
            grad_clip=grad_clip,
            seed=seed,
            clip_motions=motions,
            clip_ends=clip_ends,
            resume=resume,
            init=init_from,
            device=device,
            threads=threads,
            progress=True,
        )
    except TrainingInterrupted as exc:
        note(str(exc))
        raise typer.Exit(130) from None
    except RuntimeError as exc:  # e.g. CUDA requested but not available
        error(str(exc))
        raise typer.Exit(1) from None
    finally:
        warnings.showwarning = old_show

    psnr = result.final_val_psnr
    state = "done" if result.completed else "stopped early (resume to continue)"
    typer.echo(
        f"{result.out}: step {result.step}/{result.total_steps} ({state}), "
        f"{result.parameters:,} parameters, "
        f"{result.train_images} training / {result.val_images} validation images"
        + (
            f", validation PSNR {psnr:.2f} dB at sigma {result.settings.val_sigma:g}"
            if psnr is not None
            else ""
        )
    )
    if export is not None:
        if export.exists() and force:
            export.unlink()
        path = export_weights(result.out, export)
        typer.echo(f"weights: {path}")
