"""EDM's published networks (NVlabs/edm) as genflow U-Nets: architecture and weights.

``edm_network(snapshot)`` takes the dict ``read_edm_pickle`` returns and gives an ``EDMNetwork``:
the keyword arguments of genflow's ``UNet`` that build the same network, EDM's ``sigma_data``,
and every weight under its genflow parameter path, converted from torch's layout:

    EDM (torch, NCHW)                           genflow UNet (NHWC)
    Conv2d weight (out, in, kh, kw)             Conv kernel (kh, kw, in, out)
    Linear weight (out, in)                     Linear kernel (in, out)
    GroupNorm weight / bias                     GroupNorm scale / bias
    qkv 1x1 conv, channels interleaved          qkv Linear, [q | k | v] blocks: EDM reshapes its
      (c, j) at 3 c + j, j = q, k, v              output to (C, 3, HW), genflow splits into thirds
    map_label Linear(label_dim) of sqrt(L) e_c  label Embed (L + 1 rows): row c = sqrt(L) W[:, c] + b,
      plus bias (EDM's "no label" is 0)           row L (genflow's null label) = b

so the UNet with ``genflow.models.edm(sigma_data)`` is EDM's ``EDMPrecond`` exactly: genflow calls
the net on c_in x and c_noise = ln(sigma) / 4 and forms D = c_skip x + c_out F, as EDM does.
``map_augment`` (the augmentation-label input of the CIFAR-10 models, ``augment_dim=9``) has no
bias and EDM samples with augment labels 0, so it contributes exactly 0 and is left out.

Supported: ``EDMPrecond`` with a ``SongUNet`` in EDM's DDPM++ settings (positional embedding,
standard encoder and decoder, [1, 1] resampling: the ``*-vp.pkl`` models, ``--arch=ddpmpp``) or its
NCSN++ settings (Fourier embedding of twice the width, whose frequencies are a fixed buffer mapped
to the UNet's ``fourier`` Param; residual encoder; [1, 3, 3, 1] FIR resampling: the ``*-ve.pkl``
models, ``--arch=ncsnpp``), and ``EDMPrecond`` with a ``DhariwalUNet`` (ADM:
``edm-imagenet-64x64-cond-adm.pkl``, ``--arch=adm``) as the UNet's ``variant="adm"``, whose
multi-head qkv interleaves (head, channel, q/k/v) and whose label Linear has no bias (genflow's
null label is the zero row). Other architectures are refused with a sentence. The imported net
computes in float32 (EDM's ImageNet model ran its network in float16 on GPUs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genflow.pretrained.edm_pickle import EDMPickleError, PersistentObject, read_edm_pickle

# Constructor defaults at NVlabs/edm 008a4e5 (init_kwargs record only the arguments passed).
_PRECOND_ARGS = ("img_resolution", "img_channels", "label_dim", "use_fp16", "sigma_min", "sigma_max",
                 "sigma_data", "model_type")
_PRECOND_DEFAULTS = dict(label_dim=0, use_fp16=False, sigma_min=0.0, sigma_max=float("inf"), sigma_data=0.5,
                         model_type="DhariwalUNet")
_SONG_ARGS = ("img_resolution", "in_channels", "out_channels", "label_dim", "augment_dim", "model_channels",
              "channel_mult", "channel_mult_emb", "num_blocks", "attn_resolutions", "dropout", "label_dropout",
              "embedding_type", "channel_mult_noise", "encoder_type", "decoder_type", "resample_filter")
_SONG_DEFAULTS = dict(label_dim=0, augment_dim=0, model_channels=128, channel_mult=[1, 2, 2, 2], channel_mult_emb=4,
                      num_blocks=4, attn_resolutions=[16], dropout=0.10, label_dropout=0, embedding_type="positional",
                      channel_mult_noise=1, encoder_type="standard", decoder_type="standard", resample_filter=[1, 1])
_ADM_ARGS = ("img_resolution", "in_channels", "out_channels", "label_dim", "augment_dim", "model_channels",
             "channel_mult", "channel_mult_emb", "num_blocks", "attn_resolutions", "dropout", "label_dropout")
_ADM_DEFAULTS = dict(label_dim=0, augment_dim=0, model_channels=192, channel_mult=[1, 2, 3, 4], channel_mult_emb=4,
                     num_blocks=3, attn_resolutions=[32, 16, 8], dropout=0.10, label_dropout=0)
_SONG_ARCHS = {  # EDM train.py's --arch keyword sets
    "ddpmpp": dict(embedding_type="positional", encoder_type="standard", decoder_type="standard",
                   channel_mult_noise=1, resample_filter=[1, 1]),
    "ncsnpp": dict(embedding_type="fourier", encoder_type="residual", decoder_type="standard",
                   channel_mult_noise=2, resample_filter=[1, 3, 3, 1]),
}
ARCH_NAMES = {"ddpmpp": "DDPM++", "ncsnpp": "NCSN++", "adm": "ADM"}
_PRECONDS = {"EDMPrecond": "EDM preconditioning", "VPPrecond": "VP preconditioning (EDM's baseline models)",
             "VEPrecond": "VE preconditioning (EDM's baseline models)", "iDDPMPrecond": "iDDPM preconditioning"}

Path = tuple[Any, ...]


@dataclass(frozen=True)
class EDMNetwork:
    """An EDM network mapped onto genflow's ``UNet``.

    ``data_shape`` (H, W, C); ``unet_kwargs``: ``UNet(data_shape, **unet_kwargs, rngs=...)`` builds it;
    ``params``: genflow parameter path (e.g. ``("enc", 0, "conv0", "kernel")``) -> float32 array;
    ``sigma_data``: EDM's, for ``genflow.models.edm``; ``num_classes``: EDM's label_dim (None when
    unconditional); ``arch``: "ddpmpp"; ``loss``: EDMLoss's (P_mean, P_std) where the file holds it;
    ``left_out``: EDM weights not mapped, each with why."""

    arch: str
    data_shape: tuple[int, int, int]
    unet_kwargs: dict[str, Any]
    params: dict[Path, np.ndarray]
    sigma_data: float
    num_classes: int | None
    loss: tuple[float, float] | None = None
    left_out: dict[str, str] = field(default_factory=dict)


def _kwargs(obj: PersistentObject, names: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments of a persistent object: positional ones by name, then keywords, then defaults."""
    out = dict(defaults)
    out.update(zip(names, obj.init_args))
    out.update(obj.init_kwargs)
    return out


def _child(obj, name: str, where: str):
    mods = obj.modules
    if name not in mods or mods[name] is None:
        raise EDMPickleError(f"the EDM network has no {where}{name}; the file is not a network EDM's code writes.")
    return mods[name]


def _array(module: PersistentObject, name: str, where: str, optional: bool = False) -> np.ndarray | None:
    value = module.params.get(name)
    if value is None:
        if optional:
            return None
        raise EDMPickleError(f"the EDM network's {where} has no {name}; the file is not a network EDM's code writes.")
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        raise EDMPickleError(f"the EDM network's {where}.{name} is not a floating-point tensor.")
    return value.astype(np.float32)


def _conv(module: PersistentObject, where: str) -> dict[str, np.ndarray]:
    out = {"kernel": _array(module, "weight", where).transpose(2, 3, 1, 0)}
    bias = _array(module, "bias", where, optional=True)
    if bias is not None:
        out["bias"] = bias
    return out


def _linear(module: PersistentObject, where: str, *, conv1x1: bool = False) -> dict[str, np.ndarray]:
    w = _array(module, "weight", where)
    w = w[:, :, 0, 0] if conv1x1 else w
    out = {"kernel": w.T}
    bias = _array(module, "bias", where, optional=True)
    if bias is not None:
        out["bias"] = bias
    return out


def _norm(module: PersistentObject, where: str, channels: int, eps_want: float = 1e-6) -> dict[str, np.ndarray]:
    groups, eps = module.state.get("num_groups"), module.state.get("eps")
    if groups != min(32, channels // 4) or eps is None or not math.isclose(eps, eps_want, rel_tol=1e-9):
        raise EDMPickleError(f"the EDM network's {where} has {groups} groups and eps {eps}; EDM's networks use "
                             f"min(32, C // 4) = {min(32, channels // 4)} groups and eps {eps_want:g} here, which "
                             "genflow's UNet follows, so this network is not one genflow maps.")
    return {"norm": {"scale": _array(module, "weight", where), "bias": _array(module, "bias", where)}}


# What each EDM network passes to (or leaves at the default of) every UNetBlock, which genflow's
# _Block hard-codes per variant: (adaptive_scale, skip_scale, eps, resample_proj, channels_per_head).
_BLOCK_SETTINGS = {"SongUNet": dict(adaptive_scale=False, skip_scale=math.sqrt(0.5), eps=1e-6, resample_proj=True),
                   "DhariwalUNet": dict(adaptive_scale=True, skip_scale=1.0, eps=1e-5, resample_proj=False)}
_BLOCK_DEFAULTS = dict(adaptive_scale=True, skip_scale=1.0, eps=1e-5, resample_proj=False, resample_filter=[1, 1],
                       channels_per_head=64, num_heads=None)


def _heads(kw: dict[str, Any], attention: bool) -> int:
    """EDM's UNetBlock: num_heads if given, else out_channels // channels_per_head; 0 without attention."""
    if not attention:
        return 0
    return int(kw["num_heads"]) if kw.get("num_heads") is not None else int(kw["out_channels"]) // int(
        kw.get("channels_per_head", 64))


def _block(block: PersistentObject, where: str, attention: bool, taps: list[int],
           family: str = "SongUNet") -> dict[str, Any]:
    """One UNetBlock, after checking the options genflow's _Block hard-codes for ``family``."""
    kw = {**_BLOCK_DEFAULTS, **block.init_kwargs}
    want = {**_BLOCK_SETTINGS[family], "resample_filter": taps}
    for name, value in want.items():
        got = list(kw[name]) if name == "resample_filter" else kw[name]
        same = math.isclose(got, value, rel_tol=1e-9) if isinstance(value, float) else got == value
        if not same:
            raise EDMPickleError(f"the EDM network's {where} has {name}={got!r} where EDM's {family} has {value!r}; "
                                 "genflow's UNet follows EDM's own DDPM++, NCSN++ and ADM settings only.")
    cin, cout = int(kw["in_channels"]), int(kw["out_channels"])
    heads = _heads(kw, attention)
    want_heads = (1 if family == "SongUNet" else cout // 64) if attention else 0
    if heads != want_heads:
        raise EDMPickleError(f"the EDM network's {where} has {heads} attention heads where EDM's {family} has "
                             f"{want_heads}; genflow's UNet follows EDM's own settings only.")
    attention = heads > 0
    eps = _BLOCK_SETTINGS[family]["eps"]
    out: dict[str, Any] = {
        "norm0": _norm(_child(block, "norm0", where + "."), where + ".norm0", cin, eps),
        "conv0": _conv(_child(block, "conv0", where + "."), where + ".conv0"),
        "affine": _linear(_child(block, "affine", where + "."), where + ".affine"),
        "norm1": _norm(_child(block, "norm1", where + "."), where + ".norm1", cout, eps),
        "conv1": _conv(_child(block, "conv1", where + "."), where + ".conv1"),
    }
    skip = block.modules.get("skip")
    if skip is not None and skip.params.get("weight") is not None:  # ADM: a kernel-0 skip only resamples
        out["skip"] = _conv(skip, where + ".skip")
    if attention != (block.modules.get("qkv") is not None):
        raise EDMPickleError(f"the EDM network's {where} {'lacks' if attention else 'has'} self-attention where "
                             f"EDM's {family} with these attn_resolutions would not; the file's network is not one "
                             "genflow maps.")
    if attention:
        out["norm2"] = _norm(_child(block, "norm2", where + "."), where + ".norm2", cout, eps)
        qkv = _linear(_child(block, "qkv", where + "."), where + ".qkv", conv1x1=True)
        # EDM: output channel (h, c, j) at h 3d + 3c + j for head h, head channel c < d, j in q, k, v;
        # genflow: [q | k | v], each of heads x d.
        d = cout // heads
        qkv["kernel"] = qkv["kernel"].reshape(cout, heads, d, 3).transpose(0, 3, 1, 2).reshape(cout, 3 * cout)
        qkv["bias"] = qkv["bias"].reshape(heads, d, 3).transpose(2, 0, 1).reshape(3 * cout)
        out["qkv"] = qkv
        out["proj"] = _linear(_child(block, "proj", where + "."), where + ".proj", conv1x1=True)
    return out


def _song_unet_names(res: int, mult: list[int], num_blocks: int, attn: set[int], residual: bool):
    """EDM's SongUNet module names in order, as (name, attention), standard decoder; the encoder's
    ``*_aux_residual`` convs (NCSN++) are named in the list but are not blocks (attention None)."""
    enc, dec = [], []
    for level in range(len(mult)):
        r = res >> level
        if level > 0:
            enc.append((f"{r}x{r}_down", False))
            if residual:
                enc.append((f"{r}x{r}_aux_residual", None))
        enc += [(f"{r}x{r}_block{i}", r in attn) for i in range(num_blocks)]
    for level in reversed(range(len(mult))):
        r = res >> level
        if level == len(mult) - 1:
            dec += [(f"{r}x{r}_in0", True), (f"{r}x{r}_in1", False)]
        else:
            dec.append((f"{r}x{r}_up", False))
        dec += [(f"{r}x{r}_block{i}", i == num_blocks and r in attn) for i in range(num_blocks + 1)]
    return enc, dec


def _song_unet(model: PersistentObject, kw: dict[str, Any], arch: str) -> tuple[dict[str, Any], dict[Path, np.ndarray],
                                                                               dict]:
    res, mult, nb = int(kw["img_resolution"]), [int(m) for m in kw["channel_mult"]], int(kw["num_blocks"])
    attn = {int(a) for a in kw["attn_resolutions"]}
    channels, label_dim = int(kw["model_channels"]), int(kw["label_dim"])
    taps, residual = [int(v) for v in kw["resample_filter"]], kw["encoder_type"] == "residual"
    tree: dict[str, Any] = {
        "map0": _linear(_child(model, "map_layer0", ""), "map_layer0"),
        "map1": _linear(_child(model, "map_layer1", ""), "map_layer1"),
    }
    if label_dim:
        lin = _linear(_child(model, "map_label", ""), "map_label")   # kernel (L, C), bias (C,)
        table = math.sqrt(label_dim) * lin["kernel"] + lin["bias"][None, :]
        tree["label"] = {"embedding": np.concatenate([table, lin["bias"][None, :]], axis=0).astype(np.float32)}
    enc_mod, dec_mod = _child(model, "enc", ""), _child(model, "dec", "")
    enc_names, dec_names = _song_unet_names(res, mult, nb, attn, residual)
    want_enc = [f"{res}x{res}_conv"] + [n for n, _ in enc_names]
    want_dec = [n for n, _ in dec_names] + [f"{res}x{res}_aux_norm", f"{res}x{res}_aux_conv"]
    for part, got, want in [("encoder", list(enc_mod.modules), want_enc), ("decoder", list(dec_mod.modules), want_dec)]:
        if got != want:
            raise EDMPickleError(f"the EDM network's {part} holds {got[:4]}... where DDPM++ with these settings holds "
                                 f"{want[:4]}...; the file's network is not the SongUNet genflow maps.")
    tree["enc_in"] = _conv(enc_mod.modules[want_enc[0]], f"enc.{want_enc[0]}")
    blocks = [(n, a) for n, a in enc_names if a is not None]
    tree["enc"] = {i: _block(enc_mod.modules[n], f"enc.{n}", a, taps) for i, (n, a) in enumerate(blocks)}
    aux = [n for n, a in enc_names if a is None]
    if aux:
        tree["aux"] = {i: _conv(enc_mod.modules[n], f"enc.{n}") for i, n in enumerate(aux)}
    tree["dec"] = {i: _block(dec_mod.modules[n], f"dec.{n}", a, taps) for i, (n, a) in enumerate(dec_names)}
    if kw["embedding_type"] == "fourier":
        freqs = _child(model, "map_noise", "").buffers.get("freqs")
        if freqs is None or freqs.shape != (channels * int(kw["channel_mult_noise"]) // 2,):
            raise EDMPickleError("the EDM network's Fourier embedding has no frequencies of the expected size; the "
                                 "file is not a network EDM's code writes.")
        tree["fourier"] = freqs.astype(np.float32)
    last = int(dec_mod.modules[dec_names[-1][0]].init_kwargs["out_channels"])
    tree["out_norm"] = _norm(dec_mod.modules[want_dec[-2]], f"dec.{want_dec[-2]}", last)
    tree["out_conv"] = _conv(dec_mod.modules[want_dec[-1]], f"dec.{want_dec[-1]}")
    unet_kwargs = dict(channels=channels, channel_mult=tuple(mult), num_res_blocks=nb,
                       attn_resolutions=tuple(sorted(attn, reverse=True)), dropout=float(kw["dropout"]),
                       num_classes=label_dim or None, emb_dim=channels * int(kw["channel_mult_emb"]),
                       time_embedding="positional" if arch == "ddpmpp" else "fourier",
                       noise_mult=int(kw["channel_mult_noise"]), resample_filter=tuple(taps),
                       encoder="residual" if residual else "standard", variant="ddpmpp")
    left_out = {}
    if model.modules.get("map_augment") is not None:
        left_out["map_augment"] = ("the augmentation-label input (no bias; EDM samples with augment labels 0, so it "
                                   "adds exactly 0)")
    return unet_kwargs, _flatten(tree), left_out


def _flatten(tree: dict, prefix: Path = ()) -> dict[Path, np.ndarray]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _dhariwal_unet(model: PersistentObject, kw: dict[str, Any]) -> tuple[dict[str, Any], dict[Path, np.ndarray],
                                                                         dict]:
    """EDM's DhariwalUNet (ADM) as genflow's UNet with variant="adm"."""
    res, mult, nb = int(kw["img_resolution"]), [int(m) for m in kw["channel_mult"]], int(kw["num_blocks"])
    attn = {int(a) for a in kw["attn_resolutions"]}
    channels, label_dim = int(kw["model_channels"]), int(kw["label_dim"])
    if mult[0] != 1:
        raise EDMPickleError(f"the file's ADM network has channel_mult {mult}, whose first level is not 1; genflow's "
                             "UNet starts at model_channels (EDM's ImageNet-64 ADM has [1, 2, 3, 4]).")
    tree: dict[str, Any] = {
        "map0": _linear(_child(model, "map_layer0", ""), "map_layer0"),
        "map1": _linear(_child(model, "map_layer1", ""), "map_layer1"),
        "out_conv": _conv(_child(model, "out_conv", ""), "out_conv"),
    }
    if label_dim:  # no bias: "no label" (all zeros) is the zero row
        kernel = _linear(_child(model, "map_label", ""), "map_label")["kernel"]   # (L, E)
        tree["label"] = {"embedding": np.concatenate([kernel, np.zeros_like(kernel[:1])], axis=0)}
    enc_names, dec_names = [], []
    for level in range(len(mult)):
        r = res >> level
        if level > 0:
            enc_names.append((f"{r}x{r}_down", False))
        enc_names += [(f"{r}x{r}_block{i}", r in attn) for i in range(nb)]
    for level in reversed(range(len(mult))):
        r = res >> level
        dec_names += ([(f"{r}x{r}_in0", True), (f"{r}x{r}_in1", False)] if level == len(mult) - 1
                      else [(f"{r}x{r}_up", False)])
        dec_names += [(f"{r}x{r}_block{i}", r in attn) for i in range(nb + 1)]
    enc_mod, dec_mod = _child(model, "enc", ""), _child(model, "dec", "")
    want_enc = [f"{res}x{res}_conv"] + [n for n, _ in enc_names]
    for part, got, want in [("encoder", list(enc_mod.modules), want_enc),
                            ("decoder", list(dec_mod.modules), [n for n, _ in dec_names])]:
        if got != want:
            raise EDMPickleError(f"the EDM network's {part} holds {got[:4]}... where ADM with these settings holds "
                                 f"{want[:4]}...; the file's network is not the DhariwalUNet genflow maps.")
    tree["enc_in"] = _conv(enc_mod.modules[want_enc[0]], f"enc.{want_enc[0]}")
    tree["enc"] = {i: _block(enc_mod.modules[n], f"enc.{n}", a, [1, 1], "DhariwalUNet")
                   for i, (n, a) in enumerate(enc_names)}
    tree["dec"] = {i: _block(dec_mod.modules[n], f"dec.{n}", a, [1, 1], "DhariwalUNet")
                   for i, (n, a) in enumerate(dec_names)}
    last = int(dec_mod.modules[dec_names[-1][0]].init_kwargs["out_channels"])
    tree["out_norm"] = _norm(_child(model, "out_norm", ""), "out_norm", last, 1e-5)
    unet_kwargs = dict(channels=channels, channel_mult=tuple(mult), num_res_blocks=nb,
                       attn_resolutions=tuple(sorted(attn, reverse=True)), dropout=float(kw["dropout"]),
                       num_classes=label_dim or None, emb_dim=channels * int(kw["channel_mult_emb"]),
                       time_embedding="adm", noise_mult=1, resample_filter=(1, 1), encoder="standard",
                       variant="adm")
    left_out = {}
    if model.modules.get("map_augment") is not None:
        left_out["map_augment"] = ("the augmentation-label input (no bias; EDM samples with augment labels 0, so it "
                                   "adds exactly 0)")
    return unet_kwargs, _flatten(tree), left_out


def _architecture(model: PersistentObject, kw: dict[str, Any]) -> str:
    if model.class_name == "DhariwalUNet":
        return "adm"
    if model.class_name != "SongUNet":
        raise EDMPickleError(f"the file's network is a {model.class_name}, not one of EDM's U-Nets; genflow imports "
                             "EDM's SongUNet (DDPM++, NCSN++) and DhariwalUNet (ADM) networks.")
    for arch, settings in _SONG_ARCHS.items():
        if all(kw.get(k) == v for k, v in settings.items()):
            return arch
    differ = {k: kw.get(k) for k, v in _SONG_ARCHS["ddpmpp"].items() if kw.get(k) != v}
    raise EDMPickleError(f"the file's network is a SongUNet with {differ}, neither EDM's DDPM++ nor its NCSN++ "
                         "settings, which genflow does not import; DDPM++ (the *-vp.pkl models) and NCSN++ (the "
                         "*-ve.pkl models) are supported.")


def edm_network(snapshot: dict[str, Any]) -> EDMNetwork:
    """The genflow form of an EDM snapshot's ``ema`` network (see the module docstring)."""
    try:
        return _edm_network(snapshot)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        if isinstance(e, EDMPickleError):
            raise
        raise EDMPickleError(f"the file's EDM network has a missing or malformed setting ({type(e).__name__}: "
                             f"{str(e)[:80]}); it is not a network EDM's code writes.") from None


def _edm_network(snapshot: dict[str, Any]) -> EDMNetwork:
    ema = snapshot["ema"]
    if ema.class_name != "EDMPrecond":
        what = _PRECONDS.get(ema.class_name, f"a {ema.class_name}")
        raise EDMPickleError(f"the file's network uses {what}; genflow imports networks with EDM preconditioning "
                             "(EDMPrecond: the edm-*.pkl models and --precond=edm snapshots).")
    pk = _kwargs(ema, _PRECOND_ARGS, _PRECOND_DEFAULTS)
    model = _child(ema, "model", "")
    if not isinstance(model, PersistentObject):
        raise EDMPickleError("the file's EDMPrecond holds no EDM network as its model; it is not an EDM snapshot.")
    kw = (_kwargs(model, _ADM_ARGS, _ADM_DEFAULTS) if model.class_name == "DhariwalUNet"
          else _kwargs(model, _SONG_ARGS, _SONG_DEFAULTS))
    arch = _architecture(model, kw)
    if kw["in_channels"] != kw["out_channels"] or int(kw["img_resolution"]) != int(pk["img_resolution"]):
        raise EDMPickleError(f"the file's network maps {kw['in_channels']} to {kw['out_channels']} channels at "
                             f"resolution {kw['img_resolution']}; an image denoiser maps its channels to themselves.")
    unet_kwargs, params, left_out = _dhariwal_unet(model, kw) if arch == "adm" else _song_unet(model, kw, arch)
    loss_fn = snapshot.get("loss_fn")
    loss = None
    if isinstance(loss_fn, PersistentObject) and loss_fn.class_name == "EDMLoss":
        loss = (float(loss_fn.state.get("P_mean", -1.2)), float(loss_fn.state.get("P_std", 1.2)))
    shape = (int(kw["img_resolution"]), int(kw["img_resolution"]), int(kw["in_channels"]))
    return EDMNetwork(arch, shape, unet_kwargs, params, float(pk["sigma_data"]), unet_kwargs["num_classes"], loss,
                      left_out)


def load_edm_network(path: str) -> EDMNetwork:
    """``edm_network(read_edm_pickle(path))``: an EDM snapshot file as a genflow U-Net."""
    return edm_network(read_edm_pickle(path))


def assign_params(params, network: EDMNetwork):
    """``params`` (the ``nnx.State`` of the UNet ``network.unet_kwargs`` build) with every leaf
    replaced by the imported weight at its path; each path must be covered, each shape equal."""
    from flax import nnx

    flat = dict(nnx.to_flat_state(params))
    missing = [p for p in flat if p not in network.params]
    extra = [p for p in network.params if p not in flat]
    if missing or extra:
        raise EDMPickleError(f"the imported weights do not cover genflow's UNet (missing {missing[:3]}, extra "
                             f"{extra[:3]}); this is a bug in the EDM mapping, please report it with the file's name.")
    for p, var in flat.items():
        value = network.params[p]
        if tuple(value.shape) != tuple(var.get_value().shape):
            raise EDMPickleError(f"the EDM weight for {'.'.join(map(str, p))} has shape {value.shape}, genflow's UNet "
                                 f"{var.get_value().shape}; this is a bug in the EDM mapping, please report it.")
        var.set_value(np.asarray(value, np.float32))
    return nnx.from_flat_state(flat)
