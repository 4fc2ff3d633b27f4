"""``nlmeans train-neural``: train the blind non-local neural denoiser on clean images."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import error, handle_errors, note, parse_pair, warn
from ._options import ThreadsOption


def _default_train_data() -> Optional[Path]:
    here = Path(__file__).resolve().parent.parent  # the project root for a source checkout
    for candidate in (
        Path("../shared/data/train400"),
        here.parent / "shared" / "data" / "train400",
    ):
        if candidate.is_dir():
            return candidate
    return None


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
            help="gaussian or poisson-gaussian (Poisson at a random peak, plus the Gaussian part).",
        ),
    ] = "gaussian",
    steps: Annotated[
        Optional[int],
        typer.Option(
            "--steps", min=1, help="Total optimizer steps (overrides --epochs).", show_default=False
        ),
    ] = None,
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, help="Epochs (when --steps is not given).")
    ] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Patches per step.")] = 64,
    patch_size: Annotated[
        int, typer.Option("--patch-size", min=2, help="Training patch side in pixels.")
    ] = 40,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Adam learning rate.")] = 1e-3,
    max_steps: Annotated[
        Optional[int],
        typer.Option(
            "--max-steps",
            min=1,
            help="Stop this run at this global step (resume later); the schedule is unchanged.",
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
        typer.Option("--resume", help="Continue from this checkpoint (its settings are used)."),
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
    """Train the blind non-local neural denoiser (nlmeans.neural.train) on clean images."""
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
    if resume is not None and resume.is_dir():
        raise typer.BadParameter(
            f"{resume}: is a folder, not a checkpoint file", param_hint="--resume"
        )
    if resume is not None and not resume.is_file():
        raise typer.BadParameter(f"{resume}: no such file", param_hint="--resume")
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

    import warnings

    try:
        from nlmeans.neural import TrainingInterrupted, export_weights, train
    except ImportError as exc:
        raise ValueError(f"train-neural needs torch: {exc}") from None

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
            epochs=epochs,
            steps=steps,
            max_steps=max_steps,
            batch_size=batch_size,
            patch_size=patch_size,
            lr=lr,
            seed=seed,
            resume=resume,
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
