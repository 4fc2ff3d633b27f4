"""``nlmeans estimate-sigma``: the Gaussian noise level (wavelet MAD) of images."""

from pathlib import Path

import typer

from ._common import expand_inputs, for_each_file, handle_errors
from ._options import ImagesArgument


@handle_errors
def estimate_sigma(images: ImagesArgument) -> None:
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
