"""``nlmeans explain``: which pixels the denoised value of one pixel averages, as a picture."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import handle_errors, note, parse_pair
from ._options import ForceOption, PatchSizeOption, unit_scale


def _parse_at(text: str) -> tuple[int, int]:
    x, y = parse_pair(text, "--at", kind=int)
    return x, y


@handle_errors
def explain(
    image: Annotated[Path, typer.Argument(metavar="IMAGE", help="Image file.", show_default=False)],
    at: Annotated[
        str, typer.Option("--at", help="Pixel X,Y (column, row; 0-based).", show_default=False)
    ],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="Picture to write. (default: <stem>_explain_x<X>_y<Y>.png next to IMAGE)",
            show_default=False,
        ),
    ] = None,
    h: Annotated[
        Optional[float],
        typer.Option(
            "--h",
            callback=unit_scale("--h"),
            help="Filtering strength on the [0, 1] scale (default: automatic).",
            show_default=False,
        ),
    ] = None,
    sigma: Annotated[
        Optional[float],
        typer.Option(
            "--sigma",
            callback=unit_scale("--sigma"),
            help="Noise level on the [0, 1] scale (default: estimated).",
            show_default=False,
        ),
    ] = None,
    patch_size: PatchSizeOption = None,
    patch_distance: Annotated[
        Optional[int],
        typer.Option(
            "--patch-distance", "-r", help="Search radius (default: automatic).", show_default=False
        ),
    ] = None,
    neural: Annotated[
        bool,
        typer.Option(
            "--neural/--no-neural",
            help="Add the neural block's attention panel when the model is available.",
        ),
    ] = True,
    weights: Annotated[
        Optional[Path],
        typer.Option(
            "--weights",
            help="Neural weights (.safetensors) or checkpoint to explain instead of the shipped model.",
            show_default=False,
        ),
    ] = None,
    force: ForceOption = False,
) -> None:
    """Show which pixels the denoised value of one pixel averages.

    Draws the image with the search window marked, the window enlarged, the NLM weights (method fast) over the window, and the attention of the neural denoiser's first non-local block for the same pixel.
    """
    x, y = _parse_at(at)
    if weights is not None and weights.is_dir():
        raise typer.BadParameter(
            f"{weights}: is a folder, not a weights file", param_hint="--weights"
        )
    if weights is not None and not weights.is_file():
        raise typer.BadParameter(f"{weights}: no such file", param_hint="--weights")
    import numpy as np

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
        color,
        (y, x),
        h=h,
        sigma=sigma,
        patch_size=patch_size,
        patch_distance=patch_distance,
        channel_axis=axis,
        neural=neural,
        neural_weights=weights,
    )
    dst = out if out is not None else image.with_name(f"{image.stem}_explain_x{x}_y{y}.png")
    write_image(dst, result.picture, force=force, protect=(image,))
    for text in result.notes:
        note(text)
    p = result.parameters
    d = p["patch_distance"]
    fmt = lambda v: " ".join(f"{float(c):.4f}" for c in np.atleast_1d(v))  # noqa: E731
    typer.echo(
        f"pixel x={x} y={y}: value {fmt(result.value)} -> NLM estimate {fmt(result.estimate)} "
        f"(h {p['h']:.5f}, sigma {p['sigma']:.5f}, patch {p['patch_size']}, search {2 * d + 1}x{2 * d + 1})"
    )
    typer.echo(f"effective neighbours: {result.effective_neighbours:.1f} of {result.window_pixels}")
    top = result.top_neighbours(5)
    shared = result.sharing_largest_weight
    typer.echo(
        "largest weights (x, y, weight): "
        + ", ".join(f"({c}, {r}, {w:.4f})" for r, c, w in top)
        + (
            f" ({shared} pixels share the largest weight: patches within the noise)"
            if shared > len(top)
            else ""
        )
    )
    typer.echo(f"picture: {dst}")
