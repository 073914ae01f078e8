"""EDM's deterministic/stochastic samplers (Karras et al. 2022), for any Gaussian path.

Choice of variables: every Gaussian path is EDM's alpha = 1 path in the scaled variable
y = x / alpha with noise level s = sigma / alpha, where the PF-ODE is dy/ds = eps_hat
(Karras et al. 2022, eq. 4 with sigma(t) = t, s(t) = 1, their recommended choice). The
samplers step y in s and map back, x = alpha y; for the EDM and VE processes (alpha = 1)
this is exactly their Algorithm 2, and for VP it is how EDM runs a VP-trained model with its own
sampler (Sec. 3: in these variables Euler's step is DDIM's, and Heun adds one correction). The Euler step
in these variables is written x_next = alpha_next x0_hat + sigma_next eps_hat (DDIM with
eta = 0), which stays finite where alpha = 0 (rectified flow at t = 1); a Heun correction is
applied only where both ends have finite, positive noise level (EDM's "if sigma_{i+1} != 0").
"""
from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model
from genflow.samplers._common import Stats, finish, need_key, normal_like, sampler, x0_and_eps
from genflow.samplers.registry import register


def churn(model: Model, x: Array, t: Array, z: Array, gamma: Array, s_noise: Array) -> tuple[Array, Array]:
    """EDM's stochastic churn: raise the noise level s_i to s_hat = s_i (1 + gamma) with fresh noise.

    y_hat = y + sqrt(s_hat^2 - s_i^2) S_noise z (Alg. 2, lines 5-6), in x = alpha y; t_hat is the
    time of s_hat (``t_from_log_snr``, clipped to t_max). Returns (x_hat, t_hat); gamma = 0 leaves
    (x, t) exactly unchanged.
    """
    process = model.process
    a, sig = process.alpha(t), process.sigma(t)
    s_i = sig / a
    t_hat = process.t_from_log_snr(process.log_snr(t) - 2.0 * jnp.log1p(gamma))
    t_hat = jnp.where(gamma > 0, t_hat, t)
    a_hat = process.alpha(t_hat)
    s_hat = process.sigma(t_hat) / a_hat                             # the level t_hat really has
    add = jnp.sqrt(jnp.maximum(s_hat**2 - s_i**2, 0.0)) * s_noise
    x_hat = jnp.where(gamma > 0, (a_hat / a) * x + a_hat * add * z, x)
    return x_hat, t_hat


def churn_gamma(model: Model, t: Array, n: int, s_churn: float, s_min: Array, s_max: Array) -> Array:
    """gamma_i = min(S_churn / N, sqrt(2) - 1) where s_i in [S_min, S_max], else 0 (Alg. 2, line 4)."""
    process = model.process
    a = process.alpha(t)
    s_i = process.sigma(t) / jnp.where(a > 0, a, 1.0)
    inside = (a > 0) & (s_i >= s_min) & (s_i <= s_max)
    return jnp.where(inside, min(s_churn / n, math.sqrt(2.0) - 1.0), 0.0)


def _step(model: Model, x: Array, t: Array, t_next: Array, cond: Any, heun: bool) -> tuple[Array, Array]:
    """One Euler (DDIM) or Heun step of dy/ds = eps_hat from t to t_next, in x = alpha y; (x, NFE)."""
    process = model.process
    x0, eps = x0_and_eps(model, x, t, cond)
    a_next, sig_next = process.alpha(t_next), process.sigma(t_next)
    x_euler = a_next * x0 + sig_next * eps
    if not heun:
        return x_euler, jnp.ones((), jnp.int32)
    a = process.alpha(t)

    def correct(_):
        # y_next = y_euler + (s_next - s)(eps' - eps) / 2, times alpha_next.
        eps2 = model.eps(x_euler, t_next, cond)
        ds = sig_next - a_next * process.sigma(t) / a
        return x_euler + 0.5 * ds * (eps2 - eps)

    corrected = (a > 0) & (sig_next > 0)
    x_next = jax.lax.cond(corrected, correct, lambda _: x_euler, None)
    return x_next, 1 + corrected.astype(jnp.int32)


def churned_scan(model, x1, ts, key, cond, s_churn, s_min, s_max, s_noise, denoise, step_fn, name="s_churn"):
    """The loop of EDM's Algorithm 2 around any deterministic step: per step, the optional churn
    (t_i, x_i) -> (t_hat, x_hat), then ``step_fn(model, x_hat, t_hat, t_next, cond) -> (x, NFE)``.
    Shared by ``edm_euler``, ``edm_heun`` and ``noise_level.dpm_2``."""
    if s_churn != 0.0:
        need_key(f"{name}={s_churn}", key)
    n = ts.shape[0] - 1

    def step(x, inputs):
        t, t_next, i = inputs
        if s_churn != 0.0:
            gamma = churn_gamma(model, t, n, s_churn, s_min, s_max)
            x, t = churn(model, x, t, normal_like(key, i, x), gamma, s_noise)
        x, nfe = step_fn(model, x, t, t_next, cond)
        return x.astype(x1.dtype), nfe

    x, nfe = jax.lax.scan(step, x1, (ts[:-1], ts[1:], jnp.arange(n)))
    return finish(model, x, ts[-1], cond, denoise, jnp.sum(nfe))


_STATIC = ("s_churn", "denoise")


@sampler("edm_heun", static_argnames=_STATIC)
def edm_heun(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
             denoise: bool = False, s_churn: float = 0.0, s_min: float = 0.0, s_max: float = float("inf"),
             s_noise: float = 1.0) -> tuple[Array, Stats]:
    """EDM's Heun sampler with optional stochastic churn, for any process (see the module docstring).

    Per step: churn (t_i, x_i) -> (t_hat, x_hat); d = eps_hat(x_hat, t_hat);
    y_{i+1} = y_hat + (s_{i+1} - s_hat) d, then, where s_{i+1} > 0, the Heun correction
    y_{i+1} = y_hat + (s_{i+1} - s_hat)(d + d') / 2 with d' = eps_hat(x_{i+1}, t_{i+1}); y = x / alpha.
    NFE: 2 per step (1 where the correction is skipped). Second order in the step (s_churn = 0).

    Args: x1 (B, ...) prior draw; ts (n+1,) decreasing from t_max to t_min (typically
      ``grids.karras(process, n)``); key a PRNG key, needed when s_churn > 0 (step i's churn
      noise from ``fold_in(key, i)``); s_churn (static), s_min, s_max, s_noise EDM's churn
      parameters, in units of the noise level s = sigma / alpha.
    Returns: (x at ts[-1], or E[x0 | x] there with ``denoise=True`` (1 more NFE; EDM's own grid
      ends at sigma = 0, which is this last Euler step), stats with the NFE counted per step).
    Reference: Karras et al. 2022, Algorithm 2 (and eq. 4 for processes with alpha != 1).
    """
    return churned_scan(model, x1, ts, key, cond, s_churn, s_min, s_max, s_noise, denoise,
                        functools.partial(_step, heun=True))


@sampler("edm_euler", static_argnames=_STATIC)
def edm_euler(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
              denoise: bool = False, s_churn: float = 0.0, s_min: float = 0.0, s_max: float = float("inf"),
              s_noise: float = 1.0) -> tuple[Array, Stats]:
    """EDM's Euler sampler with optional churn: ``edm_heun`` without the correction; 1 NFE per step.

    y_{i+1} = y_hat + (s_{i+1} - s_hat) eps_hat(x_hat, t_hat), i.e. x_{i+1} = alpha_{i+1} x0_hat +
    sigma_{i+1} eps_hat: with s_churn = 0 it is DDIM with eta = 0. Args and Returns as ``edm_heun``.
    Reference: Karras et al. 2022, Algorithm 2 without its lines 9-11.
    """
    return churned_scan(model, x1, ts, key, cond, s_churn, s_min, s_max, s_noise, denoise,
                        functools.partial(_step, heun=False))


register("edm_heun", edm_heun, summary="EDM's Heun sampler (Algorithm 2, optional churn) in y = x / alpha",
         nfe_per_step="2 (1 on a step to sigma = 0)", order="2", stochastic=True, config={"churn": "s_churn"})
register("edm_euler", edm_euler, summary="EDM's Euler sampler (= DDIM with eta = 0 without churn)",
         nfe_per_step="1", order="1", stochastic=True, config={"churn": "s_churn"})
