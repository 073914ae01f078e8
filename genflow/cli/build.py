"""Names in an experiment config become objects here, in one explicit table per kind."""
from __future__ import annotations

import dataclasses
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
from genflow.models import MLP, PREDICTIONS
from genflow.objectives import denoising_score_matching, flow_matching, lognormal_sigma, uniform_time, weighting
from genflow.processes import DDPM, EDM, VE, VP, RectifiedFlow, SubVP
from genflow.samplers import (ancestral, ddim, dpm_solver_pp_2m, edm_heun, euler_maruyama, euler_ode, grids, ode_sample,
                              predictor_corrector)

PROCESSES = {"vp": VP, "subvp": SubVP, "ve": VE, "edm": EDM, "rectified_flow": RectifiedFlow, "ddpm": DDPM}
OBJECTIVES = ("dsm", "flow_matching")
WEIGHTINGS = ("eps", "likelihood", "sigma2", "uniform", "velocity", "edm")
TIME_SAMPLING = ("uniform", "lognormal")
SAMPLERS = ("euler_ode", "euler_maruyama", "ddim", "ancestral", "pc", "heun", "edm_heun", "dpm_solver_pp_2m",
            "tsit5", "dopri5")
GRIDS = ("uniform", "karras", "log_snr")
TFDS_SETS = ("mnist", "fashion_mnist", "cifar10", "celeb_a")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _choice(key: str, value: str, options) -> None:
    if value not in options:
        raise ConfigError(f"{key} {value!r} is not one of {', '.join(sorted(options))}.")


def validate(exp: C.Experiment) -> None:
    """Reject bad names and values before anything is compiled or written."""
    _choice("process.name", exp.process.name, PROCESSES)
    _choice("data.name", exp.data.name, ("digits", "gmm", "folder", *TOY_SETS, *TFDS_SETS))
    _choice("net.name", exp.net.name, ("mlp", "unet"))
    _choice("predicts", exp.predicts, PREDICTIONS)
    _choice("objective", exp.objective, OBJECTIVES)
    _choice("weighting", exp.weighting, WEIGHTINGS)
    _choice("time_sampling", exp.time_sampling, TIME_SAMPLING)
    _choice("optim.name", exp.optim.name, ("adam", "adamw", "lion", "tiger"))
    _choice("train.dtype", exp.train.dtype, DTYPES)
    _choice("sample.sampler", exp.sample.sampler, SAMPLERS)
    _choice("sample.grid", exp.sample.grid, GRIDS)
    for key, value in [("train.batch_size", exp.train.batch_size), ("train.steps", exp.train.steps),
                       ("train.log_every", exp.train.log_every), ("train.ckpt_every", exp.train.ckpt_every),
                       ("sample.steps", exp.sample.steps), ("sample.num", exp.sample.num)]:
        if value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}.")
    if not 0.0 <= exp.optim.ema_decay < 1.0:
        raise ConfigError(f"optim.ema_decay must be in [0, 1), got {exp.optim.ema_decay}.")
    if exp.optim.lr <= 0:
        raise ConfigError(f"optim.lr must be positive, got {exp.optim.lr}.")
    n_dev = jax.device_count()
    if exp.train.batch_size % n_dev:
        raise ConfigError(f"train.batch_size {exp.train.batch_size} does not split over {n_dev} devices; "
                          f"use a multiple of {n_dev}.")
    build_process(exp.process)


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


def build_data(cfg: C.Data, batch_size: int, seed: int, mesh, position: int = 0) -> DataBundle:
    sharding = data_sharding(mesh) if mesh is not None else None
    if cfg.name in TFDS_SETS or cfg.name == "folder":
        return _build_image_data(cfg, batch_size, seed, sharding, position)
    if cfg.name == "digits":
        x, y, hx, _ = load_digits(holdout=cfg.holdout)
        try:
            batches = ArrayBatches(x, batch_size, seed=seed, labels=y, random_flip=cfg.random_flip,
                                   sharding=sharding, position=position)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return DataBundle(batches, x.shape[1:], hx, x, 10, None)
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
                                 sharding=sharding, position=position)
    except ValueError as e:  # includes DatasetNotPrepared and empty or missing folders
        raise ConfigError(str(e)) from None
    heldout = held_fetch(np.arange(held_size))[0] if held_size else np.zeros((0,) + shape, np.float32)
    return DataBundle(batches, shape, heldout, heldout, num_classes, None)


def build_net(cfg: C.Net, shape: tuple[int, ...], dtype: str, seed: int, num_classes: int | None = None):
    rngs = nnx.Rngs(params=seed, dropout=seed + 1)
    labels = cfg.num_classes if cfg.num_classes is not None else None
    if cfg.name == "mlp":
        return MLP(shape, width=cfg.width, depth=cfg.depth, emb_dim=cfg.emb_dim, num_classes=labels,
                   dtype=DTYPES[dtype], rngs=rngs)
    from genflow.models.unet import UNet

    if len(shape) != 3:
        raise ConfigError(f"net.name 'unet' needs image data (H, W, C), but this data set has shape {shape}; "
                          "use net.name=mlp.")
    # Built under one nnx.jit: eager construction compiles every initialiser separately.
    return nnx.jit(lambda: UNet(shape, channels=cfg.channels, channel_mult=cfg.channel_mult,
                                num_res_blocks=cfg.num_res_blocks, attn_resolutions=cfg.attn_resolutions,
                                dropout=cfg.dropout, num_classes=labels, dtype=DTYPES[dtype],
                                rngs=nnx.Rngs(params=seed, dropout=seed + 1)))()


def build_objective(exp: C.Experiment, process) -> Callable:
    times = uniform_time if exp.time_sampling == "uniform" else lognormal_sigma()
    if exp.objective == "flow_matching":
        return partial(flow_matching, time_sampler=times)
    w = weighting.edm(process.sigma_data if isinstance(process, EDM) else 0.5) if exp.weighting == "edm" \
        else weighting.WEIGHTINGS[exp.weighting]
    return partial(denoising_score_matching, weighting=w, time_sampler=times)


def build_grid(cfg: C.Sample, process):
    """The sampler's time grid (n+1,), decreasing from t_max to t_min."""
    return {"uniform": grids.uniform, "karras": grids.karras, "log_snr": grids.log_snr}[cfg.grid](process, cfg.steps)


def build_sampler(cfg: C.Sample, process) -> Callable:
    """(model, x1, key) -> (x0, nfe) for the configured sampler and grid; nfe counts network calls."""
    ts = build_grid(cfg, process)
    n, d = cfg.steps, int(cfg.denoise)
    fixed = {
        "euler_ode": (lambda m, x1, k: euler_ode(m, x1, ts, denoise=cfg.denoise), n + d),
        "euler_maruyama": (lambda m, x1, k: euler_maruyama(m, x1, ts, k, denoise=cfg.denoise), n + d),
        "ddim": (lambda m, x1, k: ddim(m, x1, ts, k, eta=cfg.eta, denoise=cfg.denoise), n + d),
        "pc": (lambda m, x1, k: predictor_corrector(m, x1, ts, k, denoise=cfg.denoise), 2 * n + d),
        # Heun's correction runs on every step that does not end at sigma = 0
        "edm_heun": (lambda m, x1, k: edm_heun(m, x1, ts, k, s_churn=cfg.churn, denoise=cfg.denoise),
                     n + int(np.sum(np.asarray(process.sigma(ts[1:])) > 0)) + d),
        "dpm_solver_pp_2m": (lambda m, x1, k: dpm_solver_pp_2m(m, x1, ts, denoise=cfg.denoise), n + d),
    }
    if cfg.sampler in fixed:
        fn, nfe = fixed[cfg.sampler]
        return lambda m, x1, k: (fn(m, x1, k), jnp.asarray(nfe))
    if cfg.sampler == "ancestral":
        if not isinstance(process, DDPM):
            raise ConfigError("sample.sampler=ancestral needs process.name=ddpm; use ddim with eta=1 for other processes.")
        return lambda m, x1, k: (ancestral(m, x1, k, denoise=cfg.denoise), jnp.asarray(process.num_steps - 1 + d))
    if cfg.sampler == "heun":
        return lambda m, x1, k: _with_nfe(ode_sample(m, x1, solver="heun", ts=ts, denoise=cfg.denoise))
    return lambda m, x1, k: _with_nfe(ode_sample(m, x1, solver=cfg.sampler, rtol=cfg.rtol, atol=cfg.atol,
                                                 denoise=cfg.denoise))


def _with_nfe(result):
    x, stats = result
    return x, stats["nfe"]
