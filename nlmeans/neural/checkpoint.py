"""Saving and loading denoiser weights, safely.

Two file kinds, both refused with a ``ValueError`` naming the file when they
are not ours:

* **Training checkpoints** (``.pt``, written by :func:`nlmeans.neural.train`):
  ``torch.save`` of a dict of builtins and tensors -- model, optimizer,
  scheduler, RNG states, step counter, history, run settings, and the network
  config. Always read with ``torch.load(weights_only=True)``: a file that
  would need to import or call code when unpickled is rejected, never run.
  Written atomically (:func:`nlmeans.io.atomic_write_bytes`).
* **Shipped weights** (``.safetensors``): the model tensors only, with the
  network config as JSON in the safetensors metadata (safetensors carries no
  code at all). :func:`export_weights` turns a checkpoint into one.

:func:`load_model` accepts either kind and rebuilds the network from the
config stored in the file.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from ..io import atomic_write_bytes
from .device import resolve_device
from .model import DenoiserConfig, NonLocalDenoiser

__all__ = [
    "CHECKPOINT_FORMAT",
    "WEIGHTS_FORMAT",
    "default_weights_path",
    "export_weights",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "save_weights",
]

CHECKPOINT_FORMAT = "nlmeans-neural-checkpoint"
WEIGHTS_FORMAT = "nlmeans-neural-weights"
FORMAT_VERSION = 1

#: File names of the shipped models inside ``nlmeans/neural/weights/``: the
#: gray model, the colour (RGB) model used for 3-channel images, the camera
#: model (colour, trained on simulated camera noise) used for 3-channel images
#: whose noise is spatially correlated, and the gray spacetime model.
DEFAULT_WEIGHTS_NAME = "denoiser.safetensors"
DEFAULT_COLOR_WEIGHTS_NAME = "denoiser_color.safetensors"
DEFAULT_CAMERA_WEIGHTS_NAME = "denoiser_camera.safetensors"
DEFAULT_SPACETIME_WEIGHTS_NAME = "denoiser_spacetime.safetensors"


def default_weights_path(
    channels: int = 1, *, spacetime: bool = False, camera: bool = False
) -> Path:
    """Where the shipped weights for ``channels``-channel models live.

    ``channels=1``: the gray model; ``channels=3``: the colour model;
    ``camera=True``: the colour model for camera noise (``channels`` must be
    3); ``spacetime=True``: the gray spacetime model (several frames in, the
    middle one out; ``channels`` must be 1). The file may not exist.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (gray) or 3 (colour), got {channels!r}")
    if spacetime and channels != 1:
        raise ValueError("the spacetime model is gray (channels=1)")
    if camera and channels != 3:
        raise ValueError("the camera model is a colour model (channels=3)")
    if spacetime:
        name = DEFAULT_SPACETIME_WEIGHTS_NAME
    elif camera:
        name = DEFAULT_CAMERA_WEIGHTS_NAME
    else:
        name = DEFAULT_WEIGHTS_NAME if channels == 1 else DEFAULT_COLOR_WEIGHTS_NAME
    return Path(__file__).resolve().parent / "weights" / name


# ---------------------------------------------------------------------------
# atomic writing
# ---------------------------------------------------------------------------
def _atomic_write(path: Path, write) -> None:
    """Call ``write(fileobj)`` on an in-memory file, then write its bytes to ``path`` atomically.

    :func:`nlmeans.io.atomic_write_bytes` does the writing, the same as for
    images (a temporary file next to ``path``, the same permissions rule, an
    existing file replaced): on any failure, KeyboardInterrupt included, the
    temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    write(buffer)
    atomic_write_bytes(path, buffer.getvalue(), force=True)


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write a training checkpoint atomically.

    ``state`` must hold ``"config"`` (a :class:`DenoiserConfig` or its dict)
    and ``"model"`` (a state dict); anything else (optimizer, scheduler, rng,
    step, history, ...) must be builtins / tensors so that it loads with
    ``weights_only=True``.
    """
    path = Path(path)
    payload = dict(state)
    config = payload.get("config")
    if isinstance(config, DenoiserConfig):
        payload["config"] = config.to_dict()
    if "model" not in payload or not isinstance(payload.get("config"), Mapping):
        raise ValueError("a checkpoint needs 'model' (state dict) and 'config'")
    payload["format"] = CHECKPOINT_FORMAT
    payload["format_version"] = FORMAT_VERSION
    _atomic_write(path, lambda fh: torch.save(payload, fh))
    return path


def _refuse(path: Path, why: str) -> ValueError:
    return ValueError(f"{path}: not a valid nlmeans denoiser file ({why})")


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n < 100_000_000 and head[8:9] == b"{"


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a training checkpoint or a safetensors weights file.

    Returns a dict with at least ``"config"`` (dict) and ``"model"`` (state
    dict); training checkpoints carry the rest of the training state too.

    Raises:
        FileNotFoundError: no such file.
        IsADirectoryError: the path is a folder.
        ValueError: the file is not ours, is corrupt, or would execute code
            when unpickled (the message names the file).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a denoiser weights or checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"no such denoiser weights file: {path}")
    if _is_safetensors(path):
        return _load_safetensors(path, map_location)
    if not zipfile.is_zipfile(path):
        # torch.save writes zip archives; anything else (a bare pickle, a
        # legacy torch file, random bytes) is not one of our checkpoints.
        raise _refuse(path, "not a torch zip checkpoint or safetensors file")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # The weights-only unpickler stops at the first thing that is not
        # plain data or a tensor (a global to import, a call to make) and runs
        # nothing. torch's own message is many lines with terminal escapes.
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", _plain(exc))
        what = f", such as the global {found.group(1)}" if found else ""
        raise _refuse(
            path,
            "it holds pickled code or objects other than tensors"
            + what
            + "; they were not executed",
        ) from None
    except Exception as exc:  # RuntimeError for a corrupt archive, ...
        first = _plain(exc).strip().splitlines()
        raise _refuse(
            path,
            f"refused by the weights-only loader: {type(exc).__name__}"
            + (f": {first[0].strip()}" if first else ""),
        ) from None
    return _validate(path, data)


def _plain(exc: BaseException) -> str:
    """An exception's text without terminal escape sequences."""
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(exc))


def _validate(path: Path, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise _refuse(path, "missing the nlmeans checkpoint marker")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise _refuse(path, f"unsupported format version {version!r}")
    if not isinstance(data.get("model"), Mapping) or not isinstance(data.get("config"), Mapping):
        raise _refuse(path, "missing 'model' or 'config'")
    try:
        DenoiserConfig.from_dict(data["config"])
    except (TypeError, ValueError) as exc:
        raise _refuse(path, f"bad config: {exc}") from None
    return data


def save_weights(
    path: str | os.PathLike, model: NonLocalDenoiser, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write inference weights as safetensors with the config as JSON metadata."""
    from safetensors.torch import save as st_save

    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": WEIGHTS_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(model.config.to_dict(), sort_keys=True),
    }
    if metadata:
        meta["info"] = json.dumps(dict(metadata), sort_keys=True, default=str)
    blob = st_save(tensors, metadata=meta)
    _atomic_write(path, lambda fh: fh.write(blob))
    return path


def _load_safetensors(path: Path, map_location) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        raise _refuse(path, f"unreadable safetensors file: {exc}") from None
    if meta.get("format") != WEIGHTS_FORMAT:
        raise _refuse(path, "missing the nlmeans weights marker in the safetensors metadata")
    try:
        config = json.loads(meta["config"])
        info = json.loads(meta["info"]) if "info" in meta else {}
    except (KeyError, json.JSONDecodeError) as exc:
        raise _refuse(path, f"bad config metadata: {exc}") from None
    if map_location is not None:
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    data = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config,
        "model": tensors,
        "info": info,
    }
    return _validate(path, data)


def export_weights(checkpoint: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Turn a training checkpoint into a shipped-style safetensors file.

    ``dest`` defaults to :func:`default_weights_path` for the model's channel
    count (the gray or the colour model), the camera model (a colour model
    trained with ``noise="camera"``) or the spacetime model. Also writes a
    readable ``<dest stem>.json`` next to it with the config and the
    training summary.
    """
    data = load_checkpoint(checkpoint)
    model = _build(Path(checkpoint), data, "cpu")
    if dest is None:
        color = model.config.in_channels == 3
        camera = color and (data.get("train_settings") or {}).get("noise") == "camera"
        dest = default_weights_path(
            3 if color else 1, spacetime=model.config.spacetime, camera=camera
        )
    dest = Path(dest)
    history = data.get("history") or []
    info = {
        "step": data.get("step"),
        "train_settings": data.get("train_settings"),
        "final": history[-1] if history else None,
        "parameters": model.num_parameters(),
    }
    save_weights(dest, model, info)
    sidecar = dest.with_suffix(".json")
    text = json.dumps(
        {"config": model.config.to_dict(), **info}, indent=2, sort_keys=True, default=str
    )
    _atomic_write(sidecar, lambda fh: fh.write((text + "\n").encode()))
    return dest


def _build(path: Path, data: Mapping[str, Any], device) -> NonLocalDenoiser:
    model = NonLocalDenoiser(DenoiserConfig.from_dict(data["config"]))
    try:
        model.load_state_dict(data["model"], strict=True)
    except RuntimeError as exc:
        raise _refuse(
            path, f"weights do not match the stored config: {str(exc).splitlines()[0]}"
        ) from None
    return model.to(device).eval()


def load_model(
    weights: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> NonLocalDenoiser:
    """Rebuild a :class:`NonLocalDenoiser` (eval mode) from a weights file.

    Args:
        weights: a ``.safetensors`` weights file or a training checkpoint;
            ``None`` means the shipped weights (:func:`default_weights_path`).
        device: ``"cpu"`` or ``"cuda"`` (``RuntimeError`` if CUDA is missing).

    Raises:
        FileNotFoundError: the file (for ``None``: the shipped weights) does
            not exist; the message names the expected path.
        IsADirectoryError: ``weights`` is a folder.
        ValueError: the file is not a valid nlmeans denoiser file.
    """
    dev = resolve_device(device)
    if weights is None:
        path = default_weights_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"no shipped neural denoiser weights at {path}. Train a model with "
                "`nlmeans train-neural --data DIR --out model.pt` (nlmeans.neural.train) and "
                "export it with nlmeans.neural.export_weights('model.pt'), or pass weights=PATH."
            )
    else:
        path = Path(weights)
    data = load_checkpoint(path, map_location="cpu")
    return _build(path, data, dev)
