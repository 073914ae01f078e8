"""The PF-ODE and the reverse SDE through diffrax: adaptive or fixed-step, inside jit."""
from __future__ import annotations

from functools import partial
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import lineax
from jax import Array

from genflow.models.model import Model
from genflow.samplers._common import finish

# name -> (diffrax solver, network evaluations per attempted step, FSAL: one more at the start).
# Tsit5 and Dopri5 have 7 stages whose last is the next step's first ("first same as last").
ODE_SOLVERS = {
    "euler": (diffrax.Euler, 1, False),
    "heun": (diffrax.Heun, 2, False),
    "midpoint": (diffrax.Midpoint, 2, False),
    "tsit5": (diffrax.Tsit5, 6, True),
    "dopri5": (diffrax.Dopri5, 6, True),
}


def adaptive_controller(process, rtol, atol, t_start: Array, t_end: Array, at_jumps: bool):
    """(controller, jumps inside the interval) for an adaptive solve between t_start and t_end.

    With ``at_jumps`` and a process that has ``jump_times`` (DDPM's knots), steps end exactly on
    them (``diffrax.ClipStepSizeController(jump_ts=...)``) instead of stepping over a
    discontinuity of the vector field, which no error estimate sees: exact to the tolerance, at
    the price of at least one step per knot. Each jump also costs FSAL solvers one evaluation.
    """
    pid = diffrax.PIDController(rtol=rtol, atol=atol)
    jumps = process.jump_times() if at_jumps else None
    if jumps is None:
        return pid, jnp.zeros((), jnp.int32)
    jumps = jumps.astype(t_start.dtype)
    lo, hi = jnp.minimum(t_start, t_end), jnp.maximum(t_start, t_end)
    return (diffrax.ClipStepSizeController(pid, jump_ts=jumps),
            jnp.sum((jumps > lo) & (jumps < hi)).astype(jnp.int32))


SDE_SOLVERS = {
    "euler": (diffrax.Euler, 1),        # Euler–Maruyama (Ito)
    "heun": (diffrax.Heun, 2),          # Stratonovich; equal to Ito here, the noise being additive
    "midpoint": (diffrax.Midpoint, 2),
}
# Adaptive runs start with dt0 = 1% of the interval: passed explicitly, so that the NFE count
# does not depend on how a diffrax version picks a first step (0.7.2 skips its own algorithm
# for wrapped terms and uses 0.01).
FIRST_STEP = 0.01


def _check(solver: str, table: dict) -> None:
    if solver not in table:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(table)}.")


def _grid(model: Model, ts: Array | None, n_steps: int | None, t1: Array | None, dtype) -> Array | None:
    process = model.process
    if ts is not None:
        return jnp.asarray(ts, dtype)
    if n_steps is not None:
        end = process.t_min if t1 is None else t1
        return jnp.linspace(jnp.asarray(process.t_max, dtype), jnp.asarray(end, dtype), n_steps + 1)
    return None


@partial(jax.jit, static_argnames=("solver", "n_steps", "denoise", "max_steps", "at_jumps"))
def ode_sample(model: Model, x1: Array, cond: Any = None, *, solver: str = "tsit5", ts: Array | None = None,
               n_steps: int | None = None, rtol: float = 1e-5, atol: float = 1e-5, t1: Array | None = None,
               denoise: bool = False, max_steps: int = 4096, at_jumps: bool = False) -> tuple[Array, dict[str, Array]]:
    """Integrate the PF-ODE dx/dt = f x - g^2 score / 2 = model.velocity from t = t_max down to t1.

    Adaptive (``ts`` and ``n_steps`` both None): ``diffrax.PIDController(rtol, atol)``, for the
    solvers with an error estimate (tsit5, dopri5, heun, midpoint). Fixed steps: on the grid ``ts``
    (n+1,) decreasing from t_max to t1, or on ``n_steps`` uniform steps (``diffrax.StepTo``).
    Time runs backwards (dt < 0), which diffrax supports directly.

    Args: x1 (B, ...) prior draw; solver one of euler, heun, midpoint, tsit5, dopri5;
      t1 end time (``process.t_min`` by default; ts[-1] when ts is given); at_jumps: adaptive
      steps end on the process's ``jump_times`` (DDPM's knots; see ``adaptive_controller``).
    Returns: (x0 (B, ...), stats) with stats["nfe"] the number of network evaluations
      (attempted steps, rejected ones included, times evaluations per step, +1 for the FSAL
      solvers tsit5/dopri5, +1 with ``denoise``), and diffrax's num_steps / num_accepted_steps /
      num_rejected_steps. Adaptive runs start from dt0 = 1% of the interval.
    Reference: Song et al. 2021 (score-SDE), eq. 13 and Sec. 4.3; diffrax (Kidger 2021).
    """
    _check(solver, ODE_SOLVERS)
    cls, per_step, fsal = ODE_SOLVERS[solver]
    process = model.process
    grid = _grid(model, ts, n_steps, t1, x1.dtype)
    if grid is None:
        if solver == "euler":
            raise ValueError("solver 'euler' has no error estimate for adaptive steps: pass ts or n_steps.")
        t0 = jnp.asarray(process.t_max, x1.dtype)
        t_end = jnp.asarray(process.t_min if t1 is None else t1, x1.dtype)
        controller, n_jumps = adaptive_controller(process, rtol, atol, t0, t_end, at_jumps)
        dt0 = FIRST_STEP * (t_end - t0)
    else:
        controller, n_jumps = diffrax.StepTo(ts=grid), 0
        t0, t_end, dt0 = grid[0], grid[-1], None

    term = diffrax.ODETerm(lambda t, x, args: model.velocity(x, t, cond).astype(x.dtype))
    sol = diffrax.diffeqsolve(term, cls(), t0, t_end, dt0, x1, stepsize_controller=controller,
                              saveat=diffrax.SaveAt(t1=True), max_steps=max_steps)
    x = finish(model, sol.ys[0], t_end, cond, denoise)
    num_steps = sol.stats["num_steps"]
    nfe = num_steps * per_step + int(fsal) * (1 + n_jumps) + int(denoise)
    stats = {"nfe": nfe, "num_steps": num_steps, "num_accepted_steps": sol.stats["num_accepted_steps"],
             "num_rejected_steps": sol.stats["num_rejected_steps"]}
    return x, stats


@partial(jax.jit, static_argnames=("n_steps", "solver", "denoise"))
def sde_sample(model: Model, x1: Array, key: Array, n_steps: int, cond: Any = None, *, solver: str = "euler",
               t1: Array | None = None, denoise: bool = False) -> tuple[Array, dict[str, Array]]:
    """Integrate the reverse SDE dx = [f x - g^2 score] dt + g dW_bar from t_max down to t1.

    ``n_steps`` equal steps dt = (t1 - t_max) / n_steps < 0; the Brownian motion is a
    ``diffrax.VirtualBrownianTree`` on [t1, t_max] from ``key`` (tolerance dt / 8), so a draw
    is reproducible and independent of the step size. The noise g(t) I is additive, so Ito and
    Stratonovich solvers (euler, heun, midpoint) converge to the same process. Unlike
    ``euler_maruyama``, the last step keeps its noise; ``denoise=True`` removes it.

    Args: x1 (B, ...) prior draw; key a PRNG key; n_steps (static); solver one of euler, heun,
      midpoint; t1 end time (``process.t_min`` by default).
    Returns: (x0 (B, ...), stats) with stats["nfe"] the network evaluations and num_steps.
    Reference: Song et al. 2021 (score-SDE), eq. 6; Anderson 1982 (reverse-time SDE).
    """
    _check(solver, SDE_SOLVERS)
    cls, per_step = SDE_SOLVERS[solver]
    process = model.process
    t0 = jnp.asarray(process.t_max, x1.dtype)
    t_end = jnp.asarray(process.t_min if t1 is None else t1, x1.dtype)
    dt0 = (t_end - t0) / n_steps

    def drift(t, x, args):
        return (process.f(t) * x - process.g2(t) * model.score(x, t, cond)).astype(x.dtype)

    def diffusion(t, x, args):
        return lineax.DiagonalLinearOperator(jnp.broadcast_to(jnp.sqrt(process.g2(t)), x.shape).astype(x.dtype))

    bm = diffrax.VirtualBrownianTree(t_end, t0, tol=-dt0 / 8, shape=jax.ShapeDtypeStruct(x1.shape, x1.dtype),
                                     key=key)
    terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, bm))
    sol = diffrax.diffeqsolve(terms, cls(), t0, t_end, dt0, x1, saveat=diffrax.SaveAt(t1=True),
                              max_steps=n_steps + 1)
    x = finish(model, sol.ys[0], t_end, cond, denoise)
    return x, {"nfe": sol.stats["num_steps"] * per_step + int(denoise), "num_steps": sol.stats["num_steps"]}
