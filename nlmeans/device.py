"""Where :func:`nlmeans.denoise` runs: ``"cpu"``, ``"cuda"`` or ``"auto"``.

The classical methods run on the GPU through numba-cuda (:mod:`nlmeans._cuda`,
``pip install "nlmeans[cuda]"``); the network through torch, which must then
be a CUDA build. Nothing here imports ``numba.cuda`` or torch until a GPU is
asked for, so ``device="cpu"`` (the default) costs nothing.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import os

logger = logging.getLogger("nlmeans")

__all__ = [
    "DEVICES",
    "CUDAUnavailableError",
    "cuda_unavailable_reason",
    "neural_tile_size",
    "resolve_device",
]

DEVICES = ("cpu", "cuda", "auto")

#: GPU memory of one pass of the shipped network per input pixel, with margin:
#: an untiled 2048 x 2048 gray pass took 1.4 GB on an H100 (~330 B/px, issue 9).
NEURAL_BYTES_PER_PIXEL = 512
#: Share of the free GPU memory one network pass may take.
NEURAL_MEMORY_SHARE = 0.5
#: Smallest core tile worth a pass (the margin alone is 2 x 32 pixels).
NEURAL_MIN_TILE = 256


class CUDAUnavailableError(ValueError):
    """``device="cuda"`` was asked for where CUDA cannot run (the message says why).

    A :class:`ValueError`, like any other argument this machine cannot honour.
    """


def _simulator() -> bool:
    """Numba's CUDA simulator is on (tests): kernels run, but on the CPU."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0")


@functools.lru_cache(maxsize=None)
def cuda_unavailable_reason(method: str = "fast") -> str | None:
    """None when ``method`` can run on a CUDA GPU here, else why it cannot.

    Classical methods need numba-cuda, a CUDA driver with a GPU, and CUDA's
    NVVM compiler library; ``"neural"`` needs a CUDA build of torch that sees
    a GPU. The answer is computed once per process. Under Numba's CUDA
    simulator (``NUMBA_ENABLE_CUDASIM=1``) the classical methods count as
    available, so that tests reach the kernels without a GPU.
    """
    if method == "neural":
        try:
            import torch
        except ImportError:
            return "method='neural' needs torch: pip install torch"
        if torch.version.cuda is None:
            return (
                f"torch {torch.__version__} is a CPU-only build; "
                "install a CUDA build of torch to run the network on the GPU"
            )
        if not torch.cuda.is_available():
            return f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable GPU"
        return None
    if importlib.util.find_spec("numba_cuda") is None:
        if _simulator():
            return None
        return 'numba-cuda is not installed: pip install "nlmeans[cuda]"'
    try:
        from numba import cuda
    except ImportError as exc:  # e.g. the CUDA Python bindings are missing
        return f'numba.cuda cannot be imported ({exc}); pip install "nlmeans[cuda]"'
    if _simulator():
        return None
    try:
        from numba.cuda.cudadrv import driver

        driver.driver.is_available  # initialises the driver; raises why it cannot
        n_gpus = len(cuda.list_devices())
    except Exception as exc:  # CudaSupportError and whatever a broken driver raises
        text = " ".join(str(exc).split()).removeprefix("Error at driver init:").strip(" :")
        return f"no usable CUDA driver ({text})" if text else "no usable CUDA driver"
    if n_gpus == 0:
        return "the CUDA driver finds no GPU"
    from numba.cuda.cudadrv import nvvm

    if not nvvm.is_available():
        return (
            "CUDA's NVVM compiler library was not found: "
            'pip install "nlmeans[cuda]" (numba-cuda with the CUDA 13 toolkit wheels)'
        )
    return None


def resolve_device(device: str = "auto", *, method: str = "fast") -> str:
    """The device ``device`` means for ``method`` on this machine: ``"cpu"`` or ``"cuda"``.

    Parameters
    ----------
    device : {"cpu", "cuda", "auto"}
        ``"auto"`` takes the GPU when one is usable (never Numba's CUDA
        simulator), else the CPU.
    method : str
        The :func:`nlmeans.denoise` method (the network needs torch's CUDA,
        the others numba-cuda).

    Raises
    ------
    ValueError
        For an unknown ``device``.
    CUDAUnavailableError
        For ``device="cuda"`` where CUDA cannot run; the message says what is
        missing (GPU, driver, numba-cuda, a CUDA build of torch).
    """
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    if device == "cpu":
        return "cpu"
    reason = cuda_unavailable_reason("neural" if method == "neural" else "fast")
    if device == "cuda":
        if reason is not None:
            raise CUDAUnavailableError(f"device='cuda' is not usable here: {reason}")
        return "cuda"
    if reason is None and (method == "neural" or not _simulator()):
        return "cuda"
    logger.info("device='auto': %s; using the CPU", reason or "Numba's CUDA simulator")
    return "cpu"


def cuda_kernels_fit(method: str, patch_size: int, volume: bool) -> bool:
    """Whether the CUDA kernels take this patch (their shared memory holds a tile
    of it): patchwise volumes stop at 11, 2-D patchwise at 39, 2-D fast and
    exact at 103. ``device="auto"`` keeps the CPU for larger ones."""
    from ._cuda import choose_tile

    f = patch_size // 2
    return choose_tile(volume, f, f if volume else 0, method == "patchwise") is not None


def choose_device(device: str, params, volume: bool) -> str:
    """:func:`resolve_device` for resolved ``params``: ``"auto"`` also falls back
    to the CPU for a patch the CUDA kernels refuse (``"cuda"`` says so instead)."""
    chosen = resolve_device(device, method=params.method)
    if (
        device == "auto"
        and chosen == "cuda"
        and params.method != "neural"
        and not cuda_kernels_fit(params.method, params.patch_size, volume)
    ):
        logger.info(
            "device='auto': patch_size=%d is too large for the CUDA kernels; using the CPU",
            params.patch_size,
        )
        return "cpu"
    return chosen


def neural_tile_size(height: int, width: int, margin: int = 32) -> int | None:
    """Core tile side for the network on the current torch GPU, from its free memory.

    None (one untiled pass, the fastest) when the whole image fits in
    :data:`NEURAL_MEMORY_SHARE` of the free memory at
    :data:`NEURAL_BYTES_PER_PIXEL`; else the largest multiple of 64 whose
    tile with its ``margin`` fits, at least :data:`NEURAL_MIN_TILE`.
    """
    import torch

    free, _ = torch.cuda.mem_get_info()
    pixels = NEURAL_MEMORY_SHARE * free / NEURAL_BYTES_PER_PIXEL
    if height * width <= pixels:
        return None
    side = int(math.isqrt(int(pixels))) - 2 * margin
    return max(NEURAL_MIN_TILE, side // 64 * 64)
