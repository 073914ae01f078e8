"""Bodies of ``genflow reflow RUN_DIR`` and ``genflow distill RUN_DIR``.

``reflow_command`` takes a trained rectified-flow run (k-RF, k = 1 for a ``genflow train`` run),
stores its couplings in ``RUN_DIR/couplings/`` and trains the (k+1)-RF into a new run
directory (default ``RUN_DIR-<k+1>rf``, or ``...-2rf`` -> ``...-3rf``), which is itself a
genflow run: ``genflow sample``/``eval`` read it and ``genflow reflow`` continues it.
``distill_command`` trains a k-step sampler on the same couplings into ``RUN_DIR-distill<k>``,
whose config samples with k Euler steps.

Both resume: couplings skip the chunks on disk, training restarts from the last checkpoint.
The algorithms live in ``genflow.reflow``; this module only reads runs and configs.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
from typing import Any, Callable

import jax
import numpy as np

from genflow import config as C
from genflow.cli.run import load_run
from genflow.config import ConfigError
from genflow.models.model import Model
from genflow.processes import RectifiedFlow
from genflow.reflow.couplings import (Couplings, generate_couplings, load_couplings, make_coupler, params_fingerprint,
                                      pf_ode_sampler, read_meta)
from genflow.reflow.report import default_distance, flow_report
from genflow.reflow.train import coupled, distillation, train_on_couples

COUPLINGS = "couplings"
REFLOW_META = "reflow.json"


def run_k(run_dir: str) -> int:
    """k of a k-rectified-flow run directory: 1 for a plain run, from reflow.json otherwise."""
    path = os.path.join(run_dir, REFLOW_META)
    return int(json.load(open(path)).get("k", 1)) if os.path.exists(path) else 1


def _default_out(run_dir: str, suffix: str, k: int | None = None) -> str:
    base = run_dir.rstrip("/")
    if k is not None and re.search(rf"-{k}rf$", base):
        return re.sub(rf"-{k}rf$", suffix, base)
    return base + suffix


def _check_run(run, run_dir: str) -> None:
    if not isinstance(run.process, RectifiedFlow):
        raise ConfigError(f"{run_dir} trains process {run.exp.process.name!r}; reflow and distillation need a "
                          "rectified-flow run (process.name=rectified_flow, objective=flow_matching).")


def _positive(name: str, value) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}.")


def ensure_couplings(run, run_dir: str, *, num_couples: int, seed: int, chunk_size: int | None,
                     solver: str, ode_steps: int | None, rtol: float, atol: float, progress: bool = True,
                     should_stop: Callable[[int], bool] | None = None) -> tuple[Couplings, dict]:
    """Generate (or finish) ``run_dir/couplings`` from the run's EMA weights; return (couplings, meta).
    A class-conditional flow's couples each carry the label its sample was generated with."""
    directory = os.path.join(run_dir, COUPLINGS)
    n_dev = run.mesh.size
    old = read_meta(directory)
    if chunk_size is None:  # at most 4096 couples per solve, a multiple of the device count
        chunk_size = old["chunk_size"] if old else math.ceil(min(4096, num_couples) / n_dev) * n_dev
    if chunk_size % n_dev:
        raise ConfigError(f"--chunk-size {chunk_size} does not split over {n_dev} devices; use a multiple of {n_dev}.")
    try:
        sampler = pf_ode_sampler(solver, ode_steps, rtol, atol)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    num_classes = run.exp.net.num_classes
    couple = make_coupler(run.eval_spec, run.shape, chunk_size, sampler=sampler, mesh=run.mesh,
                          num_classes=num_classes)
    meta = {"source": f"step {run.step} ema {params_fingerprint(run.params)}",   # which weights, not where
            "solver": solver, "ode_steps": ode_steps or 0, "rtol": rtol, "atol": atol,
            "shape": list(run.shape), "dtype": "float32"}
    if num_classes is not None:
        meta["num_classes"] = num_classes
    try:
        info = generate_couplings(couple, run.params, directory, num_couples=num_couples, chunk_size=chunk_size,
                                  seed=seed, meta=meta, progress=progress, should_stop=should_stop)
        couplings = load_couplings(directory, num_couples)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return couplings, info


def _report_lines(label_models: list[tuple[str, Model]], run, seed: int, steps=(1,)) -> list[str]:
    from genflow.cli import build

    try:
        data = build.build_data(run.exp.data, run.exp.train.batch_size, run.exp.train.seed, None)
    except ConfigError as e:  # training on the couplings needed no data; the report measures against it
        return [f"(no report: the run's data set cannot be opened here: {e})"]
    name, distance = default_distance(run.shape)
    reference = np.asarray(data.reference)
    n = 2000 if len(run.shape) == 1 else len(data.heldout)
    x1 = run.process.prior(jax.random.PRNGKey(seed + 12_345), (n,) + run.shape)
    cond = None
    if run.exp.net.num_classes is not None:  # the data's own class mix where there are held-out labels
        labels = data.heldout_labels if data.heldout_labels is not None and len(data.heldout_labels) == n else \
            np.asarray(jax.random.randint(jax.random.PRNGKey(seed + 54_321), (n,), 0, run.exp.net.num_classes))
        cond = jax.numpy.asarray(labels, jax.numpy.int32)
    lines = []
    for label, model in label_models:
        r = flow_report(model, x1, reference, distance=distance, euler_steps=steps, adaptive=False, cond=cond)
        text = f"{label}: straightness {r['straightness']:.4g}, transport cost {r['transport_cost']:.4g}"
        for k in steps:
            if f"euler_{k}" in r:
                text += f", {name} at {k} Euler step{'s' if k > 1 else ''} {r[f'euler_{k}']:.4g}"
        lines.append(text)
    return lines





def _prepare_out(out_dir: str, exp: C.Experiment, info: dict[str, Any]) -> None:
    """Write config.json and reflow.json into ``out_dir``; refuse one made from something else."""
    path = os.path.join(out_dir, REFLOW_META)
    if os.path.exists(path):
        old = json.load(open(path))
        keys = [k for k in ("kind", "k", "source", "couplings", "num_couples", "distill_k") if old.get(k) != info.get(k)]
        if keys:
            raise ConfigError(f"{out_dir} holds a different run ({keys[0]} {old.get(keys[0])!r} vs "
                              f"{info.get(keys[0])!r}); pass a new out_dir.")
    elif os.path.exists(os.path.join(out_dir, "config.json")):
        raise ConfigError(f"{out_dir} already holds a run that is not a reflow of this one; pass a new out_dir.")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        f.write(C.dumps(exp))
    with open(path, "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)


def _train(run, couplings: Couplings, out_dir: str, exp: C.Experiment, *, objective, steps: int, batch_size: int,
           seed: int, lr: float | None, progress: bool):
    from genflow.cli import build
    from genflow.cli.run import build_placement

    o = exp.optim
    tx = build.build_optimizer(o, lr)
    p_uncond = exp.train.p_uncond if exp.net.num_classes is not None else 0.0
    try:
        return train_on_couples(run.spec, run.params, tx, couplings.x0, couplings.x1, labels=couplings.labels,
                                p_uncond=p_uncond, workdir=out_dir, steps=steps, batch_size=batch_size, seed=seed,
                                ema_decay=o.ema_decay, objective=objective, mesh=build_placement(exp),
                                microbatches=exp.train.microbatches,
                                meta={"experiment": exp.name}, log_every=exp.train.log_every,
                                ckpt_every=exp.train.ckpt_every, keep=exp.train.keep, progress=progress)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _load_checked(run_dir, num_couples, steps, batch_size, chunk_size, seed, ode_steps):
    for name, value in [("--num-couples", num_couples), ("--steps", steps), ("--batch-size", batch_size),
                        ("--chunk-size", chunk_size), ("--ode-steps", ode_steps)]:
        _positive(name, value)
    if seed < 0:
        raise ConfigError(f"--seed must be non-negative, got {seed}.")
    run = load_run(run_dir)
    _check_run(run, run_dir)
    return run


def _coupling_command(kind: str, run_dir: str, out_dir: str | None, *, k: int, num_couples: int,
                      steps: int | None, seed: int, batch_size: int | None, chunk_size: int | None, solver: str,
                      ode_steps: int | None, rtol: float, atol: float, lr: float | None, progress: bool,
                      report: bool) -> int:
    """Couplings of the flow in ``run_dir``, then a new run trained on them: the (k+1)-RF
    (``kind="reflow"``) or a k-step distilled sampler (``kind="distill"``). Exit status as
    ``reflow_command``."""
    try:
        _positive("--k", k)
        run = _load_checked(run_dir, num_couples, steps, batch_size, chunk_size, seed, ode_steps)
        exp, src_k = run.exp, run_k(run_dir)
        steps = steps or exp.train.steps
        batch_size = batch_size or exp.train.batch_size
        train_cfg = dataclasses.replace(exp.train, steps=steps, batch_size=batch_size, seed=seed)
        if kind == "reflow":
            out_dir = out_dir or _default_out(run_dir, f"-{src_k + 1}rf", src_k)
            new_exp = dataclasses.replace(exp, name=f"{re.sub(r'-[0-9]+rf$', '', exp.name)}-{src_k + 1}rf",
                                          train=train_cfg)
            info, objective = {"kind": "reflow", "k": src_k + 1}, coupled()
        else:
            out_dir = out_dir or _default_out(run_dir, f"-distill{k}")
            new_exp = dataclasses.replace(exp, name=f"{exp.name}-distill{k}", train=train_cfg,
                                          sample=C.Sample(sampler="euler_ode", steps=k, num=exp.sample.num,
                                                          denoise=False))
            info, objective = {"kind": "distill", "k": src_k, "distill_k": k}, distillation(k)
        couplings, cinfo = ensure_couplings(run, run_dir, num_couples=num_couples, seed=seed,
                                            chunk_size=chunk_size, solver=solver, ode_steps=ode_steps, rtol=rtol,
                                            atol=atol, progress=progress)
        info.update({"source": os.path.abspath(run_dir), "couplings": os.path.abspath(os.path.join(run_dir, COUPLINGS)),
                     "num_couples": int(len(couplings.x0)), "coupling_source": cinfo.get("source")})
        _prepare_out(out_dir, new_exp, info)
        new_state, stopped = _train(run, couplings, out_dir, new_exp, objective=objective, steps=steps,
                                    batch_size=batch_size, seed=seed, lr=lr, progress=progress)
    except ConfigError as e:
        print(f"genflow: error: {e}", file=sys.stderr)
        return 2
    if stopped:
        print(f"stopped; checkpoint saved. Continue with `genflow {kind} {run_dir} --out {out_dir}` "
              "and the same options.", file=sys.stderr)
        return 128 + stopped  # 130 for Ctrl-C, 143 for SIGTERM
    if kind == "reflow":
        labels, euler, done = ((f"{src_k}-RF ({run_dir})", f"{src_k + 1}-RF ({out_dir})"), (1,),
                               f"{src_k + 1}-rectified flow in {out_dir} ({len(couplings.x0):,} couples in "
                               f"{run_dir}/{COUPLINGS})")
    else:
        labels, euler, done = ((f"source ({run_dir})", f"distilled {k}-step ({out_dir})"), (k,),
                               f"{k}-step sampler in {out_dir}; `genflow sample {out_dir}` samples with {k} Euler "
                               f"step{'s' if k > 1 else ''}")
    if report:
        models = [(labels[0], run.eval_spec.model(run.params)), (labels[1], run.eval_spec.model(new_state.ema))]
        for line in _report_lines(models, run, seed, steps=euler):
            print(line)
    print(f"done: {done}", file=sys.stderr)
    return 0


def reflow_command(run_dir: str, out_dir: str | None = None, *, num_couples: int = 20_000, steps: int | None = None,
                   seed: int = 0, batch_size: int | None = None, chunk_size: int | None = None, solver: str = "tsit5",
                   ode_steps: int | None = None, rtol: float = 1e-5, atol: float = 1e-5, lr: float | None = None,
                   progress: bool = True, report: bool = True) -> int:
    """``genflow reflow RUN_DIR``: couplings of the k-RF in RUN_DIR, then the (k+1)-RF trained on them.

    Args:
      run_dir: a trained rectified-flow run (``genflow train``, or an earlier ``genflow reflow``).
      out_dir: where the (k+1)-RF run goes (default RUN_DIR-<k+1>rf).
      num_couples: couples to generate (rounded up to whole chunks); steps: training steps
        (default the run's train.steps); seed: coupling noise and data order.
      solver/ode_steps/rtol/atol: the PF-ODE integration of the couplings (adaptive tsit5 by default).
      lr: learning rate (default the run's); training starts from the k-RF's EMA weights.
    Returns the exit status: 0, 143 (SIGTERM) or 130 (Ctrl-C) when stopped by a signal (resume by
    running it again), or
    2 with one sentence on stderr for bad input.
    """
    return _coupling_command("reflow", run_dir, out_dir, k=1, num_couples=num_couples, steps=steps, seed=seed,
                             batch_size=batch_size, chunk_size=chunk_size, solver=solver, ode_steps=ode_steps,
                             rtol=rtol, atol=atol, lr=lr, progress=progress, report=report)


def distill_command(run_dir: str, out_dir: str | None = None, *, k: int = 1, num_couples: int = 20_000,
                    steps: int | None = None, seed: int = 0, batch_size: int | None = None,
                    chunk_size: int | None = None, solver: str = "tsit5", ode_steps: int | None = None,
                    rtol: float = 1e-5, atol: float = 1e-5, lr: float | None = None, progress: bool = True,
                    report: bool = True) -> int:
    """``genflow distill RUN_DIR``: a k-step sampler (k = 1: one-step generator) distilled from the
    couplings of the flow in RUN_DIR (generated or finished first, as ``reflow_command`` does).

    The new run (default RUN_DIR-distill<k>) starts from RUN_DIR's EMA weights and samples with
    k Euler steps (its config's sample.steps = k). Other arguments and the exit status as
    ``reflow_command``.
    """
    return _coupling_command("distill", run_dir, out_dir, k=k, num_couples=num_couples, steps=steps, seed=seed,
                             batch_size=batch_size, chunk_size=chunk_size, solver=solver, ode_steps=ode_steps,
                             rtol=rtol, atol=atol, lr=lr, progress=progress, report=report)
