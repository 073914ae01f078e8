"""Optimizers as optax transformations: Tiger (the one optax lacks), in its plain form and as its
article proposes it, and the standard chain."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

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


class TigerRMSState(NamedTuple):
    count: jax.Array   # steps taken, for a learning-rate schedule
    mu: optax.Updates  # the single buffer: an EMA of gradients


TIGER_ROLES = ("tensor", "embedding", "bias", "gain")


def tiger_role(path: tuple, param: jax.Array) -> str:
    """The role of a parameter for ``tiger_rms``, from its name in a flax NNX state: ``bias`` (biases,
    zero-initialised), ``gain`` (normalisation ``scale``, one-initialised), ``embedding`` (an ``nnx.Embed``
    table, one row per token), else ``tensor``. The reference matches TF names ("bias|beta|gamma",
    "embeddings"); these are the same layers' names in NNX."""
    names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    name = next((n for n in reversed(names) if isinstance(n, str) and n != "value"), "")
    return {"bias": "bias", "scale": "gain", "embedding": "embedding"}.get(name, "tensor")


def _rms(x: jax.Array, axis=None) -> jax.Array:
    return jnp.sqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=axis is not None))


def tiger_rms(learning_rate: optax.ScalarOrSchedule, beta: float = 0.965, weight_decay: float = 0.01, *,
              rms_floor: float = 1e-3, shrink: float = 0.99,
              roles: Callable[[tuple, jax.Array], str] = tiger_role) -> optax.GradientTransformation:
    """Tiger as its article proposes it (Su 2023, kexue.fm/archives/9512; reference bojone/tiger, tiger.py).

    Per tensor theta with gradient g, learning rate lr_t and weight decay lambda:

        m <- beta m + (1 - beta) g
        theta <- theta - eta (sign(m) + lambda theta),   eta = lr_t max(RMS(theta), rms_floor)

    so each tensor moves by about lr_t of its own scale per step (a LAMB-like per-tensor rate). As in the
    reference: biases and normalisation gains take eta = lr_t / 2 and no weight decay (they start at 0 or
    1, where an RMS says nothing of their scale); an embedding table takes the RMS of each row. The floor
    (not in the reference code) lets a zero-initialised tensor (adaLN-Zero, output layers) move at all.
    The guard: a tensor whose gradient is not finite (the reference tests NaN only) keeps its momentum
    and shrinks towards its initial centre c (1 for gains, else 0): theta <- c + shrink (theta - c).
    genflow's train step already skips a step whose gradient is not finite, so there this guard acts
    only when the optimizer is used outside that step. ``roles(path, param)`` says which of
    ``TIGER_ROLES`` a parameter has (``tiger_role`` reads flax NNX names). Includes the learning rate:
    use it as the whole optimizer, not before ``scale_by_learning_rate``.
    """

    def init_fn(params):
        return TigerRMSState(count=jnp.zeros([], jnp.int32), mu=jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("tiger_rms scales each tensor's step by the tensor's RMS: pass params to update().")
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate

        def one(path, g, m, theta):
            role = roles(path, theta)
            if role not in TIGER_ROLES:
                raise ValueError(f"tiger_rms role {role!r} is not one of {', '.join(TIGER_ROLES)}.")
            finite = jnp.all(jnp.isfinite(g))
            m_new = jnp.where(finite, beta * m + (1.0 - beta) * g.astype(m.dtype), m)
            if role in ("bias", "gain"):
                eta, decay = 0.5 * lr, 0.0
            else:
                scale = _rms(theta, axis=-1) if role == "embedding" and theta.ndim > 0 else _rms(theta)
                eta, decay = lr * jnp.maximum(scale, rms_floor), weight_decay
            centre = 1.0 if role == "gain" else 0.0
            step = -eta * (jnp.sign(m_new) + decay * theta)
            return jnp.where(finite, step, (shrink - 1.0) * (theta - centre)).astype(theta.dtype), m_new

        leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
        out = [one(path, g, m, theta) for (path, theta), g, m in
               zip(leaves, treedef.flatten_up_to(updates), treedef.flatten_up_to(state.mu))]
        new_updates, mu = treedef.unflatten([u for u, _ in out]), treedef.unflatten([m for _, m in out])
        return new_updates, TigerRMSState(count=optax.safe_increment(state.count), mu=mu)

    return optax.GradientTransformation(init_fn, update_fn)


OPTIMIZERS = ("adam", "adamw", "lion", "tiger", "tiger_rms")


def make_optimizer(name: str, lr: float, *, b1: float = 0.9, b2: float = 0.999, weight_decay: float = 0.0,
                   warmup_steps: int = 0, grad_clip: float | None = None,
                   rms_floor: float = 1e-3) -> optax.GradientTransformation:
    """Global-norm clipping, then the named optimizer with a linear warm-up to ``lr``.

    For Tiger, ``b1`` is its single beta. Lion and Tiger want a learning rate 3-10x smaller
    than Adam's (Chen et al. 2023). ``tiger_rms`` (``tiger_rms``) takes lr relative to each
    tensor's RMS (the reference uses 1.76e-3) and ``rms_floor``; with ``grad_clip`` one non-finite
    gradient makes the global norm, hence every clipped tensor, non-finite, so all of them take
    Tiger's shrink (the reference does not clip).
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
    elif name == "tiger_rms":
        opt = tiger_rms(schedule, beta=b1, weight_decay=weight_decay, rms_floor=rms_floor)
    else:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")
    return optax.chain(optax.clip_by_global_norm(grad_clip), opt) if grad_clip else opt
