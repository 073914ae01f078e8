"""Straightness and transport cost of a flow, in genflow's time (t = 0 data, t = 1 noise).

Rectified-flow papers (time tau = 1 - t, Z_0 noise, Z_1 data) define, for the flow's own
trajectories Z_tau,

    S(v) = int_0^1 E || (Z_1 - Z_0) - dZ_tau/dtau ||^2 dtau,      cost = E || Z_1 - Z_0 ||^2.

Here x_t = Z_{1-t}: x1 = Z_0 is the noise, x0 = Z_1 the sample, and dx/dt = -dZ/dtau, so with
genflow's velocity v = dx/dt

    S(v) = int_0^1 E || (x1 - x0) - v(x_t, t) ||^2 dt,             cost = E || x1 - x0 ||^2,

the same expression with x1 - x0 (noise minus data), the flow-matching target of rectified flow.
S = 0 exactly when every trajectory is a straight line run at constant speed; then one Euler
step is exact. Reference: Liu, Gong & Liu 2023, Definition 2.2 (straightness) and Sec. 3.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model


@jax.jit
def straightness(model: Model, x1: Array, ts: Array, cond: Any = None) -> dict[str, Array]:
    """S(v) and the transport cost of the Euler trajectories of ``model.velocity`` from x1.

    The trajectory is integrated with Euler on the grid ``ts`` (n+1,) decreasing from 1 to 0
    (``grids.uniform(process, n)``); the integral over t is the same Riemann sum, so for the
    discrete path x0 = x1 - sum_i dt_i v_i and

        S = sum_i dt_i E || (x1 - x0) - v_i ||^2 / sum_i dt_i,

    which is 0 if and only if the velocity is constant along each discrete path (Euler then
    agrees with the exact flow for any step count) and converges to S(v) as the grid is refined.
    Args: x1 (B, ...) prior draw; ts (n+1,). Returns {"straightness", "transport_cost"}
    (sums over data dimensions, means over the batch), "x0" (B, ...) and per-example
    "straightness_per_example" (B,).
    """

    def step(x, pair):
        t, s = pair
        v = model.velocity(x, t, cond)
        return x + (s - t) * v, v

    x0, vs = jax.lax.scan(step, x1, (ts[:-1], ts[1:]))          # vs (n, B, ...)
    dts = ts[:-1] - ts[1:]                                        # (n,) positive
    total = jnp.sum(dts)
    chord = (x1 - x0) / total                                     # the straight line's speed
    sq = jnp.sum(jnp.square(chord[None] - vs).reshape(vs.shape[0], vs.shape[1], -1), axis=-1)  # (n, B)
    per_example = jnp.tensordot(dts, sq, axes=1) / total
    cost = jnp.sum(jnp.square(x1 - x0).reshape(x1.shape[0], -1), axis=1)
    return {"straightness": jnp.mean(per_example), "transport_cost": jnp.mean(cost), "x0": x0,
            "straightness_per_example": per_example}


def coupling_cost(x1: Array, x0: Array) -> Array:
    """E || x1 - x0 ||^2 of stored couples (sum over data dimensions, mean over couples)."""
    return jnp.mean(jnp.sum(jnp.square(x1 - x0).reshape(x1.shape[0], -1), axis=1))
