"""Experiment configs: frozen dataclasses of plain values.

A config round-trips through JSON into the run directory; ``--set a.b=value`` overrides
parse to the field's type and an unknown key suggests the closest one. Only ``cli/`` and
``experiments/`` read a config; library functions take explicit arguments.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """Bad user input (config key or value, run directory, checkpoint): one sentence saying what to do."""


@dataclass(frozen=True)
class Data:
    name: str = "digits"            # digits | checkerboard | moons | 8gaussians | swissroll | gmm
                                    # | mnist | fashion_mnist | cifar10 | celeb_a (TFDS) | folder
    random_flip: bool = False
    holdout: int = 300              # examples kept out of training (digits) or read from the test split
    data_dir: str | None = None     # TFDS data_dir (default ~/tensorflow_datasets)
    path: str | None = None         # folder: a directory of .png/.jpg images
    image_size: int = 32            # folder: center crop + resize to this
    channels: int = 3               # folder: 1 (grey) or 3 (RGB)
    labels: bool = False            # folder: class labels from subfolder names
    workers: int = 1                # TFDS/folder: batches read ahead at once, one host thread each (speed only;
                                    # 2+ pays for JPEG/resize/64x64 decoding, costs small PNGs: data_rate.py)


@dataclass(frozen=True)
class Process:
    """Which Gaussian path; a field left at None takes that process's own default."""
    name: str = "vp"                # vp | subvp | ve | edm | rectified_flow | ddpm
    beta_min: float | None = None
    beta_max: float | None = None
    sigma_min: float | None = None
    sigma_max: float | None = None
    rho: float | None = None
    t_min: float | None = None
    num_steps: int | None = None    # ddpm only
    schedule: str | None = None     # ddpm only: linear | scaled_linear | cosine


@dataclass(frozen=True)
class Net:
    name: str = "mlp"               # mlp | unet | dit
    width: int = 512                # mlp; dit: hidden size
    depth: int = 3                  # mlp; dit: number of blocks
    emb_dim: int = 128
    channels: int = 128             # unet
    channel_mult: tuple[int, ...] = (2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.0
    num_classes: int | None = None
    time_embedding: str = "sinusoidal"  # unet: sinusoidal (genflow's, of t in [0, 1]) | positional (EDM's DDPM++,
                                        # of the noise label as given) | fourier (EDM's NCSN++) | adm
    noise_mult: int = 1                 # unet: time-embedding width in channels (EDM's channel_mult_noise; NCSN++ 2)
    resample_filter: tuple[int, ...] = (1, 1)  # unet: FIR taps of up/downsampling ((1, 3, 3, 1): NCSN++)
    encoder: str = "standard"           # unet: standard | residual (NCSN++'s extra downsampled input path)
    variant: str = "ddpmpp"             # unet: ddpmpp (also NCSN++) | adm (EDM's DhariwalUNet blocks and mapping)
    dit: str | None = None          # dit: a size of DiT's Table 1 (S/2, B/2, L/2, XL/2, also /4, /8), setting
                                    # width, depth, heads and patch; None: those four keys as given
    heads: int = 6                  # dit: attention heads (width divisible by heads)
    patch: int = 2                  # dit: patch size (image sides divisible by it)
    scan: bool = False              # dit: stacked blocks run by nnx.scan (compile time flat in depth)
    remat: bool = False             # dit: recompute each block's activations in the backward pass


@dataclass(frozen=True)
class Optim:
    name: str = "adam"              # adam | adamw | lion | tiger | tiger_rms (Tiger as its article proposes it)
    lr: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    rms_floor: float = 1e-3         # tiger_rms: a tensor's learning rate is lr * max(RMS(theta), rms_floor)


@dataclass(frozen=True)
class Train:
    batch_size: int = 128
    steps: int = 4000
    dtype: str = "float32"          # float32 | bfloat16 (compute; parameters stay float32)
    seed: int = 0
    log_every: int = 100
    sample_every: int = 0           # 0: only at the end
    ckpt_every: int = 1000
    keep: int = 2
    p_uncond: float = 0.1           # class-conditional nets: labels replaced by the null label with this probability
    max_skipped: int = 100          # stop after this many consecutive non-finite steps (0: never stop)
    ema_sigma_rels: tuple[float, ...] = (0.05, 0.10)  # power-function EMAs tracked for post-hoc EMA (EDM2); () for none
    ema_snapshot_every: int | None = None  # steps between their snapshots in RUN/ema_snapshots (None: train.ckpt_every)
    mesh: tuple[int, ...] = (-1, 1)  # device mesh (data, fsdp); -1: all devices left. (1, 8): parameters sharded 8 ways
    microbatches: int = 1           # gradient accumulation: each step's batch in this many sequential pieces


@dataclass(frozen=True)
class Sample:
    sampler: str = "euler_maruyama"  # a name in genflow.samplers.SAMPLERS (`genflow sample --help` lists them)
    steps: int = 200
    num: int = 64
    denoise: bool = True             # end with Tweedie's E[x0 | x_tmin] (1 more NFE)
    grid: str = "uniform"            # uniform | karras | log_snr
    rtol: float = 1e-5               # adaptive solvers only
    atol: float = 1e-5
    eta: float | None = None         # noise share: ddim (default 0), the ancestral and SDE samplers (default 1)
    churn: float = 0.0               # edm_heun's S_churn
    guidance: float = 0.0            # classifier-free guidance scale w (conditional runs; 0: none)
    guidance_interval: tuple[float, ...] = ()  # (lo, hi): guide only for noise levels sigma/alpha in (lo, hi]
    parallel: str = ""               # parallel-in-time solve of a fixed-grid sampler: "" (off) | picard | newton
    window: int = 0                  # parallel: steps per round (0: all of them)
    tol: float = 1e-3                # parallel: accepted per-step update, relative to the noise level
    jacobian: str = "isotropic"      # newton: isotropic (1 JVP per step) | full (exact; low-dimensional data)


@dataclass(frozen=True)
class Experiment:
    name: str = "digits"
    data: Data = field(default_factory=Data)
    process: Process = field(default_factory=Process)
    net: Net = field(default_factory=Net)
    predicts: str = "eps"           # eps | x0 | score | v | velocity | edm (EDM's preconditioned denoiser)
    sigma_data: float = 0.5         # data std of the edm parameterization and the edm weighting
    objective: str = "dsm"          # dsm | flow_matching
    weighting: str = "eps"          # eps | likelihood | sigma2 | uniform | edm | velocity
    time_sampling: str = "uniform"  # uniform | lognormal (EDM's ln s ~ N(p_mean, p_std^2))
    p_mean: float = -1.2            # lognormal time sampling (EDM's P_mean, P_std)
    p_std: float = 1.2
    optim: Optim = field(default_factory=Optim)
    train: Train = field(default_factory=Train)
    sample: Sample = field(default_factory=Sample)


# -- flattening, overrides and JSON --------------------------------------------------------------
def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def flat_keys(cfg, prefix: str = "") -> dict[str, Any]:
    """{'optim.lr': 2e-4, ...} for every leaf field."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out.update(flat_keys(v, prefix + f.name + "."))
        else:
            out[prefix + f.name] = v
    return out


def _field_type(cls, name: str):
    return typing.get_type_hints(cls)[name]


def _parse(text: str, tp, key: str):
    """Parse ``text`` to type ``tp`` (str, int, float, bool, Optional, tuple[int, ...])."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if text.lower() in ("none", "null"):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _parse(text, inner, key)
    if origin is tuple:
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        return tuple(_parse(p.strip(), args[0], key) for p in parts)
    if tp is bool:
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ConfigError(f"config key {key!r} takes true or false, not {text!r}.")
    try:
        if tp is int:
            return int(float(text)) if float(text).is_integer() else int(text)
        return tp(text)
    except ValueError:
        article = "an" if tp.__name__[0] in "aeiou" else "a"
        raise ConfigError(f"config key {key!r} takes {article} {tp.__name__}, not {text!r}.") from None


def with_overrides(cfg, overrides: list[str]):
    """Apply ``['optim.lr=1e-4', ...]``; unknown keys suggest the closest existing one."""
    keys = flat_keys(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. optim.lr=1e-4).")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in keys:
            close = closest_key(key, list(keys))
            hint = f"; did you mean {close!r}?" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint} (`genflow config` lists the keys).")
        cfg = _replace_path(cfg, key.split("."), text, key)
    return cfg


def closest_key(key: str, keys: list[str]) -> str | None:
    """The existing key a typo most likely meant: same section first, initials count
    ('learning_rate' -> 'lr'), then string similarity."""
    section, _, leaf = key.rpartition(".")
    initials = "".join(part[0] for part in leaf.split("_") if part)
    same = [k for k in keys if k.rpartition(".")[0] == section]
    for k in same:
        if len(initials) > 1 and k.rpartition(".")[2] == initials:
            return k
    leaves = {k.rpartition(".")[2]: k for k in same}
    match = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)
    if match:
        return leaves[match[0]]
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if match:
        return match[0]
    match = difflib.get_close_matches(leaf, [k.rpartition(".")[2] for k in keys], n=1, cutoff=0.6)
    return next((k for k in keys if match and k.rpartition(".")[2] == match[0]), None)


def _replace_path(cfg, path: list[str], text: str, key: str):
    head = path[0]
    if len(path) == 1:
        return dataclasses.replace(cfg, **{head: _parse(text, _field_type(type(cfg), head), key)})
    return dataclasses.replace(cfg, **{head: _replace_path(getattr(cfg, head), path[1:], text, key)})


def _type_name(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join("None" if a is type(None) else _type_name(a) for a in args)
    if origin is tuple:
        return f"a tuple of {_type_name(args[0])}"
    return getattr(tp, "__name__", str(tp))


def _fits(v, tp) -> bool:
    """Whether a JSON/Python value ``v`` is a ``tp`` (an int is a float; a bool is not a number)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_fits(v, a) for a in args)
    if tp is type(None):
        return v is None
    if origin is tuple:
        return isinstance(v, (tuple, list)) and all(_fits(x, args[0]) for x in v)
    if tp is bool:
        return isinstance(v, bool)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if tp is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, tp) if isinstance(tp, type) else True


def check_types(cfg, source: str = "the config", prefix: str = "") -> None:
    """Raise one sentence naming the key when a config value has the wrong type (e.g. a string
    for ``train.steps`` in an experiment file or a hand-edited config.json)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        v, tp, key = getattr(cfg, f.name), hints[f.name], prefix + f.name
        if dataclasses.is_dataclass(tp):
            if not isinstance(v, tp):
                raise ConfigError(f"{source}: {key} must be a {tp.__name__}(...), not {v!r}.")
            check_types(v, source, key + ".")
        elif not _fits(v, tp):
            raise ConfigError(f"{source}: {key} must be {_type_name(tp)}, not {v!r}.")


def field_hint(message: str) -> str:
    """'; did you mean ...' for a dataclass's "unexpected keyword argument 'x'" TypeError."""
    import re

    m = re.search(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", message)
    cls = {c.__name__: c for c in (Data, Process, Net, Optim, Train, Sample, Experiment)}.get(m.group(1)) if m else None
    if cls is None:
        return ""
    close = difflib.get_close_matches(m.group(2), [f.name for f in dataclasses.fields(cls)], n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else f" ({m.group(1)} has {', '.join(f.name for f in dataclasses.fields(cls))})"


def from_dict(cls, d: dict[str, Any], source: str | None = None, prefix: str = ""):
    """Inverse of ``to_dict`` (lists back to tuples). With ``source`` (a file name), an unknown
    key or a value of the wrong type is one sentence naming the file and the key."""
    if not isinstance(d, dict):
        raise ConfigError(f"{source or 'the config'}: {prefix.rstrip('.') or 'the top level'} must be a JSON "
                          f"object, not {type(d).__name__}.")
    kwargs = {}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in d if k not in names]
    if unknown and source is not None:
        close = difflib.get_close_matches(unknown[0], list(names), n=1, cutoff=0.6)
        hint = f"; did you mean {prefix}{close[0]}?" if close else ""
        raise ConfigError(f"{source}: unknown key {prefix}{unknown[0]}{hint}")
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v, tp = d[f.name], hints[f.name]
        if dataclasses.is_dataclass(tp):
            v = from_dict(tp, v, source, prefix + f.name + ".")
        elif isinstance(v, list):
            v = tuple(v)
        if source is not None and not dataclasses.is_dataclass(tp) and not _fits(v, tp):
            raise ConfigError(f"{source}: {prefix}{f.name} must be {_type_name(tp)}, not {v!r}.")
        kwargs[f.name] = v
    return cls(**kwargs)


def dumps(cfg) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def differences(a, b) -> list[str]:
    """'key a vs b' for each differing leaf of two configs."""
    fa, fb = flat_keys(a), flat_keys(b)
    return [f"{k} {fa.get(k)!r} vs {fb.get(k)!r}" for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


# -- comparing objectives (`genflow compare-objectives`) ---------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """Which score-matching objectives ``genflow compare-objectives`` trains on an experiment's
    data, network, process, weighting, optimizer and budget, and how it measures them.

    An experiment file sets ``comparison = Comparison(...)`` beside its ``config``."""
    objectives: tuple[str, ...] = ("dsm", "ism", "ssm", "ssm_vr")  # exact | dsm | ism | ssm | ssm_vr
    ism_trace: str = "exact"        # exact (D jvps) | rademacher | gaussian (Hutchinson)
    probe: str = "gaussian"         # sliced SM probes: gaussian | rademacher
    n_probes: int = 1               # probes per example (sliced SM, Hutchinson)
    eval_every: int = 0             # Fisher divergence during training every N steps (0: 10 points)
    num_samples: int = 2000         # samples for the energy distance (capped by the held-out set for images)
    fisher_samples: int = 8192      # x0 draws for the Fisher divergence (exact score known only)
    nll_samples: int = 256          # held-out points for the PF-ODE negative log-likelihood
    grad_batches: int = 64          # minibatch gradients for the gradient variance


# -- ReFlow (`genflow reflow`, `genflow distill`, benchmarks/reflow_table.py) ----------------------------
@dataclass(frozen=True)
class Reflow:
    """How a rectified-flow experiment continues: couplings of the trained flow, k-rectified flows
    trained on them, and a distilled few-step sampler. An experiment file sets
    ``reflow = Reflow(...)`` beside its ``config`` (see experiments/reflow_2d.py)."""
    num_couples: int = 20_000       # (noise, sample) couples per round, rounded up to whole chunks
    chunk_size: int = 4096          # couples per file and per compiled ODE solve
    solver: str = "tsit5"           # couplings: tsit5 | dopri5 | heun | midpoint | euler
    ode_steps: int = 0              # 0: adaptive steps (rtol, atol); > 0: that many fixed steps
    rtol: float = 1e-5
    atol: float = 1e-5
    rounds: int = 1                 # reflow rounds after the 1-RF: 1 gives 2-RF, 2 gives 3-RF
    steps: int = 4000               # training steps per reflow round (from the previous flow's EMA)
    distill_steps: int = 2000       # training steps of the distilled sampler
    distill_k: int = 1              # Euler steps of the distilled sampler (1: one-step generator)
    lr: float | None = None         # None: the experiment's optim.lr
    eval_samples: int = 2000        # samples per entry of the table (one prior draw for all rows)
