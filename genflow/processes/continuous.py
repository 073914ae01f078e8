"""Continuous-time Gaussian paths: VP, sub-VP and VE SDEs (Song et al. 2021), EDM
(Karras et al. 2022) and rectified flow (Liu et al. 2023), all with t = 0 data, t = 1 noise."""
from __future__ import annotations

import jax.numpy as jnp
from jax import Array

from genflow._pytree import pytree_dataclass
from genflow.processes.base import AbstractProcess, float_dtype


class _LinearBeta:
    """B(t) = int_0^t beta = beta_min t + (beta_max - beta_min) t^2 / 2 (score-SDE eq. 33)."""

    beta_min: float
    beta_max: float

    def beta(self, t: Array) -> Array:
        return self.beta_min + (self.beta_max - self.beta_min) * t

    def big_b(self, t: Array) -> Array:
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2


@pytree_dataclass
class VP(_LinearBeta, AbstractProcess):
    """Variance-preserving SDE: alpha = exp(-B/2), sigma = sqrt(1 - exp(-B)).

    The continuous limit of DDPM with a linear beta schedule (Song et al. 2021, eq. 11).
    sigma(0) = 0, so the score is singular at t = 0: ``t_min`` = 1e-3 as in score_sde.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    t_max: float = 1.0

    def alpha(self, t):
        return jnp.exp(-0.5 * self.big_b(t))

    def sigma(self, t):
        # -expm1(-B) keeps precision where B is tiny (1 - exp(-B) cancels there).
        return jnp.sqrt(-jnp.expm1(-self.big_b(t)))

    def alpha_dot(self, t):
        return -0.5 * self.beta(t) * self.alpha(t)

    def sigma_dot(self, t):
        return 0.5 * self.beta(t) * jnp.exp(-self.big_b(t)) / self.sigma(t)


@pytree_dataclass
class SubVP(_LinearBeta, AbstractProcess):
    """sub-VP SDE: alpha = exp(-B/2), sigma = 1 - exp(-B) (Song et al. 2021, eq. 12).

    Its marginal variance is below the VP one at every t; same ``t_min`` reasoning as VP.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    t_max: float = 1.0

    def alpha(self, t):
        return jnp.exp(-0.5 * self.big_b(t))

    def sigma(self, t):
        return -jnp.expm1(-self.big_b(t))

    def alpha_dot(self, t):
        return -0.5 * self.beta(t) * self.alpha(t)

    def sigma_dot(self, t):
        return self.beta(t) * jnp.exp(-self.big_b(t))


@pytree_dataclass
class VE(AbstractProcess):
    """Variance-exploding SDE (NCSN): alpha = 1, sigma = s_min (s_max / s_min)^t (Song et al. 2021, eq. 9).

    sigma(0) = s_min > 0, so t_min = 0 is safe; the defaults are score_sde's CIFAR-10 ones.
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    t_min: float = 0.0
    t_max: float = 1.0

    def alpha(self, t):
        return jnp.ones_like(jnp.asarray(t, dtype=float_dtype(t)))

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def alpha_dot(self, t):
        return jnp.zeros_like(jnp.asarray(t, dtype=float_dtype(t)))

    def sigma_dot(self, t):
        return self.sigma(t) * jnp.log(self.sigma_max / self.sigma_min)


@pytree_dataclass
class EDM(AbstractProcess):
    """EDM (Karras et al. 2022): alpha = 1 and the Karras schedule as a path in t,
    sigma(t) = (s_min^(1/rho) + t (s_max^(1/rho) - s_min^(1/rho)))^rho  (EDM eq. 5, with t = 1 - i/(N-1)).

    A uniform grid in t is exactly EDM's sampling grid. EDM's data std sigma_data belongs to the
    parameterization (``genflow.models.edm``), not to the path.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    t_min: float = 0.0
    t_max: float = 1.0

    def _span(self):
        return self.sigma_max ** (1.0 / self.rho) - self.sigma_min ** (1.0 / self.rho)

    def alpha(self, t):
        return jnp.ones_like(jnp.asarray(t, dtype=float_dtype(t)))

    def sigma(self, t):
        return (self.sigma_min ** (1.0 / self.rho) + t * self._span()) ** self.rho

    def alpha_dot(self, t):
        return jnp.zeros_like(jnp.asarray(t, dtype=float_dtype(t)))

    def sigma_dot(self, t):
        base = self.sigma_min ** (1.0 / self.rho) + t * self._span()
        return self.rho * base ** (self.rho - 1.0) * self._span()


@pytree_dataclass
class RectifiedFlow(AbstractProcess):
    """Rectified flow / linear interpolant: alpha = 1 - t, sigma = t (Liu et al. 2023).

    Papers on rectified flow run time the other way (z_0 noise, z_1 data): their time is
    1 - t here. alpha(1) = 0, so eps -> x0 is singular at t = 1: predict velocity.
    """

    t_min: float = 0.0
    t_max: float = 1.0

    def alpha(self, t):
        return 1.0 - t

    def sigma(self, t):
        return t * jnp.ones((), float_dtype(t))

    def alpha_dot(self, t):
        return -jnp.ones_like(jnp.asarray(t, dtype=float_dtype(t)))

    def sigma_dot(self, t):
        return jnp.ones_like(jnp.asarray(t, dtype=float_dtype(t)))
