"""Learned non-local denoising (imports torch; ``import nlmeans`` does not).

* Non-local blocks: :class:`NonLocalBlock1d`, :class:`NonLocalBlock2d`,
  :class:`NonLocalBlock3d`, :func:`non_local_attention`; the bridge to the
  classical algorithm: :class:`ClassicalNonLocalMeans`,
  :func:`classical_non_local_means`.
* The denoiser: :class:`NonLocalDenoiser` built from a
  :class:`DenoiserConfig` (residual CNN with non-local blocks; gray or RGB,
  blind or taking a per-pixel noise-level map).
* Training: :func:`train` (:class:`TrainConfig`, :class:`TrainResult`,
  :class:`TrainingInterrupted`).
* Files: :func:`save_checkpoint`, :func:`load_checkpoint`, :func:`load_model`,
  :func:`export_weights`, :func:`default_weights_path`.
* Inference: :func:`denoise` (tiled, seamless, bounded memory; the colour
  model for RGB images when it is shipped).
"""

from .block import NonLocalBlock1d, NonLocalBlock2d, NonLocalBlock3d, non_local_attention
from .bridge import ClassicalNonLocalMeans, classical_non_local_means
from .checkpoint import (
    default_weights_path,
    export_weights,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_weights,
)
from .inference import denoise, uses_noise_level
from .model import BLOCK_MODES, DenoiserConfig, NonLocalDenoiser, count_parameters
from .training import TrainConfig, TrainingInterrupted, TrainResult, resolve_device, train

__all__ = [
    "BLOCK_MODES",
    "ClassicalNonLocalMeans",
    "DenoiserConfig",
    "NonLocalBlock1d",
    "NonLocalBlock2d",
    "NonLocalBlock3d",
    "NonLocalDenoiser",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "classical_non_local_means",
    "count_parameters",
    "default_weights_path",
    "denoise",
    "export_weights",
    "load_checkpoint",
    "load_model",
    "non_local_attention",
    "resolve_device",
    "save_checkpoint",
    "save_weights",
    "train",
    "uses_noise_level",
]
