"""The spacetime network behind ``denoise_sequence(method="neural")``.

Each output frame is the network's answer for the window of ``2k + 1``
frames around it (``k`` = half the network's frames), streamed: only the
frames of one window are held. At the ends of the clip the frames beyond
the end are the end frame repeated (frame ``-1`` is frame ``0``), which is
how the network saw clip ends in training (``TrainConfig.clip_ends``).
Colour frames go through the gray network one channel at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ._checks import _check_image, check_unit_scale, unmasked
from .io import from_unit_float, to_unit_float


def load_spacetime_model(weights=None, device: str = "cpu"):
    """The spacetime network (shipped weights by default), checked to be one."""
    from ._denoise import _import_neural

    neural = _import_neural()
    path = weights if weights is not None else neural.default_weights_path(spacetime=True)
    model = neural.inference.get_model(path, device)
    if not model.config.spacetime:
        raise ValueError(
            f"{weights}: not a spacetime network (it takes one frame); method='neural' on "
            "sequences needs one trained with `nlmeans train-neural --frames 5`"
        )
    return model


def clamped(index: int, n: int) -> int:
    """``index`` clamped into ``0 .. n - 1`` (``-1 -> 0``, ``n -> n - 1``)."""
    return min(max(index, 0), n - 1)


def run_neural(
    frames: Iterator, model, sigma: float, axis, n_threads: int | None
) -> Iterator[np.ndarray]:
    """Denoise ``frames`` (an iterator of frames in order) one window at a time."""
    import torch

    from .neural.inference import denoise_array

    k = model.config.frames // 2
    window: dict[int, np.ndarray] = {}  # index -> float32 (C, Y, X) frame on [0, 1]
    shape = dtype = None
    n = None  # the clip's length, once the iterator is exhausted
    read = 0
    t = 0
    while n is None or t < n:
        while n is None and read <= t + k:
            try:
                raw = next(frames)
            except StopIteration:
                n = read
                break
            frame = _check_image(np.asarray(unmasked(raw)))
            if shape is None:
                shape, dtype = frame.shape, frame.dtype
            elif frame.shape != shape or frame.dtype != dtype:
                raise ValueError(
                    f"frame {read} has shape {frame.shape} and dtype {frame.dtype}, the "
                    f"first frame {shape} and {dtype}: all frames of a sequence must match"
                )
            floats = to_unit_float(frame).astype(np.float32)
            if frame.dtype.kind == "f":
                try:  # the network has no h: float frames must be on [0, 1]
                    check_unit_scale(float(floats.min()), float(floats.max()))
                except ValueError as exc:
                    raise ValueError(f"frame {read}: {exc}") from None
            planes = floats[None] if axis is None else np.moveaxis(floats, axis, 0)
            window[read] = np.ascontiguousarray(planes)
            read += 1
        if n is not None and t >= n:
            break
        length = n if n is not None else read
        # Indices past the end are clamped only once the length is known;
        # until then the loop above has read up to t + k.
        stack = np.stack([window[clamped(i, length)] for i in range(t - k, t + k + 1)])
        # torch's thread count is process-wide: set for this frame's
        # work only, not while the generator waits between frames.
        old_threads = torch.get_num_threads()
        if n_threads is not None:
            torch.set_num_threads(int(n_threads))
        try:
            planes = [
                denoise_array(model, stack[:, c], sigma) for c in range(stack.shape[1])
            ]  # each (Y, X)
        finally:
            torch.set_num_threads(old_threads)
        out = planes[0] if axis is None else np.moveaxis(np.stack(planes), 0, axis)
        yield from_unit_float(np.asarray(out, np.float32), dtype)
        # Frames before t + 1 - k are no longer needed (clamping at the
        # end never reaches back further than t + 1 - k).
        window.pop(t - k, None)
        t += 1
