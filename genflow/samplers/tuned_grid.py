"""A time grid tuned to a model and a sampler, from the model's own PF-ODE trajectories.

The fixed grids (uniform, Karras, log-SNR) are guesses about where a sampler's error is made.
With few steps the best grid depends on the model and the sampler, so measure it: draw a
calibration batch from the prior, solve the PF-ODE for it accurately (adaptive Tsit5), and move
the n - 1 interior grid points to minimise the sampler's mean squared error to those endpoints,
by gradient descent through the sampler itself (every genflow sampler is a differentiable jax
function of its grid). The ends stay at ts[0] and ts[-1]; the interior is parameterised as
t_max - (t_max - t_min) cumsum(softmax(logits)), so the grid stays strictly decreasing.

This is the idea of "Align Your Steps" (Sabour et al. 2024: optimise the schedule for the model
and sampler at hand) with the simplest objective there is, the error to the exact ODE endpoint
on held-out noise, which is what a deterministic sampler's quality is. The tuned grid is an
ordinary grid: pass it to the sampler it was tuned for (or any other).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax import Array

from genflow.models.model import Model


def tune_grid(model: Model, sampler: Callable, x1: Array, init: Array, *, target: Array | None = None,
              cond: Any = None, iters: int = 300, lr: float = 0.05, rtol: float = 1e-8,
              **sampler_kwargs) -> tuple[Array, dict[str, Array]]:
    """A grid like ``init`` (n+1,) whose interior minimises ``sampler``'s error on ``x1``.

    Args:
      model: the model to sample (its process and network).
      sampler: a genflow sampler, ``sampler(model, x1, ts, **sampler_kwargs) -> (x, stats)``,
        deterministic (the error is to the PF-ODE endpoint of the same x1).
      x1: (B, ...) calibration draws from the prior; a few hundred to a few thousand. Use other
        draws than the ones you will sample: the grid is fit to these.
      init: (n+1,) the starting grid, decreasing; its ends are kept (e.g. ``grids.log_snr(process, n)``).
      target: (B, ...) the exact endpoints at init[-1]; by default ``ode_sample`` at rtol = atol = ``rtol``.
      iters, lr: Adam steps and learning rate on the softmax logits of the grid's increments.
    Returns: (ts (n+1,), the best grid seen; {"loss": (iters,) the mean squared error along the
      descent, "init_loss": the starting grid's, "best_loss": the returned grid's}).
    """
    from genflow.samplers.diffrax_solvers import ode_sample

    init = jnp.asarray(init, x1.dtype)
    if init.ndim != 1 or init.shape[0] < 3:
        raise ValueError(f"tune_grid: init must be a grid of at least 2 steps (3 points), got shape {init.shape}; "
                         "a one-step grid has nothing to tune.")
    if target is None:
        target, _ = ode_sample(model, x1, init, adaptive=True, cond=cond, rtol=rtol, atol=rtol, max_steps=100_000)
    t_hi, t_lo = init[0], init[-1]

    def grid(logits: Array) -> Array:
        frac = jnp.cumsum(jax.nn.softmax(logits))
        return jnp.concatenate([t_hi[None], t_hi - (t_hi - t_lo) * frac[:-1], t_lo[None]])

    def loss(logits: Array) -> Array:
        x, _ = sampler(model, x1, grid(logits), cond=cond, **sampler_kwargs)
        return jnp.mean(jnp.sum(((x - target) ** 2).reshape(x.shape[0], -1), axis=1))

    opt = optax.adam(lr)

    @jax.jit
    def descend(logits):
        def step(carry, _):
            logits, state, best, best_value = carry
            value, grad = jax.value_and_grad(loss)(logits)
            grad = jnp.where(jnp.isfinite(grad), grad, 0.0)      # a step from alpha = 0 has no gradient
            better = value < best_value
            best, best_value = jnp.where(better, logits, best), jnp.where(better, value, best_value)
            updates, state = opt.update(grad, state)
            return (optax.apply_updates(logits, updates), state, best, best_value), value

        init_carry = (logits, opt.init(logits), logits, jnp.asarray(jnp.inf, x1.dtype))
        (_, _, best, _), values = jax.lax.scan(step, init_carry, None, length=iters)
        return best, values

    logits0 = jnp.log(-jnp.diff(init))
    best, values = descend(logits0)
    return grid(best), {"loss": values, "init_loss": values[0], "best_loss": jnp.min(values)}
