"""Argument checks shared by the library's public functions.

Each raises one ``TypeError`` or ``ValueError`` that names the parameter, so
that bad input never reaches a compiled kernel.
"""

from __future__ import annotations

import numbers
import os

import numpy as np

SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)
#: The methods of :func:`nlmeans.denoise` (the CLI's ``--method`` lists the
#: same names without importing the library, so that ``--help`` stays light).
METHODS = ("fast", "exact", "patchwise", "neural")
CLASSICAL_METHODS = ("fast", "exact", "patchwise")
#: File suffixes of the images nlmeans reads (:func:`nlmeans.io.read_image`),
#: looked for in folders by the CLI and by training.
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def _check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        if isinstance(image, (list, tuple)):
            image = np.asarray([unmasked(item) for item in image])
        else:
            raise TypeError(f"image must be a NumPy array, got {type(image).__name__}")
    image = unmasked(image)
    if image.dtype.type not in SUPPORTED_DTYPES:
        raise TypeError(
            f"image has unsupported dtype {image.dtype}; use uint8, uint16, float32 or float64"
        )
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    # An array with every stride 0 holds a single value (a stand-in of an
    # image's shape): one look, not one per element.
    values = image if any(image.strides) else image[(0,) * image.ndim]
    if image.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueError("image contains NaN or Inf values")
    return image


def unmasked(image):
    """``image`` without its mask; refused if any pixel is masked.

    No method here honours a mask: masked pixels would be denoised (and used
    as neighbours) like the rest, silently.
    """
    if not np.ma.isMaskedArray(image):
        return image
    if np.ma.getmaskarray(image).any():
        raise ValueError(
            "image is a masked array with masked pixels, and nlmeans does not use masks; "
            "pass image.filled(value) or image.data"
        )
    return np.ma.getdata(image)


def _check_channel_axis(image: np.ndarray, channel_axis) -> int | None:
    if channel_axis is None:
        if image.ndim not in (2, 3):
            raise ValueError(
                f"image must be 2-D (gray) or 3-D (volume), got {image.ndim}-D; "
                "pass channel_axis for an image with channels"
            )
        return None
    check_axis_type(channel_axis)
    if not -image.ndim <= channel_axis < image.ndim:
        raise ValueError(f"channel_axis={channel_axis} is out of range for a {image.ndim}-D image")
    if image.ndim not in (3, 4):
        raise ValueError(f"with channel_axis the image must be 3-D or 4-D, got {image.ndim}-D")
    return int(channel_axis) % image.ndim


def check_axis_type(channel_axis) -> None:
    """``channel_axis`` must be an integer (not a bool) or None (``TypeError``)."""
    if channel_axis is not None and (
        isinstance(channel_axis, (bool, np.bool_)) or not isinstance(channel_axis, numbers.Integral)
    ):
        raise TypeError(f"channel_axis must be an int or None, got {channel_axis!r}")


def _check_positive_odd(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an odd positive integer, got {value!r}")
    if value < 1 or value % 2 == 0:
        raise ValueError(f"{name} must be an odd positive integer, got {value}")
    return int(value)


def _check_distance(value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"patch_distance must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"patch_distance must be a non-negative integer, got {value}")
    return int(value)


def _check_real(name: str, value, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value}")
    return value


def _spatial_shape(image: np.ndarray, axis: int | None) -> tuple[int, ...]:
    return tuple(n for i, n in enumerate(image.shape) if i != axis)


def _looks_like_colour_without_channel_axis(image: np.ndarray, axis: int | None) -> bool:
    """A 3-D array with an axis of at most 4 and no ``channel_axis``: most likely
    a colour image whose channels would be taken for a third spatial axis."""
    return image.ndim == 3 and axis is None and min(image.shape) <= 4


def _check_fits_patch(image: np.ndarray, axis: int | None, patch_size: int) -> None:
    spatial = _spatial_shape(image, axis)
    if min(spatial) < patch_size:
        hint = ""
        if _looks_like_colour_without_channel_axis(image, axis):
            short = int(np.argmin(image.shape))
            hint = f"; for a colour image pass channel_axis={short if short < 2 else -1}"
        raise ValueError(
            f"image of spatial shape {spatial} is smaller than the patch "
            f"(patch_size={patch_size}){hint}"
        )


def check_sigma_scale(sigma: float, dtype) -> float:
    """``sigma`` (checked real), refused above 1 for an integer image.

    Integer images are denoised on [0, 1]: a sigma in gray levels (25 for
    an 8-bit image) would flatten the image without complaint.
    """
    if np.dtype(dtype).kind in "ui" and sigma > 1:
        top = np.iinfo(dtype).max
        raise ValueError(
            f"sigma is on the [0, 1] scale for {np.dtype(dtype)} images and must be <= 1, "
            f"got {sigma:g} ({sigma:g} gray levels is sigma={sigma / top:.4g})"
        )
    return sigma


def numba_runtime():
    """The ``numba`` module, with a fork-safe threading layer chosen before
    Numba starts its threads (its first parallel launch or thread query).

    Numba's default on Linux without TBB is GNU OpenMP, which does not
    survive fork(): a multiprocessing pool forked after one denoise call hung
    (its workers terminate). "forksafe" is TBB when installed, else Numba's
    workqueue (the same speed on these kernels: 0.04 s both for ``fast`` on
    512^2, 2 cores). Every nlmeans launch holds ``nlmeans._denoise``'s lock,
    so the workqueue's one-caller-at-a-time rule holds. A layer the user
    chose (``NUMBA_THREADING_LAYER``, ``numba.config``) stays.
    """
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "forksafe"
    return numba


def check_threads(threads) -> int:
    """The number of threads to use: ``threads``, or for None the calling
    thread's Numba setting (``numba.get_num_threads()``: all that Numba
    offers unless the caller lowered it with ``numba.set_num_threads``, as a
    service running several workers does).

    Raises ``TypeError`` for a non-integer and ``ValueError`` for a number
    outside 1..``numba.config.NUMBA_NUM_THREADS``.
    """
    numba = numba_runtime()
    available = numba.config.NUMBA_NUM_THREADS
    if threads is None:
        return numba.get_num_threads()
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
        raise TypeError(f"threads must be a positive integer, got {threads!r}")
    if not 1 <= threads <= available:
        raise ValueError(f"threads must be between 1 and {available}, got {threads}")
    return int(threads)


def check_flag(name: str, value) -> bool:
    """``value`` as a bool; anything but True or False is refused (``TypeError``):
    ``return_params="no"`` would otherwise return a tuple."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_ensemble(ensemble, method: str) -> bool:
    """``ensemble`` as a bool; only the network has one (``ValueError`` otherwise)."""
    ensemble = check_flag("ensemble", ensemble)
    if ensemble and method != "neural":
        # Square patches and windows make the classical methods invariant to
        # flips and rotations already: their 8 outputs would be one.
        raise ValueError(
            "ensemble applies to method='neural' only (the classical methods give the same "
            "result for every flip and rotation of the image)"
        )
    return ensemble


# Float images beyond these bounds are not on the [0, 1] scale: the widest
# noise the networks take (sigma 55/255) stays inside them by 4.5 sigma.
UNIT_SCALE_LIMITS = (-1.0, 2.0)


def check_unit_scale(low: float, high: float) -> None:
    """Refuse data spanning ``[low, high]`` for the network (``ValueError``).

    The networks learnt intensities on [0, 1]: data on another scale (raw
    counts, floats on 0-255) would come back nearly untouched.
    """
    if low < UNIT_SCALE_LIMITS[0] or high > UNIT_SCALE_LIMITS[1]:
        raise ValueError(
            f"the network takes images on the [0, 1] scale; this one spans [{low:.4g}, "
            f"{high:.4g}]: divide it by its white level (255 for 8-bit values) first"
        )
