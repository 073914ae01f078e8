"""Class labels as a real path: the null label, and label dropout inside the jitted step.

A class-conditional network with K classes takes integer labels in [0, K]; label K is the
learned *null label*, "no label", so one network is both the conditional model p(x | c) and the
unconditional p(x) (Ho & Salimans 2022, Sec. 3.2). Training replaces each example's label by the
null label with probability ``p_uncond`` (label dropout), drawn from the step's key under jit,
so the two models are trained together at no extra cost; guidance then combines them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array


def labels_or_null(cond: Array | None, num_classes: int, batch: int) -> Array:
    """Integer labels (B,) for a class-conditional net: ``cond``, or the null label
    ``num_classes`` for every example where ``cond`` is None (the unconditional model)."""
    if cond is None:
        return jnp.full((batch,), num_classes, jnp.int32)
    return jnp.broadcast_to(jnp.asarray(cond, jnp.int32), (batch,))


def null_labels(batch: int, null_label: int) -> Array:
    """(B,) labels all equal to the null label."""
    return jnp.full((batch,), null_label, jnp.int32)


def drop_labels(key: Array, cond: Array, p_uncond: float | Array, null_label: int) -> Array:
    """Label dropout: each label (B,) becomes ``null_label`` with probability ``p_uncond``."""
    drop = jax.random.bernoulli(key, p_uncond, cond.shape[:1])
    return jnp.where(drop, jnp.asarray(null_label, cond.dtype), cond)
