"""Synthetic image sequences with motion, made from still images.

:func:`make_sequence` turns a photograph into a short clip with the motions
real footage has: a global camera pan and zoom, independently moving objects
(pieces of other photographs, pasted with a soft-edged mask, each on its own
path), objects occluding each other and the background, and objects entering
or leaving the frame. Clips are deterministic for a given seed. They are what
the sequence parameters are fitted on and what the video benchmark measures
(clean frames; add noise yourself). :func:`make_volume_sequence` does the
same for volumes over time (3-D + t, as in time-lapse microscopy).
"""

from __future__ import annotations

import numpy as np

from .io import to_unit_float

__all__ = ["MOTIONS", "make_sequence", "make_volume_sequence"]

#: The motion kinds of :func:`make_sequence`.
MOTIONS = ("static", "pan", "zoom", "objects", "mixed")


def make_sequence(
    image,
    n_frames: int,
    *,
    seed: int,
    motion: str = "mixed",
    objects=None,
    n_objects: int = 2,
    frame_shape=None,
    max_speed: float = 2.0,
) -> np.ndarray:
    """A clip of ``n_frames`` clean frames made from ``image`` with motion.

    Parameters
    ----------
    image : ndarray
        2-D gray or ``(H, W, C)`` colour image (uint8, uint16 or float in
        [0, 1]); the background of the clip.
    n_frames : int
        Number of frames (at least 1).
    seed : int
        Seed of every random choice (paths, speeds, objects): the same seed
        gives the same clip.
    motion : {"static", "pan", "zoom", "objects", "mixed"}
        ``"pan"``: the camera moves at a constant velocity of up to
        ``max_speed`` pixels per frame in a random direction; ``"zoom"``: it
        zooms in or out by up to 1 % per frame; ``"objects"``: a static
        background with ``n_objects`` moving objects; ``"mixed"``: pan, zoom
        and objects together.
    objects : sequence of ndarray, optional
        Images the moving objects are cut from (each object from one of them,
        chosen by the seed); by default from ``image`` itself, far from where
        it shows.
    n_objects : int
        Number of moving objects for ``"objects"`` and ``"mixed"``.
    frame_shape : (int, int), optional
        Height and width of the frames; default three quarters of the image,
        which leaves the camera room to move.
    max_speed : float
        Largest speed, in pixels per frame, of the camera and of the objects
        (objects go up to twice as fast as the camera).

    Returns
    -------
    ndarray
        float64 frames in [0, 1], shape ``(n_frames, h, w)`` or ``(n_frames,
        h, w, C)``.

    Notes
    -----
    The camera path is an affine map per frame (translation and isotropic
    scale about the frame centre), resampled bilinearly
    (:func:`scipy.ndimage.map_coordinates`) and kept inside the image: the
    pan speed is reduced when the clip would leave it. Objects are
    elliptical pieces, 1/6 to 1/3 of the frame's smaller side, with a
    one-pixel soft edge, moving in straight lines at sub-pixel positions and
    drawn in a fixed depth order, so they hide each other and the
    background; some start or end outside the frame.
    """
    from scipy import ndimage

    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {', '.join(MOTIONS)}; got {motion!r}")
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    base = to_unit_float(np.asarray(image))
    if base.ndim not in (2, 3):
        raise ValueError(f"image must be 2-D gray or (H, W, C), got shape {base.shape}")
    colour = base.ndim == 3
    height, width = base.shape[:2]
    if frame_shape is None:
        frame_shape = (height * 3 // 4, width * 3 // 4)
    fh, fw = (int(n) for n in frame_shape)
    if not (4 <= fh <= height and 4 <= fw <= width):
        raise ValueError(f"frame_shape {frame_shape} must fit in the image ({height}, {width})")
    rng = np.random.default_rng(seed)
    sources = [base] if objects is None else [to_unit_float(np.asarray(o)) for o in objects]

    # Camera: centre path and scale per frame (scale > 1 zooms in).
    pan = motion in ("pan", "mixed")
    zoom = motion in ("zoom", "mixed")
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.5, 1.0) * max_speed if pan else 0.0
    rate = rng.uniform(-0.01, 0.01) if zoom else 0.0
    scales = (1.0 + rate) ** np.arange(n_frames)
    scales = np.maximum(scales, 1.0 / min(height / fh, width / fw))  # never show beyond the image
    travel = (n_frames - 1) * speed
    # Room left for the centre at the widest view of the clip.
    room_y = (height - fh / scales.min()) / 2
    room_x = (width - fw / scales.min()) / 2
    vy, vx = speed * np.sin(angle), speed * np.cos(angle)
    if travel > 0:
        shrink = min(1.0, 2 * room_y / (abs(vy) * (n_frames - 1) + 1e-9))
        shrink = min(shrink, 2 * room_x / (abs(vx) * (n_frames - 1) + 1e-9))
        vy, vx = vy * shrink, vx * shrink
    t = np.arange(n_frames) - (n_frames - 1) / 2
    centres_y = (height - 1) / 2 + vy * t
    centres_x = (width - 1) / 2 + vx * t

    # Objects: a piece of a source image with an elliptical soft mask, a
    # start position and a velocity; drawn in list order (later on top).
    sprites = []
    n_obj = n_objects if motion in ("objects", "mixed") else 0
    for _ in range(n_obj):
        src = sources[rng.integers(len(sources))]
        size = int(rng.uniform(1 / 6, 1 / 3) * min(fh, fw))
        size = max(size, 3)
        sy = int(rng.integers(0, max(1, src.shape[0] - size)))
        sx = int(rng.integers(0, max(1, src.shape[1] - size)))
        piece = src[sy : sy + size, sx : sx + size]
        if piece.ndim != base.ndim:  # gray source for a colour clip or the reverse
            piece = (
                np.repeat(piece[..., None], base.shape[2], axis=2) if colour else piece.mean(axis=2)
            )
        elif colour and piece.shape[2] != base.shape[2]:
            piece = np.repeat(piece.mean(axis=2, keepdims=True), base.shape[2], axis=2)
        ph, pw = piece.shape[:2]
        yy, xx = np.mgrid[:ph, :pw]
        r = np.hypot((yy - (ph - 1) / 2) / (ph / 2), (xx - (pw - 1) / 2) / (pw / 2))
        mask = np.clip((1.0 - r) * min(ph, pw) / 2, 0.0, 1.0)  # one-pixel soft edge
        obj_angle = rng.uniform(0, 2 * np.pi)
        obj_speed = rng.uniform(0.5, 2.0) * max_speed
        start = np.array([rng.uniform(-ph / 2, fh - ph / 2), rng.uniform(-pw / 2, fw - pw / 2)])
        velocity = obj_speed * np.array([np.sin(obj_angle), np.cos(obj_angle)])
        sprites.append((piece, mask, start, velocity))

    out_shape = (n_frames, fh, fw) + ((base.shape[2],) if colour else ())
    frames = np.empty(out_shape)
    gy, gx = np.mgrid[:fh, :fw].astype(np.float64)
    for i in range(n_frames):
        ys = centres_y[i] + (gy - (fh - 1) / 2) / scales[i]
        xs = centres_x[i] + (gx - (fw - 1) / 2) / scales[i]
        coords = np.stack([ys, xs])
        if colour:
            frame = np.stack(
                [
                    ndimage.map_coordinates(base[..., c], coords, order=1, mode="reflect")
                    for c in range(base.shape[2])
                ],
                axis=-1,
            )
        else:
            frame = ndimage.map_coordinates(base, coords, order=1, mode="reflect")
        for piece, mask, start, velocity in sprites:
            _paste(frame, piece, mask, start + velocity * i, ndimage)
        frames[i] = np.clip(frame, 0.0, 1.0)
    return frames


def _paste(frame, piece, mask, position, ndimage) -> None:
    """Blend ``piece`` into ``frame`` with its top-left corner at sub-pixel ``position``."""
    top, left = int(np.floor(position[0])), int(np.floor(position[1]))
    frac = (position[0] - top, position[1] - left)
    ph, pw = mask.shape
    # Sub-pixel shift of the piece and its mask into a one-pixel-larger canvas.
    pad = ((1, 1), (1, 1)) + (((0, 0),) if piece.ndim == 3 else ())
    shift = frac + ((0.0,) if piece.ndim == 3 else ())
    moved = ndimage.shift(np.pad(piece, pad, mode="edge"), shift, order=1, mode="nearest")
    alpha = ndimage.shift(np.pad(mask, 1), frac, order=1, mode="constant")
    top, left = top - 1, left - 1
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + ph + 2, frame.shape[0]), min(left + pw + 2, frame.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    window = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    a = alpha[window]
    if frame.ndim == 3:
        a = a[..., None]
    frame[y0:y1, x0:x1] = (1 - a) * frame[y0:y1, x0:x1] + a * moved[window]


def make_volume_sequence(
    image,
    n_frames: int,
    *,
    depth: int,
    seed: int,
    frame_shape=None,
    n_cells: int = 6,
    max_speed: float = 1.0,
) -> np.ndarray:
    """A time series of ``n_frames`` clean 3-D volumes made from a 2-D ``image``, with motion.

    The volume's texture comes from the photograph: slice ``z`` samples it
    along a plane tilted by a random slope (so structures run obliquely
    through the stack) with a slow change of contrast along ``z``. Over
    time the whole volume drifts (stage drift) at a constant random
    velocity of up to ``max_speed`` voxels per frame along z, y and x, and
    ``n_cells`` soft-edged ellipsoids ("cells", brighter or darker than
    their surroundings, radii of 2 to 4 voxels in z and 3 to 8 in y and x)
    move on their own straight paths at up to twice that speed, entering,
    leaving and crossing each other. Deterministic for a given ``seed``.

    Parameters
    ----------
    image : ndarray
        2-D gray image (uint8, uint16 or float in [0, 1]).
    n_frames, depth : int
        Number of time points, and of slices per volume.
    seed : int
        Seed of every random choice.
    frame_shape : (int, int), optional
        Height and width of the slices; default half the image's, which
        leaves room for the tilt and the drift.
    n_cells : int
        Number of moving ellipsoids.
    max_speed : float
        Largest drift speed, in voxels per frame.

    Returns
    -------
    ndarray
        float64 volumes in [0, 1], shape ``(n_frames, depth, h, w)``.
    """
    from scipy import ndimage

    for name, value in (("n_frames", n_frames), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    base = to_unit_float(np.asarray(image))
    if base.ndim != 2:
        raise ValueError(f"image must be 2-D gray, got shape {base.shape}")
    height, width = base.shape
    fh, fw = (height // 2, width // 2) if frame_shape is None else (int(n) for n in frame_shape)
    if not (4 <= fh <= height and 4 <= fw <= width):
        raise ValueError(f"frame_shape {frame_shape} must fit in the image ({height}, {width})")
    rng = np.random.default_rng(seed)
    slope = rng.uniform(-0.6, 0.6, size=2)  # pixels of the image per slice, y and x
    contrast_period = rng.uniform(2.0, 4.0) * depth
    direction = rng.normal(size=3)
    velocity = rng.uniform(0.5, 1.0) * max_speed * direction / np.linalg.norm(direction)
    # Keep every sample inside the image: the frame starts where the tilt
    # and the drift of the whole series fit.
    reach = np.abs(slope) * (depth + abs(velocity[0]) * n_frames) + np.abs(velocity[1:]) * n_frames
    origin = np.array([(height - fh) / 2, (width - fw) / 2])
    if np.any(origin < reach / 2):
        raise ValueError(
            f"image ({height}, {width}) is too small for slices {fh, fw} with this drift and depth"
        )
    cells = []
    for _ in range(n_cells):
        radius = np.array([rng.uniform(2, 4), rng.uniform(3, 8), rng.uniform(3, 8)])
        start = rng.uniform([0, 0, 0], [depth, fh, fw])
        heading = rng.normal(size=3)
        speed = rng.uniform(0.5, 2.0) * max_speed
        cells.append(
            (radius, start, speed * heading / np.linalg.norm(heading), rng.uniform(-0.35, 0.35))
        )

    gz, gy, gx = np.mgrid[:depth, :fh, :fw].astype(np.float64)
    out = np.empty((n_frames, depth, fh, fw))
    t0 = (n_frames - 1) / 2
    for i in range(n_frames):
        z = gz + velocity[0] * (i - t0)
        ys = origin[0] + gy + velocity[1] * (i - t0) + slope[0] * (z - depth / 2)
        xs = origin[1] + gx + velocity[2] * (i - t0) + slope[1] * (z - depth / 2)
        volume = ndimage.map_coordinates(base, np.stack([ys, xs]), order=1, mode="reflect")
        contrast = 0.75 + 0.25 * np.cos(2 * np.pi * z / contrast_period)
        volume = 0.5 + contrast * (volume - 0.5)
        for radius, start, heading, level in cells:
            centre = start + heading * i
            r = np.sqrt(
                ((gz - centre[0]) / radius[0]) ** 2
                + ((gy - centre[1]) / radius[1]) ** 2
                + ((gx - centre[2]) / radius[2]) ** 2
            )
            volume += level * np.clip((1.0 - r) * radius.min(), 0.0, 1.0)  # soft one-voxel edge
        out[i] = np.clip(volume, 0.0, 1.0)
    return out
