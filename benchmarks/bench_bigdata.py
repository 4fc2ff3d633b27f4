"""Images larger than memory: peak memory and speed of ``nlmeans denoise`` on Dask chunks.

Generates, into a temporary folder, a 16384 x 16384 uint16 image (a tiled
BigTIFF) and a 256 x 2048 x 2048 uint16 volume (a Zarr array), written tile by
tile so that the generator never holds them either. Then measures:

* the whole CLI run, input file to output store (``nlmeans denoise big.tif -o
  out.zarr`` at the default chunk size): wall time and the peak resident
  memory of the process tree (the CLI and any worker processes, sampled every
  50 ms with psutil and summed), the issue's target being 1.5 GB;
* throughput of the chunked path against in-memory ``nlmeans.denoise`` on an
  image that fits in memory (4096 x 4096), in one process, same parameters;
* 1 against 2 worker processes (``--workers``) on the 2-D image.

Prints a Markdown table and writes it to ``benchmarks/results/bigdata.md``
(``bigdata_quick.md`` with ``--quick``: tiny sizes, for checking the script),
rewritten after every run; ``--runs`` picks a subset and ``--out`` another table.

Usage::

    python benchmarks/bench_bigdata.py            # the full benchmark (long)
    python benchmarks/bench_bigdata.py --quick    # a minute: small sizes
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIGMA = 0.02  # noise of the generated images, on the [0, 1] scale
TARGET_GB = 1.5
RUNS = ("fit", "local", "workers1", "workers2", "volume")


def _tile(rng, shape, y0, x0):
    """A smooth pattern with edges, plus Gaussian noise, as uint16."""
    y, x = np.meshgrid(np.arange(y0, y0 + shape[0]), np.arange(x0, x0 + shape[1]), indexing="ij")
    clean = 0.4 + 0.2 * np.sin(x / 37.0) * np.cos(y / 53.0) + 0.2 * ((x // 256 + y // 256) % 2)
    noisy = np.clip(clean + SIGMA * rng.standard_normal(shape), 0, 1)
    return np.round(noisy * 65535).astype(np.uint16)


def make_image(path: Path, side: int, tile: int = 512) -> None:
    import tifffile

    def tiles():
        for y0 in range(0, side, tile):
            for x0 in range(0, side, tile):
                rng = np.random.default_rng((y0, x0))
                yield _tile(rng, (tile, tile), y0, x0)

    tifffile.imwrite(
        path, tiles(), shape=(side, side), dtype=np.uint16, tile=(tile, tile), bigtiff=True
    )


def make_volume(path: Path, depth: int, side: int) -> None:
    import zarr

    chunk = min(side, 256)
    array = zarr.open_array(
        path, mode="w", shape=(depth, side, side), chunks=(16, chunk, chunk), dtype=np.uint16
    )
    array.attrs["nlmeans"] = {"axes": "ZYX", "scale": {}, "units": {}}
    for z in range(depth):
        rng = np.random.default_rng(z)
        array[z] = _tile(rng, (side, side), z, 0)


def run_cli(args: list[str]) -> dict:
    """Run ``nlmeans denoise ARGS``; wall time and peak RSS of its whole process tree."""
    import psutil

    cmd = [sys.executable, "-m", "nlmeans_cli.main", "denoise", *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        total = 0
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err.decode()}")
    return {"seconds": seconds, "peak_gb": peak / 1e9}


def in_memory_vs_chunked(side: int, chunk: int) -> dict:
    """Same image, same parameters: nlmeans.denoise on NumPy vs on a Dask array."""
    import dask.array as da

    import nlmeans

    image = _tile(np.random.default_rng(0), (side, side), 0, 0)
    kwargs = dict(sigma=SIGMA, method="fast")
    nlmeans.denoise(image[:64, :64], **kwargs)  # compile / load the kernels first
    start = time.perf_counter()
    reference = nlmeans.denoise(image, **kwargs)
    memory_s = time.perf_counter() - start
    start = time.perf_counter()
    lazy = nlmeans.denoise(da.from_array(image, chunks=chunk), **kwargs)
    chunked = lazy.compute(scheduler="threads", num_workers=2)
    dask_s = time.perf_counter() - start
    assert np.array_equal(chunked, reference)
    return {"memory_s": memory_s, "dask_s": dask_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (checks the script)")
    parser.add_argument("--side", type=int, help="image side (default 16384)")
    parser.add_argument("--depth", type=int, help="volume depth (default 256)")
    parser.add_argument("--volume-side", type=int, help="volume side (default 2048)")
    parser.add_argument(
        "--runs",
        default=",".join(RUNS),
        help=f"comma-separated subset of {', '.join(RUNS)} (default: all)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="table to write (default benchmarks/results/bigdata.md, or bigdata_quick.md)",
    )
    args = parser.parse_args()
    if args.quick:
        side, depth, vside, fit, chunk = 1024, 16, 256, 512, 256
    else:
        side, depth, vside, fit, chunk = 16384, 256, 2048, 4096, 2048
    side, depth, vside = args.side or side, args.depth or depth, args.volume_side or vside
    common = ["--sigma", str(SIGMA)]
    wanted = set(args.runs.split(","))
    unknown = wanted - set(RUNS)
    if unknown:
        parser.error(f"--runs: unknown {', '.join(sorted(unknown))}; choose from {', '.join(RUNS)}")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    out = args.out or results / ("bigdata_quick.md" if args.quick else "bigdata.md")
    command = " ".join(["python benchmarks/bench_bigdata.py", *sys.argv[1:]])
    rows, notes = [], []

    def write() -> None:
        # Rewritten after every run, so that a long benchmark stopped half-way keeps its rows.
        lines = [
            f"<!-- {command} -->",
            "| run | wall (s) | Mpixel/s | peak RSS of the process tree (GB) |",
            "|---|---:|---:|---:|",
            *[f"| {' | '.join(row)} |" for row in rows],
            "",
            *notes,
            f"Targets: peak RSS < {TARGET_GB} GB; chunked within 15 % of in-memory.",
        ]
        out.write_text("\n".join(lines) + "\n")
        print("\n".join(lines[1:]), flush=True)

    if "fit" in wanted:
        ratio = in_memory_vs_chunked(fit, min(chunk, fit // 2))
        notes.append(
            f"Fitting image {fit}² uint16, method fast, sigma {SIGMA}, one process: in-memory "
            f"{ratio['memory_s']:.2f} s, Dask chunks of {min(chunk, fit // 2)} "
            f"{ratio['dask_s']:.2f} s ({100 * (ratio['dask_s'] / ratio['memory_s'] - 1):+.0f} %)."
        )
        write()
    with tempfile.TemporaryDirectory(prefix="nlmeans-bench-") as tmp:
        tmp = Path(tmp)
        image, volume = tmp / "big.tif", tmp / "volume.zarr"
        chunk_args = ["--chunk-size", str(chunk)] if args.quick else []
        runs = [
            ("local", f"{side}² uint16 TIFF -> Zarr, local", image, "a.zarr", []),
            (
                "workers1",
                f"{side}² uint16 TIFF -> Zarr, --workers 1",
                image,
                "b.zarr",
                ["--workers", "1"],
            ),
            (
                "workers2",
                f"{side}² uint16 TIFF -> Zarr, --workers 2",
                image,
                "c.zarr",
                ["--workers", "2"],
            ),
            ("volume", f"{depth}x{vside}² uint16 Zarr -> Zarr, local", volume, "d.zarr", []),
        ]
        for key, label, src, name, extra in runs:
            if key not in wanted:
                continue
            if src == image and not image.exists():
                print(f"generating {side}x{side} uint16 ...", file=sys.stderr)
                make_image(image, side)
            if src == volume and not volume.exists():
                print(f"generating {depth}x{vside}x{vside} uint16 ...", file=sys.stderr)
                make_volume(volume, depth, vside)
            print(f"running: {label}", file=sys.stderr)
            extra_chunks = (
                chunk_args if src == image else (["--chunk-size", "64"] if args.quick else [])
            )
            result = run_cli([str(src), "-o", str(tmp / name), *common, *extra_chunks, *extra])
            pixels = np.prod([side, side] if src == image else [depth, vside, vside])
            rows.append(
                (
                    label,
                    f"{result['seconds']:.1f}",
                    f"{pixels / result['seconds'] / 1e6:.2f}",
                    f"{result['peak_gb']:.2f}",
                )
            )
            write()


if __name__ == "__main__":
    main()
