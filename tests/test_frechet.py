"""The Fréchet distance against scipy, and the Fréchet digits distance on real vs corrupted digits."""
import numpy as np
import pytest
from scipy import linalg

from genflow.data import load_digits
from genflow.metrics import feature_stats, frechet_digits_distance, frechet_distance


def scipy_frechet(mu1, s1, mu2, s2):
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean.real))


def test_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 16)), rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 1.0
    mine = frechet_distance(*feature_stats(a), *feature_stats(b))
    assert mine == pytest.approx(scipy_frechet(*feature_stats(a), *feature_stats(b)), rel=1e-8)


def test_closed_form_for_gaussians():
    # N(0, I) vs N(m, 4 I) in d dims: |m|^2 + d (1 + 4 - 2 * 2) = |m|^2 + d.
    d, m = 5, np.full(5, 0.5)
    assert frechet_distance(np.zeros(d), np.eye(d), m, 4 * np.eye(d)) == pytest.approx(0.25 * d + d)
    assert frechet_distance(m, np.eye(d), m, np.eye(d)) == pytest.approx(0.0, abs=1e-10)


def test_mismatched_stats_are_a_clear_error():
    with pytest.raises(ValueError, match="feature statistics do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_fdd_ranks_real_digits_above_noise_and_shuffled_pixels():
    x, _, held, _ = load_digits()
    n = len(held)
    real = frechet_digits_distance(held, x)
    rng = np.random.default_rng(0)
    noise = frechet_digits_distance(rng.uniform(-1, 1, held.shape).astype(np.float32), x)
    shuffled = held.reshape(n, -1)[:, rng.permutation(64)].reshape(held.shape)
    shuffled_fdd = frechet_digits_distance(shuffled, x)
    assert real * 10 < shuffled_fdd and real * 10 < noise, (real, shuffled_fdd, noise)
