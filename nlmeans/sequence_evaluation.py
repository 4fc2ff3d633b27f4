"""Measure and compare denoisers on image sequences (video, time-lapse).

The sequence counterpart of :mod:`nlmeans.evaluation` (same protocol: clean
frames as floats in [0, 1], ``noisy = clean + N(0, (sigma / 255)^2)`` not
clipped, outputs clipped to [0, 1] before measuring):

* PSNR and SSIM of every frame, averaged over the frames;
* flicker: the mean absolute frame-to-frame change of the error,
  ``mean_t mean_pixels |e_t - e_{t-1}|`` with ``e_t = out_t - clean_t``. A
  denoiser whose error stays put from frame to frame does not flicker even if
  its error is large; noise left behind, which is new in every frame, does.

Methods of :func:`compare_sequence` (:data:`SEQUENCE_METHODS`):

``noisy``
    The noisy input itself (the reference point for flicker).
``spacetime``, ``spacetime-patchwise``, ``spacetime-exact``, ``spacetime-neural``
    :func:`nlmeans.denoise_sequence` with that method and automatic
    parameters (sigma estimated from the first frames); ``-neural`` is the
    spacetime network.
``frames``, ``frames-patchwise``, ``frames-exact``, ``frames-neural``
    :func:`nlmeans.denoise` on every frame on its own, automatic parameters
    (``frames-neural``: the per-frame network, given the sigma the
    spacetime methods estimate, so that the two networks differ only in
    the frames they see).
``opencv-multi``
    :func:`cv2.fastNlMeansDenoisingMulti` (``...ColoredMulti`` is not used:
    the 3-channel input goes to the same function, one joint distance, as
    :mod:`nlmeans.evaluation` does for images) on the frames quantised to
    8 bits, with the same patch, search window and temporal radius as
    ``spacetime`` resolves, and the best ``h`` of :data:`OPENCV_H_FACTORS`
    times sigma (gray levels) by mean PSNR against the clean frames (an
    oracle choice, in OpenCV's favour). Near the ends of the clip its
    temporal window is shortened to stay inside the clip.

Volumes over time (frames that are 3-D volumes) are compared with
:data:`VOLUME_METHODS` only (the networks and OpenCV take 2-D frames); their SSIM is the
3-D SSIM of each volume.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = [
    "OPENCV_H_FACTORS",
    "SEQUENCE_METHODS",
    "VOLUME_METHODS",
    "SequenceRecord",
    "compare_sequence",
    "flicker",
    "measure_sequence",
    "opencv_multi",
]

SEQUENCE_METHODS = (
    "noisy",
    "spacetime",
    "spacetime-patchwise",
    "spacetime-exact",
    "spacetime-neural",
    "frames",
    "frames-patchwise",
    "frames-exact",
    "frames-neural",
    "opencv-multi",
)
#: The methods that take volumes over time (3-D frames).
VOLUME_METHODS = (
    "noisy",
    "spacetime",
    "spacetime-patchwise",
    "spacetime-exact",
    "frames",
    "frames-patchwise",
    "frames-exact",
)
#: OpenCV's h is searched over these multiples of sigma (in gray levels).
OPENCV_H_FACTORS = (0.6, 0.8, 1.0, 1.2, 1.4)


def _clip_unit(frames) -> np.ndarray:
    return np.clip(_unit(frames), 0.0, 1.0)


def _unit(frames) -> np.ndarray:
    """Frames as float64 on [0, 1]: integer frames (8- or 16-bit) are divided
    by their white level, as everywhere in nlmeans (0-255 values read as [0, 1]
    floats gave a PSNR of -42 dB)."""
    from .io import to_unit_float

    frames = np.asarray(frames)
    return to_unit_float(frames) if frames.dtype.kind in "ui" else frames.astype(np.float64)


def flicker(clean, output) -> float:
    """Mean absolute frame-to-frame change of the error ``output - clean``.

    ``clean`` and ``output``: frames along axis 0, floats on the [0, 1]
    scale (``output`` is clipped to [0, 1] first, as for PSNR). Returns 0 for
    a single frame. Multiply by 255 for 8-bit gray levels.
    """
    clean = _unit(clean)
    output = _clip_unit(output)
    if clean.shape != output.shape:
        raise ValueError(f"clean {clean.shape} and output {output.shape} differ in shape")
    if clean.shape[0] < 2:
        return 0.0
    error = output - clean
    return float(np.mean(np.abs(np.diff(error, axis=0))))


def measure_sequence(clean, output, *, channel_axis=None) -> dict:
    """PSNR and SSIM averaged over frames, and :func:`flicker`.

    ``clean``, ``output``: frames along axis 0 on the [0, 1] scale (integer
    frames are divided by their white level);
    ``channel_axis`` counts within a frame (e.g. -1). Returns ``{"psnr",
    "ssim", "flicker"}``.
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    clean = _unit(clean)
    output = _clip_unit(output)
    if clean.shape != output.shape:
        raise ValueError(f"clean {clean.shape} and output {output.shape} differ in shape")
    with np.errstate(divide="ignore"):  # a perfect frame has infinite PSNR, as for images
        psnr = [peak_signal_noise_ratio(c, o, data_range=1.0) for c, o in zip(clean, output)]
    # SSIM's 7-wide window, narrowed to the frame's smallest side (thin stacks).
    frame_shape = clean.shape[1:]
    channel = None if channel_axis is None else channel_axis % len(frame_shape)
    spatial = [n for i, n in enumerate(frame_shape) if i != channel]
    smallest = min(spatial) if spatial else 7
    window = max(3, min(7, smallest - (1 - smallest % 2)))
    ssim = [
        structural_similarity(c, o, data_range=1.0, channel_axis=channel_axis, win_size=window)
        for c, o in zip(clean, output)
    ]
    return {
        "psnr": float(np.mean(psnr)),
        "ssim": float(np.mean(ssim)),
        "flicker": flicker(clean, output),
    }


def opencv_multi(
    noisy, *, temporal_radius: int, h: float, patch_size: int, patch_distance: int
) -> np.ndarray:
    """:func:`cv2.fastNlMeansDenoisingMulti` on every frame; floats in, floats out.

    ``noisy``: frames along axis 0 on [0, 1] (channels last, 1 or 3),
    quantised to 8 bits for OpenCV (its L2 version takes 8-bit only); ``h``
    in gray levels. The temporal window is ``2 * temporal_radius + 1``
    frames, shortened near the ends of the clip.
    """
    import cv2

    frames = [
        np.ascontiguousarray(np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)) for f in noisy
    ]
    n = len(frames)
    out = np.empty(np.shape(noisy), dtype=np.float64)
    for t in range(n):
        r = min(temporal_radius, t, n - 1 - t)
        window = frames[t - r : t + r + 1]
        result = cv2.fastNlMeansDenoisingMulti(
            window, r, 2 * r + 1, None, float(h), patch_size, 2 * patch_distance + 1
        )
        out[t] = result.astype(np.float64) / 255.0
    return out


@dataclass
class SequenceRecord:
    """One method's result on one sequence."""

    method: str
    psnr: float | None = None
    ssim: float | None = None
    flicker: float | None = None
    seconds: float | None = None
    params: dict = field(default_factory=dict)
    status: str = "ok"

    def as_dict(self) -> dict:
        return asdict(self)


def parse_sequence_methods(text, *, volumes: bool = False) -> list[str]:
    """Comma-separated method names (or an iterable); ``all`` for every method.

    ``volumes``: ``all`` means every method that takes volumes over time.
    """
    names = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    if names == ["all"]:
        return list(VOLUME_METHODS if volumes else SEQUENCE_METHODS)
    unknown = [n for n in names if n not in SEQUENCE_METHODS]
    if unknown or not names:
        raise ValueError(
            f"unknown method(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(SEQUENCE_METHODS)} or all"
        )
    return list(dict.fromkeys(names))


def compare_sequence(
    clean,
    noisy,
    *,
    sigma: float | None,
    methods=("noisy", "spacetime", "frames", "opencv-multi"),
    channel_axis=None,
    temporal_radius=None,
    threads=None,
    progress=None,
) -> list[SequenceRecord]:
    """Run ``methods`` on ``noisy`` and measure them against ``clean``.

    ``clean``, ``noisy``: frames along axis 0 on the [0, 1] scale,
    ``channel_axis`` within a frame (None or -1). ``sigma``: the noise level
    on [0, 1] when known (it sets OpenCV's ``h`` grid; the nlmeans methods
    always estimate it, as a user's call would), else estimated.
    ``temporal_radius``: passed to the spacetime methods (automatic when
    None); OpenCV uses what ``spacetime`` resolves. ``progress``: called with
    each method name before it runs.
    """
    import nlmeans

    clean = np.asarray(clean, dtype=np.float64)
    noisy = np.asarray(noisy, dtype=np.float64)
    if clean.shape != noisy.shape:
        raise ValueError(f"clean {clean.shape} and noisy {noisy.shape} differ in shape")
    axis = None if channel_axis is None else -1
    methods = parse_sequence_methods(methods)
    if clean.ndim - (axis is not None) == 4:  # (t, z, y, x): volumes over time
        other = [m for m in methods if m not in VOLUME_METHODS]
        if other:
            raise ValueError(
                f"{', '.join(other)} take 2-D frames; volumes over time are compared with "
                f"{', '.join(VOLUME_METHODS)}"
            )
    records = []
    resolved = nlmeans.resolve_sequence_parameters(
        list(noisy[: nlmeans._sequence.ESTIMATE_FRAMES]),
        n_frames=len(noisy),
        channel_axis=axis,
        temporal_radius=temporal_radius,
    )
    if sigma is None:
        sigma = resolved.sigma
    for method in methods:
        if progress is not None:
            progress(method)
        start = time.perf_counter()
        params: dict = {}
        if method == "noisy":
            out = noisy
        elif method.startswith("spacetime"):
            kind = method.partition("-")[2] or "fast"
            out, used = nlmeans.denoise_sequence(
                noisy,
                channel_axis=None if axis is None else axis,
                method=kind,
                temporal_radius=temporal_radius if kind != "neural" else None,
                threads=threads,
                return_params=True,
            )
            params = used.as_dict()
        elif method == "frames-neural":
            level = resolved.sigma
            out = np.stack(
                [
                    nlmeans.denoise(
                        f, method="neural", sigma=level, channel_axis=axis, threads=threads
                    )
                    for f in noisy
                ]
            )
        elif method.startswith("frames"):
            kind = method.partition("-")[2] or "fast"
            out = np.stack(
                [nlmeans.denoise(f, method=kind, channel_axis=axis, threads=threads) for f in noisy]
            )
        else:  # opencv-multi: the best h of the grid
            best = None
            for factor in OPENCV_H_FACTORS:
                h = factor * sigma * 255.0
                candidate = opencv_multi(
                    noisy,
                    temporal_radius=resolved.temporal_radius,
                    h=h,
                    patch_size=resolved.patch_size,
                    patch_distance=resolved.patch_distance,
                )
                score = measure_sequence(clean, candidate, channel_axis=axis)["psnr"]
                if best is None or score > best[0]:
                    best = (score, candidate, h)
            out = best[1]
            params = {
                "h_levels": best[2],
                "temporal_radius": resolved.temporal_radius,
                "patch_size": resolved.patch_size,
                "patch_distance": resolved.patch_distance,
            }
        seconds = time.perf_counter() - start
        scores = measure_sequence(clean, out, channel_axis=axis)
        records.append(SequenceRecord(method, seconds=seconds, params=params, **scores))
    return records
