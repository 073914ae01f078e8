"""DDPM++ U-Net (Song et al. 2021) in the form used by the EDM code (Karras et al. 2022), with
EDM's NCSN++ options (Fourier time embedding, residual encoder, FIR resampling).

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
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from genflow.models.conditioning import labels_or_null
from genflow.models.embedding import sinusoidal_embedding

_SKIP_SCALE = math.sqrt(0.5)
_EPS = 1e-6
TIME_EMBEDDINGS = ("sinusoidal", "positional", "fourier", "adm")
ENCODERS = ("standard", "residual")
VARIANTS = ("ddpmpp", "adm")
_FOURIER_SCALE = 16.0  # EDM's FourierEmbedding(scale=16) for NCSN++


def _xavier(weight: float = 1.0):
    """Xavier-uniform initialiser times ``weight`` (EDM's ``init_weight``)."""
    return nnx.initializers.variance_scaling(weight * weight, "fan_avg", "uniform")


def _fir_kernel(taps: tuple[int, ...], channels: int, dtype) -> Array:
    """The separable 2-D filter outer(taps, taps) / sum(taps)^2 as a depthwise HWIO kernel."""
    f = jnp.asarray(taps, jnp.float32)
    f = jnp.outer(f, f) / jnp.sum(f) ** 2
    return jnp.tile(f[:, :, None, None], (1, 1, 1, channels)).astype(dtype)


def fir_down(x: Array, taps: tuple[int, ...], pad: int) -> Array:
    """2x downsampling by the FIR filter ``taps`` (NHWC), zero padding ``pad`` (EDM's Conv2d down)."""
    c = x.shape[-1]
    return jax.lax.conv_general_dilated(x, _fir_kernel(taps, c, x.dtype), (2, 2), ((pad, pad), (pad, pad)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)


def fir_up(x: Array, taps: tuple[int, ...]) -> Array:
    """2x upsampling by the FIR filter ``taps`` times 4 (NHWC): torch's conv_transpose2d(stride 2,
    padding (k - 1) // 2) as a dilated convolution (the filter is symmetric, so no flip)."""
    c, k = x.shape[-1], len(taps)
    pad = k - 1 - (k - 1) // 2
    return jax.lax.conv_general_dilated(x, 4 * _fir_kernel(taps, c, x.dtype), (1, 1), ((pad, pad), (pad, pad)),
                                        lhs_dilation=(2, 2), dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=c)


def _resample(x: Array, up: bool, down: bool, taps: tuple[int, ...] = (1, 1)) -> Array:
    """2x up- or downsampling by the FIR filter ``taps`` (NHWC). [1, 1] (DDPM++) is nearest
    upsampling and 2x2 average pooling, done as such; [1, 3, 3, 1] is NCSN++'s."""
    if tuple(taps) != (1, 1):
        if up:
            x = fir_up(x, taps)
        if down:
            x = fir_down(x, taps, (len(taps) - 1) // 2)
        return x
    if up:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    if down:
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    return x


@dataclass(frozen=True)
class _Style:
    """What distinguishes EDM's two block families: DDPM++/NCSN++ (``SongUNet``) and ADM
    (``DhariwalUNet``), both EDM's ``UNetBlock`` with other settings."""

    adaptive_scale: bool          # the embedding gives a scale and a shift after norm1 (else it is added before)
    skip_scale: float             # residual and attention sums times this
    eps: float                    # GroupNorm epsilon
    resample_proj: bool           # a 1x1 conv on the resampled skip even when the width is unchanged
    channels_per_head: int | None  # attention heads = width // this (None: one head)
    decoder_attention: str        # "last": the last block of a decoder level attends, "all": every block


_STYLES = {"ddpmpp": _Style(False, _SKIP_SCALE, _EPS, True, None, "last"),
           "adm": _Style(True, 1.0, 1e-5, False, 64, "all")}


class _GroupNorm(nnx.Module):
    """GroupNorm computed in float32 with min(32, C // 4) groups, output in the compute dtype."""

    def __init__(self, num_channels: int, *, dtype, rngs: nnx.Rngs, eps: float = _EPS):
        groups = min(32, max(num_channels // 4, 1))
        self.norm = nnx.GroupNorm(num_channels, num_groups=groups, epsilon=eps, dtype=jnp.float32,
                                  param_dtype=jnp.float32, use_fast_variance=False, rngs=rngs)
        self.dtype = dtype

    def __call__(self, x: Array) -> Array:
        return self.norm(x.astype(jnp.float32)).astype(self.dtype)


class _Block(nnx.Module):
    """Residual block (GroupNorm, SiLU, 3x3 conv, + embedding, ...) with optional resampling and
    self-attention; in the DDPM++ style the residual and attention sums are scaled by sqrt(1/2) and
    attention has one head, in the ADM style see ``_Style``."""

    def __init__(self, cin: int, cout: int, emb_dim: int, *, up: bool = False, down: bool = False,
                 attention: bool = False, concat_skip: bool = False, dropout: float = 0.0,
                 resample_filter: tuple[int, ...] = (1, 1), style: _Style = _STYLES["ddpmpp"], dtype,
                 rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.up, self.down, self.concat_skip = up, down, concat_skip
        self.taps = tuple(resample_filter)
        self.dtype = dtype
        self.adaptive_scale, self.skip_scale = style.adaptive_scale, style.skip_scale
        self.heads = (cout // style.channels_per_head if style.channels_per_head else 1) if attention else 0
        eps = style.eps
        self.norm0 = _GroupNorm(cin, dtype=dtype, rngs=rngs, eps=eps)
        self.conv0 = nnx.Conv(cin, cout, (3, 3), kernel_init=_xavier(), **kw)
        self.affine = nnx.Linear(emb_dim, cout * (2 if style.adaptive_scale else 1), kernel_init=_xavier(), **kw)
        self.norm1 = _GroupNorm(cout, dtype=dtype, rngs=rngs, eps=eps)
        self.dropout = nnx.Dropout(dropout, rngs=rngs if dropout > 0 else None)
        self.conv1 = nnx.Conv(cout, cout, (3, 3), kernel_init=_xavier(1e-5), **kw)
        project = cin != cout or ((up or down) and style.resample_proj)
        self.skip = nnx.Conv(cin, cout, (1, 1), kernel_init=_xavier(), **kw) if project else None
        self.resample_skip = up or down
        if self.heads:
            self.norm2 = _GroupNorm(cout, dtype=dtype, rngs=rngs, eps=eps)
            self.qkv = nnx.Linear(cout, 3 * cout, kernel_init=_xavier(math.sqrt(0.2)), **kw)
            self.proj = nnx.Linear(cout, cout, kernel_init=_xavier(1e-5), **kw)
        else:
            self.norm2 = self.qkv = self.proj = None

    def __call__(self, x: Array, emb: Array) -> Array:
        h = _resample(jax.nn.silu(self.norm0(x)), self.up, self.down, self.taps)
        h = self.conv0(h)
        params = self.affine(emb)[:, None, None, :]
        if self.adaptive_scale:  # ADM: shift + norm1(h) * (scale + 1)
            scale, shift = jnp.split(params, 2, axis=-1)
            h = jax.nn.silu(shift + self.norm1(h) * (scale + 1))
        else:
            h = jax.nn.silu(self.norm1(h + params))
        h = self.conv1(self.dropout(h))
        s = _resample(x, self.up, self.down, self.taps) if self.resample_skip else x
        s = s if self.skip is None else self.skip(s)
        x = (h + s) * self.skip_scale
        if self.heads:
            b, hh, ww, c = x.shape
            n, d = self.heads, c // self.heads
            q, k, v = (a.reshape(b, hh * ww, n, d) for a in
                       jnp.split(self.qkv(self.norm2(x)).reshape(b, hh * ww, 3 * c), 3, axis=-1))
            logits = jnp.einsum("bqnc,bknc->bnqk", q, k, preferred_element_type=jnp.float32)
            w = jax.nn.softmax(logits / math.sqrt(d), axis=-1).astype(v.dtype)
            a = jnp.einsum("bnqk,bknc->bqnc", w, v).reshape(b, hh, ww, c)
            x = (self.proj(a) + x) * self.skip_scale
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

    NCSN++ (EDM's ``SongUNet`` with its ``--arch=ncsnpp`` settings) is the same network with
    ``time_embedding="fourier"`` (sin/cos of 2 pi f t for ``channels * noise_mult / 2`` fixed random
    frequencies f ~ N(0, 16^2), the ``fourier`` Param, never trained), ``noise_mult=2`` (a time
    embedding twice as wide, as is the label table), ``resample_filter=(1, 3, 3, 1)`` (FIR up- and
    downsampling in the resampling blocks) and ``encoder="residual"`` (after each downsampling
    block, the previous level's features, or the image, through a 3x3 conv and FIR downsampling,
    added and scaled by sqrt(1/2)).

    ADM (Dhariwal & Nichol 2021, EDM's ``DhariwalUNet``) is ``variant="adm"`` with
    ``time_embedding="adm"`` (cos/sin of the noise label, exponents i / half): blocks whose
    embedding gives a scale and shift after norm1, unscaled residual and attention sums, GroupNorm
    eps 1e-5, resampled skips without a 1x1 conv at unchanged width, attention with width // 64
    heads (none below 64 channels) in every decoder block of an attention resolution, and the class
    embedding (width emb_dim) added after the mapping MLP. Its first level must have mult 1 (the
    input conv has ``channels`` outputs), as in EDM's ImageNet-64 model.
    """

    def __init__(self, data_shape: tuple[int, int, int], *, channels: int = 128,
                 channel_mult: tuple[int, ...] = (2, 2, 2), num_res_blocks: int = 4,
                 attn_resolutions: tuple[int, ...] = (16,), dropout: float = 0.0,
                 num_classes: int | None = None, emb_dim: int | None = None,
                 time_embedding: str = "sinusoidal", noise_mult: int = 1,
                 resample_filter: tuple[int, ...] = (1, 1), encoder: str = "standard",
                 variant: str = "ddpmpp", dtype=jnp.float32, rngs: nnx.Rngs):
        height, width, in_ch = data_shape
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        style = _STYLES[variant]
        self.label_after_mlp = variant == "adm"
        if time_embedding not in TIME_EMBEDDINGS:
            raise ValueError(f"unknown time_embedding {time_embedding!r}; choose one of {', '.join(TIME_EMBEDDINGS)}")
        if encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
        self.time_embedding, self.encoder = time_embedding, encoder
        if height != width:
            raise ValueError(f"UNet expects square images, got data_shape={data_shape}")
        if height % (2 ** (len(channel_mult) - 1)):
            raise ValueError(f"resolution {height} not divisible by 2^{len(channel_mult) - 1}")
        self.data_shape = tuple(data_shape)
        self.noise_dim = noise_dim = channels * noise_mult
        emb_dim = emb_dim or 4 * channels
        self.dtype = dtype
        kw = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        bkw = dict(dropout=dropout, resample_filter=tuple(resample_filter), style=style, dtype=dtype, rngs=rngs)
        attn = set(attn_resolutions)

        # Mapping network. NCSN++'s Fourier frequencies are a fixed random draw, kept as a Param so
        # that checkpoints carry them, never trained (stop_gradient in __call__).
        self.fourier = (nnx.Param(_FOURIER_SCALE * jax.random.normal(rngs.params(), (noise_dim // 2,), jnp.float32))
                        if time_embedding == "fourier" else None)
        self.num_classes = num_classes
        # ADM adds its label embedding after the MLP, at the embedding's full width.
        label_dim = emb_dim if self.label_after_mlp else noise_dim
        self.label = (nnx.Embed(num_classes + 1, label_dim, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
                      if num_classes else None)
        self.map0 = nnx.Linear(noise_dim, emb_dim, kernel_init=_xavier(), **kw)
        self.map1 = nnx.Linear(emb_dim, emb_dim, kernel_init=_xavier(), **kw)

        # Encoder: every output (input conv included) is kept as a skip.
        # NCSN++'s residual encoder adds, after each downsampling block, a 3x3 conv + FIR
        # downsampling of the previous level's (or the image's) features, scaled by sqrt(1/2).
        self.enc_in = nnx.Conv(in_ch, channels, (3, 3), kernel_init=_xavier(), **kw)
        enc, skips, cout = [], [channels], channels
        aux, aux_after, caux = [], [], in_ch
        for level, mult in enumerate(channel_mult):
            res = height >> level
            if level > 0:
                enc.append(_Block(cout, cout, emb_dim, down=True, **bkw))
                skips.append(cout)
                if encoder == "residual":
                    pad = 1 + (len(resample_filter) - 1) // 2   # EDM's fused conv-then-downsample
                    aux.append(nnx.Conv(caux, cout, (3, 3), padding=pad, kernel_init=_xavier(), **kw))
                    aux_after.append(len(enc) - 1)
                    caux = cout
            for _ in range(num_res_blocks):
                enc.append(_Block(cout, channels * mult, emb_dim, attention=res in attn, **bkw))
                cout = channels * mult
                skips.append(cout)
        self.enc = nnx.List(enc)
        self.aux = nnx.List(aux)
        self.aux_after = tuple(aux_after)
        self.taps = tuple(resample_filter)

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
                last = idx == num_res_blocks or style.decoder_attention == "all"
                dec.append(_Block(cin, cout, emb_dim, concat_skip=True, attention=last and res in attn, **bkw))
        assert not skips
        self.dec = nnx.List(dec)
        self.out_norm = _GroupNorm(cout, dtype=dtype, rngs=rngs, eps=style.eps)
        self.out_conv = nnx.Conv(cout, in_ch, (3, 3), kernel_init=_xavier(1e-5), **kw)

    @property
    def null_label(self) -> int | None:
        """The label meaning "no label" (``num_classes``), None for an unconditional net."""
        return self.num_classes or None

    def __call__(self, x: Array, t: Array, cond: Array | None = None) -> Array:
        if self.time_embedding == "positional":  # EDM's DDPM++: the label as given, sin first
            emb = sinusoidal_embedding(t, self.noise_dim, scale=1.0, endpoint=True, sin_first=True)
        elif self.time_embedding == "fourier":  # EDM's NCSN++: random frequencies, sin first
            args = t.astype(jnp.float32)[:, None] * (2 * math.pi * jax.lax.stop_gradient(self.fourier[...]))[None, :]
            emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
        elif self.time_embedding == "adm":  # EDM's ADM: the label as given, cos first, no endpoint
            emb = sinusoidal_embedding(t, self.noise_dim, scale=1.0)
        else:
            emb = sinusoidal_embedding(t, self.noise_dim)
        emb = emb.astype(self.dtype)
        label = None if self.label is None else self.label(labels_or_null(cond, self.num_classes, x.shape[0]))
        if label is not None and not self.label_after_mlp:
            emb = emb + label
        emb = self.map1(jax.nn.silu(self.map0(emb)))
        if label is not None and self.label_after_mlp:
            emb = emb + label
        emb = jax.nn.silu(emb)

        image = x.astype(self.dtype)
        h = self.enc_in(image)
        skips, aux = [h], image
        for i, block in enumerate(self.enc):
            h = block(h, emb)
            if i in self.aux_after:
                conv = self.aux[self.aux_after.index(i)]
                h = aux = (h + fir_down(conv(aux), self.taps, 0)) * _SKIP_SCALE
            skips.append(h)
        for block in self.dec:
            if block.concat_skip:
                h = jnp.concatenate([h, skips.pop()], axis=-1)
            h = block(h, emb)
        y = self.out_conv(jax.nn.silu(self.out_norm(h)))
        return y.astype(x.dtype)
