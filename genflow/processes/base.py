"""The one process interface: Gaussian paths x_t = alpha(t) x0 + sigma(t) eps.

Time convention everywhere in genflow: t = 0 is data, t = 1 is noise; sampling runs
from t = 1 down to ``t_min``. A final process writes alpha, sigma and their time
derivatives in closed form; everything else (SDE drift and diffusion, log-SNR, the
prior, the time of a given log-SNR) is written once here.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import Array


def float_dtype(t) -> jnp.dtype:
    """At least float32, and float64 for float64 input even when ``t`` is weakly typed
    (``jnp.result_type(t, float32)`` would demote a weak float64 to float32)."""
    return jnp.promote_types(jnp.asarray(t).dtype, jnp.float32)


def expand_like(t: Array, x: Array) -> Array:
    """Reshape a per-example time ``t`` of shape (B,) (or a scalar) to broadcast against x (B, ...)."""
    t = jnp.asarray(t)
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


class AbstractProcess:
    """Gaussian path x_t = alpha(t) x0 + sigma(t) eps, eps ~ N(0, I), t in [t_min, t_max].

    Subclasses define ``alpha``, ``sigma``, ``alpha_dot``, ``sigma_dot`` (elementwise in t)
    and the fields ``t_min``/``t_max``; they override nothing else.
    """

    t_min: float
    t_max: float

    # -- the four a final process writes -------------------------------------------------
    def alpha(self, t: Array) -> Array:
        raise NotImplementedError

    def sigma(self, t: Array) -> Array:
        raise NotImplementedError

    def alpha_dot(self, t: Array) -> Array:
        raise NotImplementedError

    def sigma_dot(self, t: Array) -> Array:
        raise NotImplementedError

    # -- written once ----------------------------------------------------------------------
    def sample(self, x0: Array, t: Array, eps: Array) -> Array:
        """x_t = alpha(t) x0 + sigma(t) eps. Args: x0, eps (B, ...); t (B,) or scalar."""
        t = expand_like(t, x0)
        return self.alpha(t) * x0 + self.sigma(t) * eps

    def f(self, t: Array) -> Array:
        """Drift coefficient of the forward SDE dx = f(t) x dt + g(t) dW: f = d log(alpha)/dt."""
        return self.alpha_dot(t) / self.alpha(t)

    def g2(self, t: Array) -> Array:
        """Squared diffusion g(t)^2 = d(sigma^2)/dt - 2 f sigma^2 (seed equations, section 2)."""
        s = self.sigma(t)
        return 2.0 * s * self.sigma_dot(t) - 2.0 * self.f(t) * s**2

    def log_snr(self, t: Array) -> Array:
        """lambda(t) = log(alpha^2 / sigma^2); decreasing in t."""
        return 2.0 * (jnp.log(self.alpha(t)) - jnp.log(self.sigma(t)))

    def t_from_log_snr(self, log_snr: Array, iters: int = 60, lo: Array | None = None,
                       hi: Array | None = None) -> Array:
        """Invert ``log_snr`` by bisection on [lo, hi] (default [t_min, t_max]; clipped to that range).

        Generic and jit-safe; 60 halvings reach float64 resolution of the unit interval. A sampler
        step brackets its own midpoint with lo = t_next, hi = t, which may run below t_min.
        """
        log_snr = jnp.asarray(log_snr)
        dtype = float_dtype(log_snr)
        lo = jnp.broadcast_to(jnp.asarray(self.t_min if lo is None else lo, dtype), log_snr.shape)
        hi = jnp.broadcast_to(jnp.asarray(self.t_max if hi is None else hi, dtype), log_snr.shape)

        def body(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            above = self.log_snr(mid) > log_snr  # still too little noise: move right
            return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

        lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
        return 0.5 * (lo + hi)

    def jump_times(self) -> Array | None:
        """Times in (t_min, t_max) where alpha' or sigma' jump, so the PF-ODE's vector field is
        discontinuous there (None for a smooth path). Adaptive solvers can step onto them."""
        return None

    def prior(self, key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        """Draw x1 ~ N(0, sigma(t_max)^2 I).

        Exact for rectified flow; for VP/sub-VP it ignores alpha(1)^2 Var(x0)
        (about 4e-5 of the variance with beta_max = 20); for VE/EDM it ignores Var(x0)
        next to sigma_max^2, as the score-SDE and EDM papers do.
        """
        return self.sigma(jnp.asarray(self.t_max, dtype)) * jax.random.normal(key, shape, dtype)

    def prior_logp(self, x: Array) -> Array:
        """log N(x; 0, sigma(t_max)^2 I), summed over all but the leading axis. Returns (B,)."""
        s = self.sigma(jnp.asarray(self.t_max, x.dtype))
        d = math.prod(x.shape[1:])
        sq = jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=1)
        return -0.5 * sq / s**2 - d * (jnp.log(s) + 0.5 * math.log(2 * math.pi))
