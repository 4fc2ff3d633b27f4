"""Colour transforms shared by the classical path and the camera simulation.

A leaf module (NumPy only), so that both :mod:`nlmeans._denoise` and
:mod:`nlmeans.neural.camera` can import it without an import cycle.
"""

from __future__ import annotations

import numpy as np

# Orthonormal opponent transform (rows: luminance, red-blue, green-magenta),
# the one colour BM3D uses up to scale. Orthonormal, so white noise of
# standard deviation sigma in every RGB channel stays sigma in every row.
OPPONENT = np.array(
    [
        [1 / np.sqrt(3), 1 / np.sqrt(3), 1 / np.sqrt(3)],
        [1 / np.sqrt(2), 0.0, -1 / np.sqrt(2)],
        [1 / np.sqrt(6), -2 / np.sqrt(6), 1 / np.sqrt(6)],
    ]
)
