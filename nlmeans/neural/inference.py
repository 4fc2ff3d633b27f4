"""Neural inference: :func:`denoise` with seamless tiling.

Large images are processed in tiles so that memory stays bounded. Each tile
is run with a margin of at least the network's receptive radius
(:attr:`DenoiserConfig.receptive_radius`) of real image data around it, and
only its core is kept; since a core pixel never "sees" the tile border, the
result equals the untiled result (up to float rounding, ~1e-6) and there are
no seams. Tile origins are multiples of the network's alignment (2 for the
pixel-unshuffle), so that every tile sees the same pixel grid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import default_weights_path, load_model
from .model import NonLocalDenoiser

__all__ = ["denoise", "denoise_array", "get_model"]

DEFAULT_TILE = 512
_MODEL_CACHE: dict[tuple[str, int, int, str], NonLocalDenoiser] = {}


def get_model(
    weights: str | os.PathLike | NonLocalDenoiser | None = None, device: str = "cpu"
) -> NonLocalDenoiser:
    """Load (and cache, per file and modification time) a denoiser."""
    if isinstance(weights, NonLocalDenoiser):
        return weights
    path = Path(weights) if weights is not None else default_weights_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return load_model(weights, device)  # raises the explanatory error
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, str(device))
    model = _MODEL_CACHE.get(key)
    if model is None:
        model = load_model(path, device)
        _MODEL_CACHE.clear()
        _MODEL_CACHE[key] = model
    return model


def _tiles(n: int, core: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + core)) for start in range(0, n, core)]


@torch.inference_mode()
def denoise_array(
    model: NonLocalDenoiser,
    image: np.ndarray,
    sigma: float | None = None,
    *,
    tile_size: int | None = DEFAULT_TILE,
    margin: int | None = None,
) -> np.ndarray:
    """Denoise one 2-D float array with ``model`` (eval mode), tiled.

    Args:
        model: the network (its device is used).
        image: (H, W) float array.
        sigma: noise level on the [0, 1] scale (non-blind models only).
        tile_size: core tile side in pixels (rounded up to the network
            alignment); ``None`` or a size >= the image: one pass.
        margin: context around each tile; default: the receptive radius
            (for global-attention models, which have none, 64 pixels and
            the tiled result is then an approximation).
    """
    cfg = model.config
    if cfg.in_channels != 1:
        raise ValueError(
            f"denoise_array expects a gray model, this one has {cfg.in_channels} input channels"
        )
    device = next(model.parameters()).device
    h, w = image.shape
    a = cfg.alignment
    # Pad once, for the tiled and untiled paths alike, to a multiple of the
    # alignment (symmetric: works for 1-pixel images too).
    ph, pw = (-h) % a, (-w) % a
    src = np.pad(image, ((0, ph), (0, pw)), mode="symmetric") if (ph or pw) else image
    x = torch.from_numpy(np.ascontiguousarray(src, dtype=np.float32))
    H, W = x.shape
    sig = None if cfg.blind else float(sigma if sigma is not None else 0.0)
    if tile_size is None or (tile_size >= H and tile_size >= W):
        out = model(x[None, None].to(device), sig)[0, 0].cpu()
        return out[:h, :w].numpy()
    if margin is None:
        r = cfg.receptive_radius
        margin = r if r is not None else 64
    core = max(a, -(-int(tile_size) // a) * a)
    m = -(-int(margin) // a) * a
    out = torch.empty((H, W), dtype=torch.float32)
    for y0, y1 in _tiles(H, core):
        for x0, x1 in _tiles(W, core):
            ty0, ty1 = max(0, y0 - m), min(H, y1 + m)
            tx0, tx1 = max(0, x0 - m), min(W, x1 + m)
            tile = x[ty0:ty1, tx0:tx1][None, None].to(device)
            res = model(tile, sig)[0, 0].cpu()
            out[y0:y1, x0:x1] = res[y0 - ty0 : y1 - ty0, x0 - tx0 : x1 - tx0]
    return out[:h, :w].numpy()


def denoise(
    image: np.ndarray,
    sigma: float | None = None,
    weights: str | os.PathLike | NonLocalDenoiser | None = None,
    device: str = "cpu",
    *,
    channel_axis: int | None = None,
    tile_size: int | None = DEFAULT_TILE,
    threads: int | None = None,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Denoise a float image in [0, 1] with the learned non-local denoiser.

    Args:
        image: float array, 2-D gray ``(H, W)`` or colour ``(H, W, C)``
            (channels last; or give ``channel_axis``). Colour images are
            denoised one channel at a time with the gray model.
        sigma: noise standard deviation on the [0, 1] scale. ``None``:
            estimated with :func:`nlmeans.estimate_sigma` when needed. The
            shipped model is blind (one model for sigma in [0, 55/255]), so
            sigma does not change its output; it is only reported (see
            ``return_info``).
        weights: a ``.safetensors`` / checkpoint path or a loaded model;
            ``None``: the shipped weights (``FileNotFoundError`` naming the
            expected path if they are missing).
        device: ``"cpu"`` or ``"cuda"``.
        channel_axis: axis of the channels for colour input (default: last
            axis of a 3-D array).
        tile_size: core tile side (memory bound: a 2048x2048 gray image stays
            well under 3 GB with the default 512); ``None`` disables tiling.
            Tiling is seamless (identical result up to float rounding).
        threads: torch CPU threads for this call (``None``: unchanged).
        return_info: also return a dict ``{"sigma", "sigma_estimated",
            "blind", "weights"}``.

    Returns:
        float32 array of the input's shape (values not clipped), and the info
        dict when ``return_info``.
    """
    arr = np.asarray(image)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"image must be a float array in [0, 1], got dtype {arr.dtype}")
    if arr.ndim == 3:
        axis = -1 if channel_axis is None else channel_axis
        try:
            arr = np.moveaxis(arr, axis, -1)
        except np.exceptions.AxisError:
            raise ValueError(
                f"channel_axis={channel_axis} is out of range for shape {arr.shape}"
            ) from None
    elif arr.ndim != 2 or channel_axis is not None:
        raise ValueError(
            f"image must be 2-D gray or 3-D colour (H, W, C), got shape {arr.shape} "
            f"with channel_axis={channel_axis}"
        )
    if arr.size == 0:
        raise ValueError("image is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError("image contains NaN or infinite values")
    if sigma is not None and not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")

    model = get_model(weights, device)
    estimated = False
    if sigma is None and (not model.blind or return_info):
        from nlmeans import estimate_sigma

        sigma = float(estimate_sigma(arr, channel_axis=-1 if arr.ndim == 3 else None))
        estimated = True

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        if arr.ndim == 2:
            out = denoise_array(model, arr, sigma, tile_size=tile_size)
        else:
            out = np.stack(
                [
                    denoise_array(model, arr[..., c], sigma, tile_size=tile_size)
                    for c in range(arr.shape[-1])
                ],
                axis=-1,
            )
            if channel_axis is not None:
                out = np.moveaxis(out, -1, channel_axis)
    finally:
        if threads is not None:
            torch.set_num_threads(old_threads)
    out = out.astype(np.float32, copy=False)
    if return_info:
        src = weights if not isinstance(weights, NonLocalDenoiser) else "<model>"
        info = {
            "sigma": None if sigma is None else float(sigma),
            "sigma_estimated": estimated,
            "blind": model.blind,
            "weights": str(src if src is not None else default_weights_path()),
        }
        return out, info
    return out
