"""Training data: the image files of a folder, how they are read and split,
and the random patch batches with their synthetic noise.

* :func:`list_images` finds the images under a folder (recursively, sorted);
  :func:`read_gray` / :func:`read_rgb` read one as float in [0, 1];
* :func:`load_data` reads a folder for a gray or colour network: training
  images, held-out validation pairs (fixed noise seeds), and a fingerprint
  of the files (to warn when a resumed run sees other data); for a
  spacetime network (``frames > 1``) it turns every image into short clips
  with motion (:func:`nlmeans.synthetic.make_sequence`), whose frames the
  sampler treats as the channels of one image;
* :class:`PatchSampler` draws noisy/clean patch batches from one
  ``torch.Generator``, vectorised, on the generator's device.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .._checks import IMAGE_SUFFIXES
from ..io import read_image
from .camera import camera_noise
from .train_config import CLIP_MOTIONS_DEFAULT, TrainConfig

__all__ = [
    "IMAGE_EXTENSIONS",
    "PatchSampler",
    "TrainingData",
    "list_images",
    "load_data",
    "read_gray",
    "read_rgb",
]

#: The suffixes training looks for: those the CLI reads.
IMAGE_EXTENSIONS = IMAGE_SUFFIXES
VAL_CROP = 256  # validation images are centre-cropped to at most this size
#: Camera-noise patches: their map is the true luminance level times a factor
#: drawn log-uniformly in this range (see PatchSampler._camera).
_CAMERA_MAP_SPREAD = (0.5, 2.0)
#: The default of TrainConfig.clip_motions (kept here under its old name).
CLIP_MOTIONS = CLIP_MOTIONS_DEFAULT


def list_images(data_dir: str | os.PathLike) -> list[Path]:
    """Image files (by extension, case-insensitive) under ``data_dir``, sorted."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"training data folder not found: {root}")
    files = [
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _read_pixels(path: Path) -> np.ndarray:
    """Pixels of an image file as :func:`nlmeans.io.read_image` reads it
    (the same files and checks as the CLI), alpha dropped."""
    arr = read_image(path).pixels
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 2:  # gray + alpha
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 4:  # drop alpha
        arr = arr[..., :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise ValueError(f"{path}: expected a 2-D gray or colour image, got shape {arr.shape}")
    return arr


def _unit_float(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == bool:
        return arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float64) / float(np.iinfo(arr.dtype).max)
    return np.clip(np.nan_to_num(arr.astype(np.float64)), 0.0, 1.0)


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """Read an image as 2-D float32 gray in [0, 1] (see module docstring)."""
    arr = _unit_float(_read_pixels(Path(path)))
    if arr.ndim == 3:
        arr = arr @ np.array([0.2125, 0.7154, 0.0721])
    return np.ascontiguousarray(arr, dtype=np.float32)


def read_rgb(path: str | os.PathLike, *, keep_uint8: bool = False) -> np.ndarray:
    """Read an image as ``(3, H, W)`` RGB in [0, 1] (gray is repeated 3 times).

    float32, or with ``keep_uint8`` the file's own uint8 values when it has
    them (a quarter of the memory; the sampler scales patches by 1/255).
    """
    arr = _read_pixels(Path(path))
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if not (keep_uint8 and arr.dtype == np.uint8):
        arr = _unit_float(arr).astype(np.float32)
    return np.ascontiguousarray(np.moveaxis(arr, -1, 0))


def _split(n: int, val_fraction: float) -> tuple[list[int], list[int]]:
    """Seed-independent split: evenly spaced files go to validation."""
    n_val = 0
    if val_fraction > 0 and n >= 2:
        n_val = min(n - 1, max(1, round(n * val_fraction)))
    val = sorted({int((i + 0.5) * n / n_val) for i in range(n_val)}) if n_val else []
    val_set = set(val)
    return [i for i in range(n) if i not in val_set], val


def _fingerprint(files: Sequence[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(root).as_posix().encode())
        h.update(str(p.stat().st_size).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------
# batches
# ---------------------------------------------------------------------------
class PatchSampler:
    """Random noisy/clean patch batches, driven only by one torch.Generator.

    Every image lives in one flat buffer on the generator's device, so that
    a batch is gathered with one indexing operation and its noise drawn
    there too: no Python loop over patches and no host-to-device copy of
    the batch. Images are ``(H, W)`` (gray) or ``(C, H, W)`` tensors, float
    in [0, 1] or uint8 (scaled by 1/255 after the gather).

    ``batch()`` returns ``(noisy, clean, sigma)``; ``sigma`` is one level per
    patch, ``(B,)``, for ``"gaussian"`` and ``"poisson-gaussian"``, and a
    per-pixel map ``(B, C, p, p)`` for ``"mixture"`` (the true standard
    deviation) and ``"camera"`` (see :meth:`_camera`).

    With ``frames > 1`` the channels are the frames of a clip. A share
    ``settings.clip_ends`` of the windows is then cut by a clip end, as
    ``denoise_sequence`` cuts the windows of a clip's first and last ``k``
    frames: the frames beyond the end are replaced by the end frame, noise
    included (see :meth:`_cut_at_clip_end`).
    """

    def __init__(
        self,
        images: list[torch.Tensor],
        settings: TrainConfig,
        generator: torch.Generator,
        *,
        frames: int = 1,
    ):
        self.s = settings
        self.g = generator
        self.frames = frames
        dev = generator.device
        p = settings.patch_size
        planes = [im if im.ndim == 3 else im[None] for im in images]
        self.channels = planes[0].shape[0]
        if any(im.shape[0] != self.channels for im in planes):
            raise ValueError("training images must all have the same number of channels")
        self.uint8 = all(im.dtype == torch.uint8 for im in planes)
        if not self.uint8:
            planes = [im if im.dtype == torch.float32 else _to_float(im) for im in planes]
        heights = torch.tensor([im.shape[1] for im in planes], dtype=torch.int64)
        widths = torch.tensor([im.shape[2] for im in planes], dtype=torch.int64)
        sizes = heights * widths
        self.offsets = (torch.cumsum(sizes, 0) - sizes).to(dev)
        self.heights, self.widths = heights.to(dev), widths.to(dev)
        self.flat = torch.cat([im.reshape(self.channels, -1) for im in planes], dim=1).to(dev)
        counts = ((heights - p + 1) * (widths - p + 1)).to(torch.float64)
        self.weights = (counts / counts.sum()).to(dev)
        self.grid = torch.arange(p, device=dev)

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.g, dtype=torch.float64, device=self.g.device)

    def _gather(self) -> torch.Tensor:
        s, g, p, dev = self.s, self.g, self.s.patch_size, self.g.device
        b = s.batch_size
        idx = torch.multinomial(self.weights, b, replacement=True, generator=g)
        u = self._rand(b, 2)
        sym = torch.randint(0, 8, (b,), generator=g, device=dev)
        heights, widths = self.heights[idx], self.widths[idx]
        y = (u[:, 0] * (heights - p + 1)).long()  # truncation: floor of a positive number
        x = (u[:, 1] * (widths - p + 1)).long()
        start = self.offsets[idx] + y * widths + x
        where = start[:, None, None] + self.grid[None, :, None] * widths[:, None, None] + self.grid
        clean = self.flat[:, where].transpose(0, 1)  # (b, C, p, p)
        clean = _to_float(clean) if self.uint8 else clean
        # The 8 symmetries of the square: a flip, then 0-3 quarter turns,
        # chosen per patch with torch.where (no host sync on a GPU).
        sym = sym.view(b, 1, 1, 1)
        clean = torch.where((sym & 4).bool(), clean.flip(-1), clean)
        turned = clean
        for turns in (1, 2, 3):
            turned = torch.where((sym & 3) == turns, torch.rot90(clean, turns, (-2, -1)), turned)
        return turned

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        noisy, clean, sigma = self._noisy_batch()
        if self.frames > 1 and self.s.clip_ends > 0:
            noisy, sigma = self._cut_at_clip_end(noisy, sigma)
        return noisy, clean, sigma

    def _cut_at_clip_end(
        self, noisy: torch.Tensor, sigma: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows as ``denoise_sequence`` sees them near a clip's ends.

        Each window is cut with probability ``clip_ends``, at its start or
        its end (even odds), leaving ``d`` frames (uniform in ``0 .. k - 1``)
        on that side of the middle one; every frame beyond the cut becomes
        the last frame before it, with the same noise. The middle (target)
        frame is never moved.
        """
        g, dev = self.g, self.g.device
        b, k = noisy.shape[0], self.frames // 2
        cut = self._rand(b) < self.s.clip_ends
        at_start = self._rand(b) < 0.5
        kept = torch.randint(0, k, (b,), generator=g, device=dev)
        lowest = torch.where(cut & at_start, -kept, -k)
        highest = torch.where(cut & ~at_start, kept, k)
        offsets = torch.arange(-k, k + 1, device=dev)
        source = k + torch.minimum(torch.maximum(offsets, lowest[:, None]), highest[:, None])
        index = source.view(b, -1, 1, 1).expand_as(noisy)
        noisy = noisy.gather(1, index)
        if sigma.ndim == 4:  # a per-pixel map follows its frame
            sigma = sigma.gather(1, index)
        return noisy, sigma

    def _noisy_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s, g = self.s, self.g
        clean = self._gather()
        b = clean.shape[0]
        lo, hi = s.sigma
        if s.noise == "mixture":
            return self._mixture(clean, lo / 255.0, hi / 255.0)
        if s.noise == "camera":
            return self._camera(clean, lo / 255.0, hi / 255.0)
        sigma = (lo + (hi - lo) * self._rand(b)).float() / 255.0
        if s.noise == "poisson-gaussian":
            plo, phi = s.poisson_peak
            logp = math.log(plo) + (math.log(phi) - math.log(plo)) * self._rand(b)
            peak = torch.exp(logp).float().view(b, 1, 1, 1)
            noisy = torch.poisson(clean * peak, generator=g) / peak
        else:
            noisy = clean.clone()
        noise = torch.randn(clean.shape, generator=g, device=g.device)
        noisy = noisy + sigma.view(b, 1, 1, 1) * noise
        return noisy, clean, sigma

    def _mixture(self, clean: torch.Tensor, lo: float, hi: float):
        """Gaussian or Poisson-Gaussian noise per patch, with its true sigma map.

        Gaussian patches: one sigma, uniform in [lo, hi], for every pixel and
        channel. Poisson-Gaussian patches: variance ``a * y + b`` per channel
        (the Gaussian approximation of Foi et al. 2008), with two standard
        deviations drawn uniformly in [lo, hi] per channel, the smaller the
        one at black (``b``) and the larger the one at white (``a + b``), so
        that the noise level spans the same range across intensities.
        """
        b, c = clean.shape[:2]
        gaussian = self._rand(b) < self.s.gaussian_fraction
        flat = (lo + (hi - lo) * self._rand(b, 1)).expand(b, c)
        ends = lo + (hi - lo) * self._rand(b, c, 2)
        dark, bright = ends.min(-1).values, ends.max(-1).values
        a_ = torch.where(gaussian[:, None], 0.0, bright**2 - dark**2)
        b_ = torch.where(gaussian[:, None], flat**2, dark**2)
        variance = a_[..., None, None] * clean.double() + b_[..., None, None]
        sigma = variance.clamp_min(0).sqrt().float()
        noise = torch.randn(clean.shape, generator=self.g, device=self.g.device)
        return clean + sigma * noise, clean, sigma

    def _camera(self, clean: torch.Tensor, lo: float, hi: float):
        """Camera noise (:func:`~nlmeans.neural.camera.camera_noise`) on a share
        ``camera_fraction`` of the patches, the ``"mixture"`` on the others.

        The map of a camera patch is its luminance noise level times a
        factor drawn log-uniformly in ``_CAMERA_MAP_SPREAD``. At inference
        the map of camera noise is ``estimate_noise_level``'s sigma. On the
        CBSD432 photographs through this simulated camera that the estimate
        sends to the camera model, it reads 1.13 times the true level
        (median; quartiles 0.89 and 1.51, 10th and 90th percentiles 0.62 and
        2.62: texture adds to the reading; ``benchmarks/camera_map_spread.py``).
        The factor covers the middle of that range, not its tails, so that
        the network checks the level against the noise it sees rather than
        trust it. A wider factor, [0.4, 3], was tried and not shipped (see
        the camera model card, ``nlmeans/neural/weights/README.md``).
        """
        if self.channels != 3:
            raise ValueError("noise='camera' needs RGB images and a colour network (3 channels)")
        noisy, clean, sigma = self._mixture(clean, lo, hi)
        b = clean.shape[0]
        camera_noisy, level = camera_noise(clean, self.g)
        low, high = (math.log(v) for v in _CAMERA_MAP_SPREAD)
        spread = torch.exp(low + (high - low) * self._rand(b)).float()
        camera_sigma = (level * spread).view(b, 1, 1, 1).expand_as(sigma)
        pick = (self._rand(b) < self.s.camera_fraction).view(b, 1, 1, 1)
        return torch.where(pick, camera_noisy, noisy), clean, torch.where(pick, camera_sigma, sigma)


def _to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1], rounded exactly as ``uint8 / 255.0`` in float64."""
    return (pixels.double() / 255.0).float()


def _validation_set(
    images: list[torch.Tensor], sigma255: float, frames: int = 1
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(noisy, clean)`` pairs, noise from fixed seeds. For a spacetime
    network each image becomes one clip (seeded): ``noisy`` holds its
    ``frames`` frames, ``clean`` the middle one."""
    pairs = []
    for i, im in enumerate(images):
        if frames > 1:
            im = _clips(im, frames, seeds=[20_000 + i], motions=("mixed",))[0]
        h, w = im.shape[-2:]
        ch, cw = min(h, VAL_CROP), min(w, VAL_CROP)
        y, x = (h - ch) // 2, (w - cw) // 2
        clean = im[..., y : y + ch, x : x + cw].clone()
        clean = clean[None, None] if clean.ndim == 2 else clean[None]
        gen = torch.Generator().manual_seed(10_000 + i)
        noisy = clean + (sigma255 / 255.0) * torch.randn(clean.shape, generator=gen)
        if frames > 1:
            clean = clean[:, frames // 2 : frames // 2 + 1]
        pairs.append((noisy, clean))
    return pairs


def _clips(image: torch.Tensor, frames: int, *, seeds, motions, objects=None) -> list[torch.Tensor]:
    """Gray clips ``(frames, h, w)`` float32 made from one ``(H, W)`` image."""
    from ..synthetic import make_sequence

    base = image.numpy()
    return [
        torch.from_numpy(
            make_sequence(base, frames, seed=seed, motion=motion, objects=objects).astype(
                np.float32
            )
        )
        for seed, motion in zip(seeds, itertools.cycle(motions))
    ]


def _training_clips(
    images: list[torch.Tensor], frames: int, settings: TrainConfig
) -> list[torch.Tensor]:
    """Clips of every training image, as uint8 ``(frames, h, w)`` tensors."""
    p = settings.patch_size
    motions = settings.clip_motions
    per_image = len(motions)
    clips = []
    for i, im in enumerate(images):
        if im.shape[-2] * 3 // 4 < p or im.shape[-1] * 3 // 4 < p:
            continue  # its clips (3/4 of it) would be smaller than a patch
        # Objects come from two other training images, so that they differ
        # from the background they move over.
        others = [images[(i + 1) % len(images)].numpy(), images[(i + 7) % len(images)].numpy()]
        seeds = [settings.seed * 1_000_003 + i * per_image + j for j in range(per_image)]
        for clip in _clips(im, frames, seeds=seeds, motions=motions, objects=others):
            clips.append(torch.round(clip * 255.0).to(torch.uint8))
    if not clips:
        raise ValueError(f"no training image is large enough for {p}x{p} patches of its clips")
    return clips


@dataclass
class TrainingData:
    """What :func:`load_data` read: training images (tensors), validation
    pairs ``(noisy, clean)``, and the folder's file list and fingerprint."""

    root: Path
    files: list[Path]
    fingerprint: str
    train_images: list[torch.Tensor]
    val_pairs: list[tuple[torch.Tensor, torch.Tensor]]

    def steps_per_epoch(self, settings: TrainConfig) -> int:
        """``settings.steps_per_epoch``, else non-overlapping patches / batch size."""
        if settings.steps_per_epoch is not None:
            return settings.steps_per_epoch
        p = settings.patch_size
        n_patches = sum((im.shape[-2] // p) * (im.shape[-1] // p) for im in self.train_images)
        return max(1, round(n_patches / settings.batch_size))


def load_data(
    data_dir: str | os.PathLike, settings: TrainConfig, channels: int, frames: int = 1
) -> TrainingData:
    """Read the training and validation images of ``data_dir``.

    ``channels``: 1 (gray, colour converted) or 3 (RGB). Images smaller than
    a patch are skipped with a warning. ``frames > 1`` (a spacetime
    network, gray only): each training image becomes
    ``len(settings.clip_motions)`` clips of that many frames, one per motion, three
    quarters of its size, their moving objects cut from the other training
    images (:func:`nlmeans.synthetic.make_sequence`, seeded by
    ``settings.seed`` and the image's index); they are stored as uint8.
    """
    root = Path(data_dir)
    files = list_images(root)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {root}")
    if channels not in (1, 3):
        raise ValueError(
            f"training reads gray (in_channels=1) or RGB (in_channels=3) images; the network "
            f"config has in_channels={channels}"
        )
    color = channels == 3
    if frames > 1 and color:
        raise ValueError(
            "spacetime networks (frames > 1) are trained on gray clips; use in_channels=1"
        )
    train_idx, val_idx = _split(len(files), settings.val_fraction)
    p = settings.patch_size
    train_images: list[torch.Tensor] = []
    skipped = []
    for i in train_idx:
        # RGB patches stay uint8 until they are drawn: CBSD432 takes 200 MB
        # instead of 800 MB.
        im = read_rgb(files[i], keep_uint8=True) if color else read_gray(files[i])
        if im.shape[-2] < p or im.shape[-1] < p:
            skipped.append(files[i].name)
            continue
        train_images.append(torch.from_numpy(im))
    if skipped:
        warnings.warn(
            f"{len(skipped)} training image(s) smaller than patch_size={p} skipped: {skipped[:5]}",
            stacklevel=3,
        )
    if not train_images:
        raise ValueError(f"no training image in {root} is at least {p}x{p} pixels")
    if color and all(
        bool((im[0] == im[1]).all() and (im[1] == im[2]).all()) for im in train_images
    ):
        warnings.warn(
            f"every training image in {root} is gray: a colour network trained on them never "
            "sees colour (use a folder of colour images, or in_channels=1)",
            stacklevel=3,
        )
    if frames > 1:
        train_images = _training_clips(train_images, frames, settings)
    read = read_rgb if color else read_gray
    val_pairs = _validation_set(
        [torch.from_numpy(read(files[i])) for i in val_idx], settings.val_sigma, frames
    )
    return TrainingData(root, files, _fingerprint(files, root), train_images, val_pairs)
