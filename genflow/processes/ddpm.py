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


SCHEDULES = ("linear", "scaled_linear", "cosine", "table")


@pytree_dataclass
class DDPM(AbstractProcess):
    """Discrete DDPM over ``num_steps`` = K steps; t_min = 1/K is the first step. Schedules:
    ``linear`` (Ho et al. 2020: beta linear from beta_start to beta_end), ``scaled_linear``
    (sqrt(beta) linear: Stable Diffusion's, with beta_start=0.00085, beta_end=0.012), ``cosine``
    (Nichol & Dhariwal 2021; diffusers' ``squaredcos_cap_v2``), or any table of betas or
    alphas_cumprod through ``DDPM.from_betas`` / ``DDPM.from_alphas_cumprod`` (diffusers'
    ``trained_betas``), with the same exact knots alpha(k/K)^2 = alphas_cumprod[k - 1]."""

    num_steps: int = static_field(default=1000)
    schedule: str = static_field(default="linear")
    beta_start: float = 1e-4
    beta_end: float = 0.02
    cosine_s: float = 0.008
    log_alpha_table: Array | None = None     # schedule="table": log abar_k for k = 0..K, (K+1,)

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown DDPM schedule {self.schedule!r}; use one of {', '.join(SCHEDULES[:3])}, "
                             "or DDPM.from_betas / DDPM.from_alphas_cumprod for a table.")
        if (self.schedule == "table") != (self.log_alpha_table is not None):
            raise ValueError("a DDPM table schedule is made with DDPM.from_betas(betas) or "
                             "DDPM.from_alphas_cumprod(alphas_cumprod).")

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod) -> "DDPM":
        """DDPM whose step k = 1..K has alpha(k/K)^2 = alphas_cumprod[k - 1] (diffusers' convention:
        its 0-based timestep j is genflow time (j + 1) / K). Strictly decreasing, in (0, 1)."""
        import numpy as np

        acp = np.asarray(alphas_cumprod, np.float64)
        if acp.ndim != 1 or acp.size < 2:
            raise ValueError(f"alphas_cumprod must be a 1-D table of at least 2 steps, got shape {acp.shape}.")
        if not (np.all(np.isfinite(acp)) and np.all(acp > 0) and np.all(acp < 1) and np.all(np.diff(acp) < 0)):
            raise ValueError("alphas_cumprod must decrease strictly and lie in (0, 1) (abar_k = prod (1 - beta_i)).")
        table = np.concatenate([[0.0], 0.5 * np.log(acp)])
        return cls(num_steps=int(acp.size), schedule="table", log_alpha_table=jnp.asarray(table, jnp.result_type(float)))

    @classmethod
    def from_betas(cls, betas) -> "DDPM":
        """DDPM with the given beta_k, k = 1..K (diffusers' ``trained_betas``), each in (0, 1)."""
        import numpy as np

        b = np.asarray(betas, np.float64)
        if b.ndim != 1 or b.size < 2 or not (np.all(b > 0) and np.all(b < 1)):
            raise ValueError(f"betas must be a 1-D table of at least 2 values in (0, 1), got shape {b.shape}.")
        return cls.from_alphas_cumprod(np.cumprod(1.0 - b))

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
        if self.schedule == "table":
            return -jnp.expm1(2.0 * jnp.diff(self.log_alpha_table))
        if self.schedule == "linear":
            return jnp.linspace(self.beta_start, self.beta_end, self.num_steps)
        if self.schedule == "scaled_linear":
            return jnp.linspace(self.beta_start**0.5, self.beta_end**0.5, self.num_steps) ** 2
        s, big_k = self.cosine_s, self.num_steps

        def f(i):
            return jnp.cos((i / big_k + s) / (1 + s) * math.pi / 2) ** 2

        # Nichol & Dhariwal clip beta at 0.999 to avoid a singular last step.
        return jnp.minimum(1.0 - f(k) / f(k - 1), 0.999)

    def log_alpha_knots(self) -> Array:
        """log abar_k for k = 0..K (abar_0 = 1), shape (K+1,)."""
        if self.schedule == "table":
            return self.log_alpha_table
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
