"""``genflow compare-objectives EXPERIMENT``: read an experiment's ``config`` and ``comparison``,
build its parts with ``cli/build.py``'s tables, and run ``genflow.compare.compare_objectives``."""
from __future__ import annotations

import dataclasses
import os
import runpy
import sys

import jax
import numpy as np

from genflow import config as C
from genflow.cli import build
from genflow.compare import OBJECTIVES, _find_log_likelihood, compare_objectives, format_table, make_objective
from genflow.config import ConfigError
from genflow.objectives import lognormal_sigma, uniform_time
from genflow.objectives import weighting as weightings
from genflow.objectives.implicit import PROBES, TRACES


def load_comparison(path: str) -> tuple[C.Experiment, C.Comparison]:
    """The ``config`` and ``comparison`` of an experiment file (a default ``Comparison`` if absent)."""
    if not os.path.exists(path) and os.path.exists(os.path.join("experiments", path + ".py")):
        path = os.path.join("experiments", path + ".py")
    if not os.path.exists(path):
        raise ConfigError(f"experiment file {path!r} does not exist; pass a file from experiments/, "
                          "e.g. experiments/compare_2d.py.")
    module = runpy.run_path(path)
    exp, cmp = module.get("config"), module.get("comparison", C.Comparison())
    if not isinstance(exp, C.Experiment):
        raise ConfigError(f"{path} defines no `config = Experiment(...)`; see experiments/compare_2d.py.")
    if not isinstance(cmp, C.Comparison):
        raise ConfigError(f"{path} sets `comparison` to a {type(cmp).__name__}, not a Comparison(...); "
                          "see experiments/compare_2d.py.")
    return exp, cmp


def _validate(exp: C.Experiment, cmp: C.Comparison, mixture) -> None:
    if not cmp.objectives:
        raise ConfigError("comparison.objectives is empty; list some of " + ", ".join(OBJECTIVES) + ".")
    for name in cmp.objectives:
        if name not in OBJECTIVES:
            raise ConfigError(f"comparison objective {name!r} is not one of {', '.join(OBJECTIVES)}.")
    if "exact" in cmp.objectives and mixture is None:
        raise ConfigError(f"objective 'exact' needs data whose score is known, and {exp.data.name!r} is not; "
                          "use data.name=gmm or remove 'exact' from comparison.objectives.")
    if cmp.ism_trace not in TRACES:
        raise ConfigError(f"comparison.ism_trace {cmp.ism_trace!r} is not one of {', '.join(TRACES)}.")
    if cmp.probe not in PROBES:
        raise ConfigError(f"comparison.probe {cmp.probe!r} is not one of {', '.join(PROBES)}.")
    for key, value in [("comparison.n_probes", cmp.n_probes), ("comparison.num_samples", cmp.num_samples)]:
        if value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}.")
    if cmp.grad_batches < 2:
        raise ConfigError(f"comparison.grad_batches must be at least 2 for a variance, got {cmp.grad_batches}.")


def compare_command(experiment_path: str, out_dir: str | None = None, steps: int | None = None,
                    seed: int | None = None) -> int:
    """``genflow compare-objectives EXPERIMENT [--out DIR] [--steps N] [--seed S]``.

    Trains the experiment's network under each objective of its ``comparison``, prints the
    markdown table and writes it with the plot to ``out_dir`` (default runs/<name>-compare).
    ``steps`` and ``seed`` override train.steps and train.seed. Returns the exit status
    (2 with one sentence on stderr for bad input)."""
    try:
        exp, cmp = load_comparison(experiment_path)
        if steps is not None:
            exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, steps=steps))
        if seed is not None:
            exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, seed=seed))
        seed = exp.train.seed
        build.validate(exp)
        process = build.build_process(exp.process)
        data = build.build_data(exp.data, exp.train.batch_size, seed, mesh=None)
        batch_fn, heldout, mixture = (lambda i: data.batches.host_batch(i)[0]), data.heldout, data.exact
        if exp.net.num_classes is not None:
            raise ConfigError("compare-objectives compares unconditional score models; set net.num_classes=None.")
        _validate(exp, cmp, mixture)
        w = weightings.edm(exp.sigma_data) if exp.weighting == "edm" else weightings.WEIGHTINGS[exp.weighting]
        times = uniform_time if exp.time_sampling == "uniform" else lognormal_sigma(exp.p_mean, exp.p_std)
        true_score = (lambda x, t: mixture.score(x, process, t)) if mixture is not None else None
        objectives = {name: make_objective(name, weighting=w, time_sampler=times, true_score=true_score,
                                           ism_trace=cmp.ism_trace, probe=cmp.probe, n_probes=cmp.n_probes)
                      for name in cmp.objectives}
        o = exp.optim
        tx = build.build_optimizer(o)
        net = build.build_net(exp.net, tuple(data.shape), exp.train.dtype, seed)
        with_stats = build.build_sampler(exp.sample, process)
        sampler = lambda model, x1, key: with_stats(model, x1, key)[0]  # noqa: E731
    except (ConfigError, ValueError) as e:
        print(f"genflow: error: {e}", file=sys.stderr)
        return 2
    out_dir = out_dir or os.path.join("runs", f"{exp.name}-compare")
    fisher_data = None
    reference_net = None
    if mixture is not None:
        fisher_data = np.asarray(jax.jit(mixture.sample, static_argnums=1)(jax.random.PRNGKey(20_000 + seed),
                                                                            cmp.fisher_samples))
        reference_net = mixture.exact_model(process, build.build_parameterization(exp)).net
    results = compare_objectives(
        objectives, net=net, process=process, predicts=build.build_parameterization(exp), batch_fn=batch_fn, heldout=heldout,
        tx=tx, steps=exp.train.steps, weighting=w, out_dir=out_dir, seed=seed, ema_decay=o.ema_decay,
        true_score=true_score, fisher_data=fisher_data, reference_net=reference_net, sampler=sampler,
        num_samples=cmp.num_samples, nll_samples=cmp.nll_samples, grad_batches=cmp.grad_batches,
        eval_every=cmp.eval_every, log=lambda s: print(s, file=sys.stderr))
    print(format_table(results))
    if _find_log_likelihood() is None and cmp.nll_samples > 0:
        print("(no NLL column: genflow.samplers.likelihood.log_likelihood is not available)", file=sys.stderr)
    print(f"wrote {out_dir}/comparison.md, comparison.json, comparison.png, samples.png", file=sys.stderr)
    return 0
