"""A training run on disk: build everything from an Experiment, train, sample, resume.

Layout of a run directory: config.json, metrics.jsonl, samples.png, loss.png, eval.json,
checkpoints/ and tensorboard/ (event files: `tensorboard --logdir runs`).
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from genflow import config as C
from genflow.cli import build
from genflow.config import ConfigError
from genflow.models import Model
from genflow.plotting import loss_curve, save_samples
from genflow.training import Checkpointer, init_state, make_mesh, make_optimizer, make_train_step, split_net, train_loop


@dataclass
class Parts:
    """Everything built from one experiment."""
    exp: C.Experiment
    process: Any
    data: build.DataBundle
    graphdef: Any
    rest: Any
    eval_graphdef: Any
    eval_rest: Any
    tx: Any
    state: Any
    mesh: Any


def build_parts(exp: C.Experiment, position: int = 0) -> Parts:
    build.validate(exp)
    mesh = make_mesh()
    process = build.build_process(exp.process)
    data = build.build_data(exp.data, exp.train.batch_size, exp.train.seed, mesh, position)
    net = build.build_net(exp.net, data.shape, exp.train.dtype, exp.train.seed, data.num_classes)
    graphdef, params, rest = split_net(net)
    net.eval()  # dropout off for sampling; the same parameters
    eval_graphdef, _, eval_rest = split_net(net)
    o = exp.optim
    tx = make_optimizer(o.name, o.lr, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay,
                        warmup_steps=o.warmup_steps, grad_clip=o.grad_clip)
    state = jax.device_put(init_state(params, tx, exp.train.seed), NamedSharding(mesh, P()))
    return Parts(exp, process, data, graphdef, rest, eval_graphdef, eval_rest, tx, state, mesh)


def make_generator(parts: Parts, sample_cfg: C.Sample, num: int, with_nfe: bool = False):
    """jit-compiled ``generate(params, key) -> (num, *shape)`` with the configured sampler
    (``-> (samples, nfe)`` with ``with_nfe``, nfe the network evaluations per sample)."""
    sampler = build.build_sampler(sample_cfg, parts.process)
    shape = (num,) + tuple(parts.data.shape)

    split = num % parts.mesh.size == 0  # shard the batch over devices when it divides evenly

    @jax.jit
    def generate(params, key):
        k1, k2 = jax.random.split(key)
        net = nnx.merge(parts.eval_graphdef, params, parts.eval_rest)
        model = Model(net, parts.process, parts.exp.predicts)
        x1 = parts.process.prior(k1, shape)
        if split:
            x1 = jax.lax.with_sharding_constraint(x1, NamedSharding(parts.mesh, P("data")))
        x, nfe = sampler(model, x1, k2)
        return (x, nfe) if with_nfe else x

    return generate


def generate_samples(parts: Parts, params, sample_cfg: C.Sample, num: int, seed: int = 0, *,
                     chunk: int = 1024, progress: bool = True) -> tuple[np.ndarray, float]:
    """(samples, mean NFE per sample): ``num`` samples in chunks of at most ``chunk`` (one compiled
    program), with a progress bar. Chunk i uses key fold_in(seed, i), so the first n samples do
    not depend on ``num``."""
    size = min(chunk, num)
    generate = make_generator(parts, sample_cfg, size, with_nfe=True)
    key = jax.random.PRNGKey(seed)
    out, nfes = [], []
    for i in tqdm(range(-(-num // size)), desc="sample", unit="chunk", disable=not progress or num <= size,
                  file=sys.stderr):
        x, nfe = generate(params, jax.random.fold_in(key, i))
        out.append(np.asarray(x))
        nfes.append(float(nfe))
    return np.concatenate(out)[:num], float(np.mean(nfes))


def evaluate(parts: Parts, params, seed: int = 0) -> dict[str, float]:
    """Sample-quality numbers for a run, each next to the same number for real held-out data.

    Digits: the Fréchet digits distance (FDD) of as many samples as there are held-out digits,
    against the training digits. 2-D sets: the energy distance of 2,000 samples against fresh
    data, next to the Monte-Carlo floor (held-out data against the same fresh data).
    """
    heldout, reference = parts.data.heldout, parts.data.reference
    n = len(heldout)
    if n < 2:
        return {}
    x = np.asarray(make_generator(parts, parts.exp.sample, n)(params, jax.random.PRNGKey(seed + 7)))
    if x.ndim == 4 and x.shape[1:] == (8, 8, 1):
        from genflow.metrics import frechet_digits_distance

        return {"fdd": frechet_digits_distance(x, reference), "fdd_heldout": frechet_digits_distance(heldout, reference)}
    if x.ndim == 2:
        from genflow.metrics import energy_distance

        return {"energy": float(energy_distance(x, reference)), "energy_heldout": float(energy_distance(heldout, reference))}
    return {}


def report_lines(metrics: dict[str, float]) -> list[str]:
    names = {"fdd": "Fréchet digits distance", "energy": "energy distance to data"}
    return [f"{names[k]}: samples {v:.3f}, held-out real data {metrics[k + '_heldout']:.3f}"
            for k, v in metrics.items() if k in names]


def _check_workdir(exp: C.Experiment, workdir: str, resume: bool) -> None:
    cfg_path = os.path.join(workdir, "config.json")
    exists = os.path.exists(cfg_path)
    if resume and not exists:
        raise ConfigError(f"--resume was given but {workdir} holds no run (no config.json); "
                          "drop --resume to start one there.")
    if exists and not resume:
        raise ConfigError(f"{workdir} already holds a run; pass --resume to continue it, or use a new --workdir.")
    if exists:
        saved = C.from_dict(C.Experiment, json.load(open(cfg_path)))
        diffs = [d for d in C.differences(saved, exp) if not d.startswith(("train.steps", "train.log_every",
                                                                             "train.sample_every", "train.ckpt_every",
                                                                             "sample."))]
        if diffs:
            raise ConfigError(f"{workdir} holds a different experiment ({diffs[0]}); use a new --workdir.")


def train(exp: C.Experiment, workdir: str, *, resume: bool = False, progress: bool = True) -> dict:
    """Train ``exp`` into ``workdir``. Returns a summary dict (final loss, paths)."""
    _check_workdir(exp, workdir, resume)
    parts = build_parts(exp)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    os.makedirs(workdir, exist_ok=True)
    checkpointer = Checkpointer(ckpt_dir, keep=exp.train.keep)
    state = parts.state
    if resume and checkpointer.latest_step() is not None:
        state, meta = restore(checkpointer, state, workdir)
        parts.data.batches.position = int(meta["data_position"])
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(C.dumps(exp))
    step_fn = make_train_step(parts.graphdef, parts.rest, parts.process, exp.predicts,
                              build.build_objective(exp, parts.process), parts.tx,
                              ema_decay=exp.optim.ema_decay, mesh=parts.mesh)
    generate = make_generator(parts, exp.sample, exp.sample.num)
    reference = parts.data.reference

    def on_sample(st, step):
        x = np.asarray(generate(st.ema, jax.random.PRNGKey(exp.train.seed + 1)))
        save_samples(x, os.path.join(workdir, f"samples_{step:07d}.png"), reference)

    metrics_path = os.path.join(workdir, "metrics.jsonl")
    state, stopped = train_loop(state, step_fn, parts.data.batches, steps=exp.train.steps,
                                checkpointer=checkpointer, meta={"experiment": exp.name},
                                metrics_path=metrics_path, log_every=exp.train.log_every,
                                ckpt_every=exp.train.ckpt_every, sample_every=exp.train.sample_every,
                                on_sample=on_sample, tensorboard_dir=os.path.join(workdir, "tensorboard"),
                                progress=progress)
    checkpointer.close()
    summary = {"workdir": workdir, "step": int(jax.device_get(state.step)), "stopped": stopped}
    if os.path.exists(metrics_path):
        loss_curve(metrics_path, os.path.join(workdir, "loss.png"))
    if not stopped:
        samples = np.asarray(generate(state.ema, jax.random.PRNGKey(exp.train.seed + 1)))
        save_samples(samples, os.path.join(workdir, "samples.png"), reference)
        summary["samples"] = os.path.join(workdir, "samples.png")
        metrics = evaluate(parts, state.ema, exp.train.seed)
        if metrics:
            with open(os.path.join(workdir, "eval.json"), "w") as f:
                json.dump(dict(metrics, step=summary["step"]), f, indent=2)
            summary["report"] = report_lines(metrics)
    return summary


def restore(checkpointer: Checkpointer, like, workdir: str):
    try:
        return checkpointer.restore(like)
    except Exception as e:  # orbax raises many types for a structure or shape mismatch
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ConfigError(f"the checkpoint in {workdir} does not fit this experiment's network or optimizer "
                          f"({first}); sample it with the config.json it was trained with.") from None


def load_run(workdir: str) -> tuple[Parts, Any]:
    """Rebuild a run's parts from its config.json and restore its latest checkpoint."""
    cfg_path = os.path.join(workdir, "config.json")
    if not os.path.isdir(workdir):
        raise ConfigError(f"run directory {workdir} does not exist; train one with `genflow train --workdir {workdir}`.")
    if not os.path.exists(cfg_path):
        raise ConfigError(f"{workdir} is not a genflow run (no config.json); point at the directory `genflow train` wrote.")
    exp = C.from_dict(C.Experiment, json.load(open(cfg_path)))
    parts = build_parts(exp)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    if checkpointer.latest_step() is None:
        raise ConfigError(f"{workdir} has no checkpoint yet; train it longer (train.ckpt_every) or resume it.")
    state, _ = restore(checkpointer, parts.state, workdir)
    checkpointer.close()
    return parts, state


def sample(workdir: str, num: int, out: str, *, seed: int = 0, overrides: list[str] = ()) -> dict:
    """Draw ``num`` samples from a run's EMA weights into ``out`` (.png grid or .npz/.npy array).

    ``overrides`` are ``sample.*`` settings (``steps=35``, ``sampler=edm_heun``, ``grid=karras``,
    ``rtol=1e-4`` ...), applied over the run's own. Returns {"nfe", "seconds", "out"}."""
    if num <= 0:
        raise ConfigError(f"--num must be positive, got {num}.")
    if not out.endswith((".png", ".npz", ".npy")):
        raise ConfigError(f"--out {out!r} must end in .png, .npz or .npy.")
    parts, state = load_run(workdir)
    exp = C.with_overrides(parts.exp, [f"sample.{o}" for o in overrides] + [f"sample.num={num}"])
    build.validate(exp)
    cfg = exp.sample
    start = time.perf_counter()
    x, nfe = generate_samples(parts, state.ema, cfg, num, seed)
    seconds = time.perf_counter() - start
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if out.endswith(".png"):
        save_samples(x, out, parts.data.heldout)
    elif out.endswith(".npz"):
        np.savez(out, samples=x)
    else:
        np.save(out, x)
    print(f"wrote {num} samples to {out}: {cfg.sampler} on a {cfg.grid} grid, {nfe:.0f} NFE per sample, "
          f"{seconds:.1f} s ({num / seconds:.1f} samples/s, compilation included)", file=sys.stderr)
    return {"nfe": nfe, "seconds": seconds, "out": out}


def eval_run(workdir: str, seed: int = 0) -> list[str]:
    """The metrics table of a run: progress, last logged training numbers, and sample quality of
    its EMA weights next to real held-out data (recomputed, and saved to eval.json)."""
    parts, state = load_run(workdir)
    step = int(jax.device_get(state.step))
    rows = [("step", f"{step:,} of {parts.exp.train.steps:,}")]
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(metrics_path):
        lines = [json.loads(line) for line in open(metrics_path) if line.strip()]
        if lines:
            last = lines[-1]
            rows += [("training loss (last log)", f"{last['loss']:.4g}"),
                     ("steps/s (last log)", f"{last['steps_per_s']:.1f}"),
                     ("skipped non-finite steps", f"{sum(r.get('skipped', 0) for r in lines)}")]
    metrics = evaluate(parts, state.ema, seed)
    with open(os.path.join(workdir, "eval.json"), "w") as f:
        json.dump(dict(metrics, step=step), f, indent=2)
    names = {"fdd": "Fréchet digits distance", "energy": "energy distance to data"}
    for k, v in metrics.items():
        if k in names:
            rows += [(f"{names[k]} (samples, EMA)", f"{v:.4f}"),
                     (f"{names[k]} (held-out real data)", f"{metrics[k + '_heldout']:.4f}")]
    width = max(len(r[0]) for r in rows)
    return [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"] + \
           [f"| {name.ljust(width)} | {value} |" for name, value in rows]


def likelihood(workdir: str, num: int = 256, *, trace: str | None = None, rtol: float = 1e-5, atol: float = 1e-5,
               seed: int = 0) -> list[str]:
    """PF-ODE negative log-likelihood of ``num`` held-out examples under a run's EMA weights.

    For image data in [-1, 1] (8-bit pixels x mapped to x / 127.5 - 1) it also reports bits/dim
    with uniform dequantization (``genflow.samplers.bits_per_dim``): v = x + u, u ~ U[0, 1)^D,
    z = v / 128 - 1, bpd = -log p(z) / (D ln 2) + 7, an upper bound on the discrete NLL."""
    from genflow.samplers import bits_per_dim, log_likelihood

    if num < 1:
        raise ConfigError(f"--num must be positive, got {num}.")
    parts, state = load_run(workdir)
    held = parts.data.heldout[:num]
    if len(held) == 0:
        raise ConfigError(f"{workdir} has no held-out data (data.holdout = 0); train with data.holdout > 0.")
    dims = int(np.prod(held.shape[1:]))
    trace = trace or ("exact" if dims <= 64 else "hutchinson")
    if trace not in ("exact", "hutchinson"):
        raise ConfigError(f"--trace {trace!r} is not one of exact, hutchinson.")
    key = jax.random.PRNGKey(seed)
    x = np.asarray(held, np.float32)
    image = x.ndim == 4
    if image:  # uniform dequantization of the 8-bit grid, then the [-1, 1] scaling: z = v / 128 - 1
        u = np.asarray(jax.random.uniform(jax.random.fold_in(key, 1), x.shape))
        x = (np.round((x + 1.0) * 127.5) + u) / 128.0 - 1.0
    net = nnx.merge(parts.eval_graphdef, state.ema, parts.eval_rest)
    model = Model(net, parts.process, parts.exp.predicts)
    start = time.perf_counter()
    logp, stats = jax.jit(lambda m, xb, k: log_likelihood(m, xb, trace=trace, key=k, rtol=rtol, atol=atol))(
        model, jnp.asarray(x), key)
    seconds = time.perf_counter() - start
    nll = -np.asarray(logp) / dims
    rows = [("examples", f"{len(x)} held-out"), ("trace", trace),
            ("NLL (nats/dim)", f"{nll.mean():.4f} +- {nll.std(ddof=1) / np.sqrt(len(nll)):.4f}"),
            ("NFE (mean per example)", f"{float(np.mean(stats['nfe'])):.0f}"), ("seconds", f"{seconds:.1f}")]
    if image:
        bpd = np.asarray(bits_per_dim(logp, dims))
        rows.append(("bits/dim (uniform dequantization, +7 offset)",
                     f"{bpd.mean():.4f} +- {bpd.std(ddof=1) / np.sqrt(len(bpd)):.4f}"))
    width = max(len(r[0]) for r in rows)
    return [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"] + \
           [f"| {a.ljust(width)} | {b} |" for a, b in rows]
