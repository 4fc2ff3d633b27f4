"""Fixtures shared by the test files.

Slow, obvious NumPy versions of every formula live in ``tests/reference.py``
(importable as ``reference``: pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SAMPLE_IMAGES = Path(__file__).resolve().parent.parent / "sample_images"


@pytest.fixture(scope="module")
def rng():
    """A seeded generator, one per test module (so modules stay independent)."""
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def sample_images() -> Path:
    """The folder of the bundled sample images."""
    return SAMPLE_IMAGES


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test, restored afterwards (network tests)."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
