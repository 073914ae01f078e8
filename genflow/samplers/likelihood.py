"""Exact log-likelihood through the probability-flow ODE, and bits per dimension."""
from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable

import diffrax
import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model
from genflow.samplers.diffrax_solvers import FIRST_STEP, ODE_SOLVERS, adaptive_controller

TRACES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


def _divergence_exact(f: Callable[[Array], Array], x: Array) -> tuple[Array, Array]:
    """(f(x), div f per example) with the exact trace: one JVP per data dimension (jacfwd's way).

    Examples do not interact in a score network, so the basis tangent e_j set in every example at
    once gives each example's column j in one JVP; the trace sums their diagonal entries.
    """
    flat = x.reshape(x.shape[0], -1)
    d = flat.shape[1]

    def column(e):
        tangent = jnp.broadcast_to(e, flat.shape).reshape(x.shape)
        return jax.jvp(f, (x,), (tangent,))[1].reshape(flat.shape)   # (B, D): J e_j per example

    cols = jax.vmap(column)(jnp.eye(d, dtype=x.dtype))                  # (D, B, D)
    div = jnp.einsum("jbj->b", cols)
    return f(x), div


def _divergence_hutchinson(f: Callable[[Array], Array], x: Array, probes: Array) -> tuple[Array, Array]:
    """(f(x), v^T J v per probe and example), probes (P, B, ...); E[v v^T] = I makes it unbiased."""
    out, jvp = jax.vmap(lambda v: jax.jvp(f, (x,), (v,)))(probes)     # (P, B, ...)
    axes = tuple(range(2, probes.ndim))
    return out[0], jnp.sum(probes * jvp, axis=axes)                    # (P, B)


@partial(jax.jit, static_argnames=("trace", "probe", "num_probes", "solver", "max_steps", "prior_logp", "at_jumps"))
def log_likelihood(model: Model, x0: Array, *, cond: Any = None, trace: str = "exact", key: Array | None = None,
                   probe: str = "rademacher", num_probes: int = 1, rtol: float = 1e-5, atol: float = 1e-5,
                   solver: str = "tsit5", t0: Array | None = None, max_steps: int = 4096,
                   prior_logp: Callable[[Array], Array] | None = None,
                   at_jumps: bool = False) -> tuple[Array, dict[str, Array]]:
    """log p_{t0}(x0) by integrating the PF-ODE forward from t0 to t_max with its divergence.

    log p_{t0}(x_{t0}) = log p_1(x_1) + int_{t0}^{1} div v(x_t, t) dt,  dx/dt = v = model.velocity,
    solved as one ODE for (x_t, int div v) by diffrax (adaptive ``solver``, rtol, atol).
    The divergence is the exact trace (``"exact"``: D JVPs per evaluation, for small D) or
    Hutchinson's v^T J v with ``num_probes`` probes (Rademacher or Gaussian, E[v v^T] = I),
    each probe fixed along its path, so the estimate is unbiased and is averaged over probes.

    Args: x0 (B, ...) data; key PRNG key for the probes (Hutchinson only); t0 start time,
      ``process.t_min`` by default (log p_{t0} is the density of the data blurred to t0);
      prior_logp log p_1 as a function of x1 (B, ...) -> (B,), ``process.prior_logp`` by default
      (static: pass a module-level function, not a fresh lambda, to avoid recompiling);
      at_jumps: steps end on the process's ``jump_times`` (DDPM's knots), where the vector field
      is discontinuous and an error estimate cannot see the error of stepping over them: needed
      for tolerances below about 1e-5 on a DDPM path, at a cost of at least one step per knot.
    Returns: (logp (B,), stats) with stats["nfe"] vector-field evaluations (each one network call
      plus its JVPs), num_steps, "x1" the path's end point (B, ...) (to swap in another prior
      without a second solve), and for Hutchinson "logp_per_probe" (num_probes, B).
    Reference: Song et al. 2021 (score-SDE), Sec. 4.3 and App. D.2 (eq. 39-40); Grathwohl et al.
      2019 (FFJORD) for Hutchinson's estimator; Chen et al. 2018 (neural ODEs).
    """
    if trace not in TRACES:
        raise ValueError(f"unknown trace {trace!r}; choose one of {', '.join(TRACES)}.")
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; choose one of {', '.join(PROBES)}.")
    if solver not in ODE_SOLVERS or solver == "euler":
        raise ValueError(f"log_likelihood needs an adaptive solver; got {solver!r}, "
                         "use tsit5, dopri5, heun or midpoint.")
    if trace == "hutchinson" and key is None:
        raise ValueError("trace='hutchinson' draws probes: pass key=jax.random.PRNGKey(...).")
    process = model.process
    cls, per_step, fsal = ODE_SOLVERS[solver]
    dtype = x0.dtype
    start = jnp.asarray(process.t_min if t0 is None else t0, dtype)
    end = jnp.asarray(process.t_max, dtype)
    n_div = num_probes if trace == "hutchinson" else 1

    if trace == "hutchinson":
        shape = (num_probes,) + x0.shape
        if probe == "rademacher":
            probes = jax.random.rademacher(key, shape, dtype)
        else:
            probes = jax.random.normal(key, shape, dtype)

    def vector_field(t, state, args):
        x, _ = state
        f = lambda y: model.velocity(y, t, cond).astype(dtype)
        if trace == "exact":
            v, div = _divergence_exact(f, x)
            return v, div[None]
        return _divergence_hutchinson(f, x, probes)

    state0 = (x0, jnp.zeros((n_div, x0.shape[0]), dtype))
    controller, n_jumps = adaptive_controller(process, rtol, atol, start, end, at_jumps)
    sol = diffrax.diffeqsolve(diffrax.ODETerm(vector_field), cls(), start, end, FIRST_STEP * (end - start), state0,
                              stepsize_controller=controller,
                              saveat=diffrax.SaveAt(t1=True), max_steps=max_steps)
    x1, delta = sol.ys[0][0], sol.ys[1][0]
    log_p1 = process.prior_logp(x1) if prior_logp is None else prior_logp(x1)
    per_probe = log_p1[None] + delta                                          # (n_div, B)
    stats = {"nfe": sol.stats["num_steps"] * per_step + int(fsal) * (1 + n_jumps), "num_steps": sol.stats["num_steps"],
             "x1": x1}
    if trace == "hutchinson":
        stats["logp_per_probe"] = per_probe
    return jnp.mean(per_probe, axis=0), stats


def bits_per_dim(logp_continuous: Array, num_dims: int) -> Array:
    """Bits per dimension of 8-bit data from the continuous log-density of its [-1, 1] scaling.

    Uniform dequantization: v = x + u, u ~ U[0, 1)^D for 8-bit x in {0..255}^D, mapped to
    z = v / 128 - 1 in [-1, 1). The change of variables gives log p_v(v) = log p_z(z) - D log 128, and
    -log P(x) <= -E_u log p_v(x + u) (Jensen), so
        bpd = -log p_z(z) / (D ln 2) + 7       (the offset 7 = log2 128)
    is an upper bound on the discrete negative log-likelihood in bits per dimension (in expectation
    over u). ``logp_continuous`` must be log p_z of the dequantized z, e.g. ``log_likelihood``'s output
    for a model trained on z. Args: logp_continuous (B,) or scalar; num_dims D. Returns bpd, same shape.
    Reference: Theis et al. 2016 (uniform dequantization bound); Ho et al. 2019 (Flow++, Sec. 3.1).
    """
    return -jnp.asarray(logp_continuous) / (num_dims * math.log(2.0)) + 7.0
