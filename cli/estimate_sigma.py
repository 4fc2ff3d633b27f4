"""``nlmeans estimate-sigma``: the Gaussian noise level (wavelet MAD) of images."""

from pathlib import Path

import typer

from ._common import expand_inputs, for_each_file, handle_errors
from ._options import ImagesArgument


@handle_errors
def estimate_sigma(images: ImagesArgument) -> None:
    """Estimate the Gaussian noise level (wavelet MAD) of images.

    Prints sigma on the [0, 1] scale and in gray levels (x255 for 8-bit, x65535 for 16-bit files). When the noise is spatially correlated (camera photographs: demosaicking, JPEG), also the stronger sigma that denoise uses, read at the 2x2 scale.
    """
    files, problems = expand_inputs(images)
    import nlmeans
    from nlmeans.io import read_image

    def work(path: Path) -> None:
        image = read_image(path)
        color, _alpha = image.split_alpha()
        level = nlmeans.estimate_noise_level(color, channel_axis=-1 if color.ndim == 3 else None)
        top = image.max_value
        # A float image on a scale of its own (photon counts, 0-1000): no
        # 8-bit equivalent means anything there.
        own_scale = top == 1 and float(color.max()) > 1.0

        def scale(value: float) -> str:
            if own_scale:
                return "float image on its own scale"
            if top == 1:
                return f"{value * 255:.2f}/255 if it were 8-bit (float image)"
            return f"{value * top:.2f}/{top:g} gray levels"

        value = level.white_sigma
        line = f"{path}: sigma = {value:.6f} ({scale(value)})"
        if level.correlated > 0:
            line += (
                f"; correlated noise ({level.correlated:.0%}): denoise uses sigma = "
                f"{level.sigma:.6f} ({scale(level.sigma)}), read at the 2x2 scale"
            )
        typer.echo(line)

    for_each_file(files, problems, work)
