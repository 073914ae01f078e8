"""DDPM++ U-Net (Song et al. 2021) in the form used by the EDM code (Karras et al. 2022).

Dropout draws from the ``dropout`` stream of the ``nnx.Rngs`` given at construction (each
Dropout layer keeps a fork of it): reseed with ``nnx.reseed(model, dropout=key)``, switch it off
with ``model.eval()`` or ``nnx.view(model, deterministic=True)``. With ``dropout=0`` no stream is
needed. Under ``jax.jit`` + ``jax.value_and_grad`` with ``nnx.split``/``nnx.merge``, merge inside
the differentiated function with ``nnx.merge(graphdef, params, rest, copy=True)`` (dropout
advances its RngCount, which flax refuses to mutate across trace levels) and return
``nnx.state(model, nnx.Not(nnx.Param))`` as aux to carry the advanced counts forward.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from genflow.models.conditioning import labels_or_null
from genflow.models.embedding import sinusoidal_embedding

_SKIP_SCALE = math.sqrt(0.5)
_EPS = 1e-6
TIME_EMBEDDINGS = ("sinusoidal", "positional")


def _xavier(weight: float = 1.0):
    """Xavier-uniform initialiser times ``weight`` (EDM's ``init_weight``)."""
    return nnx.initializers.variance_scaling(weight * weight, "fan_avg", "uniform")


def _resample(x: Array, up: bool, down: bool) -> Array:
    """The [1, 1] resampling filter: 2x nearest upsampling or 2x2 average pooling (NHWC)."""
    if up:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    if down:
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    return x


class _GroupNorm(nnx.Module):
    """GroupNorm computed in float32 with min(32, C // 4) groups, output in the compute dtype."""

    def __init__(self, num_channels: int, *, dtype, rngs: nnx.Rngs):
        groups = min(32, max(num_channels // 4, 1))
        self.norm = nnx.GroupNorm(num_channels, num_groups=groups, epsilon=_EPS, dtype=jnp.float32,
                                  param_dtype=jnp.float32, use_fast_variance=False, rngs=rngs)
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        return self.norm(x.astype(jnp.float32)).astype(self.dtype)


class _Block(nnx.Module):
    """Residual block (GroupNorm, SiLU, 3x3 conv, + embedding, ...) with optional resampling and
    single-head self-attention; the residual sum and the attention sum are scaled by sqrt(1/2)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, *, up: bool = False, down: bool = False,
                 attention: bool = False, concat_skip: bool = False, dropout: float = 0.0,
                 dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.up, self.down, self.concat_skip = up, down, concat_skip
        self.dtype = dtype
        self.norm0 = _GroupNorm(cin, dtype=dtype, rngs=rngs)
        self.conv0 = nnx.Conv(cin, cout, (3, 3), kernel_init=_xavier(), **kw)
        self.affine = nnx.Linear(emb_dim, cout, kernel_init=_xavier(), **kw)
        self.norm1 = _GroupNorm(cout, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs if dropout > 0 else None)
        self.conv1 = nnx.Conv(cout, cout, (3, 3), kernel_init=_xavier(1e-5), **kw)
        self.skip = (nnx.Conv(cin, cout, (1, 1), kernel_init=_xavier(), **kw)
                     if (cin != cout or up or down) else None)
        if attention:
            self.norm2 = _GroupNorm(cout, dtype=dtype, rngs=rngs)
            self.qkv = nnx.Linear(cout, 3 * cout, kernel_init=_xavier(math.sqrt(0.2)), **kw)
            self.proj = nnx.Linear(cout, cout, kernel_init=_xavier(1e-5), **kw)
        else:
            self.norm2 = self.qkv = self.proj = None

    def __call__(self, x: Array, emb: Array) -> Array:
        h = _resample(jax.nn.silu(self.norm0(x)), self.up, self.down)
        h = self.conv0(h)
        h = h + self.affine(emb)[:, None, None, :]
        h = jax.nn.silu(self.norm1(h))
        h = self.conv1(self.dropout(h))
        s = x if self.skip is None else self.skip(_resample(x, self.up, self.down))
        x = (h + s) * _SKIP_SCALE
        if self.qkv is not None:
            b, hh, ww, c = x.shape
            q, k, v = jnp.split(self.qkv(self.norm2(x)).reshape(b, hh * ww, 3 * c), 3, axis=-1)
            logits = jnp.einsum("bqc,bkc->bqk", q, k, preferred_element_type=jnp.float32)
            w = jax.nn.softmax(logits / math.sqrt(c), axis=-1).astype(v.dtype)
            a = jnp.einsum("bqk,bkc->bqc", w, v).reshape(b, hh, ww, c)
            x = (self.proj(a) + x) * _SKIP_SCALE
        return x


class UNet(nnx.Module):
    """DDPM++ U-Net: ``net(x, t, cond) -> like x``, x (B, H, W, C) channels-last, t (B,) in [0, 1].

    The structure of DDPM++ (Song et al. 2021) as re-implemented in the EDM code (Karras et al.
    2022, ``SongUNet`` with positional embedding, standard encoder/decoder, [1, 1] resampling):
    a sinusoidal time embedding of width ``channels`` fed through a 2-layer SiLU MLP to
    ``emb_dim`` (default 4 * channels) features that every residual block adds after its first
    conv; an encoder of a 3x3 input conv, then per level ``num_res_blocks`` residual blocks
    (width ``channels * mult``) preceded, from the second level on, by a downsampling residual
    block; a decoder that starts at the lowest resolution with two blocks (the first with
    attention), then per level an upsampling block (from the second-lowest level on) and
    ``num_res_blocks + 1`` blocks that each take a skip connection by channel concatenation; and
    GroupNorm, SiLU and a 3x3 output conv initialised near zero. Encoder blocks at resolutions in
    ``attn_resolutions`` use single-head self-attention, decoder levels at those resolutions use
    it in their last block only; residual and attention sums are scaled by sqrt(1/2), GroupNorm
    uses min(32, C // 4) groups and eps 1e-6, and weights are Xavier-uniform (output-side convs
    times 1e-5, qkv times sqrt(0.2)), as in EDM. With data_shape=(32, 32, 3) and the defaults this
    is EDM's DDPM++ CIFAR-10 network (55.73M parameters). Differences from the original: time
    enters as genflow's t in [0, 1] through ``sinusoidal_embedding`` (which scales t by 1000,
    like EDM's VP noise label (M - 1) t), not EDM's preconditioned noise labels, unless
    ``time_embedding="positional"``: EDM's own DDPM++ embedding of the noise label as given
    (``PositionalEmbedding(endpoint=True)``, sin before cos; with ``genflow.models.edm()`` the label
    is EDM's c_noise = ln(sigma) / 4), which imported EDM networks use; class labels
    (and the null label ``num_classes``, see ``null_label``) use an ``nnx.Embed`` table added to the sinusoidal features (EDM: a linear map of one-hot
    labels with a bias); there is no augmentation-label input; the network's raw output is
    returned (no EDM preconditioning); compute runs in ``dtype`` with float32 parameters,
    GroupNorm and softmax in float32, and the result is cast back to ``x.dtype``.
    """

    def __init__(self, data_shape: tuple[int, int, int], *, channels: int = 128,
                 channel_mult: tuple[int, ...] = (2, 2, 2), num_res_blocks: int = 4,
                 attn_resolutions: tuple[int, ...] = (16,), dropout: float = 0.0,
                 num_classes: int | None = None, emb_dim: int | None = None,
                 time_embedding: str = "sinusoidal", dtype=jnp.float32, rngs: nnx.Rngs):
        height, width, in_ch = data_shape
        if time_embedding not in TIME_EMBEDDINGS:
            raise ValueError(f"unknown time_embedding {time_embedding!r}; choose one of {', '.join(TIME_EMBEDDINGS)}")
        self.time_embedding = time_embedding
        if height != width:
            raise ValueError(f"UNet expects square images, got data_shape={data_shape}")
        if height % (2 ** (len(channel_mult) - 1)):
            raise ValueError(f"resolution {height} not divisible by 2^{len(channel_mult) - 1}")
        self.data_shape = tuple(data_shape)
        self.noise_dim = channels
        emb_dim = emb_dim or 4 * channels
        self.dtype = dtype
        kw = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        bkw = dict(dropout=dropout, dtype=dtype, rngs=rngs)
        attn = set(attn_resolutions)

        # Mapping network.
        self.num_classes = num_classes
        self.label = (nnx.Embed(num_classes + 1, channels, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
                      if num_classes else None)
        self.map0 = nnx.Linear(channels, emb_dim, kernel_init=_xavier(), **kw)
        self.map1 = nnx.Linear(emb_dim, emb_dim, kernel_init=_xavier(), **kw)

        # Encoder: every output (input conv included) is kept as a skip.
        self.enc_in = nnx.Conv(in_ch, channels, (3, 3), kernel_init=_xavier(), **kw)
        enc, skips, cout = [], [channels], channels
        for level, mult in enumerate(channel_mult):
            res = height >> level
            if level > 0:
                enc.append(_Block(cout, cout, emb_dim, down=True, **bkw))
                skips.append(cout)
            for _ in range(num_res_blocks):
                enc.append(_Block(cout, channels * mult, emb_dim, attention=res in attn, **bkw))
                cout = channels * mult
                skips.append(cout)
        self.enc = nnx.List(enc)

        # Decoder.
        dec = []
        for level in reversed(range(len(channel_mult))):
            res, mult = height >> level, channel_mult[level]
            if level == len(channel_mult) - 1:
                dec.append(_Block(cout, cout, emb_dim, attention=True, **bkw))
                dec.append(_Block(cout, cout, emb_dim, **bkw))
            else:
                dec.append(_Block(cout, cout, emb_dim, up=True, **bkw))
            for idx in range(num_res_blocks + 1):
                cin = cout + skips.pop()
                cout = channels * mult
                dec.append(_Block(cin, cout, emb_dim, concat_skip=True,
                                  attention=(idx == num_res_blocks and res in attn), **bkw))
        assert not skips
        self.dec = nnx.List(dec)
        self.out_norm = _GroupNorm(cout, dtype=dtype, rngs=rngs)
        self.out_conv = nnx.Conv(cout, in_ch, (3, 3), kernel_init=_xavier(1e-5), **kw)

    @property
    def null_label(self) -> int | None:
        """The label meaning "no label" (``num_classes``), None for an unconditional net."""
        return self.num_classes or None

    def __call__(self, x: Array, t: Array, cond: Array | None = None) -> Array:
        if self.time_embedding == "positional":  # EDM's DDPM++: the label as given, sin first
            emb = sinusoidal_embedding(t, self.noise_dim, scale=1.0, endpoint=True, sin_first=True)
        else:
            emb = sinusoidal_embedding(t, self.noise_dim)
        emb = emb.astype(self.dtype)
        if self.label is not None:
            emb = emb + self.label(labels_or_null(cond, self.num_classes, x.shape[0]))
        emb = jax.nn.silu(self.map1(jax.nn.silu(self.map0(emb))))

        h = self.enc_in(x.astype(self.dtype))
        skips = [h]
        for block in self.enc:
            h = block(h, emb)
            skips.append(h)
        for block in self.dec:
            if block.concat_skip:
                h = jnp.concatenate([h, skips.pop()], axis=-1)
            h = block(h, emb)
        y = self.out_conv(jax.nn.silu(self.out_norm(h)))
        return y.astype(x.dtype)
