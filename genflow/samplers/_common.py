"""Pieces every sampler shares: the end point, noise inside a step, x0 and eps from one call.

End points, the same in every sampler: a sampler integrates from ts[0] down to the small-t
cut-off ts[-1] (``grids.*`` put the process's ``t_min`` there) and returns a draw of
p_{ts[-1]}, which still holds sigma(ts[-1]) of noise; ``denoise=True`` replaces it by Tweedie's
E[x0 | x_{ts[-1]}] (one more network call). A grid may also end where sigma = 0 (t = 0 for
rectified flow, step 0 of DDPM); the last step then lands on the denoised value itself.
"""
from __future__ import annotations

from typing import Any

import jax
from jax import Array

from genflow.models.model import Model


def finish(model: Model, x: Array, t: Array, cond: Any, denoise: bool) -> Array:
    """Tweedie's E[x0 | x_t = x] with ``denoise=True`` (1 NFE), else x unchanged."""
    return model.x0(x, t, cond) if denoise else x


def normal_like(key: Array, i: Array, x: Array) -> Array:
    """N(0, I) shaped like x from ``fold_in(key, i)``: step i's noise, drawn inside the step."""
    return jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)


def x0_and_eps(model: Model, x: Array, t: Array, cond: Any) -> tuple[Array, Array]:
    """(E[x0 | x_t], E[eps | x_t]) from a single network evaluation."""
    out = model(x, t, cond)
    return model.predict("x0", x, t, cond, out=out), model.predict("eps", x, t, cond, out=out)
