"""DDPM's ancestral sampler on the discrete chain (Ho et al. 2020)."""
from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model
from genflow.samplers._common import finish, normal_like

VARIANCES = ("beta", "posterior")


@partial(jax.jit, static_argnames=("variance", "denoise"))
def ancestral(model: Model, x1: Array, key: Array, cond: Any = None, *, variance: str = "posterior",
              denoise: bool = True) -> Array:
    """DDPM ancestral sampling over all K steps of a discrete ``DDPM`` process; 1 NFE per step.

    x_{k-1} = (x_k - (b_k^2 / bbar_k) eps_hat(x_k, t_k)) / a_k + s_k z,  t_k = k / K,
    with s_k = b_k (``variance="beta"``) or s_k = b_k bbar_{k-1} / bbar_k (``"posterior"``),
    a_k = sqrt(1 - beta_k), b_k = sqrt(beta_k), bbar_k = sqrt(1 - abar_k^2) (seed equations, section 1).
    The network sees t = k / K (``process.time_of_step``), never the integer k.

    Steps k = K..2 run in the scan (noise from ``fold_in(key, K - k)``) and land on x_1 at
    t_min = 1/K. DDPM's last step k = 1 adds no noise and, since bbar_1 = b_1, equals Tweedie's
    E[x0 | x_1]: that is ``denoise=True`` (the default, as in DDPM); ``denoise=False`` returns x_1.

    Args: x1 (B, ...) prior draw at t = 1 (``process.prior``); key a PRNG key;
      variance one of "beta", "posterior".
    Returns: x0 (B, ...).
    Reference: Ho et al. 2020, Algorithm 2 and Sec. 3.2 (the two choices of sigma_t^2).
    """
    process = model.process
    if not hasattr(process, "log_alpha_knots"):
        raise ValueError(f"ancestral sampling runs DDPM's discrete chain; got {type(process).__name__}. "
                         "Use genflow.processes.DDPM, or ddim(..., eta=1.0) for a continuous process.")
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}.")
    big_k = process.num_steps
    betas = process.betas().astype(x1.dtype)
    log_abar = process.log_alpha_knots().astype(x1.dtype)            # k = 0..K
    bbar = jnp.sqrt(-jnp.expm1(2.0 * log_abar))                       # bbar_0 = 0
    a, b = jnp.sqrt(1.0 - betas), jnp.sqrt(betas)                     # index k - 1 for step k
    if variance == "beta":
        s = b
    else:
        s = b * bbar[:-1] / bbar[1:]

    def step(x, i):
        k = big_k - i                                                 # K, K-1, ..., 2
        eps = model.eps(x, process.time_of_step(k).astype(x.dtype), cond)
        mean = (x - (b[k - 1] ** 2 / bbar[k]) * eps) / a[k - 1]
        return (mean + s[k - 1] * normal_like(key, i, x)).astype(x.dtype), None

    x, _ = jax.lax.scan(step, x1, jnp.arange(big_k - 1))
    return finish(model, x, process.time_of_step(1).astype(x.dtype), cond, denoise)
