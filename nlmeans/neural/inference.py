"""Neural inference: :func:`denoise` with seamless tiling.

Large images are processed in tiles so that memory stays bounded. Each tile
is run with a margin of at least the network's receptive radius
(:attr:`DenoiserConfig.receptive_radius`) of real image data around it, and
only its core is kept; since a core pixel never "sees" the tile border, the
result equals the untiled result (up to float rounding, ~1e-6) and there are
no seams. Tile origins are multiples of the network's alignment (2 for the
pixel-unshuffle), so that every tile sees the same pixel grid (and the same
cells of a noise-level map).

Which model: gray images use the gray model; 3-channel images the colour
model (RGB in, RGB out) when its weights are shipped, else the gray model on
each channel. Non-blind models take a noise-level map: from ``sigma``, from a
:class:`nlmeans.noise.NoiseModel` evaluated on the noisy image, from an
explicit ``noise_map``, or estimated.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._checks import check_axis_type, check_ensemble, check_unit_scale, unmasked
from ..noise import NOISE_KINDS, NoiseModel, estimate_noise, estimate_sigma
from .checkpoint import default_weights_path, load_model
from .model import NonLocalDenoiser

__all__ = ["default_model_path", "denoise", "denoise_array", "get_model", "uses_noise_level"]

DEFAULT_TILE = 512
_MODEL_CACHE: dict[tuple[str, int, int, str], NonLocalDenoiser] = {}
_CACHE_SIZE = 6  # the gray, colour and camera models, on one or two devices


def default_model_path(channels: int = 1, *, camera: bool = False) -> Path:
    """The shipped weights :func:`denoise` uses for ``channels``-channel images.

    For 3 channels: with ``camera=True`` (spatially correlated camera noise)
    the camera model when it is shipped, else the colour model when it is
    shipped, else the gray model (run on each channel). Otherwise the gray
    model.
    """
    if channels == 3:
        if camera and default_weights_path(3, camera=True).is_file():
            return default_weights_path(3, camera=True)
        if default_weights_path(3).is_file():
            return default_weights_path(3)
    return default_weights_path()


def get_model(
    weights: str | os.PathLike | NonLocalDenoiser | None = None,
    device: str = "cpu",
    *,
    channels: int = 1,
    camera: bool = False,
) -> NonLocalDenoiser:
    """Load (and cache, per file and modification time) a denoiser.

    ``weights=None`` picks the shipped model for ``channels``-channel images
    (:func:`default_model_path`, with ``camera``).
    """
    if isinstance(weights, NonLocalDenoiser):
        return weights
    path = Path(weights) if weights is not None else default_model_path(channels, camera=camera)
    try:
        st = path.stat()
    except FileNotFoundError:
        return load_model(weights, device)  # raises the explanatory error
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, str(device))
    model = _MODEL_CACHE.get(key)
    if model is None:
        model = load_model(path, device)
        while len(_MODEL_CACHE) >= _CACHE_SIZE:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[key] = model
    return model


def uses_noise_level(channels: int = 1) -> bool:
    """Whether the shipped model for ``channels``-channel images is non-blind.

    A non-blind model (the colour model) takes the noise level as a map; a
    blind one (the gray model) needs none, and a Poisson-Gaussian image must
    be stabilised before it.
    """
    return not get_model(channels=channels).blind


def _tiles(n: int, core: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + core)) for start in range(0, n, core)]


@torch.inference_mode()
def denoise_array(
    model: NonLocalDenoiser,
    image: np.ndarray,
    sigma: float | np.ndarray | None = None,
    *,
    tile_size: int | None = DEFAULT_TILE,
    margin: int | None = None,
    ensemble: bool = False,
) -> np.ndarray:
    """Denoise one float array with ``model`` (eval mode), tiled.

    Args:
        model: the network (its device is used).
        image: (H, W) float array for a one-channel model, (H, W, C) for a
            model of C channels; ``(frames, H, W)`` for a spacetime model,
            which returns the middle frame denoised, ``(H, W)``.
        sigma: noise level on the [0, 1] scale (non-blind models only): a
            number, or a per-pixel map of the image's shape.
        tile_size: core tile side in pixels (rounded up to the network
            alignment); ``None`` or a size >= the image: one pass.
        margin: context around each tile; default: the receptive radius
            (for global-attention models, which have none, 64 pixels and
            the tiled result is then an approximation).
        ensemble: average the outputs over the 8 flips and rotations of
            each tile (:func:`_dihedral_mean`; 8 times the time).
    """
    cfg = model.config
    if cfg.spacetime:
        # (frames, H, W): the frames of a window, the middle one is denoised
        if image.ndim != 3 or image.shape[0] != cfg.frames or cfg.in_channels != 1:
            raise ValueError(
                f"this spacetime model takes {cfg.frames} gray frames as a "
                f"({cfg.frames}, H, W) array, got shape {image.shape}"
            )
    else:
        channels = 1 if image.ndim == 2 else image.shape[-1]
        if (
            image.ndim not in (2, 3)
            or channels != cfg.in_channels
            or (image.ndim == 3 and cfg.in_channels == 1)
        ):
            want = "(H, W)" if cfg.in_channels == 1 else f"(H, W, {cfg.in_channels})"
            raise ValueError(
                f"this model has {cfg.in_channels} input channel(s) and expects a {want} array, "
                f"got shape {image.shape}"
            )
    device = next(model.parameters()).device
    h, w = image.shape[-2:] if cfg.spacetime else image.shape[:2]
    a = cfg.alignment
    # Pad once, for the tiled and untiled paths alike, to a multiple of the
    # alignment (symmetric: works for 1-pixel images too).
    ph, pw = (-h) % a, (-w) % a

    def to_tensor(arr: np.ndarray) -> torch.Tensor:
        if arr.ndim == 2:
            planes = arr[None]
        else:
            planes = arr if cfg.spacetime else np.moveaxis(arr, -1, 0)
        if ph or pw:
            planes = np.pad(planes, ((0, 0), (0, ph), (0, pw)), mode="symmetric")
        planes = np.ascontiguousarray(planes, dtype=np.float32)
        # torch warns about (and may not write) a read-only array: a copy.
        return torch.from_numpy(planes if planes.flags.writeable else planes.copy())

    x = to_tensor(image)
    H, W = x.shape[-2:]
    C = cfg.in_channels  # output channels (a spacetime model: one frame's)
    sig: float | torch.Tensor | None = None
    if not cfg.blind:
        if isinstance(sigma, np.ndarray) and sigma.ndim:
            if cfg.spacetime:
                raise ValueError("a spacetime model takes one noise level (a number), not a map")
            if sigma.shape != image.shape:
                raise ValueError(
                    f"noise map shape {sigma.shape} differs from the image's {image.shape}"
                )
            sig = to_tensor(sigma)
        else:
            sig = float(sigma if sigma is not None else 0.0)

    def run(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        tile = x[:, y0:y1, x0:x1][None].to(device)
        s = sig[:, y0:y1, x0:x1][None].to(device) if isinstance(sig, torch.Tensor) else sig
        if ensemble:
            return _dihedral_mean(model, tile, s)[0].cpu()
        return model(tile, s)[0].cpu()

    if tile_size is None or (tile_size >= H and tile_size >= W):
        out = run(0, H, 0, W)
    else:
        if margin is None:
            r = cfg.receptive_radius
            margin = r if r is not None else 64
        core = max(a, -(-int(tile_size) // a) * a)
        m = -(-int(margin) // a) * a
        out = torch.empty((C, H, W), dtype=torch.float32)
        for y0, y1 in _tiles(H, core):
            for x0, x1 in _tiles(W, core):
                ty0, ty1 = max(0, y0 - m), min(H, y1 + m)
                tx0, tx1 = max(0, x0 - m), min(W, x1 + m)
                res = run(ty0, ty1, tx0, tx1)
                out[:, y0:y1, x0:x1] = res[:, y0 - ty0 : y1 - ty0, x0 - tx0 : x1 - tx0]
    out = out[:, :h, :w].numpy()
    return out[0] if image.ndim == 2 or cfg.spacetime else np.moveaxis(out, 0, -1)


def _dihedral(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    """``x`` (..., H, W) mirrored left-right (when ``flip``), then turned ``turns`` quarter turns."""
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, turns, dims=(-2, -1))


def _undo_dihedral(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, -turns, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def _dihedral_mean(
    model: NonLocalDenoiser, tile: torch.Tensor, sigma: float | torch.Tensor | None
) -> torch.Tensor:
    """The geometric self-ensemble: the mean of ``model``'s outputs over the 8
    flips and rotations of ``tile`` (and of its noise map), each turned back.

    A convolutional network is not exactly equivariant to these transforms, so
    its 8 outputs differ a little in their errors, and their mean is closer to
    the clean image (Timofte et al. 2016; measured: +0.2 dB on McMaster, see
    the README). ``tile``'s sides are multiples of the network's alignment
    (``denoise_array`` pads them), so every transform keeps its pixel grid and
    a tiled result still equals the untiled one up to float rounding.
    """
    total = None
    for turns in range(4):
        for flip in (False, True):
            s = _dihedral(sigma, turns, flip) if isinstance(sigma, torch.Tensor) else sigma
            out = _undo_dihedral(model(_dihedral(tile, turns, flip), s), turns, flip)
            total = out if total is None else total + out
    return total / 8


def denoise(
    image: np.ndarray,
    sigma: float | None = None,
    weights: str | os.PathLike | NonLocalDenoiser | None = None,
    device: str = "cpu",
    *,
    channel_axis: int | None = None,
    noise=None,
    noise_map: np.ndarray | None = None,
    tile_size: int | None = DEFAULT_TILE,
    threads: int | None = None,
    camera: bool = False,
    ensemble: bool = False,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Denoise a float image in [0, 1] with the learned non-local denoiser.

    Args:
        image: float array, 2-D gray ``(H, W)`` or colour ``(H, W, C)``
            (channels last; or give ``channel_axis``). With the default
            weights, 3-channel images use the shipped colour model (the
            channels denoised jointly) when it is installed; otherwise, and
            for other channel counts, each channel is denoised with the gray
            model.
        sigma: noise standard deviation on the [0, 1] scale, the same for
            every pixel. ``None``: taken from ``noise`` or ``noise_map``, or
            estimated with :func:`nlmeans.estimate_sigma` when needed.
        weights: a ``.safetensors`` / checkpoint path or a loaded model
            (one channel, or as many as the image); ``None``: the shipped
            weights (``FileNotFoundError`` naming the expected path if they
            are missing).
        device: ``"cpu"`` or ``"cuda"``.
        channel_axis: axis of the channels for colour input (default: last
            axis of a 3-D array).
        noise: a :class:`nlmeans.noise.NoiseModel` (its standard deviation
            ``sqrt(a * y + b)`` evaluated per pixel and channel on the noisy
            image, :meth:`~nlmeans.noise.NoiseModel.sigma_map`), or
            ``"gaussian"``, ``"poisson-gaussian"`` or ``"auto"`` to estimate
            that model with :func:`nlmeans.estimate_noise`.
        noise_map: the noise standard deviation at every pixel, on the [0, 1]
            scale: an array of the image's shape, or of its spatial shape
            (one map for every channel).
        tile_size: core tile side (memory bound: a 2048x2048 gray image stays
            well under 3 GB with the default 512); ``None`` disables tiling.
            Tiling is seamless (identical result up to float rounding).
        threads: torch CPU threads for this call (``None``: unchanged).
        camera: the noise is a camera's, spatially correlated (demosaicked,
            compressed): 3-channel images use the shipped camera model
            (trained on simulated camera noise, see ``weights/README.md``)
            when it is installed, else the colour model; other images keep
            their model. Give the noise level the way
            :func:`nlmeans.estimate_noise_level` reads it
            (``sigma=level.sigma``); :func:`nlmeans.denoise` does both when
            it finds correlated noise. Not with ``weights`` (``ValueError``).
        ensemble: the geometric self-ensemble: the mean of the network's
            outputs over the 8 flips and rotations of the image (each turned
            back), at 8 times the time. Measured on McMaster with the colour
            model: +0.17 to +0.26 dB (see the README's colour denoiser
            section).
        return_info: also return a dict ``{"sigma", "sigma_estimated",
            "blind", "weights", "noise"}`` (``noise``: where the noise level
            came from: ``"sigma"``, ``"noise_map"``, ``"noise model"``,
            ``"estimated"`` or ``None`` when a blind model needed none).

    Only non-blind models (``DenoiserConfig.noise_level_input``) use the
    noise level, as an input map; every shipped model is one. For a blind
    model (trained with one network for sigma in [0, 55/255]) the noise
    level is only reported.

    Returns:
        float32 array of the input's shape (values not clipped), and the info
        dict when ``return_info``.

    Raises:
        TypeError / ValueError: a non-float image, a bad shape or axis,
            NaN/Inf, a negative ``sigma``, more than one of ``sigma``,
            ``noise`` and ``noise_map``, a noise model or map whose channel
            count or shape does not fit the image, each naming the parameter.
    """
    arr = np.asarray(unmasked(image))
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"image must be a float array in [0, 1], got dtype {arr.dtype}")
    check_axis_type(channel_axis)
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
    check_unit_scale(float(arr.min()), float(arr.max()))
    given = [
        n
        for n, v in (("sigma", sigma), ("noise", noise), ("noise_map", noise_map))
        if v is not None
    ]
    if len(given) > 1:
        raise ValueError(
            f"give at most one of sigma, noise and noise_map, got {' and '.join(given)}"
        )
    if isinstance(sigma, np.ndarray) and sigma.ndim > 0:
        raise ValueError(
            f"sigma must be one number; give a per-pixel map of shape {sigma.shape} as noise_map="
        )
    if sigma is not None and (
        isinstance(sigma, bool)
        or not isinstance(sigma, numbers.Real)
        or not (np.isfinite(sigma) and sigma >= 0)
    ):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if sigma is not None and sigma > 1:
        raise ValueError(
            f"sigma is on the image's [0, 1] scale and must be <= 1, got {sigma!r} "
            "(25 gray levels of an 8-bit image is sigma=25/255)"
        )
    if not isinstance(camera, (bool, np.bool_)):
        raise TypeError(f"camera must be True or False, got {camera!r}")
    ensemble = check_ensemble(ensemble, "neural")
    if weights is not None and not isinstance(weights, (str, os.PathLike, NonLocalDenoiser)):
        raise TypeError(
            "weights must be a path (.safetensors or checkpoint) or a NonLocalDenoiser, "
            f"got {type(weights).__name__}"
        )
    if tile_size is not None and (
        isinstance(tile_size, bool) or not isinstance(tile_size, numbers.Integral) or tile_size < 1
    ):
        raise ValueError(f"tile_size must be a positive integer or None, got {tile_size!r}")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, numbers.Integral)
    ):
        raise TypeError(f"threads must be a positive integer or None, got {threads!r}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    if camera and weights is not None:
        raise ValueError(
            "camera=True picks the shipped camera model; give either camera=True or weights"
        )
    channels = 1 if arr.ndim == 2 else arr.shape[-1]
    levels = None if noise_map is None else _check_noise_map(noise_map, arr, channel_axis)

    model = get_model(weights, device, channels=channels, camera=camera)
    if model.config.spacetime:
        raise ValueError(
            f"this is a spacetime network ({model.config.frames} frames in, the middle one "
            "out); denoise clips with nlmeans.denoise_sequence(frames, method='neural', "
            "weights=...)"
        )
    joint = arr.ndim == 3 and channels > 1 and model.config.in_channels == channels
    if model.config.in_channels != 1 and not joint:
        raise ValueError(
            f"the model takes {model.config.in_channels}-channel images; this image has "
            f"{channels} channel(s)"
        )

    source = "sigma" if sigma is not None else None
    estimated = False
    if levels is not None:
        source = "noise_map"
    elif noise is not None:
        levels = _noise_model_map(noise, arr)
        source = "noise model"
        estimated = isinstance(noise, str)  # the model was read from the image
    if sigma is None and levels is None and (not model.blind or return_info):
        sigma = float(estimate_sigma(arr, channel_axis=-1 if arr.ndim == 3 else None))
        estimated = True
        source = "estimated"
    level = sigma if levels is None else levels

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        if arr.ndim == 2 or joint:
            out = denoise_array(model, arr, level, tile_size=tile_size, ensemble=ensemble)
        else:
            out = np.stack(
                [
                    denoise_array(
                        model,
                        arr[..., c],
                        level[..., c] if isinstance(level, np.ndarray) else level,
                        tile_size=tile_size,
                        ensemble=ensemble,
                    )
                    for c in range(channels)
                ],
                axis=-1,
            )
        if arr.ndim == 3 and channel_axis is not None:
            out = np.moveaxis(out, -1, channel_axis)
    finally:
        if threads is not None:
            torch.set_num_threads(old_threads)
    out = out.astype(np.float32, copy=False)
    if return_info:
        if isinstance(weights, NonLocalDenoiser):
            src = "<model>"
        else:
            src = weights if weights is not None else default_model_path(channels, camera=camera)
        info = {
            "sigma": (
                float(np.mean(levels))
                if levels is not None
                else None
                if sigma is None
                else float(sigma)
            ),
            "sigma_estimated": estimated,
            "blind": model.blind,
            "weights": str(src),
            "noise": source,
        }
        return out, info
    return out


def _check_noise_map(noise_map, arr: np.ndarray, channel_axis) -> np.ndarray:
    """``noise_map`` as float32 of ``arr``'s (channels-last) shape."""
    levels = np.asarray(noise_map)
    if levels.dtype.kind not in "fiu":
        raise TypeError(f"noise_map must be a numeric array, got dtype {levels.dtype}")
    if arr.ndim == 3 and levels.ndim == 3:
        axis = -1 if channel_axis is None else channel_axis
        levels = np.moveaxis(levels, axis, -1)
    if levels.shape not in (arr.shape, arr.shape[:2]):
        raise ValueError(
            f"noise_map must have the image's shape {arr.shape}"
            + (f" or its spatial shape {arr.shape[:2]}" if arr.ndim == 3 else "")
            + f", got {np.shape(noise_map)}"
        )
    if not np.all(np.isfinite(levels)) or np.any(levels < 0):
        raise ValueError("noise_map must hold finite standard deviations >= 0")
    if np.any(levels > 1):
        raise ValueError(
            f"noise_map is on the image's [0, 1] scale and must be <= 1, got up to "
            f"{float(levels.max()):g} (25 gray levels of an 8-bit image is 25/255)"
        )
    if levels.shape != arr.shape:
        levels = np.broadcast_to(levels[..., None], arr.shape)
    return np.ascontiguousarray(levels, dtype=np.float32)


def _noise_model_map(noise, arr: np.ndarray) -> np.ndarray:
    """The per-pixel noise standard deviation a noise model gives ``arr``."""
    axis = -1 if arr.ndim == 3 else None
    if isinstance(noise, str):
        options = ("auto",) + NOISE_KINDS
        if noise not in options:
            raise ValueError(
                f"noise must be one of {', '.join(options)} or a NoiseModel; got {noise!r}"
            )
        noise = estimate_noise(arr, channel_axis=axis, model=noise)
    elif not isinstance(noise, NoiseModel):
        raise TypeError(f"noise must be a NoiseModel or a string, got {type(noise).__name__}")
    return noise.sigma_map(arr, channel_axis=axis).astype(np.float32)
