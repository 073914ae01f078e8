"""Exact score matching: the Fisher divergence to a known score, at every t of the path.

Also the two pieces the other score-matching objectives (implicit, sliced) share with it:
moving a weighting onto the score error, and drawing (t, x_t) exactly as denoising score
matching does, so that the same key gives every objective the same (t, x_t) (common random
numbers: their differences are then measured without the noise of separate draws).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model, output_scale
from genflow.objectives import weighting as weightings
from genflow.objectives.time_sampling import TimeSampler, uniform_time
from genflow.objectives.weighting import Weighting
from genflow.processes.base import AbstractProcess

ScoreFn = Callable[[Array, Array], Array]  # (x (B, ...), t (B,)) -> grad_x log p_t(x), shaped like x


def score_weight(weighting: Weighting, process: AbstractProcess, t: Array) -> Array:
    """lambda(t) of ``weighting`` restated on the squared *score* error.

    At fixed x_t every quantity (eps, x0, v, velocity) is affine in the score, so an error in
    the weighting's space Q is the score error times dQ/dscore = ``output_scale(process,
    "score", Q, t)``; the weight on the score error is lambda (dQ/dscore)^2. This is the
    rescaling denoising score matching applies, so e.g. ``weighting.eps`` becomes sigma^2
    (= ``weighting.sigma2``), and all score-matching objectives share one scale.
    """
    return weighting(process, t) * output_scale(process, "score", weighting.space, t) ** 2


def perturb(process: AbstractProcess, x0: Array, key: Array,
            time_sampler: TimeSampler = uniform_time) -> tuple[Array, Array, Array]:
    """(t, x_t, eps) with t from ``time_sampler`` and x_t = alpha(t) x0 + sigma(t) eps.

    The key is split as ``denoising_score_matching`` splits it, so both see the same (t, x_t)."""
    kt, ke = jax.random.split(key)
    t = time_sampler(kt, x0.shape[0], process)
    eps = jax.random.normal(ke, x0.shape, x0.dtype)
    return t, process.sample(x0, t, eps), eps


# With JAX's (default) partitionable threefry, fold_in(key, i) is split(key, n)[i]: fold_in(key, 1) is
# the very key ``perturb`` draws eps from. Probes come from this far-away stream instead, which only
# a split of ``key`` into more than 376,000 parts would reach.
_PROBE_STREAM = 0x5BCE5


def probe_key(key: Array) -> Array:
    """A key for probe vectors independent of the (t, eps) that ``perturb`` draws from ``key``."""
    return jax.random.fold_in(key, _PROBE_STREAM)


def reduce_loss(lam: Array, per_example: Array, x0: Array) -> Array:
    """mean_b lam_b per_example_b / D in at least float32 (D = prod of the data dimensions)."""
    acc = jnp.promote_types(x0.dtype, jnp.float32)
    d = math.prod(x0.shape[1:])
    return jnp.mean(lam.astype(acc) * per_example.astype(acc)) / d


def sum_data(x: Array) -> Array:
    """Sum over all but the leading (batch) axis, in at least float32. Returns (B,)."""
    acc = jnp.promote_types(x.dtype, jnp.float32)
    return jnp.sum(x.astype(acc).reshape(x.shape[0], -1), axis=1)


def exact_score_matching(model: Model, x0: Array, key: Array, *, true_score: ScoreFn,
                         weighting: Weighting = weightings.sigma2,
                         time_sampler: TimeSampler = uniform_time,
                         cond: Any = None) -> tuple[Array, dict[str, Array]]:
    """E_t lambda(t) E_{x_t ~ p_t} ||s_theta(x_t, t) - grad log p_t(x_t)||^2 / D: the weighted
    Fisher divergence between the model and the path's marginals (Hyvarinen 2005, eq. 2;
    seed equations, section 3, "SM").

    Only possible where grad log p_t is known, e.g. Gaussian-mixture data
    (``GaussianMixture.score``). x_t is drawn from the path (x0 from the data, fresh eps), so
    the estimate is unbiased for the Fisher divergence at each sampled t.

    Args:
      model: the ``Model`` whose ``score`` is scored.  x0: data (B, ...).  key: PRNG key.
      true_score: ``(x, t) -> grad_x log p_t(x)``, x (B, ...), t (B,).
      weighting: lambda(t); one stated in another space is moved onto the score error
        (``score_weight``), so ``weighting.eps`` and ``weighting.sigma2`` are the same.
      time_sampler: how t is drawn (stratified uniform by default).
    Returns: (scalar loss, {"loss": loss}); the per-example error is a mean over data dims.
    """
    process = model.process
    t, xt, _ = perturb(process, x0, key, time_sampler)
    s = model.score(xt, t, cond)
    acc = jnp.promote_types(s.dtype, jnp.float32)  # squared errors in at least float32, also under bf16
    err = sum_data(jnp.square(s.astype(acc) - true_score(xt, t).astype(acc)))
    loss = reduce_loss(score_weight(weighting, process, t), err, x0)
    return loss, {"loss": loss}
