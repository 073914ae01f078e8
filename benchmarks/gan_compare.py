"""Derived GAN (ReFlow -> WGAN with a zero-centred penalty) vs WGAN-GP vs rectified flow + one-step
distillation, at an equal budget of parameter updates, over several seeds.

Every method ends in the same kind of one-step generator g(z) = z - v(z, 1) (same MLP), sampled
from the same z. Settings live in the experiment file: ``config`` (the rectified flow), ``gans``
({name: GANConfig}), ``seeds``, ``distill_steps``, ``num_couples`` and ``eval_draws``.

Data: a toy 2-D set (fresh draws every batch) or the embedded digits (the 1,497 training digits in
epoch-shuffled batches). Distance: for 2-D data, the energy distance of 2,000 samples (EMA weights)
to 2,000 fresh data points; for digits, the Fréchet digits distance (FDD) of 300 samples, the size
of the held-out set, to the training digits, averaged over ``eval_draws`` blocks of 300 samples.
The floor is the same number for held-out real data at the same N (FDD is biased upward at small N,
so only numbers at equal N compare). Reported: mean and standard deviation over the seeds, each
seed's value, the budget and wall time; a figure of seed 0's samples over training.

    PYTHONPATH=. python benchmarks/gan_compare.py experiments/gan_2d.py --out runs/gan_2d
    PYTHONPATH=. python benchmarks/gan_compare.py experiments/gan_digits.py --out runs/gan_digits
    PYTHONPATH=. python benchmarks/gan_compare.py experiments/gan_2d.py --out /tmp/g --fast    # smoke run

Runs resume from their checkpoints; a finished run is only measured again.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import runpy
import sys
import time
from typing import Callable

import jax
import numpy as np

from genflow.cli.reflow import ensure_couplings
from genflow.cli.run import load_run, train
from genflow.data import TOY_SETS, load_digits
from genflow.cli import build
from genflow.gan import build_gan, train_gan
from genflow.plotting import _plt, grid_array
from genflow.reflow import at_sample_size, default_distance, distillation, one_step_sample, train_on_couples

FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
SHOW = 1000   # points (2-D) shown per panel; images show the first 16


def real_data(exp):
    """(train, heldout, reference, shape): what the GANs train on (a sampler or an array), the
    held-out real data (the floor) and the data every distance compares against."""
    if exp.data.name == "digits":
        x, _, heldout, _ = load_digits(holdout=exp.data.holdout)
        return x, heldout, x, tuple(x.shape[1:])
    if exp.data.name not in TOY_SETS:
        sys.exit(f"data.name {exp.data.name!r}: this comparison runs on digits or a toy 2-D set "
                 f"({', '.join(TOY_SETS)}).")
    fn = TOY_SETS[exp.data.name]
    return fn, np.asarray(fn(jax.random.PRNGKey(10_000), 2000)), np.asarray(fn(jax.random.PRNGKey(20_000), 2000)), (2,)


def keep_snapshots(workdir: str, shots: list[tuple[int, np.ndarray]]) -> list[tuple[int, np.ndarray]]:
    """Merge this run's snapshots with those saved by earlier runs of it (a finished run is only
    re-measured, so its intermediate samples come from disk), and save the union."""
    path = os.path.join(workdir, "snapshots.npz")
    merged = {}
    if os.path.exists(path):
        with np.load(path) as z:
            merged = {int(k): z[k] for k in z.files}
    merged.update({int(step): x for step, x in shots})
    np.savez(path, **{str(k): v for k, v in merged.items()})
    return sorted(merged.items())


def figure(snaps: dict[str, list[tuple[int, np.ndarray]]], reference: np.ndarray, path: str, note: str) -> None:
    """Rows: methods; columns: seed 0's one-step samples at 0, 1/4, ..., all of training."""
    plt = _plt()
    rows = list(snaps)
    fig, axes = plt.subplots(len(rows), len(FRACTIONS), figsize=(2.2 * len(FRACTIONS), 2.0 * len(rows)),
                             squeeze=False)
    for r, name in enumerate(rows):
        shots = sorted(dict(snaps[name]).items())
        last = shots[-1][0]
        picks = [min(shots, key=lambda sx: abs(sx[0] - f * last)) for f in FRACTIONS]
        for c, (step, x) in enumerate(picks):
            ax = axes[r, c]
            if x.ndim == 4:
                ax.imshow(grid_array(x[:16], 4)[..., 0], cmap="gray", vmin=0, vmax=255)
            else:
                ax.scatter(reference[:SHOW, 0], reference[:SHOW, 1], s=1, c="0.8")
                ax.scatter(x[:SHOW, 0], x[:SHOW, 1], s=1, c="C0")
                ax.set_xlim(-3.5, 3.5), ax.set_ylim(-3.5, 3.5)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"step {step}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(note, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment")
    ap.add_argument("--out", required=True)
    ap.add_argument("--fast", action="store_true")
    args = ap.parse_args(argv)
    mod = runpy.run_path(args.experiment)
    exp, gans, seeds = mod["config"], mod["gans"], tuple(mod.get("seeds", (0, 1, 2)))
    distill_steps, num_couples = mod.get("distill_steps", 2000), mod.get("num_couples", 16_384)
    draws = mod.get("eval_draws", 1)
    if args.fast:
        exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, steps=40, log_every=20, ckpt_every=40))
        gans = {k: dataclasses.replace(v, steps=max(8, v.steps // 100)) for k, v in gans.items()}
        distill_steps, num_couples, seeds = 20, 1024, seeds[:2]
    os.makedirs(args.out, exist_ok=True)
    train_data, heldout, reference, shape = real_data(exp)
    dist_name, distance = default_distance(shape)
    n_eval = len(heldout)
    blocked = at_sample_size(distance, n_eval)
    times_path = os.path.join(args.out, "wall_times.json")
    walls = json.load(open(times_path)) if os.path.exists(times_path) else {}
    results: dict[str, dict[int, float]] = {}
    snaps: dict[str, list[tuple[int, np.ndarray]]] = {}
    budget = {}

    def score(sample: Callable[[jax.Array], np.ndarray], seed: int) -> float:
        """Mean distance to ``reference`` of ``draws`` blocks of n_eval samples, the floor's N."""
        z = jax.random.normal(jax.random.PRNGKey(1_000 + seed), (draws * n_eval,) + shape)
        return blocked(sample(z), reference)

    def record(name, seed, value):
        results.setdefault(name, {})[seed] = value
        print(f"{name} seed {seed}: {dist_name} {value:.4g}", file=sys.stderr)
        json.dump(walls, open(times_path, "w"), indent=2)

    for name, cfg0 in gans.items():
        budget[name] = cfg0.steps * (cfg0.n_critic + cfg0.inner_steps)
        for seed in seeds:
            cfg = dataclasses.replace(cfg0, seed=seed)
            workdir = os.path.join(args.out, name.replace(" ", "_").replace(",", ""), f"seed{seed}")
            state0, _, g = build_gan(cfg, shape)
            g = jax.jit(g)
            z_show = jax.random.normal(jax.random.PRNGKey(5), (SHOW,) + shape)
            shots = []

            def on_sample(state, step, _shots=shots, _g=g):
                _shots.append((step, np.asarray(_g(state.gen.ema, z_show))))

            first = seed == seeds[0]
            if first:
                on_sample(state0, 0)
            t0 = time.perf_counter()
            state, _ = train_gan(cfg, train_data, shape, workdir, log_every=100, ckpt_every=cfg.steps,
                                 sample_every=max(1, cfg.steps // 4) if first else 0,
                                 on_sample=on_sample if first else None, progress=False)
            walls.setdefault(f"{name}/{seed}", time.perf_counter() - t0)
            if first:
                on_sample(state, cfg.steps)
                snaps[name] = keep_snapshots(workdir, shots)
            record(name, seed, score(lambda z: np.asarray(g(state.gen.ema, z)), seed))

    name = "RF + one-step distillation"
    budget[name] = exp.train.steps + distill_steps
    for seed in seeds:
        e = dataclasses.replace(exp, train=dataclasses.replace(exp.train, seed=seed))
        run_dir = os.path.join(args.out, "rf", f"seed{seed}")
        t0 = time.perf_counter()
        if not os.path.isdir(os.path.join(run_dir, "checkpoints", str(e.train.steps))):
            train(e, run_dir, resume=os.path.exists(os.path.join(run_dir, "config.json")), progress=False)
        run = load_run(run_dir)
        couplings, _ = ensure_couplings(run, run_dir, num_couples=num_couples, seed=seed, chunk_size=None,
                                        solver="tsit5", ode_steps=None, rtol=1e-4, atol=1e-4, progress=False)

        def one_step(params, z):
            return np.asarray(one_step_sample(run.eval_spec.model(params), z))

        z_show = jax.random.normal(jax.random.PRNGKey(5), (SHOW,) + shape)
        shots = []

        def on_sample(st, step, _shots=shots):
            _shots.append((step, one_step(st.ema, z_show)))

        first = seed == seeds[0]
        if first:
            shots.append((0, one_step(run.params, z_show)))   # step 0: the 1-RF's own one-step sampler
        dstate, _ = train_on_couples(run.spec, run.params, build.build_optimizer(e.optim), couplings.x0,
                                     couplings.x1, workdir=run_dir + "-distill1", steps=distill_steps,
                                     batch_size=e.train.batch_size, seed=seed, ema_decay=e.optim.ema_decay,
                                     objective=distillation(1), mesh=run.mesh, ckpt_every=distill_steps,
                                     on_sample=on_sample if first else None,
                                     sample_every=max(1, distill_steps // 4) if first else 0, progress=False)
        walls.setdefault(f"{name}/{seed}", time.perf_counter() - t0)
        if first:
            on_sample(dstate, distill_steps)
            snaps[name] = keep_snapshots(run_dir + "-distill1", shots)
        record(name, seed, score(lambda z: one_step(dstate.ema, z), seed))

    floor = float(distance(heldout, reference))
    lines = [f"| method | {dist_name}, mean ± std over seeds | per seed | parameter updates | wall time per run (s) |",
             "|---|---|---|---|---|"]
    for name, per_seed in results.items():
        v = np.array([per_seed[s] for s in seeds])
        wall = np.mean([walls[f"{name}/{s}"] for s in seeds])
        lines.append(f"| {name} | {v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f} | "
                     f"{', '.join(f'{x:.4f}' for x in v)} | {budget[name]:,} | {wall:.0f} |")
    avg = f", averaged over {draws} blocks" if draws > 1 else ""
    table = "\n".join(lines) + (
        f"\n\n{dist_name} of {n_eval:,} samples{avg}; of the {n_eval:,} held-out real examples to the same "
        f"reference (the floor): {floor:.4f}. Wall time of the RF row includes its couplings "
        f"({num_couples:,} adaptive ODE solves). Seeds: {', '.join(map(str, seeds))}.")
    print(table)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    json.dump(results, open(os.path.join(args.out, "results.json"), "w"), indent=2)
    figure(snaps, reference, os.path.join(args.out, "samples_over_training.png"),
           f"one-step generators over training, seed 0{' (grey: data)' if len(shape) == 1 else ''}. "
           "GANs: generator steps; RF: distillation steps, step 0 = the 1-RF's one-step sampler")
    print(f"wrote {args.out}/table.md and samples_over_training.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
