"""``nlmeans``: denoise images, compare denoisers, train the neural model, explain a pixel.

Every command imports the library inside its function: ``nlmeans --help``
never loads NumPy, Numba or torch. Library errors (bad parameters, unreadable
or unwritable files) are printed as one ``Error: ...`` line on stderr with
exit status 1; Ctrl-C exits with status 130.
"""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .compare import compare
from .denoise import denoise
from .estimate_noise import estimate_noise as _estimate_noise_command
from ._common import (
    error,
    expand_inputs,
    for_each_file,
    handle_errors,
    note,
    parse_pair,
    same_file,
    warn,
)
from ._options import ForceOption, ThreadsOption, unit_scale

app = typer.Typer(
    name="nlmeans",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("nlmeans")
        except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
            text = "unknown"
        typer.echo(f"nlmeans {text}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Non-local means denoising: fast parallel NLM, a non-local neural denoiser,
    benchmarks against scikit-image / OpenCV / BM3D, and per-pixel explanations.

    [bold]--h[/bold] and [bold]--sigma[/bold] of [bold]denoise[/bold] and [bold]explain[/bold] are on the [0, 1] intensity scale (8-bit gray levels divided by 255, 16-bit by 65535); [bold]compare --sigma[/bold] takes 8-bit gray levels, as the published tables do.
    """


# --------------------------------------------------------------------------- denoise

app.command("denoise", no_args_is_help=True)(denoise)


# --------------------------------------------------------------------------- compare

app.command("compare", no_args_is_help=True)(compare)


# --------------------------------------------------------------------------- train-neural


def _default_train_data() -> Optional[Path]:
    here = Path(__file__).resolve().parent.parent  # the project root for a source checkout
    for candidate in (Path("../shared/data/train400"), here.parent / "shared" / "data" / "train400"):
        if candidate.is_dir():
            return candidate
    return None


@app.command("train-neural")
@handle_errors
def train_neural(
    data: Annotated[
        Optional[Path],
        typer.Option("--data", help="Folder of clean training images (default: ../shared/data/train400 if it exists)."),
    ] = None,
    sigma: Annotated[
        str, typer.Option("--sigma", help="Noise range MIN,MAX in 8-bit gray levels, drawn per patch (one number: fixed).")
    ] = "0,55",
    noise: Annotated[
        str, typer.Option("--noise", help="gaussian or poisson-gaussian (Poisson at a random peak, plus the Gaussian part).")
    ] = "gaussian",
    steps: Annotated[
        Optional[int], typer.Option("--steps", min=1, help="Total optimizer steps (overrides --epochs).", show_default=False)
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs (when --steps is not given).")] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Patches per step.")] = 64,
    patch_size: Annotated[int, typer.Option("--patch-size", min=2, help="Training patch side in pixels.")] = 40,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Adam learning rate.")] = 1e-3,
    max_steps: Annotated[
        Optional[int],
        typer.Option("--max-steps", min=1, help="Stop this run at this global step (resume later); the schedule is unchanged.", show_default=False),
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Checkpoint file, rewritten after every epoch. (default: neural_denoiser.pt, or the --resume file)", show_default=False)
    ] = None,
    resume: Annotated[
        Optional[Path], typer.Option("--resume", help="Continue from this checkpoint (its settings are used).")
    ] = None,
    export: Annotated[
        Optional[Path],
        typer.Option("--export", help="Also write inference weights (.safetensors) here when done.", show_default=False),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.")] = "cpu",
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the weights and of every random draw.")] = 0,
    threads: ThreadsOption = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing --out checkpoint (other than --resume).")] = False,
) -> None:
    """Train the blind non-local neural denoiser (nlmeans.neural.train) on clean images."""
    if data is None:
        data = _default_train_data()
        if data is None:
            raise typer.BadParameter("no default training folder found; give --data DIR", param_hint="--data")
    if not data.is_dir():
        raise typer.BadParameter(f"{data} is not a folder", param_hint="--data")
    parts = [p for p in sigma.split(",") if p.strip()]
    if len(parts) == 1:
        try:
            value = float(parts[0])
        except ValueError:
            raise typer.BadParameter(f"expected MIN,MAX gray levels, got {sigma!r}", param_hint="--sigma") from None
        sigma_range = (value, value)
    else:
        sigma_range = parse_pair(sigma, "--sigma")
    if not (0 <= sigma_range[0] <= sigma_range[1] <= 255):
        raise typer.BadParameter(
            f"expected 0 <= MIN <= MAX <= 255 gray levels, got {sigma!r}", param_hint="--sigma"
        )
    if resume is not None and resume.is_dir():
        raise typer.BadParameter(f"{resume}: is a folder, not a checkpoint file", param_hint="--resume")
    if resume is not None and not resume.is_file():
        raise typer.BadParameter(f"{resume}: no such file", param_hint="--resume")
    target = out if out is not None else (resume if resume is not None else Path("neural_denoiser.pt"))
    same_as_resume = resume is not None and target.resolve() == resume.resolve()
    if target.exists() and not same_as_resume and not force:
        raise typer.BadParameter(f"{target} already exists (use --force to overwrite)", param_hint="--out")
    if export is not None and export.exists() and not force:
        raise typer.BadParameter(f"{export} already exists (use --force to overwrite)", param_hint="--export")

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
            data, out=out, sigma=sigma_range, noise=noise, epochs=epochs, steps=steps, max_steps=max_steps,
            batch_size=batch_size, patch_size=patch_size, lr=lr, seed=seed, resume=resume,
            device=device, threads=threads, progress=True,
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
        f"{result.parameters:,} parameters, {result.train_images} training / {result.val_images} validation images"
        + (f", validation PSNR {psnr:.2f} dB at sigma {result.settings.val_sigma:g}" if psnr is not None else "")
    )
    if export is not None:
        if export.exists() and force:
            export.unlink()
        path = export_weights(result.out, export)
        typer.echo(f"weights: {path}")


# --------------------------------------------------------------------------- estimate-sigma


@app.command("estimate-sigma", no_args_is_help=True)
@handle_errors
def estimate_sigma(
    images: Annotated[
        list[str], typer.Argument(metavar="IMAGE", help="Image files, folders or glob patterns.", show_default=False)
    ],
) -> None:
    """Estimate the Gaussian noise level (wavelet MAD) of images.

    Prints sigma on the [0, 1] scale and in gray levels (x255 for 8-bit, x65535 for 16-bit files).
    """
    files, problems = expand_inputs(images)
    import nlmeans
    from nlmeans.io import read_image

    def work(path: Path) -> None:
        image = read_image(path)
        color, _alpha = image.split_alpha()
        value = nlmeans.estimate_sigma(color, channel_axis=-1 if color.ndim == 3 else None)
        top = image.max_value
        if top == 1:
            scale = f"{value * 255:.2f}/255 if it were 8-bit (float image)"
        else:
            scale = f"{value * top:.2f}/{top:g} gray levels"
        typer.echo(f"{path}: sigma = {value:.6f} ({scale})")

    for_each_file(files, problems, work)


# --------------------------------------------------------------------------- estimate-noise

app.command("estimate-noise", no_args_is_help=True)(_estimate_noise_command)


# --------------------------------------------------------------------------- explain


def _parse_at(text: str) -> tuple[int, int]:
    x, y = parse_pair(text, "--at", kind=int)
    return x, y


@app.command(no_args_is_help=True)
@handle_errors
def explain(
    image: Annotated[Path, typer.Argument(metavar="IMAGE", help="Image file.", show_default=False)],
    at: Annotated[str, typer.Option("--at", help="Pixel X,Y (column, row; 0-based).", show_default=False)],
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="Picture to write. (default: <stem>_explain_x<X>_y<Y>.png next to IMAGE)", show_default=False),
    ] = None,
    h: Annotated[Optional[float], typer.Option("--h", callback=unit_scale("--h"), help="Filtering strength on the [0, 1] scale (default: automatic).", show_default=False)] = None,
    sigma: Annotated[Optional[float], typer.Option("--sigma", callback=unit_scale("--sigma"), help="Noise level on the [0, 1] scale (default: estimated).", show_default=False)] = None,
    patch_size: Annotated[Optional[int], typer.Option("--patch-size", "-p", help="Odd patch width (default: automatic).", show_default=False)] = None,
    patch_distance: Annotated[Optional[int], typer.Option("--patch-distance", "-r", help="Search radius (default: automatic).", show_default=False)] = None,
    neural: Annotated[bool, typer.Option("--neural/--no-neural", help="Add the neural block's attention panel when the model is available.")] = True,
    weights: Annotated[
        Optional[Path],
        typer.Option("--weights", help="Neural weights (.safetensors) or checkpoint to explain instead of the shipped model.", show_default=False),
    ] = None,
    force: ForceOption = False,
) -> None:
    """Show which pixels the denoised value of one pixel averages.

    Draws the image with the search window marked, the window enlarged, the NLM weights (method fast) over the window, and the attention of the neural denoiser's first non-local block for the same pixel.
    """
    x, y = _parse_at(at)
    if weights is not None and weights.is_dir():
        raise typer.BadParameter(f"{weights}: is a folder, not a weights file", param_hint="--weights")
    if weights is not None and not weights.is_file():
        raise typer.BadParameter(f"{weights}: no such file", param_hint="--weights")
    from nlmeans.explain import explain_pixel
    from nlmeans.io import read_image, write_image

    picture = read_image(image)
    if not (0 <= x < picture.width and 0 <= y < picture.height):
        raise typer.BadParameter(
            f"({x}, {y}) is outside the {picture.width}x{picture.height} image "
            f"(X in 0..{picture.width - 1}, Y in 0..{picture.height - 1})",
            param_hint="--at",
        )
    color, _alpha = picture.split_alpha()
    axis = -1 if color.ndim == 3 else None
    # A refused --weights file raises ValueError naming it: one error line, no picture.
    result = explain_pixel(
        color, (y, x), h=h, sigma=sigma, patch_size=patch_size, patch_distance=patch_distance,
        channel_axis=axis, neural=neural, neural_weights=weights,
    )
    dst = out if out is not None else image.with_name(f"{image.stem}_explain_x{x}_y{y}.png")
    if dst.exists() and same_file(dst, image):
        raise ValueError(f"{dst}: refusing to write onto the input file")
    write_image(dst, result.picture, force=force)
    for text in result.notes:
        note(text)
    p = result.parameters
    d = p["patch_distance"]
    import numpy as np

    from nlmeans.io import to_unit_float

    u = to_unit_float(color)
    window = np.zeros((2 * d + 1, 2 * d + 1) + u.shape[2:])
    r0, r1, c0, c1 = max(0, y - d), min(picture.height, y + d + 1), max(0, x - d), min(picture.width, x + d + 1)
    window[r0 - y + d : r1 - y + d, c0 - x + d : c1 - x + d] = u[r0:r1, c0:c1]
    estimate = np.tensordot(result.weights, window, axes=([0, 1], [0, 1]))
    fmt = lambda v: " ".join(f"{float(c):.4f}" for c in np.atleast_1d(v))  # noqa: E731
    typer.echo(
        f"pixel x={x} y={y}: value {fmt(u[y, x])} -> NLM estimate {fmt(estimate)} "
        f"(h {p['h']:.5f}, sigma {p['sigma']:.5f}, patch {p['patch_size']}, search {2 * d + 1}x{2 * d + 1})"
    )
    typer.echo(f"effective neighbours: {result.effective_neighbours:.1f} of {int(((r1 - r0) * (c1 - c0)))}")
    typer.echo("largest weights (x, y, weight): " + ", ".join(
        f"({c}, {r}, {w:.4f})" for r, c, w in result.top_neighbours(5)
    ))
    typer.echo(f"picture: {dst}")


# --------------------------------------------------------------------------- entry point


def main(argv: Optional[list[str]] = None) -> int:
    """Console-script entry point (``nlmeans``)."""
    try:
        app(args=argv, prog_name="nlmeans")
    except KeyboardInterrupt:  # pragma: no cover - a Ctrl-C outside a command (commands exit 130 themselves)
        typer.echo("Interrupted.", err=True)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
