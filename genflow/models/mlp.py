"""A residual MLP with a time embedding, for 2-D and other small flat data."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from genflow.models.conditioning import labels_or_null
from genflow.models.embedding import sinusoidal_embedding


class _Block(nnx.Module):
    def __init__(self, width: int, kw: dict):
        self.norm = nnx.LayerNorm(width, **kw)
        self.lin1 = nnx.Linear(width, width, **kw)
        self.lin2 = nnx.Linear(width, width, **kw)

    def __call__(self, h: Array, emb: Array) -> Array:
        return h + self.lin2(jax.nn.silu(self.lin1(jax.nn.silu(self.norm(h))) + emb))


class MLP(nnx.Module):
    """``net(x, t, cond) -> like x`` for data of any shape, flattened to ``prod(data_shape)``.

    Args:
      data_shape: shape of one example, e.g. (2,) or (8, 8, 1).
      width, depth: hidden width and number of residual blocks.
      num_classes: if set, ``cond`` holds integer labels (B,) in [0, num_classes] added through an
        embedding with one more row, the learned null label ``num_classes`` (``null_label``), which
        ``cond=None`` also selects: the unconditional model that label dropout trains.
      dtype: compute dtype (bfloat16 on accelerators); parameters stay float32.
    """

    def __init__(self, data_shape: tuple[int, ...], *, width: int = 256, depth: int = 3,
                 emb_dim: int = 128, num_classes: int | None = None,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        self.data_shape = tuple(data_shape)
        self.emb_dim = emb_dim
        d = math.prod(self.data_shape)
        kw = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.t_proj = nnx.Linear(emb_dim, width, **kw)
        self.num_classes = num_classes
        self.label = nnx.Embed(num_classes + 1, width, dtype=dtype, param_dtype=jnp.float32,
                               rngs=rngs) if num_classes else None
        self.inp = nnx.Linear(d, width, **kw)
        self.blocks = nnx.List([_Block(width, kw) for _ in range(depth)])
        self.out_norm = nnx.LayerNorm(width, **kw)
        self.out = nnx.Linear(width, d, kernel_init=nnx.initializers.zeros, **kw)
        self.dtype = dtype

    @property
    def null_label(self) -> int | None:
        """The label meaning "no label" (``num_classes``), None for an unconditional net."""
        return self.num_classes or None

    def __call__(self, x: Array, t: Array, cond: Array | None = None) -> Array:
        b = x.shape[0]
        emb = self.t_proj(sinusoidal_embedding(t, self.emb_dim))
        if self.label is not None:
            emb = emb + self.label(labels_or_null(cond, self.num_classes, b))
        h = self.inp(x.reshape(b, -1).astype(self.dtype))
        for block in self.blocks:
            h = block(h, emb)
        y = self.out(jax.nn.silu(self.out_norm(h)))
        return y.reshape(x.shape).astype(x.dtype)
