"""Fixed-step Euler samplers: the probability-flow ODE and the reverse SDE, each one lax.scan."""
from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model
from genflow.samplers._common import finish, normal_like


@partial(jax.jit, static_argnames="denoise")
def euler_ode(model: Model, x1: Array, ts: Array, cond: Any = None, *, denoise: bool = False) -> Array:
    """Euler on the PF-ODE dx/dt = f x - g^2 score / 2 = model.velocity (Song et al. 2021, eq. 13).

    x_s = x_t + (s - t) v(x_t, t) for consecutive (t, s) in ts; 1 NFE per step.
    Args: x1 (B, ...) prior draw; ts (n+1,) decreasing from t_max to t_min.
    Returns x at ts[-1], or E[x0 | x] there with ``denoise=True`` (1 more NFE).
    """

    def step(x, ts_pair):
        t, s = ts_pair
        return x + (s - t) * model.velocity(x, t, cond), None

    x, _ = jax.lax.scan(step, x1, (ts[:-1], ts[1:]))
    return finish(model, x, ts[-1], cond, denoise)


@partial(jax.jit, static_argnames="denoise")
def euler_maruyama(model: Model, x1: Array, ts: Array, key: Array, cond: Any = None, *,
                   denoise: bool = False) -> Array:
    """Euler–Maruyama on the reverse SDE dx = [f x - g^2 score] dt + g dW_bar (Song et al. 2021, eq. 6).

    x_s = x_t - (t - s) [f x_t - g^2 score(x_t, t)] + g sqrt(t - s) z, z ~ N(0, I) drawn inside
    the step from ``fold_in(key, i)``; the last step adds no noise (its noise would be
    left in the sample). Args and ``denoise`` as ``euler_ode``; key a PRNG key.
    """
    process = model.process
    n = ts.shape[0] - 1

    def step(x, inputs):
        t, s, i = inputs
        g2 = process.g2(t)
        drift = process.f(t) * x - g2 * model.score(x, t, cond)
        z = normal_like(key, i, x)
        noise_scale = jnp.where(i < n - 1, jnp.sqrt(g2 * (t - s)), 0.0)
        return x - (t - s) * drift + noise_scale * z, None

    x, _ = jax.lax.scan(step, x1, (ts[:-1], ts[1:], jnp.arange(n)))
    return finish(model, x, ts[-1], cond, denoise)
