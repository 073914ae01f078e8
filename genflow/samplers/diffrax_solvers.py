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
from genflow.samplers._common import finish, need_key, sampler
from genflow.samplers.registry import register

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


def _check_solver(solver: str, table: dict) -> None:
    if solver not in table:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(table)}.")


def _check_ode(model, x1, ts, **kwargs) -> None:
    solver = kwargs.get("solver", "tsit5")
    _check_solver(solver, ODE_SOLVERS)
    adaptive = kwargs.get("adaptive")
    if solver == "euler" and (ts is None or adaptive):
        raise ValueError("solver 'euler' has no error estimate for adaptive steps: pass a grid ts with adaptive=False.")


@sampler("ode_sample", static_argnames=("solver", "adaptive", "denoise", "max_steps", "at_jumps"), check=_check_ode)
def ode_sample(model: Model, x1: Array, ts: Array | None = None, *, key: Array | None = None, cond: Any = None,
               denoise: bool = False, solver: str = "tsit5", adaptive: bool | None = None, rtol: float = 1e-5,
               atol: float = 1e-5, t1: Array | None = None, max_steps: int = 4096,
               at_jumps: bool = False) -> tuple[Array, dict[str, Array]]:
    """Integrate the PF-ODE dx/dt = f x - g^2 score / 2 = model.velocity from ts[0] down to ts[-1].

    Fixed steps on the grid ``ts`` (n+1,) (``diffrax.StepTo``), or adaptive steps
    (``diffrax.PIDController(rtol, atol)``, solvers with an error estimate: tsit5, dopri5, heun,
    midpoint) from ts[0] to ts[-1] with ``adaptive=True`` (the grid's interior is ignored), or
    from t_max to ``t1`` (``process.t_min`` by default) when ``ts`` is None. ``adaptive`` defaults
    to ``ts is None``. Time runs backwards (dt < 0), which diffrax supports directly. ``key`` unused.

    Args: x1 (B, ...) prior draw; solver one of euler, heun, midpoint, tsit5, dopri5; at_jumps:
      adaptive steps end on the process's ``jump_times`` (DDPM's knots; see ``adaptive_controller``).
    Returns: (x0 (B, ...), stats) with stats["nfe"] the number of network evaluations
      (attempted steps, rejected ones included, times evaluations per step, +1 for the FSAL
      solvers tsit5/dopri5, +1 with ``denoise``), and diffrax's num_steps / num_accepted_steps /
      num_rejected_steps. Adaptive runs start from dt0 = 1% of the interval.
    Reference: Song et al. 2021 (score-SDE), eq. 13 and Sec. 4.3; diffrax (Kidger 2021).
    """
    cls, per_step, fsal = ODE_SOLVERS[solver]
    process = model.process
    adaptive = ts is None if adaptive is None else adaptive
    if adaptive:
        t0 = jnp.asarray(process.t_max if ts is None else ts[0], x1.dtype)
        t_end = jnp.asarray((process.t_min if t1 is None else t1) if ts is None else ts[-1], x1.dtype)
        controller, n_jumps = adaptive_controller(process, rtol, atol, t0, t_end, at_jumps)
        dt0 = FIRST_STEP * (t_end - t0)
    else:
        grid = jnp.asarray(ts, x1.dtype)
        controller, n_jumps = diffrax.StepTo(ts=grid), 0
        t0, t_end, dt0 = grid[0], grid[-1], None

    term = diffrax.ODETerm(lambda t, x, args: model.velocity(x, t, cond).astype(x.dtype))
    sol = diffrax.diffeqsolve(term, cls(), t0, t_end, dt0, x1, stepsize_controller=controller,
                              saveat=diffrax.SaveAt(t1=True), max_steps=max_steps)
    num_steps = sol.stats["num_steps"]
    x, stats = finish(model, sol.ys[0], t_end, cond, denoise, num_steps * per_step + int(fsal) * (1 + n_jumps))
    stats.update(num_steps=num_steps, num_accepted_steps=sol.stats["num_accepted_steps"],
                 num_rejected_steps=sol.stats["num_rejected_steps"])
    return x, stats


def _check_sde(model, x1, ts, **kwargs) -> None:
    _check_solver(kwargs.get("solver", "euler"), SDE_SOLVERS)
    if ts is None:
        raise ValueError("sde_sample steps on a grid: pass ts, e.g. grids.uniform(process, n).")


@sampler("sde_sample", static_argnames=("solver", "denoise"), check=_check_sde)
def sde_sample(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
               denoise: bool = False, solver: str = "euler") -> tuple[Array, dict[str, Array]]:
    """Integrate the reverse SDE dx = [f x - g^2 score] dt + g dW_bar from ts[0] down to ts[-1].

    Steps on the grid ts (``diffrax.StepTo``); the Brownian motion is a
    ``diffrax.VirtualBrownianTree`` on [ts[-1], ts[0]] from ``key`` (tolerance: the smallest step
    / 8), so a draw is reproducible and independent of the step size. The noise g(t) I is
    additive, so Ito and Stratonovich solvers (euler, heun, midpoint) converge to the same
    process. Unlike ``euler_maruyama``, the last step keeps its noise; ``denoise=True`` removes it.

    Args: x1 (B, ...) prior draw; ts (n+1,) decreasing; key a PRNG key (required); solver one of
      euler, heun, midpoint.
    Returns: (x0 (B, ...), stats) with stats["nfe"] the network evaluations and num_steps.
    Reference: Song et al. 2021 (score-SDE), eq. 6; Anderson 1982 (reverse-time SDE).
    """
    need_key("sde_sample", key)
    cls, per_step = SDE_SOLVERS[solver]
    process = model.process
    grid = jnp.asarray(ts, x1.dtype)
    t0, t_end = grid[0], grid[-1]
    n = grid.shape[0] - 1

    def drift(t, x, args):
        return (process.f(t) * x - process.g2(t) * model.score(x, t, cond)).astype(x.dtype)

    def diffusion(t, x, args):
        return lineax.DiagonalLinearOperator(jnp.broadcast_to(jnp.sqrt(process.g2(t)), x.shape).astype(x.dtype))

    bm = diffrax.VirtualBrownianTree(t_end, t0, tol=jnp.min(grid[:-1] - grid[1:]) / 8,
                                     shape=jax.ShapeDtypeStruct(x1.shape, x1.dtype), key=key)
    terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, bm))
    sol = diffrax.diffeqsolve(terms, cls(), t0, t_end, None, x1, stepsize_controller=diffrax.StepTo(ts=grid),
                              saveat=diffrax.SaveAt(t1=True), max_steps=n + 1)
    x, stats = finish(model, sol.ys[0], t_end, cond, denoise, sol.stats["num_steps"] * per_step)
    stats["num_steps"] = sol.stats["num_steps"]
    return x, stats


register("heun", partial(ode_sample, solver="heun", adaptive=False), summary="Heun (diffrax) on the PF-ODE in t",
         nfe_per_step="2", order="2", stochastic=False)
register("tsit5", partial(ode_sample, solver="tsit5", adaptive=True),
         summary="Tsitouras 5(4), adaptive steps (rtol, atol) from t_max to t_min", nfe_per_step="adaptive (6 per step)",
         order="5", stochastic=False, config={"rtol": "rtol", "atol": "atol"}, fixed_grid=False)
register("dopri5", partial(ode_sample, solver="dopri5", adaptive=True),
         summary="Dormand–Prince 5(4), adaptive steps (rtol, atol) from t_max to t_min",
         nfe_per_step="adaptive (6 per step)", order="5", stochastic=False, config={"rtol": "rtol", "atol": "atol"},
         fixed_grid=False)
