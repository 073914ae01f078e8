"""Compare score-matching objectives at an equal budget: exact, implicit, sliced and denoising.

``compare_objectives`` trains the same network (same initial parameters) on the same data
stream with the same optimizer, step budget and seed under each objective, and measures each
run the same way:

  Fisher      E_t lambda(t) E_{x_t ~ p_t} ||s_theta - grad log p_t||^2 / D with the training
              weighting, on fresh data with fixed keys (only where the score is known: mixtures)
  energy      energy distance between samples (one sampler, one prior draw for all) and
              held-out data
  NLL         PF-ODE negative log-likelihood of held-out data in nats per dimension
              (``genflow.samplers.likelihood.log_likelihood``, exact trace), when that exists
  ms/step     median wall time of one compiled train step (after compilation, data on device)
  grad var    tr Cov of the minibatch gradient at a fixed parameter: at the common initial
              parameters, and at one common trained point (the final parameters of the first
              objective listed). Every objective here is the Fisher divergence up to a
              theta-independent constant on one scale, so all have the same expected gradient
              and these numbers compare their noise directly.
  memory      XLA's buffer assignment of the compiled train step
              (``jit(step).lower(...).compile().memory_analysis()``): temporary bytes (what the
              step allocates besides its inputs: activations kept for the backward pass, jvp
              tangents, probes) and the peak = arguments (state and batch) + outputs that do not
              reuse a donated argument + temporaries. A static plan of the compiler, not a
              runtime measurement: it excludes the runtime's own overhead and fragmentation, but
              it is what one step needs on a device.

Each run trains through genflow's one training stack: ``make_train_step`` (the guard, the EMA),
compiled ahead of time so its memory analysis and compile time are read off the very program that
runs, and ``train_loop`` logging every step (its rows are the loss curve; the Fisher curve is a
loop hook every ``eval_every`` steps and at the last). The ms/step column times the compiled step
alone, to its loss on the host, around the loop's call. The comparison runs on one device.

``compare_command`` is the body of ``genflow compare-objectives EXPERIMENT``: it reads an
experiment file's ``config`` (an ``Experiment``) and ``comparison`` (a ``Comparison``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import Array

from genflow.metrics.distances import energy_distance
from genflow.models import Model, train_and_eval_specs
from genflow.objectives import (denoising_score_matching, exact_score_matching, implicit_score_matching,
                                sliced_score_matching, uniform_time)
from genflow.objectives.weighting import Weighting
from genflow.samplers import euler_maruyama, grids
from genflow.training import init_state, make_train_step, train_loop
from genflow.training.step import has_dropout_stream

OBJECTIVES = ("exact", "dsm", "ism", "ssm", "ssm_vr")
Objective = Callable[..., tuple[Array, dict[str, Array]]]


def make_objective(name: str, *, weighting: Weighting, time_sampler=uniform_time,
                   true_score: Callable | None = None, ism_trace: str = "exact", probe: str = "gaussian",
                   n_probes: int = 1) -> Objective:
    """The objective ``name`` (one of ``OBJECTIVES``) as ``(model, x0, key, *, cond) -> (loss, metrics)``."""
    common = dict(weighting=weighting, time_sampler=time_sampler)
    if name == "exact":
        if true_score is None:
            raise ValueError("objective 'exact' needs the true score of the data (true_score=...).")
        return partial(exact_score_matching, true_score=true_score, **common)
    if name == "dsm":
        return partial(denoising_score_matching, **common)
    if name == "ism":
        return partial(implicit_score_matching, trace=ism_trace, n_probes=n_probes, **common)
    if name in ("ssm", "ssm_vr"):
        return partial(sliced_score_matching, probe=probe, n_probes=n_probes,
                       variance_reduced=name == "ssm_vr", **common)
    raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}.")


def error_message(e: Exception, limit: int = 160) -> str:
    """The sentence an exception means: for equinox's runtime errors (diffrax's max_steps) the
    ``...Error: message`` line inside its traceback text, else the first line of the message."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    named = [ln for ln in lines if ln.split(":", 1)[0].endswith("Error") and ":" in ln]
    text = named[-1].split(":", 1)[1].strip() if named else (lines[0] if lines else type(e).__name__)
    return text[:limit]


def _find_log_likelihood():
    """``genflow.samplers.likelihood.log_likelihood`` if that module exists, else None."""
    try:
        from genflow.samplers.likelihood import log_likelihood
    except ImportError:
        return None
    return log_likelihood


def gradient_variance(loss_fn: Callable[[Any, Array, Array], Array], params: Any, batches: Array,
                      keys: Array) -> tuple[Array, Array]:
    """(tr Cov[g], ||E g||^2) of the stochastic gradient g = grad loss_fn(params, x0, key) over
    the K minibatches ``batches`` (K, B, ...) and keys (K,): K gradients at one parameter.

    Welford's one-pass update (exact, no E g^2 - (E g)^2 cancellation) in a ``lax.scan``, so
    only one gradient is held at a time; tr Cov uses the unbiased 1/(K-1)."""
    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.promote_types(p.dtype, jnp.float32)), params)

    def step(carry, inputs):
        k, mean, m2 = carry
        x0, key = inputs
        g = jax.grad(loss_fn)(params, x0, key)
        delta = jax.tree.map(lambda gi, mi: gi - mi, g, mean)
        mean = jax.tree.map(lambda mi, di: mi + di / (k + 1.0), mean, delta)
        m2 = m2 + sum(jnp.sum(di * (gi - mi)) for di, gi, mi in
                      zip(jax.tree.leaves(delta), jax.tree.leaves(g), jax.tree.leaves(mean)))
        return (k + 1.0, mean, m2), None

    (k, mean, m2), _ = jax.lax.scan(step, (jnp.zeros(()), zeros, jnp.zeros(())), (batches, keys))
    return m2 / (k - 1.0), sum(jnp.sum(m**2) for m in jax.tree.leaves(mean))


class IndexBatches:
    """``{"x0": batch_fn(i)}`` on the default device for i = position, position + 1, ...: the data
    stream ``train_loop`` reads (``position``: batches handed out, as every genflow stream has)."""

    def __init__(self, batch_fn: Callable[[int], np.ndarray], position: int = 0):
        self.batch_fn, self.position = batch_fn, position

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, Array]:
        batch = {"x0": jax.device_put(self.batch_fn(self.position))}
        self.position += 1
        return batch


@dataclass
class Result:
    """One objective's measurements (None where not measured)."""
    name: str
    final_loss: float | None = None
    fisher: float | None = None
    energy: float | None = None
    nll: float | None = None
    ms_per_step: float | None = None
    compile_s: float | None = None
    grad_var_init: float | None = None
    grad_sq_mean_init: float | None = None
    grad_var_trained: float | None = None
    grad_sq_mean_trained: float | None = None
    temp_mib: float | None = None
    arg_mib: float | None = None
    peak_mib: float | None = None
    loss_curve: list = field(default_factory=list)    # [(step, loss)]
    fisher_curve: list = field(default_factory=list)  # [(step, Fisher divergence of the EMA)]


def compare_objectives(objectives: Mapping[str, Objective], *, net: nnx.Module, process, predicts: str,
                       batch_fn: Callable[[int], np.ndarray], heldout: np.ndarray, tx, steps: int,
                       weighting: Weighting, out_dir: str, seed: int = 0, ema_decay: float = 0.999,
                       true_score: Callable | None = None, fisher_data: np.ndarray | None = None,
                       reference_net: Callable | None = None, sampler: Callable | None = None,
                       num_samples: int = 2000, nll_samples: int = 256, grad_batches: int = 64,
                       eval_every: int = 0, log: Callable[[str], None] | None = print) -> list[Result]:
    """Train ``net`` once per objective from the same initial parameters and measure each run.

    Args:
      objectives: {name: objective}, e.g. from ``make_objective``; the first one's trained
        parameters are the common "trained" point of the gradient-variance column.
      net: a flax NNX network ``net(x, t, cond)``; its parameters are the common start.
      process, predicts: the Gaussian path and what the network outputs.
      batch_fn: ``i -> x0`` (B, ...), the i-th training batch; deterministic in i, the same
        stream for every objective.
      heldout: held-out data (N, ...) for the energy distance and the NLL.
      tx: the optax optimizer.  steps: training steps per objective.  seed: all randomness.
      weighting: the training weighting, also the Fisher divergence's.
      true_score: ``(x, t) -> grad log p_t(x)`` where known; with ``fisher_data`` (x0 draws)
        it gives the Fisher column and curve.  reference_net: the exact network (e.g. a
        mixture's ``ExactNet``), measured in a last row as the floor of each column.
      sampler: ``(model, x1, key) -> x0``; default Euler–Maruyama, 200 uniform steps, denoised.
      eval_every: Fisher evaluations during training (0: about 10 over the run).
      log: where progress lines go (None: silent).
    Writes ``out_dir``/comparison.md, comparison.json, comparison.png and samples.png.
    Returns the list of ``Result`` (objectives in order, then the reference if given).
    """
    log = log or (lambda s: None)
    os.makedirs(out_dir, exist_ok=True)
    if sampler is None:
        ts = grids.uniform(process, 200)
        sampler = lambda model, x1, key: euler_maruyama(model, x1, ts, key=key, denoise=True)[0]  # noqa: E731
    spec, eval_spec, params0 = train_and_eval_specs(net, process, predicts)   # eval: dropout off
    shape = tuple(np.asarray(batch_fn(0)).shape[1:])
    dim = math.prod(shape)
    # Training derives step i's key (and SampledBatches batch i's) as fold_in(PRNGKey(seed), i); the
    # evaluation keys hang off the last such index a run could reach, so they never coincide.
    base = jax.random.fold_in(jax.random.PRNGKey(seed), 2**31 - 1)
    k_prior, k_sample, k_fisher, k_grad = (jax.random.fold_in(base, i) for i in range(4))

    num = min(num_samples, len(heldout))
    reference = jnp.asarray(heldout[:num])
    x1 = process.prior(k_prior, (num,) + shape)
    nll_x = jnp.asarray(heldout[:min(nll_samples, len(heldout))])
    log_likelihood = _find_log_likelihood() if nll_samples > 0 else None
    grad_x = jnp.stack([jnp.asarray(batch_fn(i)) for i in range(grad_batches)])
    grad_keys = jax.vmap(lambda i: jax.random.fold_in(k_grad, i))(jnp.arange(grad_batches))
    eval_every = eval_every or max(steps // 10, 1)

    def eval_model(params, exact=None):
        return Model(exact, process, predicts) if exact is not None else eval_spec.model(params)

    fisher_fn = None
    if true_score is not None and fisher_data is not None:
        fx = jnp.asarray(fisher_data)

        @jax.jit
        def fisher_fn(params):
            return exact_score_matching(eval_model(params), fx, k_fisher, true_score=true_score,
                                        weighting=weighting)[0]

    @jax.jit
    def generate(params):
        return sampler(eval_model(params), x1, k_sample)

    nll_fn = None
    if log_likelihood is not None:
        @jax.jit
        def nll_fn(params):
            logp, _ = log_likelihood(eval_model(params), nll_x, trace="exact")
            return -jnp.mean(logp) / dim

    all_samples = {}

    def measure(result: Result, params) -> None:
        if fisher_fn is not None:
            result.fisher = float(fisher_fn(params))
        samples = generate(params)
        result.energy = float(energy_distance(samples, reference))
        all_samples[result.name] = np.asarray(samples)
        if nll_fn is not None:
            try:
                result.nll = float(nll_fn(params))
            except Exception as e:  # diffrax stops a stiff PF-ODE at max_steps with a runtime error
                result.nll = float("nan")
                log(f"[{result.name}] NLL not measured (nan): the PF-ODE solve failed ({error_message(e)})")

    results, trained_params = [], None
    for name, objective in objectives.items():
        res = Result(name)
        state = init_state(jax.tree.map(jnp.copy, params0), tx, seed)
        step_fn = make_train_step(spec, objective, tx, ema_decay=ema_decay)
        t0 = time.perf_counter()
        compiled = step_fn.lower(state, {"x0": jax.device_put(batch_fn(0))}).compile()
        res.compile_s = time.perf_counter() - t0
        mem = compiled.memory_analysis()
        if mem is not None:
            # live at once: the arguments, the outputs that do not reuse a donated argument, and
            # the temporaries (XLA's buffer assignment; a plan, not a measurement)
            res.temp_mib = mem.temp_size_in_bytes / 2**20
            res.arg_mib = mem.argument_size_in_bytes / 2**20
            res.peak_mib = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
                            + mem.temp_size_in_bytes) / 2**20
        times, rows = [], []

        def timed(state, batch, compiled=compiled, times=times):
            # the compiled step alone, to its loss on the host (the batch is already on the device)
            t0 = time.perf_counter()
            state, metrics = compiled(state, batch)
            jax.block_until_ready(metrics["loss"])
            times.append(time.perf_counter() - t0)
            return state, metrics

        hooks = []
        if fisher_fn is not None:
            hooks.append((eval_every, lambda s, i, res=res: res.fisher_curve.append((i, float(fisher_fn(s.ema))))))
        # the shared loop, logging every step: its rows are the loss curve (a skipped step's loss is NaN)
        state, stopped = train_loop(state, timed, IndexBatches(batch_fn), steps=steps, log_every=1, progress=False,
                                    hooks=hooks, on_log=rows.append)
        if stopped is not None:
            raise KeyboardInterrupt(f"the comparison was stopped by signal {stopped} during {name!r}")
        losses = np.asarray([np.nan if r["loss"] is None else r["loss"] for r in rows], np.float64)
        res.loss_curve = [(r["step"], float(v)) for r, v in zip(rows, losses)]
        res.final_loss = float(np.mean(losses[-max(len(losses) // 10, 1):]))  # last tenth: less noise
        res.ms_per_step = 1e3 * float(np.median(times[1:] if len(times) > 1 else times))
        if trained_params is None:
            trained_params = jax.tree.map(jnp.copy, state.params)
        t0 = time.perf_counter()
        measure(res, state.ema)
        results.append((res, objective))
        log(f"[{name}] {steps} steps, {res.ms_per_step:.2f} ms/step (compile {res.compile_s:.1f} s, "
            f"evaluation {time.perf_counter() - t0:.1f} s), "
            f"loss {res.final_loss:.4g}" + (f", Fisher {res.fisher:.4g}" if res.fisher is not None else "")
            + f", energy {res.energy:.4g}" + (f", NLL {res.nll:.4g}" if res.nll is not None else ""))

    # gradient noise at two common points, measured after training so every objective sees both
    for res, objective in results:
        def loss_fn(params, x0, key, objective=objective):
            k_obj, k_drop = jax.random.split(key)
            net = spec.net(params, copy=True)  # copy: reseeding mutates RNG variables of this trace level
            if has_dropout_stream(spec.rest):
                nnx.reseed(net, dropout=k_drop)
            return objective(Model(net, process, spec.parameterization), x0, k_obj)[0]

        gv = jax.jit(partial(gradient_variance, loss_fn))
        var, sq = gv(params0, grad_x, grad_keys)
        res.grad_var_init, res.grad_sq_mean_init = float(var), float(sq)
        var, sq = gv(trained_params, grad_x, grad_keys)
        res.grad_var_trained, res.grad_sq_mean_trained = float(var), float(sq)
    results = [r for r, _ in results]

    if reference_net is not None:
        ref = Result("exact score (reference)")
        if fisher_fn is not None:
            ref.fisher = 0.0
        samples = jax.jit(lambda: sampler(eval_model(None, reference_net), x1, k_sample))()
        ref.energy = float(energy_distance(samples, reference))
        all_samples[ref.name] = np.asarray(samples)
        if log_likelihood is not None:
            logp, _ = jax.jit(lambda: log_likelihood(eval_model(None, reference_net), nll_x, trace="exact"))()
            ref.nll = float(-jnp.mean(logp) / dim)
        results.append(ref)

    write_report(results, out_dir, title=f"{len(objectives)} objectives, {steps} steps each, seed {seed}, "
                 f"weighting {weighting.name}")
    plot_samples(all_samples, np.asarray(reference), os.path.join(out_dir, "samples.png"))
    return results


def plot_samples(samples: Mapping[str, np.ndarray], reference: np.ndarray, path: str) -> None:
    """One panel per objective: a scatter over the held-out data for 2-D points (the first two
    coordinates of other flat data), a grid of up to 64 images for images (N, H, W, C) in [-1, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(samples)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        x = samples[name]
        if x.ndim == 4:
            n = min(len(x), 64)
            cols = int(math.ceil(math.sqrt(n)))
            rows = int(math.ceil(n / cols))
            h, w = x.shape[1:3]
            canvas = np.ones((rows * (h + 1), cols * (w + 1)))
            for i in range(n):
                r, c = divmod(i, cols)
                canvas[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = np.clip(x[i, ..., 0], -1, 1)
            ax.imshow(canvas, cmap="gray", vmin=-1, vmax=1)
            ax.axis("off")
        else:
            flat, ref = x.reshape(len(x), -1), reference.reshape(len(reference), -1)
            ax.scatter(ref[:, 0], ref[:, 1], s=1, c="0.75")
            ax.scatter(flat[:, 0], flat[:, 1], s=1, c="C0")
            lim = np.abs(ref[:, :2]).max() * 1.3
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- the report ------------------------------------------------------------------------------------
COLUMNS = [("final_loss", "loss (last 10%)", "{:.4g}"), ("fisher", "Fisher div.", "{:.4g}"),
           ("energy", "energy dist.", "{:.4g}"), ("nll", "NLL (nats/dim)", "{:.4g}"),
           ("ms_per_step", "ms/step", "{:.2f}"), ("grad_var_init", "grad var @init", "{:.3g}"),
           ("grad_var_trained", "grad var @trained", "{:.3g}"), ("temp_mib", "XLA temp MiB", "{:.2f}"),
           ("peak_mib", "XLA peak MiB", "{:.2f}")]


def format_table(results: list[Result]) -> str:
    """A markdown table; a column no row measured is left out, a missing cell is '–'."""
    cols = [c for c in COLUMNS if any(getattr(r, c[0]) is not None for r in results)]
    lines = ["| objective | " + " | ".join(c[1] for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for r in results:
        cells = [fmt.format(getattr(r, key)) if getattr(r, key) is not None else "–" for key, _, fmt in cols]
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


NOTES = """\
- loss: each objective's own training loss (mean of the last 10% of steps); they differ by
  theta-independent constants, so compare them only within a row.
- Fisher div.: E_t lambda(t) E||s_theta(x_t, t) - grad log p_t(x_t)||^2 / D of the EMA weights,
  with the training weighting, on fresh data (only where the true score is known).
- energy dist.: energy distance between EMA samples and held-out data (one prior draw and one
  sampler for all rows).
- NLL: PF-ODE negative log-likelihood of held-out data, nats per dimension (exact trace).
- ms/step: median wall time of one compiled train step, data already on the device.
- grad var: trace of the covariance of the minibatch gradient over many minibatches at a fixed
  parameter: the common initial parameters, and the final parameters of the first objective.
  All objectives have the same expected gradient, so this is their gradient noise alone. At
  initialization a zero-initialized output layer makes only that layer's gradient non-zero.
- XLA temp / peak: the compiled train step's buffer assignment (memory_analysis()). temp: the
  temporaries the step allocates (activations kept for the backward pass, jvp tangents, probes);
  peak: arguments (state + batch) + outputs that do not reuse a donated argument + temporaries.
  A static plan of the compiler for one step, not a runtime measurement (no allocator overhead,
  no fragmentation); on an accelerator it is the device memory the step needs.
"""


def write_report(results: list[Result], out_dir: str, title: str = "") -> str:
    """Write comparison.md, comparison.json and comparison.png; returns the markdown table."""
    table = format_table(results)
    with open(os.path.join(out_dir, "comparison.md"), "w") as f:
        f.write(f"# Score-matching objectives compared\n\n{title}\n\n{table}\n\n{NOTES}")
    with open(os.path.join(out_dir, "comparison.json"), "w") as f:
        json.dump([dataclasses.asdict(r) for r in results], f, indent=1)
    plot_comparison(results, os.path.join(out_dir, "comparison.png"))
    return table


def plot_comparison(results: list[Result], path: str) -> None:
    """Fisher divergence (or training loss) over training, and bars of the other columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [r for r in results if r.loss_curve]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    ax = axes[0, 0]
    if any(r.fisher_curve for r in trained):
        for r in trained:
            s, v = zip(*r.fisher_curve)
            ax.plot(s, v, marker="o", ms=3, label=r.name)
        ax.set(yscale="log", xlabel="step", ylabel="weighted Fisher divergence (EMA)", title="Fisher divergence")
    else:
        for r in trained:
            s, v = np.asarray(r.loss_curve).T
            k = max(len(v) // 50, 1)
            smooth = np.convolve(v, np.ones(k) / k, mode="valid")
            ax.plot(s[k - 1:], smooth - smooth[-1], label=r.name)
        ax.set(xlabel="step", ylabel="loss - final loss", title="training loss (own constants removed)",
               yscale="symlog")
    ax.legend(fontsize=8)
    names = [r.name.replace(" (reference)", "\n(ref.)") for r in results]
    x = np.arange(len(results))

    def bars(ax, keys, labels, title, log=False):
        width = 0.8 / len(keys)
        for j, (key, label) in enumerate(zip(keys, labels)):
            vals = [getattr(r, key) if getattr(r, key) is not None else np.nan for r in results]
            ax.bar(x + (j - (len(keys) - 1) / 2) * width, vals, width, label=label)
        ax.set_xticks(x, names, fontsize=8, rotation=20)
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
        if len(keys) > 1:
            ax.legend(fontsize=8)

    bars(axes[0, 1], ["energy"], ["energy"], "energy distance to held-out data (lower is better)")
    if any(r.nll is not None for r in results):
        bars(axes[0, 2], ["nll"], ["NLL"], "PF-ODE NLL, nats/dim")
    elif any(r.fisher is not None for r in results):
        bars(axes[0, 2], ["fisher"], ["Fisher"], "final weighted Fisher divergence", log=True)
    else:
        axes[0, 2].axis("off")
    bars(axes[1, 0], ["grad_var_init", "grad_var_trained"], ["at init", "at trained point"],
         "gradient variance tr Cov[g]", log=True)
    bars(axes[1, 1], ["ms_per_step"], ["ms"], "wall time per train step (ms)")
    bars(axes[1, 2], ["temp_mib", "peak_mib"], ["temporaries", "peak (args + outputs + temp)"],
         "XLA memory of one train step (MiB)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the command -----------------------------------------------------------------------------------
