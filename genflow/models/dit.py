"""DiT: the Diffusion Transformer of Peebles & Xie 2023 ("Scalable Diffusion Models with Transformers").

``net(x, t, cond) -> like x`` with x (B, H, W, C) channels-last, t (B,) in [0, 1], cond (B,) integer
labels in [0, num_classes] (``num_classes`` is the null label) or None. The network follows the
official code (facebookresearch/DiT, ``models.py``):

* patchify: non-overlapping p x p patches, flattened in (row, col, channel) order and mapped by one
  linear layer (the same as DiT's stride-p convolution), plus a fixed 2-D sin-cos position embedding
  (MAE's ``get_2d_sincos_pos_embed``); tokens run row-major over the patch grid;
* conditioning vector c = TimestepEmbedder(t) + LabelEmbedder(y): genflow's sinusoidal features of t
  (width 256, t scaled by 1000 as DiT's integer steps) through Linear-SiLU-Linear, plus a label table
  with one extra row for the null label;
* ``depth`` adaLN-Zero blocks: from SiLU(c), a linear map gives shift, scale and gate for the attention
  and the MLP branch, x <- x + gate * branch(LN(x) (1 + scale) + shift), the map zero-initialised so
  every block starts as the identity; multi-head self-attention through ``jax.nn.dot_product_attention``
  (a GPU may pick a fused kernel) and a GELU(tanh) MLP of width ``mlp_ratio * hidden``;
* a final layer (adaLN shift/scale, then a linear map to p * p * C values per token, both
  zero-initialised, so the network outputs exactly 0 at initialisation) and unpatchify.

Differences from the official code: learned sigma is off (output channels = input channels; genflow's
objectives train one prediction); t is genflow's t in [0, 1]; label dropout happens in genflow's train
step (``conditioning.drop_labels``), not in the network; LayerNorm is computed in float32.

Two execution options keep large depths practical: ``scan=True`` stores the blocks' parameters stacked
on a leading axis of length ``depth`` (built with ``nnx.vmap``) and runs them with ``jax.lax.scan``, so the
compiled program holds one block whatever the depth; ``remat=True`` recomputes each block's
activations in the backward pass (``jax.checkpoint``) instead of storing them. A scanned and an unrolled
network have different parameter layouts (stacked vs. ``blocks/0``, ``blocks/1``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import Array

from genflow.models.conditioning import labels_or_null
from genflow.models.embedding import sinusoidal_embedding

FREQ_DIM = 256  # DiT's frequency_embedding_size: the sinusoidal features of t fed to the time MLP
_LN_EPS = 1e-6


@dataclass(frozen=True)
class DiTSize:
    """One row of DiT's Table 1: hidden size, number of blocks, attention heads, patch size."""
    hidden: int
    depth: int
    heads: int
    patch: int


def _sizes() -> dict[str, DiTSize]:
    base = {"S": (384, 12, 6), "B": (768, 12, 12), "L": (1024, 24, 16), "XL": (1152, 28, 16)}
    return {f"{name}/{p}": DiTSize(h, d, n, p) for name, (h, d, n) in base.items() for p in (2, 4, 8)}


DIT_SIZES: dict[str, DiTSize] = _sizes()  # "S/2", "B/4", "XL/2", ... as in DiT's ``DiT_models``


# -- fixed embeddings and patches --------------------------------------------------------------
def sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    """MAE's 1-D sin-cos features: (M,) positions -> (M, dim), [sin(pos w), cos(pos w)] with
    w_i = 10000^(-i / (dim / 2)), i < dim / 2."""
    omega = 1.0 / 10_000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> np.ndarray:
    """MAE's fixed 2-D position embedding (grid_h * grid_w, dim), tokens row-major: the first half
    of the features encodes the column, the second half the row (as ``get_2d_sincos_pos_embed``).
    ``dim`` must be a multiple of 4."""
    if dim % 4:
        raise ValueError(f"the 2-D sin-cos position embedding needs a width divisible by 4, got {dim}")
    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    return np.concatenate([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], axis=1).astype(np.float32)


def patchify(x: Array, p: int) -> Array:
    """(B, H, W, C) -> (B, (H/p)(W/p), p p C): non-overlapping patches, row-major, each flattened
    in (row, col, channel) order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(x: Array, p: int, h: int, w: int) -> Array:
    """(B, (h/p)(w/p), p p C) -> (B, h, w, C), the inverse of ``patchify``."""
    b, _, d = x.shape
    c = d // (p * p)
    x = x.reshape(b, h // p, w // p, p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def _layer_norm(x: Array) -> Array:
    """LayerNorm over the last axis without affine parameters (DiT's ``elementwise_affine=False``),
    in float32, returned in x's dtype."""
    y = x.astype(jnp.float32)
    mean = y.mean(-1, keepdims=True)
    var = jnp.square(y - mean).mean(-1, keepdims=True)
    return ((y - mean) * jax.lax.rsqrt(var + _LN_EPS)).astype(x.dtype)


def _modulate(x: Array, shift: Array, scale: Array) -> Array:
    """x (B, T, D) * (1 + scale) + shift, shift and scale (B, D) per example."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


_XAVIER = nnx.initializers.xavier_uniform()
_ZEROS = nnx.initializers.zeros


# -- blocks -----------------------------------------------------------------------------------
class DiTBlock(nnx.Module):
    """adaLN-Zero transformer block (DiT Fig. 3): tokens (B, T, D) and conditioning c (B, D) -> (B, T, D)."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0, *, dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=jnp.float32, kernel_init=_XAVIER, rngs=rngs)
        self.heads = heads
        self.qkv = nnx.Linear(hidden, 3 * hidden, **kw)
        self.proj = nnx.Linear(hidden, hidden, **kw)
        width = int(hidden * mlp_ratio)
        self.fc1 = nnx.Linear(hidden, width, **kw)
        self.fc2 = nnx.Linear(width, hidden, **kw)
        self.modulation = nnx.Linear(hidden, 6 * hidden, dtype=dtype, param_dtype=jnp.float32,
                                     kernel_init=_ZEROS, rngs=rngs)

    def attention(self, x: Array) -> Array:
        """Multi-head self-attention (timm's ``Attention`` with a qkv bias): (B, T, D) -> (B, T, D)."""
        b, t, d = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads), 3, axis=2)
        a = jax.nn.dot_product_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0])  # (B, T, heads, D / heads)
        return self.proj(a.reshape(b, t, d))

    def __call__(self, x: Array, c: Array) -> Array:
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(self.modulation(jax.nn.silu(c)), 6, axis=-1)
        x = x + gate1[:, None, :] * self.attention(_modulate(_layer_norm(x), shift1, scale1))
        h = self.fc2(jax.nn.gelu(self.fc1(_modulate(_layer_norm(x), shift2, scale2)), approximate=True))
        return x + gate2[:, None, :] * h


class _FinalLayer(nnx.Module):
    """adaLN (shift, scale) then a linear map to p * p * C values per token, all zero-initialised."""

    def __init__(self, hidden: int, out_dim: int, *, dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=jnp.float32, kernel_init=_ZEROS, rngs=rngs)
        self.modulation = nnx.Linear(hidden, 2 * hidden, **kw)
        self.linear = nnx.Linear(hidden, out_dim, **kw)

    def __call__(self, x: Array, c: Array) -> Array:
        shift, scale = jnp.split(self.modulation(jax.nn.silu(c)), 2, axis=-1)
        return self.linear(_modulate(_layer_norm(x), shift, scale))


def _block_fn(graphdef: nnx.GraphDef, remat: bool):
    """``f(block_state, x, c) -> x``: one block as a pure function of its state, under ``jax.checkpoint``
    when ``remat``. Pure JAX transforms (not nnx.scan / nnx.remat) because genflow's train step merges the
    network inside ``jax.value_and_grad``, where NNX transforms refuse Variables of the outer trace."""
    def apply(state: nnx.State, x: Array, c: Array) -> Array:
        return nnx.merge(graphdef, state)(x, c)

    return jax.checkpoint(apply) if remat else apply


# -- the network --------------------------------------------------------------------------------
class DiT(nnx.Module):
    """Diffusion Transformer (module docstring): ``net(x, t, cond) -> like x``, x (B, H, W, C).

    Args:
      data_shape: (H, W, C) of one example; H and W divisible by ``patch``.
      hidden, depth, heads, patch: DiT's hidden size, number of blocks, attention heads and patch
        size (``DIT_SIZES`` has the paper's S, B, L, XL at patch 2, 4, 8); hidden divisible by heads
        and by 4 (the 2-D position embedding).
      mlp_ratio: MLP width over hidden size (4 in DiT).
      num_classes: if set, a class-conditional network with a learned null label ``num_classes``
        (``null_label``), which ``cond=None`` also selects.
      scan: stack the blocks (``nnx.vmap`` at construction) and run them with ``jax.lax.scan``.
      remat: recompute each block in the backward pass (``jax.checkpoint``).
      dtype: compute dtype (bfloat16 on accelerators); parameters stay float32.
    """

    def __init__(self, data_shape: tuple[int, int, int], *, hidden: int = 384, depth: int = 12, heads: int = 6,
                 patch: int = 2, mlp_ratio: float = 4.0, num_classes: int | None = None, scan: bool = False,
                 remat: bool = False, dtype=jnp.float32, rngs: nnx.Rngs):
        h, w, c = data_shape
        if h % patch or w % patch:
            raise ValueError(f"DiT needs image sides divisible by the patch size {patch}, got {h}x{w}")
        if hidden % heads:
            raise ValueError(f"DiT needs the hidden size {hidden} divisible by the {heads} heads")
        self.data_shape = tuple(data_shape)
        self.hidden, self.patch, self.depth = hidden, patch, depth
        self.scan, self.remat, self.dtype = scan, remat, dtype
        self.num_classes = num_classes
        kw = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.x_embed = nnx.Linear(patch * patch * c, hidden, kernel_init=_XAVIER, **kw)
        normal = nnx.initializers.normal(0.02)
        self.t_embed0 = nnx.Linear(FREQ_DIM, hidden, kernel_init=normal, **kw)
        self.t_embed1 = nnx.Linear(hidden, hidden, kernel_init=normal, **kw)
        self.label = (nnx.Embed(num_classes + 1, hidden, embedding_init=normal, **kw) if num_classes else None)
        if scan:
            @nnx.split_rngs(splits=depth)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def stacked(rngs: nnx.Rngs) -> DiTBlock:
                return DiTBlock(hidden, heads, mlp_ratio, dtype=dtype, rngs=rngs)

            self.blocks = stacked(rngs)
        else:
            self.blocks = nnx.List([DiTBlock(hidden, heads, mlp_ratio, dtype=dtype, rngs=rngs) for _ in range(depth)])
        self.final = _FinalLayer(hidden, patch * patch * c, dtype=dtype, rngs=rngs)

    @property
    def null_label(self) -> int | None:
        """The label meaning "no label" (``num_classes``), None for an unconditional net."""
        return self.num_classes or None

    def condition(self, t: Array, cond: Array | None, batch: int) -> Array:
        """The conditioning vector c (B, hidden): time MLP of sinusoidal features plus the label embedding."""
        c = self.t_embed1(jax.nn.silu(self.t_embed0(sinusoidal_embedding(t, FREQ_DIM).astype(self.dtype))))
        if self.label is not None:
            c = c + self.label(labels_or_null(cond, self.num_classes, batch))
        return c

    def __call__(self, x: Array, t: Array, cond: Array | None = None) -> Array:
        b, h, w, _ = x.shape
        p = self.patch
        pos = sincos_2d(self.hidden, h // p, w // p)  # fixed: a constant of the program, not state
        tokens = self.x_embed(patchify(x.astype(self.dtype), p)) + jnp.asarray(pos, self.dtype)
        c = self.condition(jnp.broadcast_to(t, (b,)), cond, b)
        if self.scan:
            graphdef, stacked = nnx.split(self.blocks)
            run = _block_fn(graphdef, self.remat)
            tokens, _ = jax.lax.scan(lambda h, state: (run(state, h, c), None), tokens, stacked)
        else:
            for block in self.blocks:
                graphdef, state = nnx.split(block)
                tokens = _block_fn(graphdef, self.remat)(state, tokens, c)
        y = unpatchify(self.final(tokens, c), p, h, w)
        return y.astype(x.dtype)
