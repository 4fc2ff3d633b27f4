"""``nlmeans``: denoise images, compare denoisers, train the neural model, explain a pixel.

The application, its ``--version`` option and the list of commands. Each
command lives in a module of its own (``denoise``, ``compare``,
``train_neural``, ``estimate_sigma``, ``estimate_noise``, ``explain``); the
option types and checks that several share are in ``_options``, the helpers
(errors, consoles, input lists) in ``_common``.

Every command imports the library inside its function: ``nlmeans --help``
never loads NumPy, Numba or torch. Library errors (bad parameters, unreadable
or unwritable files) are printed as one ``Error: ...`` line on stderr with
exit status 1; Ctrl-C exits with status 130.
"""

import sys
from typing import Annotated, Optional

import typer

from .compare import compare
from .denoise import denoise
from .estimate_noise import estimate_noise
from .estimate_sigma import estimate_sigma
from .explain import explain
from .train_neural import train_neural

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
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Show the version and exit.",
        ),
    ] = False,
) -> None:
    """Non-local means denoising: fast parallel NLM, a non-local neural denoiser,
    benchmarks against scikit-image / OpenCV / BM3D, and per-pixel explanations.

    [bold]--h[/bold] and [bold]--sigma[/bold] of [bold]denoise[/bold] and [bold]explain[/bold] are on the [0, 1] intensity scale (8-bit gray levels divided by 255, 16-bit by 65535); [bold]compare --sigma[/bold] takes 8-bit gray levels, as the published tables do.
    """


# The commands, in the order `nlmeans --help` lists them.
app.command("denoise", no_args_is_help=True)(denoise)
app.command("compare", no_args_is_help=True)(compare)
app.command("train-neural")(train_neural)
app.command("estimate-sigma", no_args_is_help=True)(estimate_sigma)
app.command("estimate-noise", no_args_is_help=True)(estimate_noise)
app.command("explain", no_args_is_help=True)(explain)


def main(argv: Optional[list[str]] = None) -> int:
    """Console-script entry point (``nlmeans``)."""
    try:
        app(args=argv, prog_name="nlmeans")
    except KeyboardInterrupt:  # pragma: no cover
        # A Ctrl-C outside a command (commands exit 130 themselves).
        typer.echo("Interrupted.", err=True)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
