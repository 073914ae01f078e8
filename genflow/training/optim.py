"""Optimizers as optax transformations: Tiger (the one optax lacks) and the standard chain."""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class ScaleByTigerState(NamedTuple):
    mu: optax.Updates  # the single buffer: an EMA of gradients


def scale_by_tiger(beta: float = 0.945, mu_dtype: Any = None) -> optax.GradientTransformation:
    """m <- beta m + (1 - beta) g;  u = sign(m)  (seed equations, section 8).

    Tiger is Lion with b1 = b2 = beta (Chen et al. 2023): one state buffer, so gradient
    accumulation needs no extra one. 0.945 is the default the Tiger write-up recommends.
    """

    def init_fn(params):
        return ScaleByTigerState(mu=jax.tree.map(lambda p: jnp.zeros_like(p, dtype=mu_dtype or p.dtype), params))

    def update_fn(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda m, g: beta * m + (1.0 - beta) * g.astype(m.dtype), state.mu, updates)
        return jax.tree.map(jnp.sign, mu), ScaleByTigerState(mu=mu)

    return optax.GradientTransformation(init_fn, update_fn)


def tiger(learning_rate: optax.ScalarOrSchedule, beta: float = 0.945, weight_decay: float = 0.0,
          mask: Any = None) -> optax.GradientTransformation:
    """Tiger: theta <- theta - lr (sign(m) + wd theta), m the EMA of gradients."""
    return optax.chain(scale_by_tiger(beta), optax.add_decayed_weights(weight_decay, mask),
                       optax.scale_by_learning_rate(learning_rate))


OPTIMIZERS = ("adam", "adamw", "lion", "tiger")


def make_optimizer(name: str, lr: float, *, b1: float = 0.9, b2: float = 0.999, weight_decay: float = 0.0,
                   warmup_steps: int = 0, grad_clip: float | None = None) -> optax.GradientTransformation:
    """Global-norm clipping, then the named optimizer with a linear warm-up to ``lr``.

    For Tiger, ``b1`` is its single beta. Lion and Tiger want a learning rate 3-10x smaller
    than Adam's (Chen et al. 2023).
    """
    schedule = optax.linear_schedule(0.0, lr, warmup_steps) if warmup_steps > 0 else lr
    if warmup_steps > 0:
        schedule = optax.join_schedules([schedule, optax.constant_schedule(lr)], [warmup_steps])
    if name == "adam":
        opt = optax.adam(schedule, b1=b1, b2=b2)
    elif name == "adamw":
        opt = optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay)
    elif name == "lion":
        opt = optax.lion(schedule, b1=b1, b2=b2, weight_decay=weight_decay)
    elif name == "tiger":
        opt = tiger(schedule, beta=b1, weight_decay=weight_decay)
    else:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")
    return optax.chain(optax.clip_by_global_norm(grad_clip), opt) if grad_clip else opt
