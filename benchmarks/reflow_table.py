"""The ReFlow table: 1-RF -> 2-RF (-> k-RF) -> distilled one-step sampler, measured alike.

For each model: straightness S of its Euler trajectories (100 steps), the transport cost
E||x1 - x0||^2 of its coupling (x0 from adaptive Tsit5), the distance of its samples to data (energy distance for 2-D data, Fréchet digits
distance for digits) at 1, 2, 4, 8 Euler steps and with adaptive Tsit5 (rtol = atol = 1e-5, NFE
in brackets), and the wall time of the stage that made it (training, plus generating the
couplings it was trained on). Every entry uses the same prior draw. Where the held-out set is
smaller than the samples (digits: 300), the distance is the mean over blocks of that size, so it
compares with the floor (FDD, like FID, is biased upward at small N).

    PYTHONPATH=. python benchmarks/reflow_table.py experiments/reflow_2d.py --out runs/reflow_2d
    PYTHONPATH=. python benchmarks/reflow_table.py experiments/reflow_2d.py --out /tmp/r --fast   # seconds

Every stage resumes: run the command again after an interruption. The table goes to stdout and
OUT/table.md. ``--fast`` shrinks steps and couples to a smoke test (numbers then mean little).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import runpy
import sys

import jax
import numpy as np

from genflow import config as C
from genflow.cli.build import build_data
from genflow.cli.reflow import distill_command, reflow_command
from genflow.cli.run import load_run, train
from genflow.reflow import Stopwatch, at_sample_size, default_distance, flow_report, format_table


def load(path: str) -> tuple[C.Experiment, C.Reflow]:
    module = runpy.run_path(path)
    exp, rf = module.get("config"), module.get("reflow", C.Reflow())
    if not isinstance(exp, C.Experiment) or not isinstance(rf, C.Reflow):
        sys.exit(f"{path} must define `config = Experiment(...)` and `reflow = Reflow(...)`.")
    return exp, rf


def shrink(exp: C.Experiment, rf: C.Reflow) -> tuple[C.Experiment, C.Reflow]:
    exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, steps=60, log_every=20, ckpt_every=60))
    rf = dataclasses.replace(rf, num_couples=1024, chunk_size=512, steps=40, distill_steps=40, eval_samples=256)
    return exp, rf


def finished(workdir: str, steps: int) -> bool:
    ckpt = os.path.join(workdir, "checkpoints")
    return os.path.isdir(ckpt) and str(steps) in os.listdir(ckpt)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment")
    ap.add_argument("--out", required=True)
    ap.add_argument("--fast", action="store_true", help="a seconds-long smoke run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    exp, rf = load(args.experiment)
    if args.fast:
        exp, rf = shrink(exp, rf)
    os.makedirs(args.out, exist_ok=True)
    watch_path = os.path.join(args.out, "wall_times.json")
    watch = Stopwatch()
    if os.path.exists(watch_path):  # a resumed run keeps the times of the stages it skips
        watch.seconds.update(json.load(open(watch_path)))

    def save_times():
        json.dump(watch.seconds, open(watch_path, "w"), indent=2)

    common = dict(num_couples=rf.num_couples, seed=args.seed, chunk_size=rf.chunk_size,
                  solver=rf.solver, ode_steps=rf.ode_steps or None, rtol=rf.rtol, atol=rf.atol, lr=rf.lr,
                  report=False)
    runs = [("1-RF", os.path.join(args.out, "1rf"), None)]
    rf1 = runs[0][1]
    if not finished(rf1, exp.train.steps):
        with watch("1-RF"):
            train(exp, rf1, resume=os.path.exists(os.path.join(rf1, "config.json")))
        save_times()
    prev = rf1
    for k in range(2, rf.rounds + 2):
        out = os.path.join(args.out, f"{k}rf")
        if not finished(out, rf.steps):
            with watch(f"{k}-RF"):
                if reflow_command(prev, out, steps=rf.steps, **common):
                    return 1
            save_times()
        runs.append((f"{k}-RF", out, None))
        prev = out
    kd = rf.distill_k
    for src_name, src in [(runs[-1][0], runs[-1][1]), ("1-RF", rf1)] if rf.rounds else [("1-RF", rf1)]:
        out = f"{src}-distill{kd}"
        name = f"{src_name} + {kd}-step distillation"
        if not finished(out, rf.distill_steps):
            with watch(name):
                if distill_command(src, out, k=kd, steps=rf.distill_steps, **common):
                    return 1
            save_times()
        runs.append((name, out, kd))

    run0 = load_run(rf1)
    shape = tuple(run0.shape)
    data = build_data(run0.exp.data, run0.exp.train.batch_size, run0.exp.train.seed, None)
    dist_name, distance = default_distance(shape)
    floor_name = dist_name
    reference, heldout = np.asarray(data.reference), np.asarray(data.heldout)
    if distance is not None and len(heldout) < rf.eval_samples:   # compare at the floor's N (FDD's bias)
        distance = at_sample_size(distance, len(heldout))
        dist_name += f" (N = {len(heldout)}, mean of {rf.eval_samples // len(heldout)} blocks)"
    x1 = run0.process.prior(jax.random.PRNGKey(args.seed + 777), (rf.eval_samples,) + shape)
    rows = []
    for name, workdir, kd in runs:
        run = load_run(workdir)
        model = run.eval_spec.model(run.params)   # EMA weights, dropout off
        if kd is None:
            r = flow_report(model, x1, reference, distance=distance)
        else:   # a distilled sampler is trained only at its k grid times: only its own step count means anything
            r = flow_report(model, x1, reference, distance=distance, euler_steps=(kd,), adaptive=False,
                            with_straightness=False)
        r["wall_s"] = watch.seconds.get(name)
        rows.append((name, r))
        print(f"measured {name}", file=sys.stderr)
    floor = distance(heldout, reference) if distance is not None else None
    table = format_table(rows, dist_name)
    if floor is not None:
        table += (f"\n\n{floor_name} of the {len(heldout):,} held-out real examples to the same "
                  f"reference (the floor): {floor:.4g}")
    note = ("\nWall time: the stage's own training, plus generating the couplings it trains on "
            f"({rf.num_couples:,} couples, {rf.solver}); 1-RF is plain training. Device: {jax.devices()[0].platform}, "
            f"{jax.device_count()} device(s).")
    print(table + note)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + note + "\n")
    with open(os.path.join(args.out, "table.json"), "w") as f:
        json.dump({name: r for name, r in rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
