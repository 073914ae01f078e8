"""scikit-learn's 8x8 handwritten digits (1,797 images): genflow's embedded default data set."""
from __future__ import annotations

import numpy as np


def load_digits(holdout: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (train_x, train_y, heldout_x, heldout_y); images (N, 8, 8, 1) float32 in [-1, 1].

    Pixels are 0..16 in the source; x = pixel / 8 - 1. The held-out split is a fixed
    permutation of ``seed`` so metrics always compare against the same unseen digits.
    """
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    x = (bunch.images.astype(np.float32) / 8.0 - 1.0)[..., None]
    y = bunch.target.astype(np.int32)
    perm = np.random.default_rng(seed).permutation(len(x))
    x, y = x[perm], y[perm]
    return x[holdout:], y[holdout:], x[:holdout], y[:holdout]


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Inverse of the [-1, 1] scaling, clipped, as 8-bit grey levels for figures."""
    return np.clip(np.round((np.asarray(x) + 1.0) * 127.5), 0, 255).astype(np.uint8)
