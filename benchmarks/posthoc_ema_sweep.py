"""Post-hoc EMA sweep on the digits: FDD against the EMA length sigma_rel, every point reconstructed
after training from one run's snapshots (EDM2, Sec. 3, Fig. 5 in miniature).

Trains experiments/digits.py (or reuses ``--workdir``) tracking the power-function EMAs of
sigma_rel 0.05 and 0.10 with a snapshot every ``--snapshot-every`` steps, then for each sigma_rel
of ``--sigma-rels`` builds the post-hoc EMA (`genflow ema`, written to RUN/ema/sigma_rel=S) and
measures the Fréchet digits distance (FDD) of as many samples as there are held-out digits (300)
against the training digits, as `genflow eval` does; mean and std over ``--seeds`` prior draws,
the same draws for every row. Next to them: the raw parameters, the constant-decay EMA
(optim.ema_decay, what sampling uses by default) and real held-out digits (the floor).

Run:  PYTHONPATH=. python benchmarks/posthoc_ema_sweep.py [--workdir runs/posthoc-ema] [--steps 2000]
Prints a markdown table (also RUN/sweep.md) and writes docs/figures/posthoc_ema_sweep.png.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

from genflow import config as C
from genflow.cli import build, posthoc
from genflow.cli.main import load_experiment
from genflow.cli.run import load_run, make_generator, train
from genflow.metrics import frechet_digits_distance
from genflow.training import Checkpointer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def ensure_run(workdir: str, steps: int, snapshot_every: int) -> None:
    exp = load_experiment(os.path.join(ROOT, "experiments", "digits.py"))
    exp = C.with_overrides(exp, [f"train.steps={steps}", f"train.ckpt_every={steps}", "train.log_every=250",
                                 f"train.ema_snapshot_every={snapshot_every}"])
    if os.path.exists(os.path.join(workdir, "config.json")):
        train(exp, workdir, resume=True, progress=False)   # finishes a partial run, else no-op
    else:
        train(exp, workdir, progress=False)


def plot(rows, const, raw, floor, out: str, title: str, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = np.array([r[0] for r in rows])
    m, e = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=130)
    ax.errorbar(s, m, yerr=e, marker="o", ms=4, capsize=3, label="post-hoc EMA (reconstructed)")
    tracked = [i for i, r in enumerate(rows) if r[4]]
    ax.scatter(s[tracked], m[tracked], s=90, facecolors="none", edgecolors="k", zorder=3,
               label="stored profiles (0.05, 0.10)")
    ax.axhline(const[0], color="tab:orange", ls="--", label=f"constant-decay EMA {const[2]:g}")
    ax.axhline(raw[0], color="tab:red", ls=":", label="raw parameters (no EMA)")
    ax.axhline(floor, color="tab:green", ls="-.", label="real held-out digits (floor)")
    ax.set_xscale("log")
    ax.set_xticks(s, [f"{v:g}" for v in s], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("EMA length sigma_rel")
    ax.set_ylabel(f"FDD (mean ± std, {seeds} seeds)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="runs/posthoc-ema")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--snapshot-every", type=int, default=100)
    ap.add_argument("--sigma-rels", default="0.01,0.02,0.035,0.05,0.075,0.1,0.15,0.2,0.25")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "figures", "posthoc_ema_sweep.png"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    ensure_run(args.workdir, args.steps, args.snapshot_every)
    t_train = time.perf_counter() - t0

    run = load_run(args.workdir)
    exp = run.exp
    data = build.build_data(exp.data, exp.train.batch_size, exp.train.seed, None)
    n = len(data.heldout)
    generate = make_generator(run.eval_spec, run.shape, exp.sample, n, run.mesh)   # one program for every row

    def fdd(params):
        v = [frechet_digits_distance(np.asarray(generate(params, jax.random.PRNGKey(1000 + s))), data.reference)
             for s in range(args.seeds)]
        return float(np.mean(v)), float(np.std(v))

    ckpt = Checkpointer(os.path.join(args.workdir, "checkpoints"))
    _, raw_params = ckpt.restore_weights(run.params, field="params")
    ckpt.close()
    raw = fdd(jax.device_put(raw_params, jax.tree.leaves(run.params)[0].sharding))
    const = (*fdd(run.params), exp.optim.ema_decay)
    floor = frechet_digits_distance(data.heldout, data.reference)
    rows = []
    for s in [float(v) for v in args.sigma_rels.split(",")]:
        w, info = posthoc.weights(args.workdir, s, run.params, announce=False)
        w = jax.device_put(w, jax.tree.leaves(run.params)[0].sharding)
        rows.append((s, *fdd(w), info["rel_residual"], s in exp.train.ema_sigma_rels))
    n_snap = len({step for step, _, _ in info["snapshots"]})
    lines = [f"digits (experiments/digits.py), {run.step:,} training steps, {n_snap} snapshots of the 0.05 and 0.10 "
             f"EMAs (every {args.snapshot_every} steps); FDD of {n} samples ({exp.sample.sampler}, "
             f"{exp.sample.steps} steps), mean ± std over {args.seeds} seeds", "",
             "| weights | sigma_rel | FDD | profile fit error |", "|---|---|---|---|"]
    for s, m, e, r, stored in rows:
        lines.append(f"| post-hoc EMA{' (stored profile)' if stored else ''} | {s:g} | {m:.3f} ± {e:.3f} | {r:.2%} |")
    lines += [f"| constant-decay EMA (optim.ema_decay={const[2]:g}) | - | {const[0]:.3f} ± {const[1]:.3f} | - |",
              f"| raw parameters | - | {raw[0]:.3f} ± {raw[1]:.3f} | - |",
              f"| real held-out digits (floor) | - | {floor:.3f} | - |"]
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(args.workdir, "sweep.md"), "w") as f:
        f.write(table + "\n")
    plot(rows, const, raw, floor, args.out,
         f"digits, {run.step:,} steps: FDD vs post-hoc EMA length ({n_snap} snapshots)", args.seeds)
    print(f"training {t_train:.0f} s, total {time.perf_counter() - t0:.0f} s; wrote {args.out} and "
          f"{args.workdir}/sweep.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
