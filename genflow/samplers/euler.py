"""Fixed-step Euler samplers: the probability-flow ODE and the reverse SDE, each one lax.scan."""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model
from genflow.samplers._common import Stats, finish, need_key, normal_like, sampler
from genflow.samplers.recurrence import Recurrence, run
from genflow.samplers.registry import register


def euler_ode_recurrence(model: Model, ts: Array, *, key: Array | None = None) -> Recurrence:
    """``euler_ode``'s steps as a ``Recurrence``: x_{k+1} = x_k + (t_{k+1} - t_k) v(x_k, t_k)."""

    def step(m: Model, carry, k, cond):
        (x,) = carry
        return (x + (ts[k + 1] - ts[k]) * m.velocity(x, ts[k], cond),)

    return Recurrence(lambda x1: (x1,), step, ts[:-1])


def euler_maruyama_recurrence(model: Model, ts: Array, *, key: Array | None = None) -> Recurrence:
    """``euler_maruyama``'s steps as a ``Recurrence`` (step k's noise from ``fold_in(key, k)``)."""
    need_key("euler_maruyama", key)
    process = model.process
    n = ts.shape[0] - 1

    def step(m: Model, carry, k, cond):
        (x,) = carry
        t, s = ts[k], ts[k + 1]
        g2 = process.g2(t)
        drift = process.f(t) * x - g2 * m.score(x, t, cond)
        z = normal_like(key, k, x)
        noise_scale = jnp.where(k < n - 1, jnp.sqrt(g2 * (t - s)), 0.0)
        return (x - (t - s) * drift + noise_scale * z,)

    return Recurrence(lambda x1: (x1,), step, ts[:-1])


@sampler("euler_ode")
def euler_ode(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
              denoise: bool = False) -> tuple[Array, Stats]:
    """Euler on the PF-ODE dx/dt = f x - g^2 score / 2 = model.velocity (Song et al. 2021, eq. 13).

    x_s = x_t + (s - t) v(x_t, t) for consecutive (t, s) in ts; 1 NFE per step. ``key`` unused.
    Args: x1 (B, ...) prior draw; ts (n+1,) decreasing from t_max to t_min; cond labels (B,).
    Returns (x at ts[-1], or E[x0 | x] there with ``denoise=True`` (1 more NFE), stats).
    """
    x = run(model, euler_ode_recurrence(model, ts), x1, cond)
    return finish(model, x, ts[-1], cond, denoise, ts.shape[0] - 1)


@sampler("euler_maruyama")
def euler_maruyama(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
                   denoise: bool = False) -> tuple[Array, Stats]:
    """Euler–Maruyama on the reverse SDE dx = [f x - g^2 score] dt + g dW_bar (Song et al. 2021, eq. 6).

    x_s = x_t - (t - s) [f x_t - g^2 score(x_t, t)] + g sqrt(t - s) z, z ~ N(0, I) drawn inside
    the step from ``fold_in(key, i)``; the last step adds no noise (its noise would be
    left in the sample). Args and ``denoise`` as ``euler_ode``; key a PRNG key (required).
    """
    x = run(model, euler_maruyama_recurrence(model, ts, key=key), x1, cond)
    return finish(model, x, ts[-1], cond, denoise, ts.shape[0] - 1)


register("euler_ode", euler_ode, summary="Euler on the PF-ODE in the process's own time t", nfe_per_step="1",
         order="1", stochastic=False, recurrence=euler_ode_recurrence)
register("euler_maruyama", euler_maruyama, summary="Euler–Maruyama on the reverse SDE (last step noiseless)",
         nfe_per_step="1", order="1 (weak)", stochastic=True, recurrence=euler_maruyama_recurrence)
