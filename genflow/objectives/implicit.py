"""Implicit score matching (Hyvarinen 2005) on the marginals p_t of a Gaussian path, and the
divergence estimators it needs: the exact trace (forward mode, one jvp per dimension) and
Hutchinson's estimator with Rademacher or Gaussian probes.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model
from genflow.objectives import weighting as weightings
from genflow.objectives.exact import perturb, probe_key, reduce_loss, score_weight, sum_data
from genflow.objectives.time_sampling import TimeSampler, uniform_time
from genflow.objectives.weighting import Weighting

TRACES = ("exact", "rademacher", "gaussian")
PROBES = ("rademacher", "gaussian")


def probe_vectors(key: Array, shape: tuple[int, ...], n: int, kind: str = "rademacher", dtype=jnp.float32) -> Array:
    """n probe vectors per example, shape (n, *shape), with E[v v^T] = I.

    Rademacher (+-1 entries) gives the lowest-variance Hutchinson estimator among i.i.d.
    probes (Hutchinson 1990); Gaussian N(0, I) is what sliced score matching's paper uses."""
    if kind == "rademacher":
        return jax.random.rademacher(key, (n,) + tuple(shape), dtype)
    if kind == "gaussian":
        return jax.random.normal(key, (n,) + tuple(shape), dtype)
    raise ValueError(f"unknown probe {kind!r}; choose one of {', '.join(PROBES)}.")


def divergence(fn: Callable[[Array], Array], x: Array, key: Array | None = None, *, trace: str = "exact",
               n_probes: int = 1) -> tuple[Array, Array]:
    """(fn(x), div fn(x)) for a batched map fn: (B, ...) -> (B, ...) acting on each example alone.

    div = tr(d fn / d x) per example, shape (B,):
      ``trace="exact"``: sum_i e_i^T J e_i, the D forward-mode products J e_i that ``jax.jacfwd``
        would form, batched over examples (cost D jvps; for small D);
      ``"rademacher"`` / ``"gaussian"``: Hutchinson's unbiased estimate mean_k v_k^T J v_k over
        ``n_probes`` probes with E[v v^T] = I (cost n_probes jvps; for images).
    fn is linearized once (``jax.linearize``) and the products are a ``vmap`` of the linear map.
    """
    if trace not in TRACES:
        raise ValueError(f"unknown trace estimator {trace!r}; choose one of {', '.join(TRACES)}.")
    y, jvp = jax.linearize(fn, x)
    b, shape = x.shape[0], x.shape[1:]
    d = math.prod(shape)
    if trace == "exact":
        # basis[i] puts a one at data index i of every example: J e_i for all examples at once.
        basis = jnp.broadcast_to(jnp.eye(d, dtype=x.dtype)[:, None, :], (d, b, d)).reshape((d,) + x.shape)
        jv = jax.vmap(jvp)(basis).reshape(d, b, d)
        div = jnp.einsum("ibi->b", jv.astype(jnp.promote_types(jv.dtype, jnp.float32)))
        return y, div
    if key is None:
        raise ValueError(f"trace={trace!r} draws random probes; pass a PRNG key.")
    v = probe_vectors(key, x.shape, n_probes, trace, x.dtype)
    jv = jax.vmap(jvp)(v)
    div = jnp.mean(jax.vmap(sum_data)(v * jv), axis=0)
    return y, div


def implicit_score_matching(model: Model, x0: Array, key: Array, *,
                            weighting: Weighting = weightings.sigma2,
                            time_sampler: TimeSampler = uniform_time,
                            trace: str = "exact", n_probes: int = 1,
                            cond: Any = None) -> tuple[Array, dict[str, Array]]:
    """E_t lambda(t) E_{x_t ~ p_t} [ ||s_theta||^2 + 2 tr grad_x s_theta ] / D
    (Hyvarinen 2005, Thm. 1; seed equations, section 3).

    Integration by parts on p_t gives E||s - grad log p_t||^2 = E[||s||^2 + 2 tr grad s] +
    E||grad log p_t||^2, so this is the weighted Fisher divergence (``exact_score_matching``)
    minus a constant that does not depend on theta: same minimiser, same expected gradient,
    no knowledge of the score needed. It is twice Hyvarinen's E[tr grad s + ||s||^2 / 2], so
    that exact, implicit, sliced and denoising score matching all share one scale. x_t is the
    noised data, so this is implicit score matching of the smooth p_t, not of the data itself.

    Args:
      model, x0 (B, ...), key, weighting, time_sampler: as ``exact_score_matching``; the same
        key gives the same (t, x_t) as ``denoising_score_matching``.
      trace: ``"exact"`` (D jvps; small D) or Hutchinson probes ``"rademacher"`` / ``"gaussian"``.
      n_probes: probes per example for Hutchinson.
    Returns: (scalar loss, {"loss", "sq_norm", "trace"}), the last two the weighted batch means
      of ||s||^2 / D and 2 tr grad s / D.
    """
    process = model.process
    t, xt, _ = perturb(process, x0, key, time_sampler)
    s, div = divergence(lambda y: model.score(y, t, cond), xt, probe_key(key),
                        trace=trace, n_probes=n_probes)
    lam = score_weight(weighting, process, t)
    sq_norm = reduce_loss(lam, sum_data(jnp.square(s.astype(jnp.promote_types(s.dtype, jnp.float32)))), x0)
    tr = reduce_loss(lam, 2.0 * div, x0)
    loss = sq_norm + tr
    return loss, {"loss": loss, "sq_norm": sq_norm, "trace": tr}
