"""Time weightings lambda(t) of a regression loss, each stated in the space it weights.

A weighting says which quantity's squared error it weights (``space``) and by how much; the
loss multiplies by ``output_scale(...)^2`` to move that error into the network's own output
space, so the regression is always done on the raw output (exact, no division at runtime
where the two spaces agree). Song et al. (2021) write lambda on the score error:
``sigma2`` on the score is ``eps`` (uniform on the noise error); ``likelihood`` is g^2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax.numpy as jnp
from jax import Array

from genflow.processes.base import AbstractProcess, float_dtype


@dataclass(frozen=True)
class Weighting:
    """lambda(t) on the squared error of quantity ``space`` (eps, x0, score, v or velocity)."""

    space: str
    fn: Callable[[AbstractProcess, Array], Array]
    name: str = "custom"

    def __call__(self, process: AbstractProcess, t: Array) -> Array:
        return self.fn(process, t)


def _ones(process, t):
    return jnp.ones_like(jnp.asarray(t, dtype=float_dtype(t)))


eps = Weighting("eps", _ones, "eps")
"""Uniform weight on ||eps_hat - eps||^2: DDPM's simple loss (Ho et al. 2020, eq. 14)."""

likelihood = Weighting("score", lambda p, t: p.g2(t), "likelihood")
"""lambda = g(t)^2 on the score error: the ELBO/likelihood weighting (Song et al. 2021b, Thm. 1)."""

sigma2 = Weighting("score", lambda p, t: p.sigma(t) ** 2, "sigma2")
"""lambda = sigma(t)^2 on the score error; equal to ``eps``."""

uniform = Weighting("score", _ones, "uniform")
"""lambda = 1 on the score error (the plain Fisher divergence at each t)."""

velocity = Weighting("velocity", _ones, "velocity")
"""Uniform weight on the velocity error: flow matching / rectified flow (Liu et al. 2023)."""


def edm(sigma_data: float = 0.5) -> Weighting:
    """EDM's lambda(s) = (s^2 + s_d^2) / (s s_d)^2 on the denoiser error, s = sigma / alpha
    (Karras et al. 2022, Table 1). Combine with log-normal time sampling."""

    def fn(p, t):
        s2 = (p.sigma(t) / p.alpha(t)) ** 2
        return (s2 + sigma_data**2) / (s2 * sigma_data**2)

    return Weighting("x0", fn, "edm")


WEIGHTINGS = {"eps": eps, "likelihood": likelihood, "sigma2": sigma2, "uniform": uniform,
              "velocity": velocity}
