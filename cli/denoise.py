"""``nlmeans denoise``: denoise image files, keeping their sample type, channels and format."""

import dataclasses
import math
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import (
    InputFiles,
    check_output_is_not_an_input,
    describe_exception,
    describe_noise,
    error,
    expand_inputs,
    handle_errors,
    progress_bar,
    stderr_console,
)
from ._options import ForceOption, PatchSizeOption, ThreadsOption, check_threads_option, unit_scale


class Method(str, Enum):
    fast = "fast"
    exact = "exact"
    patchwise = "patchwise"
    neural = "neural"


class ColorSpace(str, Enum):
    auto = "auto"
    rgb = "rgb"
    opponent = "opponent"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    auto = "auto"


class Noise(str, Enum):
    gaussian = "gaussian"
    white = "white"
    poisson_gaussian = "poisson-gaussian"
    auto = "auto"


def _parse_noise_params(text: Optional[str]) -> Optional[tuple[list[float], list[float]]]:
    """``A,B`` (every channel) or ``A1,B1,A2,B2,...`` (one pair per channel)."""
    if text is None:
        return None
    try:
        if "_" in text:  # float() takes 1_0 for 10
            raise ValueError(text)
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a list of numbers: give A,B or one A,B pair per channel",
            param_hint="--noise-params",
        ) from None
    if len(values) < 2 or len(values) % 2:
        raise typer.BadParameter(
            f"{text!r} has {len(values)} number(s): give A,B or one A,B pair per channel",
            param_hint="--noise-params",
        )
    return values[0::2], values[1::2]


def _check_noise_params_scale(model, src: Path, dtype) -> None:
    """For an integer file, --noise-params are variances on [0, 1]: sigma at
    white (sqrt(a + b)) above 1 means gray-level numbers (estimate-noise's
    text), which would flatten the image. Float files take their own scale."""
    if dtype.kind not in "ui":
        return
    for a, b in zip(model.a, model.b):
        if a + b > 1:
            raise ValueError(
                f"{src}: --noise-params {a:g},{b:g} gives sigma {math.sqrt(a + b):.3g} at white, "
                f"but for {dtype} files a and b are variances on the [0, 1] scale (at most 1); "
                "estimate-noise prints gray levels: take a and b from its --json output"
            )


def _noise_model_option(pairs):
    """The NoiseModel of --noise-params (None without it); a bad value is a usage error."""
    if pairs is None:
        return None
    from nlmeans.noise import NoiseModel

    a, b = pairs
    try:
        return NoiseModel("poisson-gaussian" if any(a) else "gaussian", a, b)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--noise-params") from None


def _output_path(
    src: Path, image_format: str, output: Optional[Path], out_dir: Optional[Path]
) -> Path:
    from nlmeans.io import IMAGE_EXTENSIONS

    if output is not None:
        return output
    suffix = (
        src.suffix
        if src.suffix.lower() in IMAGE_EXTENSIONS
        else {"PNG": ".png", "TIFF": ".tif", "JPEG": ".jpg"}[image_format]
    )
    name = f"{src.stem}_denoised{suffix}"
    return (out_dir / name) if out_dir is not None else src.with_name(name)


def _neural_channels(params, image) -> int:
    """The channel count the network path picks its shipped model by."""
    return image.color_channels if params.color_space == "rgb" else 1


def _neural_takes_map(params, image) -> bool:
    from nlmeans.neural import uses_noise_level

    return uses_noise_level(_neural_channels(params, image))


def _neural_weights(params, image) -> str:
    """The file name of the shipped model the network path runs on ``image``."""
    from nlmeans._denoise import uses_camera_model
    from nlmeans.neural.inference import default_model_path

    channels = _neural_channels(params, image)
    if channels == 3:
        from nlmeans._denoise import constant_channels, neural_gray_per_channel

        constant = getattr(image, "constant_channels", None)  # a big image's, read before
        if constant is None:
            constant = constant_channels(image.split_alpha()[0], -1)
        if neural_gray_per_channel(constant):
            return f"{default_model_path(1).name} on each channel that is not constant"
    return default_model_path(channels, camera=uses_camera_model(params)).name


def _how_sigma(params) -> str:
    if not params.sigma_estimated:
        return "given"
    if params.correlated_noise > 0:
        return f"estimated; correlated noise ({params.correlated_noise:.0%}), read at the 2x2 scale"
    return "estimated"


def _describe_params(params, image) -> str:
    top = image.max_value
    pixels = getattr(image, "pixels", None)  # a big image is not read here
    value_range = None
    if pixels is not None and pixels.dtype.kind == "f":
        colour = image.split_alpha()[0]
        value_range = (float(colour.min()), float(colour.max()))
    if params.noise_model is not None:
        how = "estimated" if params.sigma_estimated else "given"
        colour_text = ""
        if params.color_space == "opponent":
            colour_text = f", opponent colour (h_chroma {params.h_chroma:.5f})"
        return (
            f"method {params.method}, noise {describe_noise(params.noise_model, top, value_range)} "
            f"({how}); "
            + (
                (
                    f"its per-pixel sigma map given to the network ({_neural_weights(params, image)}"
                    + (", the mean over 8 flips and rotations" if params.ensemble else "")
                    + ")"
                    if _neural_takes_map(params, image)
                    else "stabilised by the generalized Anscombe transform"
                )
                if params.method == "neural"
                else f"on the stabilised image: sigma {params.sigma:.5f}, h {params.h:.5f}, "
                f"patch {params.patch_size}x{params.patch_size}, "
                f"search {2 * params.patch_distance + 1}x{2 * params.patch_distance + 1}{colour_text}"
            )
        )
    if params.method == "neural":
        scale = f" ({params.sigma * top:.2f}/{top:g})" if top != 1 else ""
        how = _how_sigma(params)
        use = (
            "the network's noise map"
            if _neural_takes_map(params, image)
            else "the blind model does not use it"
        )
        ensemble = ", the mean over 8 flips and rotations" if params.ensemble else ""
        return (
            f"method neural ({_neural_weights(params, image)}{ensemble}), sigma "
            f"{params.sigma:.5f}{scale} ({how}; {use})"
        )
    scale = f" = {params.sigma * top:.2f}/{top:g}" if top != 1 else ""
    how = _how_sigma(params)
    colour = ""
    if params.color_space == "opponent":
        colour = f", opponent colour (h_chroma {params.h_chroma:.5f})"
    elif params.color_space == "rgb":
        colour = ", joint RGB"
    return (
        f"method {params.method}, sigma {params.sigma:.5f}{scale} ({how}), h {params.h:.5f}, "
        f"patch {params.patch_size}x{params.patch_size}, "
        f"search {2 * params.patch_distance + 1}x{2 * params.patch_distance + 1}{colour}"
    )


@handle_errors
def denoise(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Image files (PNG, TIFF, JPEG), folders (their image files, leaving out *_denoised.*) "
            "or glob patterns.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--output", "-o", help="Output file (one input only); its extension picks the format."
        ),
    ] = None,
    out_dir: Annotated[
        Optional[Path],
        typer.Option("--out-dir", "-d", help="Folder for the outputs (created if needed)."),
    ] = None,
    method: Annotated[
        Method,
        typer.Option(
            "--method",
            "-m",
            case_sensitive=False,
            help="fast: block-sum NLM (the quickest); exact: pixel-wise NLM (IPOL); "
            "patchwise: IPOL's patch-wise aggregation, the best classical quality at a few "
            "times the time of fast; neural: the shipped non-local network.",
        ),
    ] = Method.fast,
    h: Annotated[
        Optional[float],
        typer.Option(
            "--h",
            callback=unit_scale("--h"),
            help="Filtering strength on the [0, 1] scale (default: from sigma). "
            "Values above 1 are refused: divide gray levels by 255 (16-bit: 65535).",
            show_default=False,
        ),
    ] = None,
    sigma: Annotated[
        Optional[float],
        typer.Option(
            "--sigma",
            callback=unit_scale("--sigma"),
            help="Noise standard deviation on the [0, 1] scale (default: estimated). "
            "Values above 1 are refused: 25 gray levels of an 8-bit image is 25/255 = 0.098.",
            show_default=False,
        ),
    ] = None,
    patch_size: PatchSizeOption = None,
    patch_distance: Annotated[
        Optional[int],
        typer.Option(
            "--patch-distance",
            "-r",
            help="Search radius: window of 2r+1 pixels per axis (default: automatic).",
            show_default=False,
        ),
    ] = None,
    color_space: Annotated[
        ColorSpace,
        typer.Option(
            "--color-space",
            case_sensitive=False,
            help="Colour images: 'opponent' weighs luminance and chrominance separately "
            "(chrominance smoothed harder), 'rgb' compares the channels jointly; "
            "'auto' is opponent for RGB images.",
        ),
    ] = ColorSpace.auto,
    h_chroma: Annotated[
        Optional[float],
        typer.Option(
            "--h-chroma",
            callback=unit_scale("--h-chroma"),
            help="Chrominance filtering strength of the opponent path, on the [0, 1] scale "
            "(default: a fitted multiple of h).",
            show_default=False,
        ),
    ] = None,
    noise: Annotated[
        Optional[Noise],
        typer.Option(
            "--noise",
            case_sensitive=False,
            help="Noise model: 'gaussian' (sigma; estimated at a coarser scale when the noise is "
            "spatially correlated, as in camera JPEGs), 'white' (white Gaussian: sigma from the finest "
            "scale only), 'poisson-gaussian' (variance a*y + b, "
            "estimated per channel and stabilised by the generalized Anscombe transform), "
            "or 'auto' (Poisson-Gaussian only when the estimate finds a clear signal dependence). "
            "Default: 'gaussian', except that --method neural then lets its noise map follow a "
            "Poisson-Gaussian fit when 'auto' finds one.",
            show_default=False,
        ),
    ] = None,
    noise_params: Annotated[
        Optional[str],
        typer.Option(
            "--noise-params",
            metavar="A,B",
            help="Give the Poisson-Gaussian model instead of estimating it: variance a*y + b "
            "on the [0, 1] scale, as A,B for every channel or A1,B1,A2,B2,... per channel "
            "(see nlmeans estimate-noise --json). With every A 0 the noise is Gaussian: "
            "neural takes each channel's sigma, the classical methods one, sqrt(mean(B)).",
            show_default=False,
        ),
    ] = None,
    ensemble: Annotated[
        bool,
        typer.Option(
            "--ensemble",
            help="--method neural, images: average the network's outputs over the 8 flips and "
            "rotations of the image (about +0.2 dB on the README's colour images, 8x the time).",
        ),
    ] = False,
    temporal_radius: Annotated[
        Optional[int],
        typer.Option(
            "--temporal-radius",
            "-k",
            min=0,
            help="Sequences: search over 2k+1 frames (default: automatic).",
            show_default=False,
        ),
    ] = None,
    lossless: Annotated[
        bool,
        typer.Option(
            "--lossless", help="Sequences: write FFV1 video (.mkv) instead of the input's codec."
        ),
    ] = False,
    sequence: Annotated[
        bool,
        typer.Option("--sequence", help="Denoise each input folder as the frames of one sequence."),
    ] = False,
    threads: ThreadsOption = None,
    device: Annotated[
        Device,
        typer.Option(
            "--device",
            case_sensitive=False,
            help="Where to compute: 'cuda' runs the classical methods on CUDA kernels "
            '(pip install "nlmeans\\[cuda]") and the network with torch on the GPU; '
            "'auto' takes the GPU when one is usable.",
        ),
    ] = Device.cpu,
    force: ForceOption = False,
    chunk_size: Annotated[
        Optional[int],
        typer.Option(
            "--chunk-size",
            min=1,
            help="Images larger than memory: denoise in chunks of this many pixels per axis "
            "(default 2048, volumes 128) and write -o name.zarr, name.ome.zarr or name.tif (BigTIFF).",
            rich_help_panel="Images larger than memory",
            show_default=False,
        ),
    ] = None,
    memory: Annotated[
        Optional[str],
        typer.Option(
            "--memory",
            help="Choose the chunk size for this much working memory, e.g. 2GB.",
            rich_help_panel="Images larger than memory",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        Optional[int],
        typer.Option(
            "--workers",
            help="Run the chunks on a local Dask cluster of this many worker processes.",
            rich_help_panel="Images larger than memory",
            show_default=False,
        ),
    ] = None,
    scheduler: Annotated[
        Optional[str],
        typer.Option(
            "--scheduler",
            help="Run the chunks on a running dask.distributed cluster, e.g. tcp://host:8786.",
            rich_help_panel="Images larger than memory",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Finish an interrupted run: only the chunks not yet written are computed.",
            rich_help_panel="Images larger than memory",
        ),
    ] = False,
) -> None:
    """Denoise images; outputs keep the sample type, channels and format.

    The output of [bold]photo.png[/bold] is [bold]photo_denoised.png[/bold] next to it (or in [bold]--out-dir[/bold]). An alpha channel is passed through untouched. Existing files are not overwritten without [bold]--force[/bold], and the input never is. With several inputs a failing file is reported and the others are still processed (exit status 1 if any failed).

    A file is read as what its content is (a JPEG named .png is read as JPEG); the output is written in the format its name says.

    Videos (.mp4, .mkv, .avi, .mov), multi-page TIFF stacks (an ImageJ TZYX hyperstack: volumes over time, 3-D patches) and, with [bold]--sequence[/bold], folders of frames are denoised as sequences: each frame's search window spans [bold]--temporal-radius[/bold] frames before and after it ([bold]--method neural[/bold]: the spacetime network, 2 frames on each side). Video comes out in the input's codec at high quality (or FFV1 with [bold]--lossless[/bold]), with its frame rate and frame count. On the README's test clips [bold]--method patchwise[/bold] gave the best PSNR and the least flicker, at about 5x the time of [bold]fast[/bold].
    """
    if output is not None and out_dir is not None:
        raise typer.BadParameter(
            "give either --output or --out-dir, not both", param_hint="--output"
        )
    from . import _bigdata

    if ensemble and method is not Method.neural:
        raise typer.BadParameter(
            "--ensemble applies to --method neural (the classical methods give the same result "
            "for every flip and rotation)",
            param_hint="--ensemble",
        )
    if _bigdata.uses_big_data(inputs, output, chunk_size, memory, workers, scheduler, resume):
        return _denoise_big(**locals())
    from . import _video

    # Videos and TIFF stacks go down the sequence path, still images down the
    # image path, in one batch; --sequence makes every input a sequence
    # (folders: frames).
    if sequence:
        sequences, problems = _video.sequence_inputs(inputs)
        files = []
    else:
        found, problems = expand_inputs(inputs, skip_suffix="_denoised", videos=True)
        sequences, files = [], []
        for path in found:
            (sequences if _video.is_sequence_input(str(path), folders=False) else files).append(
                path
            )
    total = len(sequences) + len(files) + len(problems)
    if output is not None and total != 1:
        raise typer.BadParameter(
            f"--output takes exactly one input, got {total}; use --out-dir for several",
            param_hint="--output",
        )
    if not sequences and (temporal_radius is not None or lossless):
        raise typer.BadParameter(
            "--temporal-radius and --lossless apply to sequences (videos, TIFF stacks, "
            "folders with --sequence)"
        )
    sequence_failures = 0
    claimed: dict[str, Path] = {}  # output -> input, across sequences and images
    # With --force an output that is another input would replace it before it is read.
    every_input = InputFiles([*files, *(Path(p) for p in sequences)])
    refusal = None
    if sequences and (noise not in (None, Noise.gaussian, Noise.white) or noise_params is not None):
        refusal = "sequences take Gaussian noise (the Poisson-Gaussian path is for images only)"
    elif sequences and device is Device.cuda:
        refusal = "sequences run on the CPU: drop --device cuda"
    elif sequences and ensemble:
        refusal = "--ensemble applies to images; sequences use the spacetime network without it"
    if refusal and not files:
        raise typer.BadParameter(refusal)
    if refusal:  # a batch with images: the images go on, each sequence is a failure
        for item in sequences:
            error(f"{item}: {refusal}")
        sequence_failures, sequences = len(sequences), []
    if sequences:
        check_threads_option(threads)
        if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
            raise typer.BadParameter(
                f"{out_dir} exists and is not a folder", param_hint="--out-dir"
            )
        options = dict(
            method=method.value,
            h=h,
            sigma=sigma,
            patch_size=patch_size,
            patch_distance=patch_distance,
            temporal_radius=temporal_radius,
            color_space=color_space.value,
            h_chroma=h_chroma,
        )
        sequence_failures = _video.denoise_sequences(
            [str(p) for p in sequences],
            output=output,
            out_dir=out_dir,
            options=options,
            lossless=lossless,
            threads=threads,
            force=force,
            claimed=claimed,
            every_input=every_input,
        )
        if not files:
            for item, why in problems:
                error(f"{item}: {why}")
            if sequence_failures or problems:
                raise typer.Exit(1)
            return
    if output is not None and output.is_dir():
        raise typer.BadParameter(f"{output} is a folder; use --out-dir", param_hint="--output")
    if output is not None and not output.absolute().parent.is_dir():
        raise typer.BadParameter(f"the folder of {output} does not exist", param_hint="--output")
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise typer.BadParameter(f"{out_dir} exists and is not a folder", param_hint="--out-dir")
    # What would fail for every file is checked once, before any file is read.
    check_threads_option(threads)
    used_device = "cpu"
    if device is not Device.cpu:
        from nlmeans.device import resolve_device

        # No GPU for --device cuda: one error line (what is missing), exit 1.
        used_device = resolve_device(device.value, method=method.value)
    pairs = _parse_noise_params(noise_params)
    if pairs is not None and noise is not None:
        raise typer.BadParameter(
            "give either --noise or --noise-params, not both", param_hint="--noise-params"
        )
    if pairs is not None and sigma is not None:
        raise typer.BadParameter(
            "give either --sigma or --noise-params, not both", param_hint="--noise-params"
        )
    if noise not in (None, Noise.gaussian, Noise.white) and sigma is not None:
        raise typer.BadParameter(
            f"--sigma describes white Gaussian noise; it cannot be combined with --noise {noise.value}",
            param_hint="--sigma",
        )
    noise_model = _noise_model_option(pairs)
    if out_dir is not None:
        _check_out_dir(out_dir)  # created just before the first write: a failed run leaves none
    for item, why in problems:
        error(f"{item}: {why}")
    if not files:
        raise typer.Exit(1)

    import nlmeans
    from nlmeans.io import check_format_holds, merge_alpha, read_image, write_image

    console = stderr_console()
    many = len(files) + len(problems) > 1
    rows: list[tuple[str, str, str, str, str]] = [
        (item, "", "", "", "failed") for item, _ in problems
    ]
    failures = len(problems)

    def log(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    def process(src: Path) -> tuple[Path, str, float]:
        image = read_image(src)
        if image.extension_mismatch:
            log(
                f"{src}: the file is a {image.format} image despite its name; reading it as {image.format}"
            )
        dst = _output_path(src, image.format, output, out_dir)
        key = str(dst.resolve())
        if key in claimed:
            raise ValueError(f"{src}: its output {dst} would also be written for {claimed[key]}")
        claimed[key] = src
        check_output_is_not_an_input(src, dst, every_input)  # links included
        if dst.exists() and not force:
            raise FileExistsError(f"{dst} already exists (use --force to overwrite)")
        _check_writable_folder(dst)
        # The result has the input's channels and sample type: a format that
        # cannot hold them is refused now, not after the denoising.
        check_format_holds(dst, image.pixels.shape, image.pixels.dtype)
        color, alpha = image.split_alpha()
        axis = -1 if color.ndim == 3 else None
        kwargs = dict(
            h=h,
            sigma=sigma,
            patch_size=patch_size,
            patch_distance=patch_distance,
            h_chroma=h_chroma,
        )
        if color_space is not ColorSpace.auto:
            kwargs["color_space"] = color_space.value
        if noise_model is not None:
            channels = color.shape[-1] if axis is not None else 1
            if noise_model.channels not in (1, channels):
                raise ValueError(
                    f"--noise-params gives {noise_model.channels} channel(s) but {src} has {channels}"
                )
            _check_noise_params_scale(noise_model, src, color.dtype)
            kwargs["noise"] = noise_model
        elif noise is not None:
            kwargs["noise"] = noise.value
        # Refuses what the denoiser would refuse (e.g. an image smaller than the patch).
        params = nlmeans.resolve_parameters(color, method=method.value, channel_axis=axis, **kwargs)
        params = dataclasses.replace(params, ensemble=ensemble)
        if method is Method.neural:
            _load_neural_model()  # a missing model: refused here (it is cached for the next files)
        file_device = used_device
        if device is Device.auto:  # the CPU too for a patch the CUDA kernels cannot take
            from nlmeans.device import choose_device

            file_device = choose_device("auto", params, volume=False)
        # Every check that can fail fast is done: only now the file's line.
        where = f", on {file_device}" if device is not Device.cpu else ""
        log(f"{src} ({image.describe()}): {_describe_params(params, image)}{where}")
        start = time.perf_counter()
        # The resolved parameters (estimates included) are handed on, so that
        # nothing is estimated twice.
        result = nlmeans.denoise(
            color,
            channel_axis=axis,
            threads=threads,
            **{**params.denoise_kwargs(), "device": file_device},
        )
        seconds = time.perf_counter() - start
        if out_dir is not None and not out_dir.is_dir():
            out_dir.mkdir(parents=True, exist_ok=True)
        write_image(dst, merge_alpha(result, alpha), like=image, force=force)
        top = image.max_value
        sigma_text = f"{params.sigma * top:.2f}" if top != 1 else f"{params.sigma:.4f}"
        return dst, sigma_text, seconds

    def run_one(src: Path) -> None:
        nonlocal failures
        try:
            dst, sigma_text, seconds = process(src)
        except (ValueError, TypeError, OSError) as exc:
            failures += 1
            message = describe_exception(exc)
            if str(src) not in message and str(src.name) not in message:
                message = f"{src}: {message}"
            error(message)
            rows.append((str(src), "", "", "", "failed"))
            return
        log(f"  -> {dst} ({seconds:.2f} s)")
        rows.append((str(src), str(dst), sigma_text, f"{seconds:.2f}", "ok"))
        typer.echo(str(dst))  # stdout: the outputs' paths, one per line, nothing else

    if many:
        with progress_bar("denoise", console) as bar:
            task = bar.add_task("", total=len(files))
            for src in files:
                bar.update(task, description=src.name)
                run_one(src)
                bar.advance(task)
        _print_denoise_summary(rows, failures)
    else:
        run_one(files[0])
    if failures or sequence_failures:
        raise typer.Exit(1)


def _denoise_big(**args) -> None:
    """Images larger than memory (cli/_bigdata.py): one input, chunk by chunk."""
    from . import _bigdata

    check_threads_option(args["threads"])
    if args["device"] is Device.cuda:
        raise typer.BadParameter(
            "big images (chunked, Dask) run on the CPU: drop --device cuda", param_hint="--device"
        )
    if args["out_dir"] is not None:
        raise typer.BadParameter("use -o with a big image, not --out-dir", param_hint="--out-dir")
    options = dict(
        h=args["h"],
        sigma=args["sigma"],
        patch_size=args["patch_size"],
        patch_distance=args["patch_distance"],
        h_chroma=args["h_chroma"],
    )
    if args["color_space"] is not ColorSpace.auto:
        options["color_space"] = args["color_space"].value
    noise_model = _noise_model_option(_parse_noise_params(args["noise_params"]))
    if noise_model is not None:
        options["noise"] = noise_model
    elif args["noise"] is not None:
        options["noise"] = args["noise"].value
    _bigdata.run(
        inputs=args["inputs"],
        output=args["output"],
        chunk_size=args["chunk_size"],
        memory=args["memory"],
        workers=args["workers"],
        scheduler=args["scheduler"],
        resume=args["resume"],
        force=args["force"],
        threads=args["threads"],
        method=args["method"].value,
        options=options,
        describe=_describe_params,
        ensemble=args["ensemble"],
    )


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _check_out_dir(out_dir: Path) -> None:
    """--out-dir: an existing writable folder, or one that can be created."""
    import os

    base = _nearest_existing(out_dir)
    if not base.is_dir():
        raise NotADirectoryError(f"{out_dir}: cannot create this folder, {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        where = (
            "cannot write in it" if base == out_dir.absolute() else f"cannot create it in {base}"
        )
        raise PermissionError(f"{out_dir}: permission denied ({where})")


def _check_writable_folder(dst: Path) -> None:
    """The folder of an output file (or, not created yet, its nearest existing parent) must take files."""
    import os

    base = _nearest_existing(dst.parent)
    if not base.is_dir():
        raise NotADirectoryError(f"{dst}: cannot write it, {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise PermissionError(f"{dst}: permission denied (cannot write in {base})")


def _load_neural_model() -> None:
    """Load (and cache) the neural model before the file's line is printed.

    A missing model is then one error line.
    """
    try:
        from nlmeans.neural.inference import get_model
    except ImportError as exc:
        raise ValueError(f"method neural needs torch: {exc}") from None
    get_model()


def _print_denoise_summary(rows, failures) -> None:
    from rich.table import Table

    table = Table(
        title=f"{len(rows) - failures} of {len(rows)} image(s) denoised", title_justify="left"
    )
    table.add_column("input", overflow="fold")
    table.add_column("output", overflow="fold")
    table.add_column("sigma\n(levels)", justify="right")
    table.add_column("time (s)", justify="right")
    table.add_column("status")
    from rich.markup import escape

    for src, dst, sig, secs, status in rows:
        style = "green" if status == "ok" else "bold red"
        table.add_row(escape(src), escape(dst), sig, secs, f"[{style}]{status}[/{style}]")
    stderr_console().print(table)  # a report for the eye: stdout keeps only the paths
