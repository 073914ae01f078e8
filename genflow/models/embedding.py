"""Time embeddings shared by genflow's networks."""
from __future__ import annotations

import math

import jax.numpy as jnp
from jax import Array


def sinusoidal_embedding(t: Array, dim: int, max_period: float = 10_000.0, scale: float = 1_000.0) -> Array:
    """Transformer-style features of continuous time t in [0, 1]: (B,) -> (B, dim).

    ``scale`` stretches [0, 1] so the highest frequency resolves steps of 1/1000; it is
    part of the embedding (one constant, here), never a relabelling of t by callers.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = (scale * t.astype(jnp.float32))[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb
