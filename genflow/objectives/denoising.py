"""Denoising score matching and flow matching: one regression on the Gaussian path."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model, output_scale
from genflow.objectives import weighting as weightings
from genflow.objectives.time_sampling import TimeSampler, uniform_time
from genflow.objectives.weighting import Weighting


def denoising_score_matching(model: Model, x0: Array, key: Array, *,
                             weighting: Weighting = weightings.eps,
                             time_sampler: TimeSampler = uniform_time,
                             x1: Array | None = None, cond: Any = None) -> tuple[Array, dict[str, Array]]:
    """E_t E_eps lambda(t) ||Q_hat(x_t, t) - Q(x0, eps, t)||^2, with x_t = alpha x0 + sigma eps
    and Q the weighting's space (Vincent 2011; Song et al. 2021, eq. 7).

    The regression is done on the network's raw output: the error in Q space is that in
    output space times ``output_scale`` (see ``genflow.models.model``), so e.g. an
    eps-network with ``weighting.eps`` regresses eps exactly. The per-example loss is the
    mean over data dimensions.

    Args:
      model: the ``Model`` to train.  x0: data (B, ...).  key: PRNG key.
      x1: a coupled endpoint used in place of fresh noise eps (ReFlow couplings).
    Returns: (scalar loss in at least float32, {"loss": loss}).
    """
    process = model.process
    kt, ke = jax.random.split(key)
    t = time_sampler(kt, x0.shape[0], process)
    eps = jax.random.normal(ke, x0.shape, x0.dtype) if x1 is None else x1
    xt = process.sample(x0, t, eps)
    out = model(xt, t, cond)
    target = model.target(x0, eps, t)
    scale = output_scale(process, model.predicts, weighting.space, t)
    w = weighting(process, t) * scale**2
    acc = jnp.promote_types(x0.dtype, jnp.float32)  # reduce in at least float32, also under bf16
    err = jnp.mean(jnp.square(out.astype(acc) - target.astype(acc)).reshape(x0.shape[0], -1), axis=1)
    loss = jnp.mean(w.astype(acc) * err)
    return loss, {"loss": loss}


def flow_matching(model: Model, x0: Array, key: Array, *, x1: Array | None = None,
                  time_sampler: TimeSampler = uniform_time, cond: Any = None) -> tuple[Array, dict[str, Array]]:
    """E_t || v_hat(x_t, t) - (alpha_dot x0 + sigma_dot x1) ||^2 (Liu et al. 2023; Lipman et al. 2023).

    For rectified flow the target is x1 - x0 (noise minus data: genflow's time runs data -> noise).
    It is denoising score matching with the velocity weighting; ``x1`` (B, ...) given makes it ReFlow.
    """
    return denoising_score_matching(model, x0, key, weighting=weightings.velocity,
                                    time_sampler=time_sampler, x1=x1, cond=cond)
