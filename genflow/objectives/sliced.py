"""Sliced score matching (Song, Garg, Shi & Ermon 2019) and its variance-reduced form, on the
marginals p_t of a Gaussian path; one ``jax.jvp`` per probe.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model
from genflow.objectives import weighting as weightings
from genflow.objectives.exact import perturb, probe_key, reduce_loss, score_weight, sum_data
from genflow.objectives.implicit import probe_vectors
from genflow.objectives.time_sampling import TimeSampler, uniform_time
from genflow.objectives.weighting import Weighting


def sliced_score_matching(model: Model, x0: Array, key: Array, *,
                          weighting: Weighting = weightings.sigma2,
                          time_sampler: TimeSampler = uniform_time,
                          probe: str = "gaussian", n_probes: int = 1, variance_reduced: bool = False,
                          cond: Any = None) -> tuple[Array, dict[str, Array]]:
    """E_t lambda(t) E_{x_t ~ p_t} E_v [ 2 v^T (grad_x s_theta) v + (v^T s_theta)^2 ] / D
    (Song et al. 2019, eq. 5; seed equations, section 3).

    With E[v v^T] = I, E_v of the bracket is ||s||^2 + 2 tr grad s, so this equals implicit
    score matching in expectation: the weighted Fisher divergence minus a theta-independent
    constant. ``variance_reduced=True`` replaces (v^T s)^2 by its mean over v, ||s||^2
    (SSM-VR, Song et al. 2019, eq. 6), leaving only the Hutchinson trace term random. The
    bracket is twice the paper's, to share one scale with the other score-matching losses.

    Args:
      model, x0 (B, ...), key, weighting, time_sampler: as ``exact_score_matching``; the same
        key gives the same (t, x_t) as ``denoising_score_matching``.
      probe: ``"gaussian"`` (the paper's) or ``"rademacher"``.  n_probes: probes per example,
        averaged (the paper's M).
    Returns: (scalar loss, {"loss", "sq_norm", "trace"}): the weighted batch means of the
      square term and of the 2 v^T J v term, each / D.
    """
    process = model.process
    t, xt, _ = perturb(process, x0, key, time_sampler)
    v = probe_vectors(probe_key(key), xt.shape, n_probes, probe, xt.dtype)
    s, jvp = jax.linearize(lambda y: model.score(y, t, cond), xt)
    jv = jax.vmap(jvp)(v)                                                    # (n, B, ...): J v per probe
    vjv = jnp.mean(jax.vmap(sum_data)(v * jv), axis=0)                      # (B,)
    if variance_reduced:
        sq = sum_data(jnp.square(s.astype(jnp.promote_types(s.dtype, jnp.float32))))
    else:
        sq = jnp.mean(jnp.square(jax.vmap(sum_data)(v * s[None])), axis=0)  # mean_k (v_k^T s)^2
    lam = score_weight(weighting, process, t)
    sq_term, tr_term = reduce_loss(lam, sq, x0), reduce_loss(lam, 2.0 * vjv, x0)
    loss = sq_term + tr_term
    return loss, {"loss": loss, "sq_norm": sq_term, "trace": tr_term}


def sliced_score_matching_vr(model: Model, x0: Array, key: Array, **kwargs) -> tuple[Array, dict[str, Array]]:
    """``sliced_score_matching(..., variance_reduced=True)``: SSM-VR (Song et al. 2019, eq. 6)."""
    return sliced_score_matching(model, x0, key, variance_reduced=True, **kwargs)
