"""Slow, obvious NumPy versions of the non-local means formulas.

Written for readability, not speed: one pixel at a time, straight from the
definitions in nlmeans.kernels' docstring. Tests compare the Numba kernels to
these on small images.
"""

from __future__ import annotations

import itertools

import numpy as np


def gaussian_patch_weights(patch_size: int, ndim: int) -> np.ndarray:
    """Buades' Gaussian patch weights: std (s-1)/4, summing to 1."""
    radius = patch_size // 2
    a = (patch_size - 1) / 4.0
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.ones(1) if a == 0 else np.exp(-(k**2) / (2 * a * a))
    g = g / g.sum()
    out = g
    for _ in range(ndim - 1):
        out = np.multiply.outer(out, g)
    return out


def squared_patch_distance(padded, i, j, radius, kernel):
    """Weighted mean over the patch (and channels) of squared differences.

    padded: (C, *spatial) padded by `radius` on every spatial axis; i and j
    are the patch centres in image coordinates.
    """
    sl_i = tuple(slice(c, c + 2 * radius + 1) for c in i)
    sl_j = tuple(slice(c, c + 2 * radius + 1) for c in j)
    diff2 = (padded[(slice(None),) + sl_i] - padded[(slice(None),) + sl_j]) ** 2
    return float((diff2.mean(axis=0) * kernel).sum())


def _weights(image, i, patch_size, patch_distance, h, sigma, kernel):
    """{j: w(i, j)} over the search window of pixel i (clipped at borders)."""
    radius = patch_size // 2
    spatial = image.shape[1:]
    padded = np.pad(image, [(0, 0)] + [(radius, radius)] * len(spatial), mode="reflect")
    out = {}
    ranges = [
        range(max(0, c - patch_distance), min(n, c + patch_distance + 1))
        for c, n in zip(i, spatial)
    ]
    for j in itertools.product(*ranges):
        d2 = squared_patch_distance(padded, i, j, radius, kernel)
        out[j] = np.exp(-max(d2 - 2 * sigma**2, 0.0) / h**2)
    return out


def _kernel(patch_size, ndim, gaussian):
    if gaussian:
        return gaussian_patch_weights(patch_size, ndim)
    return np.full((patch_size,) * ndim, 1.0 / patch_size**ndim)


def window_weights(image, i, *, patch_size, patch_distance, h, sigma=0.0, gaussian=False):
    """Normalised weights of pixel i's search window, (2d+1)^ndim, 0 outside the image.

    image: (C, *spatial) float64; the centre (weight 1 before normalising)
    included.
    """
    ndim = image.ndim - 1
    kernel = _kernel(patch_size, ndim, gaussian)
    weights = _weights(image, i, patch_size, patch_distance, h, sigma, kernel)
    out = np.zeros((2 * patch_distance + 1,) * ndim)
    for j, w in weights.items():
        out[tuple(b - a + patch_distance for a, b in zip(i, j))] = w
    return out / out.sum()


def nlm_pixelwise(image, *, patch_size, patch_distance, h, sigma=0.0, gaussian=False, guide=None):
    """Pixel-wise NLM; image (C, *spatial) float64; centre weight 1.

    Distances are measured on ``guide`` (same spatial shape, any channel
    count; the image itself by default) and the weights average ``image``.
    """
    guide = image if guide is None else guide
    kernel = _kernel(patch_size, image.ndim - 1, gaussian)
    out = np.zeros_like(image, dtype=np.float64)
    for i in np.ndindex(*image.shape[1:]):
        weights = _weights(guide, i, patch_size, patch_distance, h, sigma, kernel)
        total = sum(weights.values())
        out[(slice(None),) + i] = (
            sum(w * image[(slice(None),) + j] for j, w in weights.items()) / total
        )
    return out


def nlm_patchwise(image, *, patch_size, patch_distance, h, sigma=0.0, guide=None):
    """IPOL 2011 patch-wise NLM; image (C, *spatial) float64.

    Centre weight = max of the other weights (1 if there is none, or all are 0).
    Every pixel averages the estimates of all in-image patch centres covering it.
    Distances are measured on ``guide`` (the image itself by default).
    """
    guide = image if guide is None else guide
    ndim = image.ndim - 1
    radius = patch_size // 2
    kernel = _kernel(patch_size, ndim, gaussian=False)
    spatial = image.shape[1:]
    padded = np.pad(image, [(0, 0)] + [(radius, radius)] * ndim, mode="reflect")
    acc = np.zeros_like(image, dtype=np.float64)
    count = np.zeros(spatial)
    offsets = list(itertools.product(range(-radius, radius + 1), repeat=ndim))
    for i in np.ndindex(*spatial):
        weights = _weights(guide, i, patch_size, patch_distance, h, sigma, kernel)
        others = [w for j, w in weights.items() if j != i]
        best = max(others) if others else 0.0
        weights[i] = best if best > 0 else 1.0
        total = sum(weights.values())
        for k in offsets:
            p = tuple(a + b for a, b in zip(i, k))
            if not all(0 <= c < n for c, n in zip(p, spatial)):
                continue
            estimate = 0.0
            for j, w in weights.items():
                q = tuple(a + b + radius for a, b in zip(j, k))  # j + k in padded
                estimate = estimate + w * padded[(slice(None),) + q]
            acc[(slice(None),) + p] += estimate / total
            count[p] += 1
    return acc / count


# Orthonormal opponent transform: luminance, red-blue, green-magenta.
OPPONENT = np.array(
    [
        [1 / np.sqrt(3), 1 / np.sqrt(3), 1 / np.sqrt(3)],
        [1 / np.sqrt(2), 0.0, -1 / np.sqrt(2)],
        [1 / np.sqrt(6), -2 / np.sqrt(6), 1 / np.sqrt(6)],
    ]
)


def nlm_opponent(image, *, h, h_chroma, patchwise=False, **options):
    """Opponent-colour NLM; image (3, *spatial) RGB float64.

    The luminance weighted by luminance-patch distances and ``h``; the
    chrominance by whole-colour patch distances and ``h_chroma``.
    """
    nlm = nlm_patchwise if patchwise else nlm_pixelwise
    opponent = np.tensordot(OPPONENT, image, axes=1)
    luma = opponent[:1]
    out = np.concatenate(
        [
            nlm(luma, h=h, **options),
            nlm(opponent[1:], h=h_chroma, guide=opponent, **options),
        ]
    )
    return np.tensordot(OPPONENT.T, out, axes=1)


def _spacetime_weights(padded, i, radius, patch_distance, temporal_radius, h, sigma, kernel):
    """{j: w(i, j)} over the spatio-temporal window of pixel i = (t, y, x).

    padded: (C, T, Y + 2r, X + 2r), every frame reflect-padded in 2-D; patches
    are 2-D (one frame), candidates clipped to the sequence and the frame.
    """
    n_t = padded.shape[1]
    n_y, n_x = padded.shape[2] - 2 * radius, padded.shape[3] - 2 * radius
    t, y, x = i
    out = {}
    for tj in range(max(0, t - temporal_radius), min(n_t, t + temporal_radius + 1)):
        for yj in range(max(0, y - patch_distance), min(n_y, y + patch_distance + 1)):
            for xj in range(max(0, x - patch_distance), min(n_x, x + patch_distance + 1)):
                a = padded[:, t, y : y + 2 * radius + 1, x : x + 2 * radius + 1]
                b = padded[:, tj, yj : yj + 2 * radius + 1, xj : xj + 2 * radius + 1]
                d2 = float((((a - b) ** 2).mean(axis=0) * kernel).sum())
                out[(tj, yj, xj)] = np.exp(-max(d2 - 2 * sigma**2, 0.0) / h**2)
    return out


def nlm_spacetime(
    frames,
    *,
    patch_size,
    patch_distance,
    temporal_radius,
    h,
    sigma=0.0,
    gaussian=False,
    patchwise=False,
):
    """Spatio-temporal NLM; frames (C, T, Y, X) float64, 2-D patches, window over t, y, x.

    Pixel-wise (centre weight 1), or patch-wise (IPOL 2011: centre weight the
    largest other weight, every pixel averaging the estimates of the in-frame
    patch centres covering it).
    """
    radius = patch_size // 2
    kernel = _kernel(patch_size, 2, gaussian)
    padded = np.pad(frames, ((0, 0), (0, 0), (radius, radius), (radius, radius)), mode="reflect")
    n_t, n_y, n_x = frames.shape[1:]
    out = np.zeros_like(frames, dtype=np.float64)
    count = np.zeros((n_t, n_y, n_x))
    for i in np.ndindex(n_t, n_y, n_x):
        weights = _spacetime_weights(
            padded, i, radius, patch_distance, temporal_radius, h, sigma, kernel
        )
        if not patchwise:
            total = sum(weights.values())
            out[(slice(None),) + i] = (
                sum(w * frames[(slice(None),) + j] for j, w in weights.items()) / total
            )
            continue
        others = [w for j, w in weights.items() if j != i]
        best = max(others) if others else 0.0
        weights[i] = best if best > 0 else 1.0
        total = sum(weights.values())
        t, y, x = i
        for ky in range(-radius, radius + 1):
            for kx in range(-radius, radius + 1):
                py, px = y + ky, x + kx
                if not (0 <= py < n_y and 0 <= px < n_x):
                    continue
                estimate = sum(
                    w * padded[:, tj, yj + ky + radius, xj + kx + radius]
                    for (tj, yj, xj), w in weights.items()
                )
                out[:, t, py, px] += estimate / total
                count[t, py, px] += 1
    return out / count if patchwise else out


def nlm_volume_spacetime(
    volumes,
    *,
    patch_size,
    patch_distance,
    temporal_radius,
    h,
    sigma=0.0,
    gaussian=False,
    patchwise=False,
):
    """NLM of volumes over time; volumes (C, T, Z, Y, X) float64.

    3-D patches, every volume reflect-padded on its own (a patch never reads
    another time point); the window spans +-temporal_radius time points and
    +-patch_distance voxels along z, y and x, clipped to the series and the
    volume. Pixel-wise (centre weight 1), or patch-wise (IPOL 2011: centre
    weight the largest other weight, every voxel averaging the estimates of
    the in-volume patch centres covering it).
    """
    radius = patch_size // 2
    kernel = _kernel(patch_size, 3, gaussian)
    pad = ((0, 0), (0, 0)) + ((radius, radius),) * 3
    padded = np.pad(volumes, pad, mode="reflect")
    n_t, n_z, n_y, n_x = volumes.shape[1:]
    size = 2 * radius + 1
    out = np.zeros_like(volumes, dtype=np.float64)
    count = np.zeros((n_t, n_z, n_y, n_x))
    offsets = list(itertools.product(range(-radius, radius + 1), repeat=3))
    for t, z, y, x in np.ndindex(n_t, n_z, n_y, n_x):
        a = padded[:, t, z : z + size, y : y + size, x : x + size]
        weights = {}
        for tj, zj, yj, xj in itertools.product(
            range(max(0, t - temporal_radius), min(n_t, t + temporal_radius + 1)),
            range(max(0, z - patch_distance), min(n_z, z + patch_distance + 1)),
            range(max(0, y - patch_distance), min(n_y, y + patch_distance + 1)),
            range(max(0, x - patch_distance), min(n_x, x + patch_distance + 1)),
        ):
            b = padded[:, tj, zj : zj + size, yj : yj + size, xj : xj + size]
            d2 = float((((a - b) ** 2).mean(axis=0) * kernel).sum())
            weights[(tj, zj, yj, xj)] = np.exp(-max(d2 - 2 * sigma**2, 0.0) / h**2)
        if not patchwise:
            total = sum(weights.values())
            out[:, t, z, y, x] = (
                sum(w * volumes[(slice(None),) + j] for j, w in weights.items()) / total
            )
            continue
        centre = (t, z, y, x)
        others = [w for j, w in weights.items() if j != centre]
        best = max(others) if others else 0.0
        weights[centre] = best if best > 0 else 1.0
        total = sum(weights.values())
        for kz, ky, kx in offsets:
            p = (z + kz, y + ky, x + kx)
            if not all(0 <= c < n for c, n in zip(p, (n_z, n_y, n_x))):
                continue
            estimate = sum(
                w * padded[:, tj, zj + kz + radius, yj + ky + radius, xj + kx + radius]
                for (tj, zj, yj, xj), w in weights.items()
            )
            out[(slice(None), t) + p] += estimate / total
            count[(t,) + p] += 1
    return out / count if patchwise else out
