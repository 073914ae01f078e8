"""A training run on disk: build everything from an Experiment, train, sample, resume.

Layout of a run directory: config.json, metrics.jsonl, samples.png, loss.png, eval.json,
checkpoints/, tensorboard/ (event files: `tensorboard --logdir runs`), ema_snapshots/ (the
power-function EMAs every train.ema_snapshot_every steps) and ema/sigma_rel=S/ (post-hoc EMAs
written by `genflow ema`).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genflow import config as C
from genflow.cli import build
from genflow.config import ConfigError
from genflow.models import Guided, ModelSpec, train_and_eval_specs
from genflow.samplers import registry
from genflow.plotting import loss_curve, save_samples
from genflow.progress import progress_bar
from genflow.training.checkpoint import CorruptCheckpoint
from genflow.data.pipeline import data_sharding
from genflow.placement import AXES, Placement, is_lead, to_host
from genflow.training import (Checkpointer, ema_snapshots, init_state, make_train_step, metrics_file,
                              train_loop)
from genflow.training.tensorboard import SummaryWriter


@dataclass
class Parts:
    """Everything built from one experiment for training it."""
    exp: C.Experiment
    process: Any
    data: build.DataBundle
    spec: ModelSpec                 # the training network (dropout on)
    eval_spec: ModelSpec            # the same network for sampling (dropout off)
    tx: Any
    state: Any
    placement: Placement

    @property
    def mesh(self):
        return self.placement.mesh

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


@dataclass
class Run:
    """What sampling a run needs, and nothing else: its config, process, sampling network and
    EMA weights from the latest checkpoint (no data set, no optimizer)."""
    exp: C.Experiment
    process: Any
    shape: tuple[int, ...]
    eval_spec: ModelSpec            # the network for sampling (dropout off)
    spec: ModelSpec                 # the same network for training on (dropout as configured)
    params: Any                     # the EMA weights
    step: int
    mesh: Any
    workdir: str


def _check_data_labels(exp: C.Experiment, data: build.DataBundle) -> None:
    if exp.net.num_classes is None:
        return
    if data.num_classes is None:
        raise ConfigError(f"net.num_classes={exp.net.num_classes} asks for a class-conditional model, but data "
                          f"{exp.data.name!r} has no labels; set net.num_classes=None (or data.labels=true for a folder "
                          "of class subfolders).")
    if exp.net.num_classes < data.num_classes:
        raise ConfigError(f"net.num_classes={exp.net.num_classes} is fewer than the {data.num_classes} classes of "
                          f"data {exp.data.name!r}; set net.num_classes={data.num_classes}.")


def build_placement(exp: C.Experiment) -> Placement:
    """The run's mesh and shardings from ``train.mesh`` (data, fsdp); one sentence if it does not fit."""
    try:
        return Placement.create(dict(zip(AXES, exp.train.mesh)))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def build_parts(exp: C.Experiment, position: int = 0) -> Parts:
    build.validate(exp)
    placement = build_placement(exp)
    process = build.build_process(exp.process)
    data = build.build_data(exp.data, exp.train.batch_size, exp.train.seed, placement.mesh, position)
    _check_data_labels(exp, data)
    make_net = lambda: build.build_net(exp.net, data.shape, exp.train.dtype, exp.train.seed)  # noqa: E731
    if placement.fsdp > 1:
        # the network's initial state is computed by one program whose outputs are born sharded
        graphdef, abstract = nnx.split(nnx.eval_shape(make_net))
        net = nnx.merge(graphdef, jax.jit(lambda: nnx.split(make_net())[1],
                                          out_shardings=placement.shardings(abstract))())
    else:
        net = make_net()
    spec, eval_spec, params = train_and_eval_specs(net, process, build.build_parameterization(exp))
    tx = build.build_optimizer(exp.optim)
    rels = exp.train.ema_sigma_rels
    state = placement.init(lambda p: init_state(p, tx, exp.train.seed, rels), params)
    return Parts(exp, process, data, spec, eval_spec, tx, state, placement)


def sample_labels(num_classes: int | None, labels: str | list[int] | None, num: int, seed: int = 0,
                  *, announce: bool = True) -> np.ndarray | None:
    """Labels (num,) for a conditional run: the given ones (a list or "0,1,2") repeated to ``num``, each
    class in turn with "all", or (None given) drawn uniformly, which is said on stderr. None for an
    unconditional run, which refuses labels."""
    if num_classes is None:
        if labels is not None:
            raise ConfigError("this run is unconditional (net.num_classes is None): drop --labels, or train a "
                              "conditional run with --set net.num_classes=N.")
        return None
    if labels is None:
        if announce:
            print(f"genflow: this run is class-conditional ({num_classes} classes); no --labels given, so labels "
                  "are drawn uniformly (pass --labels 0,1,... or --labels all).", file=sys.stderr)
        return np.asarray(jax.random.randint(jax.random.PRNGKey(seed + 31), (num,), 0, num_classes), np.int32)
    if isinstance(labels, str):
        if labels.strip() == "all":
            return (np.arange(num) % num_classes).astype(np.int32)
        try:
            labels = [int(v) for v in labels.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--labels takes class numbers separated by commas (e.g. 0,1,2) or 'all', "
                              f"not {labels!r}.") from None
    labels = list(labels)
    if not labels:
        raise ConfigError("--labels is empty; pass class numbers such as 0,1,2 or 'all'.")
    bad = [v for v in labels if not 0 <= v < num_classes]
    if bad:
        raise ConfigError(f"label {bad[0]} is not a class of this run; its classes are 0..{num_classes - 1}.")
    return np.resize(np.asarray(labels, np.int32), num)


def make_generator(spec: ModelSpec, shape: tuple[int, ...], sample_cfg: C.Sample, num: int, mesh, *,
                   with_nfe: bool = False, guide: ModelSpec | None = None):
    """jit-compiled ``generate(params, key, labels=None, guide_params=None) -> (num, *shape)`` with the
    configured sampler and guidance (``-> (samples, stats)`` with ``with_nfe``, ``stats["nfe"]`` the
    model evaluations per sample). The guidance scale is a traced value: a new ``sample.guidance``
    does not recompile."""
    split = num % mesh.size == 0  # shard the batch over devices when it divides evenly
    # a parallel-in-time solve stacks its window's steps into the batch: that batch is what is split
    window = sample_cfg.window or sample_cfg.steps
    window_sharding = data_sharding(mesh) if (window * num) % mesh.size == 0 else None
    sampler = build.build_sampler(sample_cfg, spec.process, sharding=window_sharding)
    shape = (num,) + tuple(shape)
    interval = tuple(sample_cfg.guidance_interval) or None
    use_guidance = bool(sample_cfg.guidance) or guide is not None

    @jax.jit
    def _generate(params, key, labels, guide_params, w):
        k1, k2 = jax.random.split(key)
        model = spec.model(params)
        if use_guidance:
            model = Guided(model, w, guide=None if guide is None else guide.model(guide_params), interval=interval)
        x1 = spec.process.prior(k1, shape)
        if split:
            x1 = jax.lax.with_sharding_constraint(x1, data_sharding(mesh))
        x, stats = sampler(model, x1, k2, labels)
        return (x, stats) if with_nfe else x

    def generate(params, key, labels=None, guide_params=None):
        labels = None if labels is None else jnp.asarray(labels, jnp.int32)
        return _generate(params, key, labels, guide_params, jnp.float32(sample_cfg.guidance))

    return generate


def generate_samples(spec: ModelSpec, shape, mesh, params, sample_cfg: C.Sample, num: int, seed: int = 0, *,
                     labels: np.ndarray | None = None, guide: ModelSpec | None = None, guide_params=None,
                     chunk: int = 1024, progress: bool = True,
                     stop: "_SampleStop | None" = None, stats: dict | None = None) -> tuple[np.ndarray, float]:
    """(samples, mean NFE per sample): ``num`` samples in chunks of at most ``chunk`` (one compiled
    program), with a progress bar. Chunk i uses key fold_in(seed, i), so the first n samples do
    not depend on ``num``. ``labels`` (num,) condition a class-conditional run. With ``stop`` set
    (Ctrl-C during sampling), the chunks done so far are returned. A dict passed as ``stats``
    receives each of the sampler's other stats (e.g. a parallel solve's ``rounds``) per chunk."""
    size = min(chunk, num)
    generate = make_generator(spec, shape, sample_cfg, size, mesh, with_nfe=True, guide=guide)
    key = jax.random.PRNGKey(seed)
    out, nfes = [], []
    n_chunks = -(-num // size)
    bar = progress_bar(n_chunks, desc="sample", unit="chunk", disable=not progress or num <= size,
                       every=max(1, n_chunks // 20))
    for i in range(n_chunks):
        if stop is not None and stop.raised:
            break
        lab = None
        if labels is not None:
            lab = np.resize(labels[i * size:(i + 1) * size], size)   # the last chunk is padded, then cut
        x, chunk_stats = generate(params, jax.random.fold_in(key, i), lab, guide_params)
        out.append(np.asarray(x))
        nfes.append(float(chunk_stats["nfe"]))
        if stats is not None:
            for name, value in chunk_stats.items():
                stats.setdefault(name, []).append(np.asarray(value))
        bar.update(1)
    bar.close()
    if not out:
        return np.zeros((0,) + tuple(shape), np.float32), 0.0
    return np.concatenate(out)[:num], float(np.mean(nfes))


def check_finite(x: np.ndarray, what: str) -> None:
    """One sentence, not a file of NaNs, when samples are not finite."""
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise ConfigError(f"{int(bad.sum())} of {len(x)} {what} are not finite (NaN or inf); nothing was written. "
                          "The weights may have diverged (check metrics.jsonl), or the sampler is unstable on this "
                          "process: try another sample.sampler or more sample.steps.")


def evaluate(exp: C.Experiment, spec: ModelSpec, mesh, params, data: build.DataBundle, seed: int = 0) -> dict[str, float]:
    """Sample-quality numbers for a run, each next to the same number for real held-out data.

    Digits: the Fréchet digits distance (FDD) of as many samples as there are held-out digits,
    against the training digits; for a class-conditional run the samples' labels are the held-out
    digits' own (so the class mix is the data's) and the classifier's accuracy on the requested
    labels is reported too. 2-D sets: the energy distance of 2,000 samples against fresh data,
    next to the Monte-Carlo floor (held-out data against the same fresh data).
    """
    heldout, reference = data.heldout, data.reference
    n = len(heldout)
    if n < 2:
        return {}
    labels = None
    if exp.net.num_classes is not None:
        labels = data.heldout_labels if data.heldout_labels is not None else sample_labels(
            exp.net.num_classes, None, n, seed, announce=False)
    generate = make_generator(spec, tuple(data.shape), exp.sample, n, mesh)
    x = to_host(generate(params, jax.random.PRNGKey(seed + 7), labels))
    check_finite(x, "evaluation samples")
    if x.ndim == 4 and x.shape[1:] == (8, 8, 1):
        from genflow.metrics import frechet_digits_distance

        out = {"fdd": frechet_digits_distance(x, reference), "fdd_heldout": frechet_digits_distance(heldout, reference)}
        if labels is not None:
            from genflow.metrics.digits_classifier import classify

            out["label_accuracy"] = float(np.mean(classify(x) == labels))
            out["label_accuracy_heldout"] = float(np.mean(classify(heldout) == labels)) \
                if data.heldout_labels is not None else None
        return out
    if x.ndim == 2:
        from genflow.metrics import energy_distance

        return {"energy": float(energy_distance(x, reference)), "energy_heldout": float(energy_distance(heldout, reference))}
    return {}


METRIC_NAMES = {"fdd": "Fréchet digits distance", "energy": "energy distance to data",
                "label_accuracy": "label accuracy (digits classifier)"}


def _number(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def report_lines(metrics: dict[str, float]) -> list[str]:
    return [f"{METRIC_NAMES[k]}: samples {_number(v)}, held-out real data {_number(metrics.get(k + '_heldout'))}"
            for k, v in metrics.items() if k in METRIC_NAMES]


def refuse_a_file(directory: str, what: str) -> None:
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ConfigError(f"{what} {directory} is a file, not a directory; pass a directory path.")


def check_writable(directory: str, what: str = "--workdir") -> None:
    """Create ``directory`` and write a probe file in it, or say in one sentence why that fails."""
    refuse_a_file(directory, what)
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".genflow-write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("genflow")
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"cannot write to {directory} ({e.strerror}); pass a {what} on a writable disk.") from None


def check_free_space(directory: str, needed: int, what: str) -> None:
    """One sentence, before any work, when ``directory``'s disk has fewer than ``needed`` bytes free."""
    import shutil

    free = shutil.disk_usage(directory).free
    if free < needed:
        raise ConfigError(f"{directory} has {free / 2**20:,.1f} MiB free but {what} needs about "
                          f"{needed / 2**20:,.1f} MiB; free some space or pick a directory on another disk.")


def snapshot_every(train_cfg: C.Train) -> int:
    """Steps between post-hoc EMA snapshots (0: none, as no power-function EMA is tracked)."""
    if not train_cfg.ema_sigma_rels:
        return 0
    return train_cfg.ema_snapshot_every or train_cfg.ckpt_every


def _state_bytes(state) -> int:
    return int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(state)
                   if hasattr(x, "dtype")))


def _is_failed_start(workdir: str) -> bool:
    """A config.json with no checkpoint and no logged row: a start that failed before its first save."""
    ckpt = os.path.join(workdir, "checkpoints")
    has_ckpt = os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt))
    return not has_ckpt and not os.path.exists(os.path.join(workdir, "metrics.jsonl"))


def _check_workdir(exp: C.Experiment, workdir: str, resume: bool) -> None:
    refuse_a_file(workdir, "--workdir")
    cfg_path = os.path.join(workdir, "config.json")
    exists = os.path.exists(cfg_path)
    if resume and not exists:
        raise ConfigError(f"--resume was given but {workdir} holds no run (no config.json); "
                          "drop --resume to start one there.")
    if exists and not resume:
        if _is_failed_start(workdir):
            print(f"genflow: {workdir} holds only the config of a start that failed before its first checkpoint; "
                  "starting over there.", file=sys.stderr)
            return
        raise ConfigError(f"{workdir} already holds a run; pass --resume to continue it, or use a new --workdir.")
    if exists:
        saved = read_config(workdir)
        diffs = [d for d in C.differences(saved, exp) if not d.startswith(("train.steps", "train.log_every",
                                                                             "train.sample_every", "train.ckpt_every",
                                                                             "train.ema_snapshot_every", "sample."))]
        if diffs:
            raise ConfigError(f"{workdir} holds a different experiment ({diffs[0]}); use a new --workdir.")


def _grid_labels(exp: C.Experiment, num: int) -> np.ndarray | None:
    """Labels of the training run's sample figures: each class in turn (a row per class where it fits)."""
    return None if exp.net.num_classes is None else (np.arange(num) % exp.net.num_classes).astype(np.int32)


def train(exp: C.Experiment, workdir: str, *, resume: bool = False, progress: bool = True) -> dict:
    """Train ``exp`` into ``workdir``. Returns a summary dict (final loss, paths; ``stopped``: the
    signal number that stopped it early, or None).

    Every check (config values, the directory is writable and its disk has room for the
    checkpoints) comes before anything is compiled or written; config.json is written only
    once the run is built, so a failed start leaves nothing that blocks the corrected command."""
    _check_workdir(exp, workdir, resume)
    build.validate(exp)
    created = not os.path.exists(workdir)
    check_writable(workdir)
    try:
        return _train(exp, workdir, resume, progress)
    except BaseException:
        # a start that failed before config.json leaves no directory behind to block the next try
        if created and not os.path.exists(os.path.join(workdir, "config.json")):
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        raise


def _train(exp: C.Experiment, workdir: str, resume: bool, progress: bool) -> dict:
    parts = build_parts(exp)
    state_bytes = _state_bytes(parts.state)
    every = snapshot_every(exp.train)
    n_snap = 0 if not every else -(-exp.train.steps // every)
    snap_bytes = n_snap * _state_bytes(parts.state.phema)
    check_free_space(workdir, (exp.train.keep + 1) * state_bytes + snap_bytes + (16 << 20),
                     f"{exp.train.keep + 1} checkpoints of {state_bytes / 2**20:,.1f} MiB (train.keep + 1)"
                     + (f", {n_snap} EMA snapshots of {snap_bytes / max(n_snap, 1) / 2**20:,.1f} MiB" if n_snap else "")
                     + " and the logs")
    ckpt_dir = os.path.join(workdir, "checkpoints")
    snapshot_dir = os.path.join(workdir, ema_snapshots.DIRNAME)
    checkpointer = Checkpointer(ckpt_dir, keep=exp.train.keep)
    state, pending = parts.state, None
    if resume:
        if checkpointer.latest_step() is None:
            raise ConfigError(f"--resume was given but {workdir} has no checkpoint left to continue from; drop "
                              f"--resume and use a new --workdir to start over.")
        state, meta = restore(checkpointer, state, workdir)
        parts.data.batches.position = int(meta["data_position"])
        pending = meta.get("pending_metrics")
        ema_snapshots.truncate(snapshot_dir, int(jax.device_get(state.step)))
    lead = is_lead()       # process 0 writes the shared files; every process computes and checkpoints
    if lead:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(C.dumps(exp))
    step_fn = make_train_step(parts.spec, build.build_objective(exp, parts.process), parts.tx,
                              ema_decay=exp.optim.ema_decay,
                              p_uncond=exp.train.p_uncond if exp.net.num_classes is not None else 0.0,
                              mesh=parts.placement, ema_sigma_rels=exp.train.ema_sigma_rels,
                              microbatches=exp.train.microbatches)
    generate = make_generator(parts.eval_spec, parts.shape, exp.sample, exp.sample.num, parts.mesh)
    grid_labels = _grid_labels(exp, exp.sample.num)
    reference = parts.data.reference

    def figure(x, path):
        """Save the sample figure and return it as a uint8 image for TensorBoard (process 0 only)."""
        if not lead:
            return None
        save_samples(x, path, reference)
        from PIL import Image

        return np.asarray(Image.open(path).convert("RGB"))

    def on_sample(st, step):
        x = to_host(generate(st.ema, jax.random.PRNGKey(exp.train.seed + 1), grid_labels))
        if not np.all(np.isfinite(x)):
            tqdm_write(f"genflow: warning: the samples at step {step:,} are not finite; no figure written.")
            return None
        return figure(x, os.path.join(workdir, f"samples_{step:07d}.png"))

    metrics_path = os.path.join(workdir, "metrics.jsonl")
    writer = SummaryWriter(os.path.join(workdir, "tensorboard"),
                           resume_step=int(jax.device_get(state.step))) if lead else None
    state, stopped = train_loop(state, step_fn, parts.data.batches, steps=exp.train.steps,
                                checkpointer=checkpointer, meta={"experiment": exp.name},
                                metrics_path=metrics_path, log_every=exp.train.log_every,
                                ckpt_every=exp.train.ckpt_every, sample_every=exp.train.sample_every,
                                on_sample=on_sample, writer=writer,
                                progress=progress, max_skipped=exp.train.max_skipped, pending=pending,
                                snapshot_every=every,
                                on_snapshot=lambda st, step: ema_snapshots.save(snapshot_dir, step,
                                                                                exp.train.ema_sigma_rels, st.phema))
    checkpointer.close()
    summary = {"workdir": workdir, "step": int(jax.device_get(state.step)), "stopped": stopped}
    if lead and os.path.exists(metrics_path):
        loss_curve(metrics_path, os.path.join(workdir, "loss.png"))
    if not stopped:
        samples = to_host(generate(state.ema, jax.random.PRNGKey(exp.train.seed + 1), grid_labels))
        check_finite(samples, "final samples")
        image = figure(samples, os.path.join(workdir, "samples.png"))
        if writer is not None:
            writer.image(summary["step"], "samples", image)
        summary["samples"] = os.path.join(workdir, "samples.png")
        metrics = evaluate(exp, parts.eval_spec, parts.mesh, state.ema, parts.data, exp.train.seed)
        if metrics and lead:
            write_eval(workdir, metrics, summary["step"])
            summary["report"] = report_lines(metrics)
    return summary


def write_eval(workdir: str, metrics: dict[str, float], step: int) -> None:
    """eval.json, strict JSON: a number that could not be computed is null."""
    with open(os.path.join(workdir, "eval.json"), "w") as f:
        f.write(metrics_file.dumps(dict(metrics, step=step), indent=2))


def tqdm_write(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


def restore(checkpointer: Checkpointer, like, workdir: str):
    try:
        return checkpointer.restore(like)
    except CorruptCheckpoint as e:
        raise ConfigError(str(e)) from None
    except Exception as e:  # orbax raises many types for a structure or shape mismatch
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ConfigError(f"the checkpoint in {workdir} does not fit this experiment's network or optimizer "
                          f"({first}); sample it with the config.json it was trained with.") from None


def read_config(workdir: str) -> C.Experiment:
    """A run directory's config.json, or one sentence on what is wrong with the directory."""
    cfg_path = os.path.join(workdir, "config.json")
    if not os.path.isdir(workdir):
        raise ConfigError(f"run directory {workdir} does not exist; train one with `genflow train --workdir {workdir}`.")
    if not os.path.exists(cfg_path):
        raise ConfigError(f"{workdir} is not a genflow run (no config.json); point at the directory `genflow train` wrote.")
    try:
        raw = json.load(open(cfg_path))
        if isinstance(raw, dict) and isinstance(raw.get("train"), dict):
            # a run from before post-hoc EMA tracked no power-function EMA: its checkpoints hold none
            raw["train"].setdefault("ema_sigma_rels", [])
        return C.from_dict(C.Experiment, raw, source=cfg_path)
    except ConfigError as e:
        raise ConfigError(f"{e} Fix the file, or restore it from the experiment file it was made "
                          "from.") from None
    except (ValueError, TypeError, AttributeError) as e:
        raise ConfigError(f"{cfg_path} is not a readable genflow config ({type(e).__name__}: {e}); restore it from "
                          "the experiment file it was made from.") from None


def load_run(workdir: str, ema: str | None = None, *, announce: bool = True) -> Run:
    """A run's config, process, sampling network and EMA weights from its latest checkpoint.

    Builds only the network and the process: no data set is opened (a CIFAR-10 run samples on a
    machine without the CIFAR-10 files) and no optimizer state is read. ``ema="sigma_rel=S"`` takes
    the post-hoc EMA of that length instead (``RUN/ema/sigma_rel=S``, reconstructed from the run's
    snapshots and written there first if it is missing or older than the newest snapshot)."""
    exp = read_config(workdir)
    build.validate(exp)
    process = build.build_process(exp.process)
    shape = build.data_shape(exp.data)
    net = build.build_net_for_weights(exp.net, shape, exp.train.dtype, exp.train.seed)
    train_spec, spec, params = train_and_eval_specs(net, process, build.build_parameterization(exp))
    placement = Placement.create()        # sampling: data parallel, the weights replicated
    mesh = placement.mesh
    if ema is not None:
        from genflow.cli import posthoc

        weights, info = posthoc.weights(workdir, posthoc.parse_ema(ema), params, announce=announce)
        weights = jax.device_put(weights, placement.replicated())
        return Run(exp, process, shape, spec, train_spec, weights, info["step"], mesh, workdir)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    if checkpointer.latest_step() is None:
        raise ConfigError(f"{workdir} has no checkpoint yet; train it longer (train.ckpt_every) or resume it.")
    try:
        step, ema = checkpointer.restore_weights(params)
    except CorruptCheckpoint as e:
        raise ConfigError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - orbax raises many types for a structure or shape mismatch
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise ConfigError(f"the checkpoint in {workdir} does not fit the network its config.json describes "
                          f"({first}).") from None
    finally:
        checkpointer.close()
    ema = jax.device_put(ema, placement.replicated())
    return Run(exp, process, shape, spec, train_spec, ema, step, mesh, workdir)


class _SampleStop:
    """Ctrl-C / SIGTERM during `genflow sample`: finish the current chunk, write what is done."""

    def __init__(self):
        self.raised, self._old = False, {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                pass
        return self

    def _handler(self, signum, frame):
        self.raised, self.signum = True, signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def sample(workdir: str, num: int, out: str, *, seed: int = 0, overrides: list[str] = (),
           labels: str | None = None, guide: str | None = None, progress: bool = True,
           ema: str | None = None) -> dict:
    """Draw ``num`` samples from a run's EMA weights into ``out`` (.png grid or .npz/.npy array);
    ``ema="sigma_rel=S"`` samples its post-hoc EMA of that length instead (see ``load_run``).

    ``overrides`` are ``sample.*`` settings (``steps=35``, ``sampler=edm_heun``, ``grid=karras``,
    ``guidance=2``, ``guidance_interval=0.3,5`` ...), applied over the run's own. ``labels``
    ("0,1,2" or "all") condition a class-conditional run (uniform labels, said so, when None);
    ``guide`` is the run directory of a weaker model of the same task for autoguidance. A .npz
    holds ``samples`` (N, ...) in the data's range and ``labels`` (N,) for a conditional run.
    Returns {"nfe", "seconds", "out", "labels"}."""
    if num <= 0:
        raise ConfigError(f"--num must be positive, got {num}.")
    if not out.endswith((".png", ".npz", ".npy")):
        raise ConfigError(f"--out {out!r} must end in .png, .npz or .npy.")
    run = load_run(workdir, ema)
    exp = C.with_overrides(run.exp, [f"sample.{o}" for o in overrides] + [f"sample.num={num}"])
    guide_run = None
    if guide is not None:
        guide_run = load_run(guide)
        if guide_run.shape != run.shape or guide_run.exp.net.num_classes != run.exp.net.num_classes:
            raise ConfigError(f"--guide {guide} models other data than {workdir} (shape {guide_run.shape} vs "
                              f"{run.shape}, classes {guide_run.exp.net.num_classes} vs {run.exp.net.num_classes}); "
                              "autoguidance needs a weaker model of the same task.")
    build.validate(exp, guide)
    cfg = exp.sample
    y = sample_labels(run.exp.net.num_classes, labels, num, seed)
    out_dir = os.path.dirname(os.path.abspath(out))
    check_writable(out_dir, "--out directory")
    if os.path.isdir(out):
        raise ConfigError(f"--out {out} is a directory; pass a file name ending in .png, .npz or .npy.")
    check_free_space(out_dir, num * int(np.prod(run.shape)) * 4 + (1 << 20), f"{num:,} samples")
    start = time.perf_counter()
    chunk_stats: dict = {}
    with _SampleStop() as stop:
        x, nfe = generate_samples(run.eval_spec, run.shape, run.mesh, run.params, cfg, num, seed, labels=y,
                                  guide=None if guide_run is None else guide_run.eval_spec,
                                  guide_params=None if guide_run is None else guide_run.params,
                                  progress=progress, stop=stop, stats=chunk_stats)
    seconds = time.perf_counter() - start
    done = len(x)
    if done == 0:
        raise KeyboardInterrupt
    check_finite(x, "samples")
    y = None if y is None else y[:done]
    if out.endswith(".png"):
        save_samples(x, out)
    elif out.endswith(".npz"):
        np.savez(out, samples=x, **({} if y is None else {"labels": y}))
    else:
        np.save(out, x)
    what = f"{cfg.sampler} on a {cfg.grid} grid" if registry.get(cfg.sampler).fixed_grid else cfg.sampler
    result = {}
    if cfg.parallel:
        rounds, residual = int(np.max(chunk_stats["rounds"])), float(np.max(chunk_stats["residual"]))
        converged = bool(np.all(chunk_stats["converged"]))
        what += (f", solved by {cfg.parallel} iteration in {rounds} rounds for {cfg.steps} steps "
                 f"(window {cfg.window or cfg.steps}, tol {cfg.tol:g}, last update {residual:.2g} x sigma"
                 f"{'' if converged else ', NOT converged'})")
        result = {"rounds": rounds, "residual": residual, "converged": converged}
    if ema is not None:
        what += f", post-hoc EMA {ema}"
    if cfg.guidance:
        what += f", guidance w={cfg.guidance:g}" + (f" in {tuple(cfg.guidance_interval)}" if cfg.guidance_interval else "")
        what += f" ({'autoguidance from ' + guide if guide else 'classifier-free'})"
    print(f"wrote {done} samples to {out}: {what}, {nfe:.0f} NFE per sample, "
          f"{seconds:.1f} s ({done / seconds:.1f} samples/s, compilation included)", file=sys.stderr)
    if stop.raised:
        print(f"genflow: interrupted after {done} of {num} samples; those were written.", file=sys.stderr)
        raise KeyboardInterrupt
    return {"nfe": nfe, "seconds": seconds, "out": out, "labels": y, **result}


def eval_run(workdir: str, seed: int = 0) -> list[str]:
    """The metrics table of a run: progress, last logged training numbers, and sample quality of
    its EMA weights next to real held-out data (recomputed, and saved to eval.json)."""
    run = load_run(workdir)
    data = build.build_data(run.exp.data, run.exp.train.batch_size, run.exp.train.seed, None)
    rows = [("step", f"{run.step:,} of {run.exp.train.steps:,}")]
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(metrics_path):
        lines = metrics_file.read_rows(metrics_path)
        if lines:
            last = lines[-1]
            rows += [("training loss (last log)", "none finite" if last.get("loss") is None else f"{last['loss']:.4g}"),
                     ("steps/s (last log)", f"{last['steps_per_s']:.1f}"),
                     ("skipped non-finite steps", f"{sum(r.get('skipped', 0) for r in lines)}")]
    metrics = evaluate(run.exp, run.eval_spec, run.mesh, run.params, data, seed)
    write_eval(workdir, metrics, run.step)
    for k, v in metrics.items():
        if k in METRIC_NAMES:
            rows += [(f"{METRIC_NAMES[k]} (samples, EMA)", _number(v, 4)),
                     (f"{METRIC_NAMES[k]} (held-out real data)", _number(metrics.get(k + '_heldout'), 4))]
    width = max(len(r[0]) for r in rows)
    return [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"] + \
           [f"| {name.ljust(width)} | {value} |" for name, value in rows]


def likelihood(workdir: str, num: int = 256, *, trace: str | None = None, rtol: float = 1e-5, atol: float = 1e-5,
               seed: int = 0) -> list[str]:
    """PF-ODE negative log-likelihood of ``num`` held-out examples under a run's EMA weights.

    For image data in [-1, 1] (8-bit pixels x mapped to x / 127.5 - 1) it also reports bits/dim
    with uniform dequantization (``genflow.samplers.bits_per_dim``): v = x + u, u ~ U[0, 1)^D,
    z = v / 128 - 1, bpd = -log p(z) / (D ln 2) + 7, an upper bound on the discrete NLL. A
    class-conditional run is evaluated with each example's own label, log p(x | c)."""
    from genflow.samplers import bits_per_dim, log_likelihood

    if num < 1:
        raise ConfigError(f"--num must be positive, got {num}.")
    run = load_run(workdir)
    data = build.build_data(run.exp.data, run.exp.train.batch_size, run.exp.train.seed, None)
    held = data.heldout[:num]
    if len(held) == 0:
        raise ConfigError(f"{workdir} has no held-out data (data.holdout = 0); train with data.holdout > 0.")
    cond = None
    if run.exp.net.num_classes is not None and data.heldout_labels is not None:
        cond = jnp.asarray(data.heldout_labels[:num], jnp.int32)
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
    model = run.eval_spec.model(run.params)
    start = time.perf_counter()
    logp, stats = jax.jit(lambda m, xb, k, c: log_likelihood(m, xb, cond=c, trace=trace, key=k, rtol=rtol,
                                                             atol=atol))(model, jnp.asarray(x), key, cond)
    seconds = time.perf_counter() - start
    nll = -np.asarray(logp) / dims
    rows = [("examples", f"{len(x)} held-out" + (", each with its label" if cond is not None else "")),
            ("trace", trace),
            ("NLL (nats/dim)", f"{nll.mean():.4f} +- {nll.std(ddof=1) / np.sqrt(len(nll)):.4f}"),
            ("NFE (mean per example)", f"{float(np.mean(stats['nfe'])):.0f}"), ("seconds", f"{seconds:.1f}")]
    if image:
        bpd = np.asarray(bits_per_dim(logp, dims))
        rows.append(("bits/dim (uniform dequantization, +7 offset)",
                     f"{bpd.mean():.4f} +- {bpd.std(ddof=1) / np.sqrt(len(bpd)):.4f}"))
    width = max(len(r[0]) for r in rows)
    return [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"] + \
           [f"| {a.ljust(width)} | {b} |" for a, b in rows]
