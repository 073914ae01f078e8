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
models, ``--arch=ncsnpp``). Other architectures are refused with a sentence.
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
_SONG_ARCHS = {  # EDM train.py's --arch keyword sets
    "ddpmpp": dict(embedding_type="positional", encoder_type="standard", decoder_type="standard",
                   channel_mult_noise=1, resample_filter=[1, 1]),
    "ncsnpp": dict(embedding_type="fourier", encoder_type="residual", decoder_type="standard",
                   channel_mult_noise=2, resample_filter=[1, 3, 3, 1]),
}
ARCH_NAMES = {"ddpmpp": "DDPM++", "ncsnpp": "NCSN++"}
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


def _norm(module: PersistentObject, where: str, channels: int) -> dict[str, np.ndarray]:
    groups, eps = module.state.get("num_groups"), module.state.get("eps")
    if groups != min(32, channels // 4) or eps is None or not math.isclose(eps, 1e-6, rel_tol=1e-9):
        raise EDMPickleError(f"the EDM network's {where} has {groups} groups and eps {eps}; DDPM++ uses "
                             f"min(32, C // 4) = {min(32, channels // 4)} groups and eps 1e-6, which genflow's UNet "
                             "follows, so this network is not DDPM++.")
    return {"norm": {"scale": _array(module, "weight", where), "bias": _array(module, "bias", where)}}


def _block(block: PersistentObject, where: str, attention: bool, taps: list[int]) -> dict[str, Any]:
    """One UNetBlock of a SongUNet, after checking the options genflow's _Block hard-codes."""
    kw = block.init_kwargs
    checks = [("adaptive_scale", kw.get("adaptive_scale", True), False),
              ("skip_scale", kw.get("skip_scale", 1.0), math.sqrt(0.5)), ("eps", kw.get("eps", 1e-5), 1e-6),
              ("resample_filter", list(kw.get("resample_filter", [1, 1])), taps),
              ("resample_proj", kw.get("resample_proj", False), True)]
    if attention:
        checks.append(("num_heads", kw.get("num_heads"), 1))
    for name, got, want in checks:
        same = math.isclose(got, want, rel_tol=1e-9) if isinstance(want, float) else got == want
        if not same:
            raise EDMPickleError(f"the EDM network's {where} has {name}={got!r} where EDM's SongUNet has {want!r}; "
                                 "genflow's UNet follows EDM's DDPM++ and NCSN++ only.")
    cin, cout = int(kw["in_channels"]), int(kw["out_channels"])
    out: dict[str, Any] = {
        "norm0": _norm(_child(block, "norm0", where + "."), where + ".norm0", cin),
        "conv0": _conv(_child(block, "conv0", where + "."), where + ".conv0"),
        "affine": _linear(_child(block, "affine", where + "."), where + ".affine"),
        "norm1": _norm(_child(block, "norm1", where + "."), where + ".norm1", cout),
        "conv1": _conv(_child(block, "conv1", where + "."), where + ".conv1"),
    }
    if block.modules.get("skip") is not None:
        out["skip"] = _conv(block.modules["skip"], where + ".skip")
    if attention != (block.modules.get("qkv") is not None):
        raise EDMPickleError(f"the EDM network's {where} {'lacks' if attention else 'has'} self-attention where "
                             "DDPM++ with these attn_resolutions would not; the network is not DDPM++.")
    if attention:
        out["norm2"] = _norm(_child(block, "norm2", where + "."), where + ".norm2", cout)
        qkv = _linear(_child(block, "qkv", where + "."), where + ".qkv", conv1x1=True)
        # EDM: channel 3 c + j is (head channel c, j in q, k, v); genflow: [q | k | v].
        qkv["kernel"] = qkv["kernel"].reshape(cout, cout, 3).transpose(0, 2, 1).reshape(cout, 3 * cout)
        qkv["bias"] = qkv["bias"].reshape(cout, 3).T.reshape(3 * cout)
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
                       encoder="residual" if residual else "standard")
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


def _architecture(model: PersistentObject, kw: dict[str, Any]) -> str:
    if model.class_name == "DhariwalUNet":
        raise EDMPickleError("the file's network is EDM's ADM (DhariwalUNet, e.g. edm-imagenet-64x64-cond-adm.pkl), "
                             "which genflow does not import yet; DDPM++ networks (the *-vp.pkl models) are supported.")
    if model.class_name != "SongUNet":
        raise EDMPickleError(f"the file's network is a {model.class_name}, not one of EDM's U-Nets; genflow imports "
                             "DDPM++ SongUNet networks.")
    for arch, settings in _SONG_ARCHS.items():
        if all(kw.get(k) == v for k, v in settings.items()):
            return arch
    differ = {k: kw.get(k) for k, v in _SONG_ARCHS["ddpmpp"].items() if kw.get(k) != v}
    raise EDMPickleError(f"the file's network is a SongUNet with {differ}, neither EDM's DDPM++ nor its NCSN++ "
                         "settings, which genflow does not import; DDPM++ (the *-vp.pkl models) and NCSN++ (the "
                         "*-ve.pkl models) are supported.")


def edm_network(snapshot: dict[str, Any]) -> EDMNetwork:
    """The genflow form of an EDM snapshot's ``ema`` network (see the module docstring)."""
    ema = snapshot["ema"]
    if ema.class_name != "EDMPrecond":
        what = _PRECONDS.get(ema.class_name, f"a {ema.class_name}")
        raise EDMPickleError(f"the file's network uses {what}; genflow imports networks with EDM preconditioning "
                             "(EDMPrecond: the edm-*.pkl models and --precond=edm snapshots).")
    pk = _kwargs(ema, _PRECOND_ARGS, _PRECOND_DEFAULTS)
    model = _child(ema, "model", "")
    if not isinstance(model, PersistentObject):
        raise EDMPickleError("the file's EDMPrecond holds no EDM network as its model; it is not an EDM snapshot.")
    kw = _kwargs(model, _SONG_ARGS, _SONG_DEFAULTS)
    arch = _architecture(model, kw)
    if kw["in_channels"] != kw["out_channels"] or int(kw["img_resolution"]) != int(pk["img_resolution"]):
        raise EDMPickleError(f"the file's network maps {kw['in_channels']} to {kw['out_channels']} channels at "
                             f"resolution {kw['img_resolution']}; an image denoiser maps its channels to themselves.")
    unet_kwargs, params, left_out = _song_unet(model, kw, arch)
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
