"""Sample-quality distances for low-dimensional data: energy distance, MMD, sliced Wasserstein.

Each compares two samples x (n, d) and y (m, d) and is exactly zero in expectation (MMD^2,
energy distance: unbiased U-statistic forms) when the distributions are equal.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import Array


def _pairwise_dist(a: Array, b: Array) -> Array:
    sq = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2 * a @ b.T
    return jnp.sqrt(jnp.maximum(sq, 0.0))


def _offdiag_mean(m: Array) -> Array:
    n = m.shape[0]
    return (jnp.sum(m) - jnp.trace(m)) / (n * (n - 1))


@jax.jit
def energy_distance(x: Array, y: Array) -> Array:
    """Unbiased energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| (Szekely & Rizzo 2013).

    Zero in expectation iff the distributions are equal; for 1-D point masses at a and b it
    is 2|a - b|."""
    x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    return 2 * jnp.mean(_pairwise_dist(x, y)) - _offdiag_mean(_pairwise_dist(x, x)) - _offdiag_mean(_pairwise_dist(y, y))


@jax.jit
def mmd_rbf(x: Array, y: Array, bandwidth: float = 1.0) -> Array:
    """Unbiased MMD^2 with the kernel k(a, b) = exp(-|a - b|^2 / (2 bandwidth^2)) (Gretton et al. 2012)."""
    x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    k = lambda a, b: jnp.exp(-_pairwise_dist(a, b) ** 2 / (2 * bandwidth**2))
    return _offdiag_mean(k(x, x)) + _offdiag_mean(k(y, y)) - 2 * jnp.mean(k(x, y))


def sliced_wasserstein(x: Array, y: Array, key: Array, num_projections: int = 256) -> Array:
    """Sliced 2-Wasserstein distance: sqrt of the mean over random unit directions of W2^2 between
    the 1-D projections, computed from sorted samples (x and y of equal size n)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"sliced_wasserstein needs equal sample sizes, got {x.shape[0]} and {y.shape[0]}; "
                         "subsample the larger one.")
    return _sliced(x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1), key, num_projections)


@partial(jax.jit, static_argnums=3)
def _sliced(x, y, key, num_projections):
    dirs = jax.random.normal(key, (x.shape[1], num_projections), x.dtype)
    dirs = dirs / jnp.linalg.norm(dirs, axis=0, keepdims=True)
    px, py = jnp.sort(x @ dirs, axis=0), jnp.sort(y @ dirs, axis=0)
    return jnp.sqrt(jnp.mean((px - py) ** 2))
