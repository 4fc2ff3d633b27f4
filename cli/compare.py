"""``nlmeans compare``: denoisers side by side (PSNR / SSIM / time), as a table, JSON or a report."""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import (
    error,
    expand_inputs,
    handle_errors,
    note,
    progress_bar,
    stderr_console,
    stdout_console,
)
from ._options import ThreadsOption

_IMAGE_METHODS = "fast,exact,patchwise,neural,skimage,opencv,bm3d"


@handle_errors
def compare(
    images: Annotated[
        Optional[list[str]],
        typer.Argument(
            metavar="IMAGE|DIR",
            help="Clean images, folders or glob patterns; noise is added (see --sigma).",
            show_default=False,
        ),
    ] = None,
    sigma: Annotated[
        Optional[str],
        typer.Option(
            "--sigma",
            "-s",
            help="Noise levels in 8-bit gray levels, comma-separated "
            "(noise is N(0, (sigma/255)^2) on [0, 1]). (default: 15,25,50)",
            show_default=False,
        ),
    ] = None,
    methods: Annotated[
        str,
        typer.Option(
            "--methods",
            "-m",
            help="Comma-separated: fast, exact, patchwise, neural, neural-ensemble (neural with --ensemble), "
            "skimage (= skimage-same + skimage-best), "
            "opencv, bm3d; or ours / all. Sequences (videos, TIFF stacks): noisy, spacetime, "
            "spacetime-patchwise, spacetime-exact, spacetime-neural, frames, frames-patchwise, "
            "frames-exact, frames-neural, opencv-multi, or all "
            "(default: noisy,spacetime,frames,opencv-multi).",
        ),
    ] = _IMAGE_METHODS,
    report: Annotated[
        Optional[Path],
        typer.Option(
            "--report", help="Folder for results.json, results.csv, report.md and montages/*.png."
        ),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the results as JSON on stdout (and nothing else there)."
        ),
    ] = False,
    seed: Annotated[
        Optional[int],
        typer.Option(
            "--seed",
            min=0,
            help="Noise of the i-th image (sorted) from numpy default_rng(SEED + i). (default: 0)",
            show_default=False,
        ),
    ] = None,
    noisy: Annotated[
        Optional[list[str]],
        typer.Option(
            "--noisy",
            help="Noisy image(s) (repeat the option; folders and globs allowed, each "
            "sorted), paired in the order given with --clean; no noise is added.",
        ),
    ] = None,
    clean: Annotated[
        Optional[list[str]],
        typer.Option(
            "--clean",
            help="The clean versions of the --noisy images, same count and order, "
            "or one clean file for every noisy one (several shots of one scene).",
        ),
    ] = None,
    threads: ThreadsOption = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite files of an existing --report folder.")
    ] = False,
) -> None:
    """Compare denoisers by PSNR / SSIM / time under the protocol of the published tables.

    Noise is added to clean images (not clipped); every method denoises the same noisy image. Missing optional methods (bm3d, the neural model) are reported as not installed / unavailable; a method that fails on an image shows as error, and the exit status is then 1. With [bold]--json[/bold] stdout holds only JSON; otherwise a table per noise level (methods as rows, means over the images), best value per column in bold green.
    """
    from . import _video

    listed = list(images or []) + list(clean or []) + list(noisy or [])
    if listed and any(_video.is_sequence_input(i, folders=False) for i in listed):
        # Videos and TIFF stacks: sequence metrics (PSNR/SSIM per frame, flicker).
        if report is not None:
            raise typer.BadParameter(
                "--report is not available for sequences yet; use --json", param_hint="--report"
            )
        _video.compare_sequences(
            clean_items=list(clean or images or []),
            noisy_items=list(noisy) if noisy else None,
            sigma=sigma,
            methods=None if methods == _IMAGE_METHODS else methods,
            seed=seed,
            json_output=json_output,
            threads=threads,
        )
        return
    from nlmeans import evaluation as ev

    paired = bool(noisy or clean)
    if paired:
        if images:
            raise typer.BadParameter(
                "give clean IMAGEs (noise is added) or --noisy/--clean pairs, not both"
            )
        if not noisy or not clean:
            raise typer.BadParameter(
                "--noisy and --clean go together", param_hint="--noisy/--clean"
            )
        if sigma is not None or seed is not None:
            raise typer.BadParameter(
                "--sigma and --seed apply to synthetic noise, not to --noisy/--clean pairs"
            )
    elif not images:
        raise typer.BadParameter("give at least one IMAGE (or --noisy/--clean pairs)")
    try:
        method_list = ev.parse_methods(methods)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--methods") from None
    try:
        sigma_list = ev.parse_sigmas(sigma if sigma is not None else "15,25,50")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sigma") from None
    if report is not None and report.exists() and not report.is_dir():
        raise typer.BadParameter(f"{report} exists and is not a folder", param_hint="--report")
    if report is not None and not force:
        # fail before the (long) comparison, not after it
        existing = [
            name
            for name in ("results.json", "results.csv", "report.md")
            if (report / name).exists()
        ]
        if existing:
            raise FileExistsError(
                f"{report / existing[0]} already exists; use --force to overwrite"
            )

    if paired:
        noisy_files, p1 = expand_inputs(noisy)
        clean_files, p2 = expand_inputs(clean, unique=False)  # one reference, several shots
        problems = p1 + p2
    else:
        files, problems = expand_inputs(images)
    if problems:
        for item, why in problems:
            error(f"{item}: {why}")
        raise typer.Exit(1)

    console = stderr_console()
    from contextlib import redirect_stdout

    with progress_bar("compare", console) as bar:
        task = bar.add_task("", total=None)

        def progress(image, method, sig, done, total):
            label = f"{image} sigma {sig:g} {method}" if sig is not None else f"{image} {method}"
            bar.update(task, completed=done, total=total, description=label)

        # Whatever a library prints must not end up in the table or the JSON.
        with redirect_stdout(sys.stderr):
            if paired:
                result = ev.compare_paired(
                    noisy_files,
                    clean_files,
                    method_list,
                    threads=threads,
                    keep_images=report is not None,
                    progress=progress,
                )
            else:
                result = ev.compare_synthetic(
                    files,
                    sigma_list,
                    method_list,
                    seed=seed or 0,
                    threads=threads,
                    keep_images=report is not None,
                    progress=progress,
                )

    reported = set()
    for record in result.records:
        if record.status != ev.OK and (record.method, record.message) not in reported:
            reported.add((record.method, record.message))
            note(f"{record.method}: {record.status} ({record.message})")

    if json_output:
        typer.echo(ev.results_json(result), nl=False)
    else:
        _print_comparison(result)
    if report is not None:
        written = ev.write_report(result, report, force=force)
        montages = sum(1 for p in written if p.parent.name == "montages")
        note(
            f"Report written to {report} (results.json, results.csv, report.md, {montages} montage(s))"
        )
    failed = sum(record.status == ev.ERROR for record in result.records)
    if failed:
        # The table (and report) keep what did run; a script still learns
        # that something did not (a method not installed is not a failure).
        error(f"{failed} of {len(result.records)} runs failed (see above)")
        raise typer.Exit(1)


def _print_comparison(result) -> None:
    from rich.markup import escape
    from rich.table import Table

    from nlmeans.evaluation import is_best

    console = stdout_console()
    averages = result.averages()
    per_image = len(result.images) <= 4 and len(result.images) > 1
    for sig in result.sigmas:
        title = "given noisy images" if sig is None else f"sigma = {sig:g}/255"
        count = len(result.images)
        table = Table(
            title=f"{title} ({'mean of ' if count > 1 else ''}{count} image{'s' if count > 1 else ''})",
            title_justify="left",
        )
        table.add_column("method")
        if per_image:
            for name in result.images:
                table.add_column(f"{escape(name)}\nPSNR", justify="right")
        table.add_column("PSNR (dB)", justify="right")
        table.add_column("SSIM", justify="right")
        table.add_column("time (s)", justify="right")
        rows = [r for r in averages if r["sigma"] == sig]
        best = {k: result.best(sig, k) for k in ("psnr", "ssim", "seconds")}
        image_best = {name: result.best_for_image(name, sig) for name in result.images}

        def cell(value, top, fmt):
            if value is None:
                return None
            text = format(value, fmt)
            return f"[bold green]{text}[/bold green]" if is_best(value, top) else text

        for row in rows:
            cells = [row["method"]]
            if per_image:
                for name in result.images:
                    rec = next(
                        (
                            r
                            for r in result.records
                            if r.image == name and r.sigma == sig and r.method == row["method"]
                        ),
                        None,
                    )
                    value = rec.psnr if rec is not None else None
                    status = f"[dim]{rec.status if rec else '-'}[/dim]"
                    cells.append(cell(value, image_best[name], ".2f") or status)
            missing = f"[dim]{row['status']}[/dim]"
            cells.append(cell(row["psnr"], best["psnr"], ".2f") or missing)
            cells.append(cell(row["ssim"], best["ssim"], ".4f") or "")
            cells.append(cell(row["seconds"], best["seconds"], ".3f") or "")
            table.add_row(*cells)
        console.print(table)
    if result.mode == "synthetic":
        console.print(
            f"[dim]noise: clean + N(0, (sigma/255)^2), not clipped; seed {result.seed} + image index. "
            "PSNR/SSIM of the output clipped to [0, 1].[/dim]"
        )
