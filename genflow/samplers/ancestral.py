"""DDPM's ancestral sampler on the discrete chain (Ho et al. 2020), on any subsequence of its steps."""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import Array

from genflow.models.model import Model
from genflow.samplers._common import Stats, _concrete, finish, need_key, normal_like, sampler
from genflow.samplers.recurrence import Recurrence, run
from genflow.samplers.registry import register

VARIANCES = ("beta", "posterior")


def _check(model, x1, ts, **kwargs) -> None:
    process = model.process
    if not hasattr(process, "log_alpha_knots"):
        raise ValueError(f"ancestral sampling runs DDPM's discrete chain; got {type(process).__name__}. "
                         "Use genflow.processes.DDPM, or ddim(..., eta=1.0) for a continuous process.")
    variance = kwargs.get("variance", "posterior")
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}.")
    values = _concrete(ts)
    if values is not None:
        k = values * process.num_steps
        if np.max(np.abs(k - np.round(k))) > 1e-3:
            raise ValueError("ancestral: every time in ts must be one of DDPM's steps t_k = k / K; use "
                             "process.timesteps() (all K steps) or a subsequence of it.")


def ancestral_recurrence(model: Model, ts: Array, *, key: Array | None = None,
                         variance: str = "posterior") -> Recurrence:
    """``ancestral``'s steps as a ``Recurrence``; the network is called at t_k = k / K."""
    need_key("ancestral", key)
    process = model.process
    log_abar = process.log_alpha_knots()                              # k = 0..K
    ks, js = process.step_of_time(ts[:-1]), process.step_of_time(ts[1:])

    def step(m: Model, carry, i, cond):
        (x,) = carry
        k, j = ks[i], js[i]
        la = log_abar.astype(x.dtype)
        beta = -jnp.expm1(2.0 * (la[k] - la[j]))
        bbar_k, bbar_j = jnp.sqrt(-jnp.expm1(2.0 * la[k])), jnp.sqrt(-jnp.expm1(2.0 * la[j]))
        eps = m.eps(x, k.astype(x.dtype) / process.num_steps, cond)   # t_k = k / K in x's precision
        mean = (x - (beta / bbar_k) * eps) / jnp.sqrt(1.0 - beta)
        scale = jnp.sqrt(beta) if variance == "beta" else jnp.sqrt(beta) * bbar_j / bbar_k
        scale = jnp.where(j > 0, scale, 0.0)
        return ((mean + scale * normal_like(key, i, x)).astype(x.dtype),)

    times = ks.astype(ts.dtype) / process.num_steps
    return Recurrence(lambda x1: (x1,), step, times, js[-1].astype(ts.dtype) / process.num_steps)


@sampler("ancestral", static_argnames=("variance", "denoise"), check=_check)
def ancestral(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
              denoise: bool = False, variance: str = "posterior") -> tuple[Array, Stats]:
    """DDPM ancestral sampling over the steps of a discrete ``DDPM`` process in ts; 1 NFE per step.

    From step k (t = k / K) to an earlier step j (the next entry of ts), with a^2 = abar_k^2 / abar_j^2
    and beta = 1 - a^2 (the chain respaced to the steps in ts; beta = beta_k when j = k - 1):
        x_j = (x_k - (beta / bbar_k) eps_hat(x_k, t_k)) / a + s z,
    s = sqrt(beta) (``variance="beta"``) or sqrt(beta) bbar_j / bbar_k (``"posterior"``),
    bbar = sqrt(1 - abar^2) (seed equations, section 1). No noise is added on a step to j = 0,
    where the mean is Tweedie's E[x0 | x_k] (DDPM's Algorithm 2, z = 0 at its last step).
    The network sees t = k / K, never the integer k. Step i's noise is ``fold_in(key, i)``.

    DDPM's own sampler is ``ts = process.timesteps()`` (K..0); ending at t_min = 1/K with
    ``denoise=True`` gives the same numbers (bbar_1 = b_1, so DDPM's last step is Tweedie's).

    Args: x1 (B, ...) prior draw at t = 1 (``process.prior``); ts DDPM steps k / K, decreasing;
      key a PRNG key (required); variance one of "beta", "posterior".
    Returns: (x at ts[-1], or E[x0 | x] there with ``denoise=True``, stats).
    Reference: Ho et al. 2020, Algorithm 2 and Sec. 3.2 (the two choices of sigma_t^2); Nichol &
      Dhariwal 2021, Sec. 4 (respacing a chain to a subsequence of its steps).
    """
    rec = ancestral_recurrence(model, ts, key=key, variance=variance)
    x = run(model, rec, x1, cond)
    return finish(model, x, rec.end.astype(x.dtype), cond, denoise, ts.shape[0] - 1)


register("ancestral", ancestral, summary="DDPM's ancestral sampler on its discrete steps (DDPM only)",
         nfe_per_step="1", order="1 (weak)", stochastic=True, ddpm_only=True, recurrence=ancestral_recurrence)
