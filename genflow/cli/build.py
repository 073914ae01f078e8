"""Names in an experiment config become objects here, in one explicit table per kind."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genflow import config as C
from genflow.config import ConfigError
from genflow.data import (ArrayBatches, GaussianMixture, IndexedBatches, SampledBatches, TOY_SETS, data_sharding,
                          load_digits)
from genflow.models import MLP, PREDICTIONS, Parameterization, edm
from genflow.objectives import denoising_score_matching, flow_matching, lognormal_sigma, uniform_time, weighting
from genflow.processes import DDPM, EDM, VE, VP, RectifiedFlow, SubVP
from genflow.samplers import grids, registry
from genflow.samplers.registry import SamplerInfo
from genflow.training.optim import OPTIMIZERS

PROCESSES = {"vp": VP, "subvp": SubVP, "ve": VE, "edm": EDM, "rectified_flow": RectifiedFlow, "ddpm": DDPM}
OBJECTIVES = ("dsm", "flow_matching")
WEIGHTINGS = ("eps", "likelihood", "sigma2", "uniform", "velocity", "edm")
TIME_SAMPLING = ("uniform", "lognormal")
GRIDS = ("uniform", "karras", "log_snr")
TFDS_SETS = ("mnist", "fashion_mnist", "cifar10", "celeb_a")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _choice(key: str, value: str, options) -> None:
    if value not in options:
        raise ConfigError(f"{key} {value!r} is not one of {', '.join(sorted(options))}.")


def validate(exp: C.Experiment, guide: str | None = None) -> None:
    """Reject bad names and values before anything is compiled or written (``guide``: the run
    directory of an autoguidance model, which lets an unconditional run be guided)."""
    _choice("process.name", exp.process.name, PROCESSES)
    _choice("data.name", exp.data.name, ("digits", "gmm", "folder", *TOY_SETS, *TFDS_SETS))
    _choice("net.name", exp.net.name, ("mlp", "unet", "dit"))
    from genflow.models.unet import ENCODERS, TIME_EMBEDDINGS, VARIANTS

    _choice("net.time_embedding", exp.net.time_embedding, TIME_EMBEDDINGS)
    _choice("net.encoder", exp.net.encoder, ENCODERS)
    _choice("net.variant", exp.net.variant, VARIANTS)
    taps = exp.net.resample_filter
    if exp.net.noise_mult <= 0 or not taps or len(taps) % 2 or min(taps) <= 0:
        raise ConfigError(f"net.noise_mult must be positive and net.resample_filter an even number of positive taps "
                          f"such as 1,1 or 1,3,3,1; got "
                          f"{exp.net.noise_mult} and {exp.net.resample_filter}.")
    _choice("predicts", exp.predicts, PREDICTIONS)
    _choice("objective", exp.objective, OBJECTIVES)
    _choice("weighting", exp.weighting, WEIGHTINGS)
    _choice("time_sampling", exp.time_sampling, TIME_SAMPLING)
    _choice("optim.name", exp.optim.name, OPTIMIZERS)
    _choice("train.dtype", exp.train.dtype, DTYPES)
    _choice("sample.sampler", exp.sample.sampler, registry.names())
    _choice("sample.grid", exp.sample.grid, GRIDS)
    _check_parallel(exp.sample)
    if len(exp.train.mesh) != 2:
        raise ConfigError(f"train.mesh is the device mesh (data, fsdp), two sizes such as -1,1 or 2,4; "
                          f"got {exp.train.mesh}.")
    if exp.train.microbatches < 1 or exp.train.batch_size % exp.train.microbatches:
        raise ConfigError(f"train.microbatches must be a positive divisor of train.batch_size "
                          f"({exp.train.batch_size}), got {exp.train.microbatches}.")
    for key, value in [("train.batch_size", exp.train.batch_size), ("train.steps", exp.train.steps),
                       ("train.log_every", exp.train.log_every), ("train.ckpt_every", exp.train.ckpt_every),
                       ("sample.steps", exp.sample.steps), ("sample.num", exp.sample.num)]:
        if value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}.")
    for key, value in C.flat_keys(exp).items():
        if isinstance(value, float) and not math.isfinite(value) and key not in _MAY_BE_INF:
            raise ConfigError(f"{key} must be a finite number, got {value}.")
    if not 0.0 <= exp.optim.ema_decay < 1.0:
        raise ConfigError(f"optim.ema_decay must be in [0, 1), got {exp.optim.ema_decay}.")
    _check_posthoc_ema(exp.train)
    if exp.optim.lr <= 0:
        raise ConfigError(f"optim.lr must be positive, got {exp.optim.lr}.")
    for key, value in [("optim.b1", exp.optim.b1), ("optim.b2", exp.optim.b2)]:
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{key} must be in [0, 1), got {value}.")
    if exp.optim.grad_clip is not None and exp.optim.grad_clip <= 0:
        raise ConfigError(f"optim.grad_clip must be positive (or None for no clipping), got {exp.optim.grad_clip}.")
    for key, value in [("optim.warmup_steps", exp.optim.warmup_steps), ("optim.weight_decay", exp.optim.weight_decay),
                       ("train.sample_every", exp.train.sample_every), ("data.holdout", exp.data.holdout),
                       ("train.max_skipped", exp.train.max_skipped)]:
        if value < 0:
            raise ConfigError(f"{key} must be zero or positive, got {value}.")
    for key, value in [("train.keep", exp.train.keep), ("net.width", exp.net.width), ("net.depth", exp.net.depth),
                       ("net.emb_dim", exp.net.emb_dim), ("net.channels", exp.net.channels),
                       ("net.num_res_blocks", exp.net.num_res_blocks), ("net.heads", exp.net.heads),
                       ("net.patch", exp.net.patch), ("data.workers", exp.data.workers)]:
        if value <= 0:
            hint = " (the number of checkpoints kept; 0 would delete them all)" if key == "train.keep" else ""
            raise ConfigError(f"{key} must be positive{hint}, got {value}.")
    if not exp.net.channel_mult or min(exp.net.channel_mult) <= 0:
        raise ConfigError(f"net.channel_mult must be positive multipliers, e.g. 2,2,2; got {exp.net.channel_mult}.")
    if exp.net.name == "dit":
        _check_dit(exp.net, data_shape(exp.data))
    if exp.optim.rms_floor < 0:
        raise ConfigError(f"optim.rms_floor must be zero or positive, got {exp.optim.rms_floor}.")
    if not 0.0 <= exp.net.dropout < 1.0:
        raise ConfigError(f"net.dropout must be in [0, 1), got {exp.net.dropout}.")
    if exp.data.name == "folder" and (exp.data.image_size <= 0 or exp.data.channels not in (1, 3)):
        raise ConfigError(f"a folder data set needs data.image_size > 0 and data.channels 1 or 3, got "
                          f"{exp.data.image_size} and {exp.data.channels}.")
    n_dev = jax.device_count()
    if exp.train.batch_size % n_dev:
        raise ConfigError(f"train.batch_size {exp.train.batch_size} does not split over {n_dev} devices; "
                          f"use a multiple of {n_dev}.")
    _check_process_values(exp.process)
    process = build_process(exp.process)
    sampler_info(exp.sample, process)
    if exp.process.name == "rectified_flow" and exp.predicts in ("eps", "score"):
        raise ConfigError(f"predicts={exp.predicts} is singular on rectified flow: turning it into x0 divides by "
                          "alpha = 1 - t, which is 0 at t = 1 where sampling starts; use predicts=velocity (or edm).")
    if exp.sigma_data <= 0:
        raise ConfigError(f"sigma_data must be positive, got {exp.sigma_data}.")
    if not 0.0 <= exp.train.p_uncond <= 1.0:
        raise ConfigError(f"train.p_uncond must be in [0, 1], got {exp.train.p_uncond}.")
    if exp.net.num_classes is not None and exp.net.num_classes < 1:
        raise ConfigError(f"net.num_classes must be a positive number of classes or None, got {exp.net.num_classes}.")
    check_guidance(exp, guide)
    if exp.sample.guidance_interval and (len(exp.sample.guidance_interval) != 2
                                         or not exp.sample.guidance_interval[0] < exp.sample.guidance_interval[1]):
        raise ConfigError(f"sample.guidance_interval takes two noise levels lo,hi with lo < hi, got "
                          f"{exp.sample.guidance_interval}.")


_MAY_BE_INF = ("sample.guidance_interval",)


def check_sigma_rel(key: str, value: float) -> None:
    """One sentence unless ``value`` is a power-function EMA length sigma_rel, in (0, sqrt(1/12))."""
    from genflow.training.posthoc_ema import SIGMA_REL_MAX

    if not 0.0 < value < SIGMA_REL_MAX:
        raise ConfigError(f"{key} takes EMA lengths sigma_rel between 0 and {SIGMA_REL_MAX:.4f} (sqrt(1/12), a plain "
                          f"average) exclusive, such as 0.05 or 0.1; got {value:g}.")


def _check_posthoc_ema(train: C.Train) -> None:
    for value in train.ema_sigma_rels:
        check_sigma_rel("train.ema_sigma_rels", value)
    if len(set(train.ema_sigma_rels)) != len(train.ema_sigma_rels):
        raise ConfigError(f"train.ema_sigma_rels lists a value twice ({', '.join(map(str, train.ema_sigma_rels))}); "
                          "give each EMA length once.")
    if train.ema_snapshot_every is not None and train.ema_snapshot_every <= 0:
        raise ConfigError(f"train.ema_snapshot_every must be positive (or None for every train.ckpt_every steps), "
                          f"got {train.ema_snapshot_every}.")


def dit_size(cfg: C.Net):
    """The DiT size a config names: net.dit's row of DiT's Table 1, else net.width/depth/heads/patch."""
    from genflow.models.dit import DIT_SIZES, DiTSize

    if cfg.dit is not None:
        _choice("net.dit", cfg.dit, DIT_SIZES)
        return DIT_SIZES[cfg.dit]
    return DiTSize(cfg.width, cfg.depth, cfg.heads, cfg.patch)


def _check_dit(cfg: C.Net, shape: tuple[int, ...]) -> None:
    """A DiT needs image data whose sides its patch divides, and a width that its heads and the 2-D
    position embedding divide."""
    size = dit_size(cfg)
    if len(shape) != 3:
        raise ConfigError(f"net.name 'dit' needs image data (H, W, C), but this data set has shape {shape}; "
                          "use net.name=mlp.")
    if shape[0] % size.patch or shape[1] % size.patch:
        raise ConfigError(f"the {shape[0]}x{shape[1]} images do not split into {size.patch}x{size.patch} patches; "
                          f"use a net.patch that divides {math.gcd(shape[0], shape[1])}.")
    if size.hidden % size.heads:
        raise ConfigError(f"net.width {size.hidden} does not split over net.heads {size.heads}; use a width that is "
                          f"a multiple of {size.heads}.")
    if size.hidden % 4:
        raise ConfigError(f"net.width {size.hidden} must be a multiple of 4 for DiT's 2-D sin-cos position embedding.")


def _check_process_values(cfg: C.Process) -> None:
    """Process parameters that would give NaN or a reversed path, before the process is built."""
    v = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    if v["beta_min"] is not None and v["beta_min"] < 0:
        raise ConfigError(f"process.beta_min must be zero or positive, got {v['beta_min']}.")
    if v["beta_max"] is not None and v["beta_max"] <= (v["beta_min"] or 0.0):
        raise ConfigError(f"process.beta_max must exceed process.beta_min, got {v['beta_max']}.")
    if v["sigma_min"] is not None and v["sigma_min"] <= 0:
        raise ConfigError(f"process.sigma_min must be positive, got {v['sigma_min']}.")
    if v["sigma_min"] is not None and v["sigma_max"] is not None and v["sigma_min"] >= v["sigma_max"]:
        raise ConfigError(f"process.sigma_min ({v['sigma_min']}) must be below process.sigma_max ({v['sigma_max']}).")
    if v["sigma_max"] is not None and v["sigma_max"] <= 0:
        raise ConfigError(f"process.sigma_max must be positive, got {v['sigma_max']}.")
    if v["rho"] is not None and v["rho"] <= 0:
        raise ConfigError(f"process.rho must be positive, got {v['rho']}.")
    if v["t_min"] is not None and not 0.0 <= v["t_min"] < 1.0:
        raise ConfigError(f"process.t_min must be in [0, 1), got {v['t_min']}.")
    if v["num_steps"] is not None and v["num_steps"] < 2:
        raise ConfigError(f"process.num_steps must be at least 2, got {v['num_steps']}.")


def check_guidance(exp: C.Experiment, guide: str | None = None) -> None:
    """Classifier-free guidance needs a class-conditional run; autoguidance (a ``guide`` run) does not."""
    if guide is None and exp.sample.guidance and exp.net.num_classes is None:
        raise ConfigError(f"sample.guidance={exp.sample.guidance:g} is classifier-free guidance, which needs a "
                          "class-conditional run (net.num_classes); set it to 0, or give a --guide RUN for autoguidance.")
    if guide is not None and not exp.sample.guidance:
        raise ConfigError("--guide needs a guidance scale: pass --guidance W (w > 0 pushes away from the guide).")


def build_process(cfg: C.Process):
    cls = PROCESSES[cfg.name]
    accepted = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "name" or value is None:
            continue
        if f.name not in accepted:
            raise ConfigError(f"process.{f.name} does not apply to process {cfg.name!r} "
                              f"(it takes {', '.join(sorted(accepted))}); remove it.")
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ConfigError(str(e)) from None


@dataclass
class DataBundle:
    """What training needs from a data set."""
    batches: Any                    # iterator of (x0, cond) global batches, with .position
    shape: tuple[int, ...]          # one example's shape
    heldout: np.ndarray             # real data never trained on, for metrics and figures
    reference: np.ndarray           # real data the metrics compare against (training set or fresh draws)
    num_classes: int | None
    exact: GaussianMixture | None   # the exact mixture, where the data is one
    heldout_labels: np.ndarray | None = None  # labels of the held-out examples, where the data has labels


def data_shape(cfg: C.Data) -> tuple[int, ...]:
    """One example's shape, from the config alone (no data set is opened)."""
    if cfg.name == "digits":
        return (8, 8, 1)
    if cfg.name in TFDS_SETS:
        from genflow.data import tfds_source

        return tuple(tfds_source.SPECS[cfg.name].shape)
    if cfg.name == "folder":
        return (cfg.image_size, cfg.image_size, cfg.channels)
    return (2,)


def data_num_classes(cfg: C.Data) -> int | None:
    """How many class labels the data set has (None: no labels), where the config alone tells."""
    if cfg.name == "digits":
        return 10
    if cfg.name in TFDS_SETS:
        from genflow.data import tfds_source

        return tfds_source.SPECS[cfg.name].num_classes
    return None


def build_data(cfg: C.Data, batch_size: int, seed: int, mesh, position: int = 0) -> DataBundle:
    sharding = data_sharding(mesh) if mesh is not None else None
    if cfg.name in TFDS_SETS or cfg.name == "folder":
        return _build_image_data(cfg, batch_size, seed, sharding, position)
    if cfg.name == "digits":
        x, y, hx, hy = load_digits(holdout=cfg.holdout)
        try:
            batches = ArrayBatches(x, batch_size, seed=seed, labels=y, random_flip=cfg.random_flip,
                                   sharding=sharding, position=position)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return DataBundle(batches, x.shape[1:], hx, x, 10, None, hy)
    mixture = GaussianMixture.eight_gaussians() if cfg.name in ("gmm", "8gaussians") else None
    fn = mixture.sample if mixture is not None else TOY_SETS[cfg.name]
    n = max(cfg.holdout, 2000)
    heldout = np.asarray(fn(jax.random.PRNGKey(10_000 + seed), n))
    reference = np.asarray(fn(jax.random.PRNGKey(20_000 + seed), n))
    batches = SampledBatches(fn, batch_size, seed=seed, sharding=sharding, position=position)
    return DataBundle(batches, (2,), heldout, reference, None, mixture)


def _build_image_data(cfg: C.Data, batch_size: int, seed: int, sharding, position: int) -> DataBundle:
    """TFDS data sets (through tfds.data_source) and image folders, read batch by batch."""
    from genflow.data import folder, tfds_source

    try:
        if cfg.name == "folder":
            if not cfg.path:
                raise ConfigError("data.name=folder needs data.path, a directory of .png/.jpg images.")
            paths, labels, classes = folder.scan_folder(cfg.path, cfg.labels)
            fetch = folder.make_fetch(paths, labels, cfg.image_size, cfg.channels)
            size, shape = len(paths), (cfg.image_size, cfg.image_size, cfg.channels)
            num_classes = len(classes) or None
            held_fetch, held_size = fetch, min(cfg.holdout, size)
        else:
            spec = tfds_source.SPECS[cfg.name]
            source = tfds_source.open_source(cfg.name, "train", cfg.data_dir)
            fetch, size, shape, num_classes = tfds_source.make_fetch(source, spec), len(source), spec.shape, spec.num_classes
            held_size = 0
            if cfg.holdout:
                test = tfds_source.open_source(cfg.name, "test" if cfg.name != "celeb_a" else "validation", cfg.data_dir)
                held_fetch, held_size = tfds_source.make_fetch(test, spec), min(cfg.holdout, len(test))
        batches = IndexedBatches(fetch, size, batch_size, seed=seed, random_flip=cfg.random_flip,
                                 sharding=sharding, position=position, workers=cfg.workers)
    except ValueError as e:  # includes DatasetNotPrepared and empty or missing folders
        raise ConfigError(str(e)) from None
    heldout, heldout_labels = held_fetch(np.arange(held_size)) if held_size else (np.zeros((0,) + shape, np.float32), None)
    return DataBundle(batches, shape, heldout, heldout, num_classes, None, heldout_labels)


def build_net(cfg: C.Net, shape: tuple[int, ...], dtype: str, seed: int):
    """The network of a config; class-conditional (with a null label) when net.num_classes is set."""
    rngs = nnx.Rngs(params=seed, dropout=seed + 1)
    labels = cfg.num_classes
    if cfg.name == "mlp":
        return MLP(shape, width=cfg.width, depth=cfg.depth, emb_dim=cfg.emb_dim, num_classes=labels,
                   dtype=DTYPES[dtype], rngs=rngs)
    if cfg.name == "dit":
        from genflow.models.dit import DiT

        _check_dit(cfg, shape)
        size = dit_size(cfg)
        return nnx.jit(lambda: DiT(shape, hidden=size.hidden, depth=size.depth, heads=size.heads, patch=size.patch,
                                   num_classes=labels, scan=cfg.scan, remat=cfg.remat, dtype=DTYPES[dtype],
                                   rngs=nnx.Rngs(params=seed)))()
    from genflow.models.unet import UNet

    if len(shape) != 3:
        raise ConfigError(f"net.name 'unet' needs image data (H, W, C), but this data set has shape {shape}; "
                          "use net.name=mlp.")
    # Built under one nnx.jit: eager construction compiles every initialiser separately.
    return nnx.jit(lambda: UNet(shape, channels=cfg.channels, channel_mult=cfg.channel_mult,
                                num_res_blocks=cfg.num_res_blocks, attn_resolutions=cfg.attn_resolutions,
                                dropout=cfg.dropout, num_classes=labels, time_embedding=cfg.time_embedding,
                                noise_mult=cfg.noise_mult, resample_filter=cfg.resample_filter, encoder=cfg.encoder,
                                variant=cfg.variant,
                                dtype=DTYPES[dtype],
                                rngs=nnx.Rngs(params=seed, dropout=seed + 1)))()


def build_net_for_weights(cfg: C.Net, shape: tuple[int, ...], dtype: str, seed: int):
    """``build_net``'s network with its parameters abstract (ShapeDtypeStructs), for a run whose
    weights are about to be restored: the initialisers are never compiled or run (for a U-Net
    that program alone takes 12 s to compile on a CPU, one fusion per parameter). The rest of
    the state (RNG keys and counts) is computed exactly, by a program whose parameter outputs
    XLA drops as dead code."""
    make = lambda: build_net(cfg, shape, dtype, seed)  # noqa: E731
    graphdef, params, _ = nnx.split(nnx.eval_shape(make), nnx.Param, ...)
    rest = jax.jit(lambda: nnx.split(make(), nnx.Param, ...)[2])()
    return nnx.merge(graphdef, params, rest)


def build_optimizer(o: C.Optim, lr: float | None = None):
    """The optax optimizer of a config (``lr`` overrides optim.lr)."""
    from genflow.training import make_optimizer

    return make_optimizer(o.name, o.lr if lr is None else lr, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay,
                          warmup_steps=o.warmup_steps, grad_clip=o.grad_clip, rms_floor=o.rms_floor)


def build_parameterization(exp: C.Experiment) -> Parameterization:
    """What the network predicts: a plain prediction, or EDM's preconditioning with exp.sigma_data."""
    return edm(exp.sigma_data) if exp.predicts == "edm" else Parameterization(exp.predicts)


def build_objective(exp: C.Experiment, process) -> Callable:
    times = uniform_time if exp.time_sampling == "uniform" else lognormal_sigma(exp.p_mean, exp.p_std)
    if exp.objective == "flow_matching":
        return partial(flow_matching, time_sampler=times)
    w = weighting.edm(exp.sigma_data) if exp.weighting == "edm" else weighting.WEIGHTINGS[exp.weighting]
    return partial(denoising_score_matching, weighting=w, time_sampler=times)


def build_grid(cfg: C.Sample, process):
    """The sampler's time grid (n+1,), decreasing from t_max to t_min. DDPM's ancestral sampler
    steps on the chain's own steps: ``steps`` of them, evenly spaced among its K (respaced)."""
    if cfg.sampler == "ancestral" and isinstance(process, DDPM):
        big_k = process.num_steps
        n = min(cfg.steps, big_k - 1)
        ks = np.unique(np.round(np.linspace(big_k, 1, n + 1)).astype(int))[::-1]
        return jnp.asarray(ks / big_k, jnp.float32)
    return {"uniform": grids.uniform, "karras": grids.karras, "log_snr": grids.log_snr}[cfg.grid](process, cfg.steps)


def sampler_info(cfg: C.Sample, process) -> SamplerInfo:
    """The registered sampler a config names, checked against the process."""
    try:
        info = registry.get(cfg.sampler)
    except ValueError as e:
        raise ConfigError(f"sample.sampler: {e}") from None
    if info.ddpm_only and not isinstance(process, DDPM):
        raise ConfigError(f"sample.sampler={cfg.sampler} needs process.name=ddpm; use ddim with eta=1 for other "
                          "processes.")
    return info


def _check_parallel(cfg: C.Sample) -> None:
    if not cfg.parallel:
        return
    from genflow.samplers import parallel

    _choice("sample.parallel", cfg.parallel, parallel.METHODS)
    _choice("sample.jacobian", cfg.jacobian, parallel.JACOBIANS)
    if cfg.sampler not in parallel.supported():
        raise ConfigError(f"sample.parallel={cfg.parallel} solves fixed-grid samplers with one network call per step; "
                          f"{cfg.sampler} is not one of them: choose one of {', '.join(parallel.supported())}.")
    if cfg.window < 0:
        raise ConfigError(f"sample.window must be zero (all steps) or positive, got {cfg.window}.")
    if not cfg.tol >= 0:
        raise ConfigError(f"sample.tol must be zero or positive, got {cfg.tol}.")


def build_sampler(cfg: C.Sample, process, sharding=None) -> Callable:
    """``sample(model, x1, key, cond) -> (x0, stats)`` for the configured sampler, grid and options;
    ``stats["nfe"]`` is the sampler's own count of the model evaluations it made. With
    ``sample.parallel`` set, the sampler's steps are solved in parallel in time
    (``genflow.samplers.parallel``; ``stats["rounds"]`` its sequential depth), the window's batch
    placed with ``sharding`` where given."""
    info = sampler_info(cfg, process)
    ts = build_grid(cfg, process)
    options = info.options(cfg)

    def sample(model, x1, key, cond=None):
        if cfg.parallel:
            from genflow.samplers import parallel

            return parallel.sample(model, x1, ts, sampler=cfg.sampler, method=cfg.parallel, key=key, cond=cond,
                                   denoise=cfg.denoise, window=cfg.window or None, tol=cfg.tol,
                                   jacobian=cfg.jacobian, sharding=sharding, **options)
        return info.fn(model, x1, ts, key=key, cond=cond, denoise=cfg.denoise, **options)

    return sample
