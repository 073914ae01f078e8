"""Time embeddings shared by genflow's networks."""
from __future__ import annotations

import math

import jax.numpy as jnp
from jax import Array


def sinusoidal_embedding(t: Array, dim: int, max_period: float = 10_000.0, scale: float = 1_000.0, *,
                         endpoint: bool = False, sin_first: bool = False) -> Array:
    """Transformer-style features of continuous time t in [0, 1]: (B,) -> (B, dim).

    ``scale`` stretches [0, 1] so the highest frequency resolves steps of 1/1000; it is
    part of the embedding (one constant, here), never a relabelling of t by callers.
    Frequencies are max_period^(-i / half), i < half = dim // 2, features [cos, sin]. EDM's DDPM++
    embedding (``PositionalEmbedding(endpoint=True)`` then its sin/cos swap) is ``scale=1``,
    ``endpoint=True`` (exponents i / (half - 1), so the lowest frequency is exactly 1/max_period)
    and ``sin_first=True``.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - 1 if endpoint else half))
    args = (scale * t.astype(jnp.float32))[:, None] * freqs[None, :]
    parts = [jnp.sin(args), jnp.cos(args)] if sin_first else [jnp.cos(args), jnp.sin(args)]
    emb = jnp.concatenate(parts, axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb
