"""nlmeans: non-local means denoising.

The classical algorithms (``nlmeans.denoise``) run on parallel Numba kernels
(:mod:`nlmeans.kernels`). The learned side lives in :mod:`nlmeans.neural`,
which is the only part that imports torch, so ``import nlmeans`` stays light.
"""

from ._checks import check_threads
from ._denoise import NLMeansParameters, estimate_sigma, resolve_parameters
from ._front import denoise
from ._sequence import SequenceParameters, denoise_sequence, resolve_sequence_parameters
from .noise import NoiseModel, estimate_noise
from .noise_level import NoiseLevel, estimate_noise_level

__version__ = "0.1.0"

__all__ = [
    "NLMeansParameters",
    "NoiseLevel",
    "NoiseModel",
    "SequenceParameters",
    "check_threads",
    "denoise",
    "denoise_sequence",
    "estimate_noise",
    "estimate_noise_level",
    "estimate_sigma",
    "resolve_parameters",
    "resolve_sequence_parameters",
    "__version__",
]
