"""``nlmeans estimate-noise``: the noise model of images, optionally plotted."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import describe_noise, expand_inputs, for_each_file, handle_errors, same_file
from ._options import ImagesArgument


class NoiseKind(str, Enum):
    auto = "auto"
    gaussian = "gaussian"
    poisson_gaussian = "poisson-gaussian"


@handle_errors
def estimate_noise(
    images: ImagesArgument,
    model: Annotated[
        NoiseKind,
        typer.Option(
            "--model",
            case_sensitive=False,
            help="Noise model to fit; 'auto' picks Poisson-Gaussian only when the signal dependence is clear.",
        ),
    ] = NoiseKind.auto,
    plot: Annotated[
        Optional[Path],
        typer.Option(
            "--plot",
            help="Plot measured variance against intensity with the fitted line: "
            ".png, .svg or .pdf by suffix (one input only; needs matplotlib).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per line instead of text.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite an existing --plot file.")
    ] = False,
) -> None:
    """Estimate the noise model of images: white Gaussian or Poisson-Gaussian (variance a*y + b).

    Per channel, from smooth places of one image (Foi et al. 2008). Values are printed in gray levels of the file (x255 for 8-bit, x65535 for 16-bit); [bold]--json[/bold] gives a and b on the [0, 1] scale (float files: on their own values), as [bold]nlmeans denoise --noise-params[/bold] takes them.
    """
    files, problems = expand_inputs(images)
    if plot is not None and len(files) + len(problems) != 1:
        raise typer.BadParameter("--plot takes exactly one input image", param_hint="--plot")
    from nlmeans.io import read_image
    from nlmeans.noise import PLOT_FORMATS, noise_level_sets, plot_noise

    if plot is not None:
        if plot.suffix.lower() not in PLOT_FORMATS:
            raise typer.BadParameter(
                f"{plot}: the plot is written as {', '.join(PLOT_FORMATS)} (by suffix)",
                param_hint="--plot",
            )
        if any(same_file(plot, path) for path in files):
            raise typer.BadParameter(f"{plot} is the input image", param_hint="--plot")
        if plot.exists() and not force:
            raise typer.BadParameter(
                f"{plot} already exists (use --force to overwrite)", param_hint="--plot"
            )

    def work(path: Path) -> None:
        image = read_image(path)
        color, _alpha = image.split_alpha()
        fitted, level_sets = noise_level_sets(
            color, channel_axis=-1 if color.ndim == 3 else None, model=model.value
        )
        value_range = (float(color.min()), float(color.max()))
        # The estimate first: a plot that cannot be written does not hide it.
        if as_json:
            typer.echo(json.dumps({"file": str(path), **fitted.as_dict()}))
        else:
            typer.echo(f"{path}: {describe_noise(fitted, image.max_value, value_range)}")
        if plot is not None:
            plot_noise(
                fitted,
                level_sets,
                plot,
                max_value=image.max_value,
                title=f"{Path(path).name}: {fitted.kind}",
                force=force,
                protect=(path,),
            )
            if not as_json:
                typer.echo(f"plot: {plot}")

    for_each_file(files, problems, work)
