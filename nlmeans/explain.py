"""Per-pixel explanations: which pixels does a denoised pixel average?

:func:`nlm_weight_map` gives the normalised non-local means weights of one
pixel over its search window (formula ``"fast"`` of :func:`nlmeans.denoise`,
written out in plain NumPy: it is one pixel). :func:`explain_pixel` draws the
picture of ``nlmeans explain``: the image with the search window marked, the
window enlarged, the NLM weights over it, and the attention of the shipped
neural denoiser's first non-local block for the same pixel (when torch and the
shipped weights are available; otherwise the classical panels alone, and a
note says why; weights given by name that are refused make :func:`explain_pixel` raise).

Positions are ``(row, column)`` in NumPy order; the command line takes
``--at X,Y`` (column, row) and converts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .io import to_unit_float

__all__ = ["Explanation", "explain_pixel", "neural_attention", "nlm_weight_map"]


def _as_unit_float(image: np.ndarray) -> np.ndarray:
    if image.dtype.kind not in "uf":
        raise TypeError(f"image must be unsigned integer or float, got {image.dtype}")
    return to_unit_float(image)


def _channels_last(image, channel_axis) -> np.ndarray:
    image = np.asarray(image)
    if channel_axis is None:
        if image.ndim != 2:
            raise ValueError(
                f"image must be 2-D (gray) or have a channel_axis; got shape {image.shape}"
            )
        return image[..., None]
    if image.ndim != 3:
        raise ValueError(f"an image with channel_axis must be 3-D, got shape {image.shape}")
    try:
        return np.moveaxis(image, channel_axis, -1)
    except np.exceptions.AxisError:
        raise ValueError(
            f"channel_axis={channel_axis} is out of range for shape {image.shape}"
        ) from None


def _check_position(position, shape) -> tuple[int, int]:
    try:
        row, col = (int(v) for v in position)
    except (TypeError, ValueError):
        raise ValueError(f"position must be (row, column), got {position!r}") from None
    if not (0 <= row < shape[0] and 0 <= col < shape[1]):
        raise ValueError(
            f"position (row {row}, column {col}) is outside the {shape[1]}x{shape[0]} image"
        )
    return row, col


def nlm_weight_map(
    image,
    position: Sequence[int],
    *,
    h: float,
    sigma: float,
    patch_size: int,
    patch_distance: int,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Normalised NLM weights of the pixel at ``position`` over its search window.

    Formula ``"fast"`` of :func:`nlmeans.denoise`: with ``u`` the image on the
    [0, 1] scale (integers divided by their maximum) and ``P`` its reflect
    padding, ``d2(i, j)`` is the mean over the ``s x s`` patch offsets and the
    channels of ``(P(i+k) - P(j+k))^2``, ``w = exp(-max(d2 - 2 sigma^2, 0) / h^2)``.

    Returns a ``(2d+1, 2d+1)`` float64 array (``d = patch_distance``) centred
    on ``position``: entry ``[d + dy, d + dx]`` is the weight of the pixel at
    ``(row + dy, col + dx)`` divided by the sum of all weights, so the map sums
    to 1 and ``sum(map * window) == denoised pixel``. Window positions outside
    the image are 0 (they are not candidates).
    """
    image = np.asarray(image)
    u = _as_unit_float(_channels_last(image, channel_axis))
    height, width, _ = u.shape
    row, col = _check_position(position, (height, width))
    if (
        isinstance(patch_size, bool)
        or int(patch_size) != patch_size
        or patch_size < 1
        or patch_size % 2 == 0
    ):
        raise ValueError(f"patch_size must be a positive odd integer, got {patch_size!r}")
    if (
        isinstance(patch_distance, bool)
        or int(patch_distance) != patch_distance
        or patch_distance < 0
    ):
        raise ValueError(f"patch_distance must be a non-negative integer, got {patch_distance!r}")
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"h must be positive, got {h!r}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    s, d = int(patch_size), int(patch_distance)
    f = s // 2
    padded = np.pad(u, ((f, f), (f, f), (0, 0)), mode="reflect") if f else u
    # Candidate pixels: the window clipped to the image.
    r0, r1 = max(0, row - d), min(height - 1, row + d)
    c0, c1 = max(0, col - d), min(width - 1, col + d)
    reference = padded[row : row + s, col : col + s]  # patch centred on (row, col)
    region = padded[r0 : r1 + s, c0 : c1 + s]
    patches = np.lib.stride_tricks.sliding_window_view(region, (s, s), axis=(0, 1))
    # patches: (rows, cols, C, s, s); reference as (C, s, s)
    diff = patches - np.moveaxis(reference, -1, 0)[None, None]
    d2 = np.mean(diff * diff, axis=(2, 3, 4))
    weights = np.exp(-np.maximum(d2 - 2.0 * sigma * sigma, 0.0) / (h * h))
    out = np.zeros((2 * d + 1, 2 * d + 1))
    out[r0 - row + d : r1 - row + d + 1, c0 - col + d : c1 - col + d + 1] = weights
    return out / out.sum()


def neural_attention(
    gray: np.ndarray, position: Sequence[int], *, weights=None
) -> tuple[np.ndarray, dict]:
    """Attention of the shipped model's first ``NonLocalBlock2d`` for one pixel.

    A colour model (3 input channels) is given the gray image in each channel;
    a spacetime model is refused (``ValueError``).

    ``gray``: 2-D float image in [0, 1]. Runs the network once, captures the
    input of its first non-local block (at the network's working resolution)
    and returns ``block.attention_map(x, query)`` for the block position that
    holds ``position``, as a 2-D NumPy array over the block's key grid, with a
    dict: ``scale`` (image pixels per key-grid cell), ``query`` (row, col on the
    key grid), ``window`` (the block's radius or None), ``mode``.

    Raises ``ImportError`` without torch, ``FileNotFoundError`` without the
    shipped weights, ``LookupError`` for a model without non-local block.
    """
    import torch

    from .neural import load_model
    from .neural.block import NonLocalBlock2d

    model = load_model(weights)
    if model.config.spacetime:
        raise ValueError(
            f"{weights}: a spacetime model ({model.config.frames} frames) attends over a clip; "
            "explain shows one image: give a single-image model"
        )
    block = next((m for m in model.modules() if isinstance(m, NonLocalBlock2d)), None)
    if block is None:
        raise LookupError("the neural model has no non-local block")
    row, col = _check_position(position, gray.shape)
    captured: dict = {}

    def hook(_module, args):
        captured.setdefault("x", args[0].detach())

    handle = block.register_forward_pre_hook(hook)
    try:
        x = torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32))[None, None]
        # A colour model sees the gray image in its R, G and B (explain works on gray).
        x = x.expand(1, model.config.in_channels, *gray.shape)
        sigma = None
        if not model.blind:
            import nlmeans

            # The sigma nlmeans.denoise hands the network (white or correlated noise).
            sigma = float(nlmeans.estimate_noise_level(gray).sigma)
        with torch.no_grad():
            model(x, sigma)
            feat = captured["x"]  # (1, C, H', W'): the block's input grid
            # The network works at 1/downscale of the (padded) image.
            scale = model.config.downscale
            query = (min(row // scale, feat.shape[2] - 1), min(col // scale, feat.shape[3] - 1))
            attention = block.attention_map(feat, query)[0].float().cpu().numpy()
    finally:
        handle.remove()
    # Key cells may be coarser than query cells (max-pooled keys with sub_sample).
    key_scale = scale * feat.shape[2] / attention.shape[0]
    if attention.shape != tuple(feat.shape[2:]):
        query = (
            query[0] * attention.shape[0] // feat.shape[2],
            query[1] * attention.shape[1] // feat.shape[3],
        )
    info = {
        "scale": float(scale),
        "key_scale": float(key_scale),
        "query": query,
        "window": getattr(block, "window", None),
        "mode": getattr(block, "mode", "?"),
        "grid": tuple(feat.shape[2:]),
    }
    return attention, info


@dataclass
class Explanation:
    """What :func:`explain_pixel` computed and drew."""

    picture: np.ndarray  #: RGB uint8
    weights: np.ndarray  #: the NLM weight map
    position: tuple[int, int]
    parameters: dict
    #: the pixel's value on the [0, 1] scale: a scalar for gray, one per channel for colour
    value: np.ndarray
    #: the weighted mean of the search window with :attr:`weights`: the pixel's NLM estimate
    estimate: np.ndarray
    #: how many pixels of the search window lie inside the image
    window_pixels: int
    attention: np.ndarray | None = None
    attention_info: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def effective_neighbours(self) -> float:
        """1 / sum(w^2): how many pixels the average effectively uses."""
        return float(1.0 / np.sum(self.weights**2))

    @property
    def sharing_largest_weight(self) -> int:
        """How many pixels have the largest weight: every patch within the
        noise (``d^2 <= 2 sigma^2``) gets the same, full weight."""
        top = float(self.weights.max())
        return int(np.count_nonzero(self.weights >= top * (1 - 1e-6))) if top > 0 else 0

    def top_neighbours(self, k: int = 5) -> list[tuple[int, int, float]]:
        """The ``k`` largest weights as (row, col, weight), the centre included;
        only pixels with a weight (those outside the image have none), so
        fewer than ``k`` where fewer weigh anything."""
        d = self.weights.shape[0] // 2
        flat = np.argsort(-self.weights, axis=None, kind="stable")[:k]
        flat = flat[self.weights.ravel()[flat] > 0]
        rows, cols = np.unravel_index(flat, self.weights.shape)
        r, c = self.position
        return [
            (int(r + y - d), int(c + x - d), float(self.weights[y, x])) for y, x in zip(rows, cols)
        ]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _to_rgb_u8(u: np.ndarray) -> np.ndarray:
    if u.ndim == 2:
        u = np.repeat(u[..., None], 3, axis=2)
    elif u.shape[2] == 1:
        u = np.repeat(u, 3, axis=2)
    return np.clip(np.rint(np.clip(u[..., :3], 0, 1) * 255), 0, 255).astype(np.uint8)


def _colour_map(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """[0, 1] values -> RGB uint8 (viridis); invalid cells drawn mid gray."""
    import cv2

    u8 = np.clip(np.rint(np.clip(values, 0, 1) * 255), 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(u8, cv2.COLORMAP_VIRIDIS)
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    if valid is not None:
        rgb[~valid] = 128
    return rgb


def _caption(width: int, lines: Sequence[str]) -> np.ndarray:
    import cv2

    pic = np.full((6 + 15 * len(lines), width, 3), 255, np.uint8)
    for k, text in enumerate(lines):
        cv2.putText(
            pic, text, (4, 14 + 15 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA
        )
    return pic


def _fit(picture: np.ndarray, size: int, nearest: bool) -> tuple[np.ndarray, float]:
    import cv2

    h, w = picture.shape[:2]
    scale = size / max(h, w)
    interp = cv2.INTER_NEAREST if nearest or scale > 1 else cv2.INTER_AREA
    out = cv2.resize(
        picture, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp
    )
    return out, scale


def _pad_to(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    out = np.full((height, width, 3), 255, np.uint8)
    out[: picture.shape[0], : picture.shape[1]] = picture
    return out


def explain_pixel(
    image,
    position: Sequence[int],
    *,
    h: float | None = None,
    sigma: float | None = None,
    patch_size: int | None = None,
    patch_distance: int | None = None,
    channel_axis: int | None = None,
    neural: bool = True,
    neural_weights=None,
    panel_size: int = 256,
) -> Explanation:
    """Compute and draw the explanation of one pixel (see the module docstring).

    Parameters left as None are chosen by :func:`nlmeans.resolve_parameters`
    for method ``"fast"``, exactly as ``nlmeans.denoise`` would; a colour
    image is explained with the joint weights of ``color_space="rgb"`` (one
    weight per pixel pair), with that colour space's parameters.
    ``neural=False`` skips the neural panel; ``neural_weights``: a weights or
    checkpoint file for it instead of the shipped model. A missing torch or
    weights file only leaves the panel out (``notes`` says why); a
    ``neural_weights`` file that is refused (not an nlmeans denoiser file,
    corrupt, or carrying pickled code) raises the loader's ``ValueError``,
    which names the file.
    """
    import cv2

    import nlmeans

    image = np.asarray(image)
    params = nlmeans.resolve_parameters(
        image,
        h=h,
        sigma=sigma,
        patch_size=patch_size,
        patch_distance=patch_distance,
        method="fast",
        channel_axis=channel_axis,
        # One map of weights per pixel: the joint colour weights (the
        # opponent path has separate luminance and chrominance weights).
        color_space="rgb" if channel_axis is not None else "auto",
    )
    u = _as_unit_float(_channels_last(image, channel_axis))
    height, width = u.shape[:2]
    row, col = _check_position(position, (height, width))
    weights = nlm_weight_map(
        image,
        (row, col),
        h=params.h,
        sigma=params.sigma,
        patch_size=params.patch_size,
        patch_distance=params.patch_distance,
        channel_axis=channel_axis,
    )
    d, f = params.patch_distance, params.patch_size // 2
    notes: list[str] = []

    # Panel 1: the image, search window (yellow) and patch (red) marked.
    disp, scale = _fit(_to_rgb_u8(u[..., 0] if u.shape[2] == 1 else u), panel_size, nearest=False)

    def box(pic, r, c, radius, colour):
        x0, y0 = int((c - radius) * scale), int((r - radius) * scale)
        x1, y1 = int((c + radius + 1) * scale) - 1, int((r + radius + 1) * scale) - 1
        cv2.rectangle(pic, (x0, y0), (max(x0, x1), max(y0, y1)), colour, 1)

    box(disp, row, col, d, (255, 220, 0))
    box(disp, row, col, f, (255, 0, 0))
    panels = [
        (disp, [f"image, pixel x={col} y={row}", "yellow: search window", "red: patch"]),
    ]

    # Panel 2: the search window itself, enlarged like the weights next to it.
    rgb_full = _to_rgb_u8(u[..., 0] if u.shape[2] == 1 else u)
    crop = np.full((2 * d + 1, 2 * d + 1, 3), 128, np.uint8)
    r0, r1 = max(0, row - d), min(height, row + d + 1)
    c0, c1 = max(0, col - d), min(width, col + d + 1)
    crop[r0 - row + d : r1 - row + d, c0 - col + d : c1 - col + d] = rgb_full[r0:r1, c0:c1]
    crop_pic, cscale = _fit(crop, panel_size, nearest=True)
    cv2.rectangle(
        crop_pic,
        (int((d - f) * cscale), int((d - f) * cscale)),
        (int((d + f + 1) * cscale) - 1, int((d + f + 1) * cscale) - 1),
        (255, 0, 0),
        1,
    )
    panels.append(
        (crop_pic, ["search window, enlarged", "red: the pixel's patch", "gray: outside the image"])
    )

    # Panel 3: the NLM weights over the window; the colour scale leaves the
    # centre out (it weighs 1 before normalisation and would flatten the rest).
    offsets = np.arange(-d, d + 1)
    valid = ((row + offsets >= 0) & (row + offsets < height))[:, None] & (
        (col + offsets >= 0) & (col + offsets < width)
    )[None, :]
    others = weights.copy()
    others[d, d] = 0
    top = others.max() if others.max() > 0 else weights.max()
    nlm_pic, wscale = _fit(_colour_map(weights / top, valid), panel_size, nearest=True)
    cv2.rectangle(
        nlm_pic,
        (int(d * wscale), int(d * wscale)),
        (int((d + 1) * wscale) - 1, int((d + 1) * wscale) - 1),
        (255, 0, 0),
        1,
    )
    eff = 1.0 / float(np.sum(weights**2))
    panels.append(
        (
            nlm_pic,
            [
                f"NLM weights {2 * d + 1}x{2 * d + 1}, patch {params.patch_size}",
                f"h={params.h:.4f} sigma={params.sigma:.4f}",
                f"effective neighbours {eff:.1f}",
            ],
        )
    )

    attention, info = None, {}
    if neural:
        gray = u.mean(axis=2)
        try:
            attention, info = neural_attention(gray, (row, col), weights=neural_weights)
        except (ImportError, FileNotFoundError, LookupError, ValueError, RuntimeError) as exc:
            if neural_weights is not None and isinstance(exc, ValueError):
                # Weights asked for by name that are refused (not ours, corrupt,
                # carrying pickled code): an error, not a picture silently drawn
                # without its panel. A missing model or torch only leaves the
                # panel out, as for the shipped model.
                raise
            notes.append(f"neural panel left out: {_first_line(exc)}")
        else:
            qr, qc = info["query"]
            window = info["window"]
            if window is not None:
                a0r, a1r = max(0, qr - window), min(attention.shape[0], qr + window + 1)
                a0c, a1c = max(0, qc - window), min(attention.shape[1], qc + window + 1)
                shown = np.zeros((2 * window + 1, 2 * window + 1))
                shown_valid = np.zeros_like(shown, dtype=bool)
                shown[
                    a0r - qr + window : a1r - qr + window, a0c - qc + window : a1c - qc + window
                ] = attention[a0r:a1r, a0c:a1c]
                shown_valid[
                    a0r - qr + window : a1r - qr + window, a0c - qc + window : a1c - qc + window
                ] = True
                centre = (window, window)
            else:
                shown, shown_valid, centre = attention, np.ones(attention.shape, bool), (qr, qc)
            peak = shown.max() if shown.max() > 0 else 1.0
            att_pic, ascale = _fit(_colour_map(shown / peak, shown_valid), panel_size, nearest=True)
            cy, cx = centre
            cv2.rectangle(
                att_pic,
                (int(cx * ascale), int(cy * ascale)),
                (int((cx + 1) * ascale) - 1, int((cy + 1) * ascale) - 1),
                (255, 0, 0),
                1,
            )
            cell = info["key_scale"]
            panels.append(
                (
                    att_pic,
                    [
                        f"neural block 1 attention ({info['mode']})",
                        f"{shown.shape[1]}x{shown.shape[0]} cells of {cell:g}x{cell:g} px",
                        "gray image (mean of channels)" if u.shape[2] > 1 else "",
                    ],
                )
            )
            if u.shape[2] > 1:
                notes.append("the neural model sees the mean of the colour channels")
    else:
        notes.append("neural panel not requested")

    n_lines = max(len(lines) for _p, lines in panels)
    tile_h = max(p.shape[0] for p, _l in panels)
    tiles = []
    for pic, lines in panels:
        lines = list(lines) + [""] * (n_lines - len(lines))
        body = _pad_to(pic, tile_h, panel_size)
        tiles.append(np.concatenate([_caption(panel_size, lines), body], axis=0))
    sep = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    row_pics = [tiles[0]]
    for tile in tiles[1:]:
        row_pics += [sep, tile]
    picture = np.concatenate(row_pics, axis=1)

    # The estimate the weights give: the window (zero outside the image, where
    # the weights are zero too) averaged with them.
    values = u[..., 0] if u.shape[2] == 1 else u
    window = np.zeros((2 * d + 1, 2 * d + 1) + values.shape[2:])
    window[r0 - row + d : r1 - row + d, c0 - col + d : c1 - col + d] = values[r0:r1, c0:c1]
    return Explanation(
        picture=picture,
        weights=weights,
        position=(row, col),
        value=values[row, col],
        estimate=np.tensordot(weights, window, axes=([0, 1], [0, 1])),
        window_pixels=int((r1 - r0) * (c1 - c0)),
        parameters={
            "h": float(params.h),
            "sigma": float(params.sigma),
            "patch_size": int(params.patch_size),
            "patch_distance": int(params.patch_distance),
            "sigma_estimated": bool(params.sigma_estimated),
        },
        attention=attention,
        attention_info=info,
        notes=notes,
    )
