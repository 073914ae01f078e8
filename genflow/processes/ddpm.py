"""DDPM's discrete chain (Ho et al. 2020) as a Gaussian path in continuous time.

Discrete steps k = 1..K: x_k = a_k x_{k-1} + b_k eps_k with a_k = sqrt(1 - beta_k), so
x_k = abar_k x0 + bbar_k eps with abar_k = prod_{i<=k} a_i, bbar_k = sqrt(1 - abar_k^2)
(seed equations, section 1; abar_k is the square root of the DDPM paper's alpha-bar).

The discrete-to-continuous time mapping, written down once:  t_k = k / K.
Between knots log(alpha) is interpolated linearly in t, so alpha(t_k) = abar_k exactly,
alpha and sigma are continuous, and their derivatives are piecewise closed form.
A network trained on this process sees t = k / K, never the integer k.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
from jax import Array

from genflow._pytree import pytree_dataclass, static_field
from genflow.processes.base import AbstractProcess


@pytree_dataclass
class DDPM(AbstractProcess):
    """Discrete DDPM with a ``linear`` (Ho et al. 2020) or ``cosine`` (Nichol & Dhariwal 2021)
    beta schedule over ``num_steps`` = K steps; t_min = 1/K is the first step."""

    num_steps: int = static_field(default=1000)
    schedule: str = static_field(default="linear")
    beta_start: float = 1e-4
    beta_end: float = 0.02
    cosine_s: float = 0.008

    def __post_init__(self):
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"unknown DDPM schedule {self.schedule!r}; use 'linear' or 'cosine'.")

    @property
    def t_min(self) -> float:
        return 1.0 / self.num_steps

    @property
    def t_max(self) -> float:
        return 1.0

    # -- the discrete chain ----------------------------------------------------------------
    def betas(self) -> Array:
        """beta_k for k = 1..K, shape (K,)."""
        k = jnp.arange(1, self.num_steps + 1).astype(jnp.result_type(float))
        if self.schedule == "linear":
            return jnp.linspace(self.beta_start, self.beta_end, self.num_steps)
        s, big_k = self.cosine_s, self.num_steps

        def f(i):
            return jnp.cos((i / big_k + s) / (1 + s) * math.pi / 2) ** 2

        # Nichol & Dhariwal clip beta at 0.999 to avoid a singular last step.
        return jnp.minimum(1.0 - f(k) / f(k - 1), 0.999)

    def log_alpha_knots(self) -> Array:
        """log abar_k for k = 0..K (abar_0 = 1), shape (K+1,)."""
        cum = jnp.cumsum(0.5 * jnp.log1p(-self.betas()))
        return jnp.concatenate([jnp.zeros((1,), cum.dtype), cum])

    def time_of_step(self, k: Array) -> Array:
        """t_k = k / K, the continuous time of discrete step k."""
        return jnp.asarray(k) / self.num_steps

    def step_of_time(self, t: Array) -> Array:
        """Nearest discrete step k = round(t K), as int32."""
        return jnp.round(jnp.asarray(t) * self.num_steps).astype(jnp.int32)

    def timesteps(self) -> Array:
        """t_k for k = K..0, decreasing: the grid of the ancestral sampler, shape (K+1,)."""
        return self.time_of_step(jnp.arange(self.num_steps, -1, -1))

    # -- the path in continuous time ---------------------------------------------------------
    def _segment(self, t):
        knots = self.log_alpha_knots()
        u = jnp.clip(jnp.asarray(t) * self.num_steps, 0.0, float(self.num_steps))
        i = jnp.clip(jnp.floor(u).astype(jnp.int32), 0, self.num_steps - 1)
        slope = knots[i + 1] - knots[i]
        return knots[i] + (u - i) * slope, slope * self.num_steps

    def jump_times(self):
        """The interior knots t_k = k/K, k = 2..K-1: log alpha is linear between them, so its slope jumps."""
        if self.num_steps < 3:
            return None
        return jnp.arange(2, self.num_steps).astype(jnp.result_type(float)) / self.num_steps

    def alpha(self, t):
        return jnp.exp(self._segment(t)[0])

    def sigma(self, t):
        # sqrt(1 - alpha^2) written with expm1 for precision at small t.
        return jnp.sqrt(-jnp.expm1(2.0 * self._segment(t)[0]))

    def alpha_dot(self, t):
        log_a, dlog_a = self._segment(t)
        return jnp.exp(log_a) * dlog_a

    def sigma_dot(self, t):
        # d/dt sqrt(1 - alpha^2) = -alpha alpha_dot / sigma
        return -self.alpha(t) * self.alpha_dot(t) / self.sigma(t)
