"""How a loss draws its times t, as functions (key, n, process) -> t of shape (n,)."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import Array

from genflow.processes.base import AbstractProcess

TimeSampler = Callable[[Array, int, AbstractProcess], Array]


def uniform_time(key: Array, n: int, process: AbstractProcess) -> Array:
    """Stratified uniform t in [t_min, t_max]: (u + arange(n)) / n, one offset u per batch.

    Low-discrepancy times lower the variance of the batch loss (Kingma et al. 2021, App. I).
    """
    u = (jax.random.uniform(key, ()) + jnp.arange(n)) / n
    return process.t_min + (process.t_max - process.t_min) * u


def lognormal_sigma(p_mean: float = -1.2, p_std: float = 1.2) -> TimeSampler:
    """EDM's ln(s) ~ N(p_mean, p_std^2) on the noise level s = sigma/alpha (Karras et al. 2022,
    Table 1), mapped to t through the process's log-SNR (log-SNR = -2 ln s), clipped to its range."""

    def sample(key: Array, n: int, process: AbstractProcess) -> Array:
        log_s = p_mean + p_std * jax.random.normal(key, (n,))
        return process.t_from_log_snr(-2.0 * log_s)

    return sample
