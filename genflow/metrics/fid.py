"""FID and KID from Inception pool3 features, reference statistics files, and the CLI's commands.

FID (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to the 2048-d pool3
features of generated and real images, with pytorch-fid's network and preprocessing
(``genflow.metrics.inception``), so numbers compare with papers that use pytorch-fid or the TF
original. Reference statistics are pytorch-fid's ``.npz`` files (keys ``mu``, ``sigma``): files
written by ``genflow fid-stats`` are read by ``python -m pytorch_fid`` and the other way round.

KID (Binkowski et al. 2018): the unbiased MMD^2 of the features under the cubic polynomial
kernel, averaged over random subsets; unbiased, so it is ~0 for equal distributions at any N.

Like FID, compare numbers computed with equal sample sizes (FID is biased upwards at small N).
"""
from __future__ import annotations

import os

import numpy as np

from genflow.config import ConfigError
from genflow.metrics.frechet import feature_stats, frechet_distance


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets (n, d) and (m, d): Fréchet distance of their Gaussian fits."""
    return frechet_distance(*feature_stats(features_a), *feature_stats(features_b))


def save_stats(path: str, mu: np.ndarray, sigma: np.ndarray) -> str:
    """Write (mu (d,), sigma (d, d)) as pytorch-fid's ``.npz`` (keys ``mu``, ``sigma``, float64)."""
    if not str(path).endswith(".npz"):
        raise ConfigError(f"FID statistics file {path!r} must end in .npz (pytorch-fid's format).")
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise ValueError(f"FID statistics need mu (d,) and sigma (d, d), got {mu.shape} and {sigma.shape}.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez_compressed(path, mu=mu, sigma=sigma)
    return path


def load_stats(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) from a pytorch-fid ``.npz`` statistics file, float64."""
    if not os.path.isfile(path):
        raise ConfigError(f"FID statistics file {path} does not exist; write one with "
                          "`genflow fid-stats DATASET --out STATS.npz` or use a pytorch-fid .npz.")
    try:
        with np.load(path) as f:
            if "mu" not in f.files or "sigma" not in f.files:
                raise ConfigError(f"{path} holds {sorted(f.files)}, not pytorch-fid's 'mu' and 'sigma'; write it "
                                  "with `genflow fid-stats` or pytorch-fid's --save-stats.")
            return np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
    except ConfigError:
        raise
    except Exception as e:  # not a zip / not numpy
        raise ConfigError(f"{path} is not a readable .npz file ({type(e).__name__}); write it with "
                          "`genflow fid-stats DATASET --out STATS.npz`.") from None


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3: off-diagonal means within x and within y,
    minus twice the mean across (Gretton et al. 2012, eq. 3)."""
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    n, m = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def kid(features_a: np.ndarray, features_b: np.ndarray, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018, sec. 3): mean and std over ``num_subsets``
    random subsets (``min(subset_size, n, m)`` rows of each set, drawn without replacement) of the
    unbiased MMD^2 with the cubic polynomial kernel k(a, b) = (a.b / d + 1)^3, in float64.

    Args: features_a (n, d), features_b (m, d); seed fixes the subsets.
    Returns: (mean, std); papers usually report both times 1e3."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"kid needs two feature sets (n, d) and (m, d), got {a.shape} and {b.shape}.")
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError(f"kid needs at least 2 features in each set, got {len(a)} and {len(b)}.")
    rng = np.random.default_rng(seed)
    mmds = np.array([_polynomial_mmd2(a[rng.choice(len(a), size, replace=False)],
                                      b[rng.choice(len(b), size, replace=False)]) for _ in range(num_subsets)])
    return float(mmds.mean()), float(mmds.std())
