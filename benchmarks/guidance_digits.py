"""Classifier-free guidance on class-conditional digits: label accuracy and FDD against w.

Trains (or reuses) experiments/digits_cond.py and the unconditional experiments/digits.py with
the same recipe, then samples the conditional run at guidance w = 0, 1, 2, 4 with the held-out
digits' own labels (300 samples: the class mix of the held-out set, and the FDD's sample size of
the unconditional run's number) and reports:

* label accuracy: the fraction of samples the shipped digits classifier (99.0% on real held-out
  digits) assigns to the requested label;
* FDD: the Fréchet digits distance of the samples to the training digits, mean over ``--seeds``
  draws, next to the unconditional run's FDD and the held-out floor (real digits, same N).

Run:  PYTHONPATH=. python benchmarks/guidance_digits.py [--runs runs/guidance] [--steps 4000]
Prints a markdown table and writes it to RUNS/table.md; the runs are reused when present.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

from genflow import config as C
from genflow.cli import build
from genflow.cli.main import load_experiment
from genflow.cli.run import load_run, make_generator, train
from genflow.metrics import frechet_digits_distance
from genflow.metrics.digits_classifier import classify

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def ensure_run(experiment: str, workdir: str, steps: int) -> None:
    exp = load_experiment(os.path.join(ROOT, "experiments", experiment))
    exp = C.with_overrides(exp, [f"train.steps={steps}"])
    if os.path.exists(os.path.join(workdir, "config.json")):
        train(exp, workdir, resume=True, progress=False)   # finishes a partial run, else no-op
    else:
        train(exp, workdir, progress=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="runs/guidance")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--scales", default="0,1,2,4")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    cond_dir, uncond_dir = os.path.join(args.runs, "digits_cond"), os.path.join(args.runs, "digits")
    t0 = time.perf_counter()
    ensure_run("digits_cond.py", cond_dir, args.steps)
    ensure_run("digits.py", uncond_dir, args.steps)
    print(f"training: {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    cond, uncond = load_run(cond_dir), load_run(uncond_dir)
    data = build.build_data(cond.exp.data, cond.exp.train.batch_size, cond.exp.train.seed, None)
    labels, heldout, reference = data.heldout_labels, data.heldout, data.reference
    n = len(heldout)
    floor = frechet_digits_distance(heldout, reference)

    def fdd_and_acc(run, w, labels):
        cfg = C.with_overrides(run.exp, [f"sample.guidance={w}", f"sample.num={n}"]).sample
        generate = make_generator(run.eval_spec, run.shape, cfg, n, run.mesh)
        fdds, accs = [], []
        for s in range(args.seeds):
            x = np.asarray(generate(run.params, jax.random.PRNGKey(1000 + s), labels))
            fdds.append(frechet_digits_distance(x, reference))
            if labels is not None:
                accs.append(float(np.mean(classify(x) == labels)))
        return np.mean(fdds), np.std(fdds), (np.mean(accs) if accs else float("nan"))

    u_fdd, u_std, _ = fdd_and_acc(uncond, 0.0, None)
    rows = ["| model | guidance w | label accuracy | FDD (mean ± std over seeds) | FDD / unconditional |",
            "|---|---|---|---|---|",
            f"| unconditional (digits.py) | - | - | {u_fdd:.2f} ± {u_std:.2f} | 1.00 |"]
    for w in [float(v) for v in args.scales.split(",")]:
        fdd, std, acc = fdd_and_acc(cond, w, labels)
        rows.append(f"| conditional (digits_cond.py) | {w:g} | {100 * acc:.1f}% | {fdd:.2f} ± {std:.2f} | "
                    f"{fdd / u_fdd:.2f} |")
    real_acc = float(np.mean(classify(heldout) == labels))
    rows.append(f"| real held-out digits (floor) | - | {100 * real_acc:.1f}% | {floor:.2f} | {floor / u_fdd:.2f} |")
    table = "\n".join(rows)
    print(table)
    with open(os.path.join(args.runs, "table.md"), "w") as f:
        f.write(f"{n} samples per entry, {args.seeds} seeds, {args.steps} training steps, sampler "
                f"{cond.exp.sample.sampler} ({cond.exp.sample.steps} steps)\n\n{table}\n")
    print(f"total: {time.perf_counter() - t0:.0f} s; wrote {args.runs}/table.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
