"""DDIM for any Gaussian path (Song, Meng & Ermon 2021)."""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model
from genflow.samplers._common import Stats, finish, need_key, normal_like, sampler, x0_and_eps
from genflow.samplers.recurrence import Recurrence, run
from genflow.samplers.registry import register


def ddim_recurrence(model: Model, ts: Array, *, key: Array | None = None,
                    eta: float = 0.0) -> Recurrence:
    """``ddim``'s steps as a ``Recurrence`` (eta static; step k's noise from ``fold_in(key, k)``)."""
    if eta != 0.0:
        need_key(f"ddim with eta={eta}", key)
    process = model.process

    def step(m: Model, carry, k, cond):
        (x,) = carry
        t, s = ts[k], ts[k + 1]
        x0, eps = x0_and_eps(m, x, t, cond)
        a_s, s_s = process.alpha(s), process.sigma(s)
        if eta == 0.0:
            return ((a_s * x0 + s_s * eps).astype(x.dtype),)
        # e^{lambda_t - lambda_s} written as a product, finite where alpha_t = 0 (rectified flow at t = 1).
        ratio = (process.alpha(t) * s_s) ** 2 / (a_s * process.sigma(t)) ** 2
        keep = jnp.sqrt(jnp.maximum(1.0 - eta**2 * (1.0 - ratio), 0.0))
        c = eta * s_s * jnp.sqrt(jnp.maximum(1.0 - ratio, 0.0))
        return ((a_s * x0 + s_s * keep * eps + c * normal_like(key, k, x)).astype(x.dtype),)

    return Recurrence(lambda x1: (x1,), step, ts[:-1])


@sampler("ddim", static_argnames=("eta", "denoise"))
def ddim(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
         denoise: bool = False, eta: float = 0.0) -> tuple[Array, Stats]:
    """DDIM with stochasticity eta for any Gaussian path; 1 NFE per step.

    From t to s < t, with x0_hat, eps_hat the model's E[x0 | x_t], E[eps | x_t]:
        x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,
        c^2 = eta^2 sigma_s^2 (1 - (alpha_t sigma_s)^2 / (alpha_s sigma_t)^2),
    c being eta times the std of q(x_s | x_t, x0) (eq. 16 there, written for any alpha, sigma).
    eta = 0 is the deterministic DDIM (Euler for the PF-ODE in (x / alpha, sigma / alpha));
    eta = 1 on DDPM's grid ``process.timesteps()`` is DDPM's ancestral sampler with the posterior
    variance. Each step samples the marginal at s, so the last step keeps its noise c z.

    Args: x1 (B, ...) prior draw; ts (n+1,) decreasing from t_max to t_min; key a PRNG key
      (needed when eta > 0; step i's noise from ``fold_in(key, i)``); eta in [0, 1], static.
    Returns: (x at ts[-1], or E[x0 | x] there with ``denoise=True`` (1 more NFE), stats).
    Reference: Song, Meng & Ermon 2021, eq. 12 (and eq. 16 for c).
    """
    x = run(model, ddim_recurrence(model, ts, key=key, eta=eta), x1, cond)
    return finish(model, x, ts[-1], cond, denoise, ts.shape[0] - 1)


register("ddim", ddim, summary="DDIM (eta = 0: deterministic; eta = 1: ancestral), any process", nfe_per_step="1",
         order="1", stochastic=True, config={"eta": "eta"}, recurrence=ddim_recurrence)
