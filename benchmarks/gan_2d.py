"""Derived GAN (ReFlow -> WGAN with a zero-centred penalty) vs WGAN-GP vs rectified flow + one-step
distillation, at an equal budget of parameter updates, over several seeds.

Every method ends in the same kind of one-step generator g(z) = z - v(z, 1) (same MLP), sampled
from the same z. Reported: energy distance of 2,000 samples (EMA weights) to fresh data, mean and
standard deviation over the seeds, each seed's value, and wall time; a figure of seed 0's samples
over training. Settings live in the experiment file (experiments/gan_2d.py).

    PYTHONPATH=. python benchmarks/gan_2d.py experiments/gan_2d.py --out runs/gan_2d
    PYTHONPATH=. python benchmarks/gan_2d.py experiments/gan_2d.py --out /tmp/g --fast    # smoke run

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

import jax
import numpy as np
from flax import nnx

from genflow.cli.run import load_run, train
from genflow.data import TOY_SETS
from genflow.gan import gan_samples, train_gan
from genflow.metrics import energy_distance
from genflow.models import Model
from genflow.plotting import _plt
from genflow.reflow import distillation, ensure_couplings, one_step_sample, train_on_couples

FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment")
    ap.add_argument("--out", required=True)
    ap.add_argument("--fast", action="store_true")
    args = ap.parse_args(argv)
    mod = runpy.run_path(args.experiment)
    exp, gans, seeds = mod["config"], mod["gans"], tuple(mod.get("seeds", (0, 1, 2)))
    distill_steps, num_couples = mod.get("distill_steps", 2000), mod.get("num_couples", 16_384)
    if args.fast:
        exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, steps=40, log_every=20, ckpt_every=40))
        gans = {k: dataclasses.replace(v, steps=max(8, v.steps // 100)) for k, v in gans.items()}
        distill_steps, num_couples, seeds = 20, 1024, seeds[:2]
    os.makedirs(args.out, exist_ok=True)
    fn = TOY_SETS[exp.data.name]
    shape = (2,)
    reference = np.asarray(fn(jax.random.PRNGKey(20_000), 2000))
    heldout = np.asarray(fn(jax.random.PRNGKey(10_000), 2000))
    times_path = os.path.join(args.out, "wall_times.json")
    walls = json.load(open(times_path)) if os.path.exists(times_path) else {}
    results: dict[str, dict[int, float]] = {}
    snaps: dict[str, list[tuple[int, np.ndarray]]] = {}
    budget = {}

    def z_of(seed):
        return jax.random.normal(jax.random.PRNGKey(1_000 + seed), (2000,) + shape)

    for name, cfg0 in gans.items():
        budget[name] = cfg0.steps * (cfg0.n_critic + cfg0.inner_steps)
        for seed in seeds:
            cfg = dataclasses.replace(cfg0, seed=seed)
            workdir = os.path.join(args.out, name.replace(" ", "_"), f"seed{seed}")
            shots = []
            g_holder = []

            def on_sample(state, step, _shots=shots, _g=g_holder, _seed=seed):
                _shots.append((step, gan_samples(_g[0], state.gen.ema, jax.random.PRNGKey(5), 1000, shape)))

            from genflow.gan import build_gan

            state0, _, g = build_gan(cfg, shape)
            g_holder.append(g)
            if seed == seeds[0]:
                on_sample(state0, 0)
            every = max(1, cfg.steps // 4)
            t0 = time.perf_counter()
            state, g = train_gan(cfg, fn, shape, workdir, log_every=100, ckpt_every=cfg.steps,
                                 sample_every=every if seed == seeds[0] else 0,
                                 on_sample=on_sample if seed == seeds[0] else None, progress=False)
            key = f"{name}/{seed}"
            walls.setdefault(key, time.perf_counter() - t0)
            x = np.asarray(jax.jit(g)(state.gen.ema, z_of(seed)))
            results.setdefault(name, {})[seed] = float(energy_distance(x, reference))
            if seed == seeds[0]:
                on_sample(state, cfg.steps)
                snaps[name] = keep_snapshots(workdir, shots)
            print(f"{name} seed {seed}: energy distance {results[name][seed]:.4g}", file=sys.stderr)
            json.dump(walls, open(times_path, "w"), indent=2)

    name = "RF + one-step distillation"
    budget[name] = exp.train.steps + distill_steps
    for seed in seeds:
        e = dataclasses.replace(exp, train=dataclasses.replace(exp.train, seed=seed))
        run_dir = os.path.join(args.out, "rf", f"seed{seed}")
        t0 = time.perf_counter()
        if not os.path.isdir(os.path.join(run_dir, "checkpoints", str(e.train.steps))):
            train(e, run_dir, resume=os.path.exists(os.path.join(run_dir, "config.json")), progress=False)
        parts, state = load_run(run_dir)
        x1, x0, _ = ensure_couplings(parts, state, run_dir, num_couples=num_couples, seed=seed, chunk_size=None,
                                     solver="tsit5", ode_steps=None, rtol=1e-4, atol=1e-4, progress=False)
        shots = []

        def one_step(params):
            model = Model(nnx.merge(parts.eval_graphdef, params, parts.eval_rest), parts.process, "velocity")
            return np.asarray(one_step_sample(model, z_of(seed)))

        def on_sample(st, step, _shots=shots):
            _shots.append((step, one_step(st.ema)[:1000]))

        if seed == seeds[0]:
            on_sample(state, 0)
        every = max(1, distill_steps // 4)
        dstate, _ = train_on_couples(parts.graphdef, parts.rest, parts.process, "velocity", state.ema, parts.tx, x0,
                                     x1, workdir=run_dir + "-distill1", steps=distill_steps,
                                     batch_size=e.train.batch_size, seed=seed, ema_decay=e.optim.ema_decay,
                                     objective=distillation(1), mesh=parts.mesh, ckpt_every=distill_steps,
                                     on_sample=on_sample if seed == seeds[0] else None,
                                     sample_every=every if seed == seeds[0] else 0, progress=False)
        walls.setdefault(f"{name}/{seed}", time.perf_counter() - t0)
        x = one_step(dstate.ema)
        results.setdefault(name, {})[seed] = float(energy_distance(x, reference))
        if seed == seeds[0]:
            on_sample(dstate, distill_steps)
            snaps[name] = keep_snapshots(run_dir + "-distill1", shots)
        print(f"{name} seed {seed}: energy distance {results[name][seed]:.4g}", file=sys.stderr)
        json.dump(walls, open(times_path, "w"), indent=2)

    floor = float(energy_distance(heldout, reference))
    lines = ["| method | energy distance, mean ± std over seeds | per seed | parameter updates | wall time per run (s) |",
             "|---|---|---|---|---|"]
    for name, per_seed in results.items():
        v = np.array([per_seed[s] for s in seeds])
        wall = np.mean([walls[f"{name}/{s}"] for s in seeds])
        lines.append(f"| {name} | {v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f} | "
                     f"{', '.join(f'{x:.4f}' for x in v)} | {budget[name]:,} | {wall:.0f} |")
    table = "\n".join(lines) + (f"\n\nenergy distance of 2,000 held-out data points to the same reference "
                                f"(the floor): {floor:.4f}. Wall time of the RF row includes its couplings "
                                f"({num_couples:,} adaptive ODE solves). Seeds: {', '.join(map(str, seeds))}.")
    print(table)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    json.dump(results, open(os.path.join(args.out, "results.json"), "w"), indent=2)

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
            ax.scatter(reference[:1000, 0], reference[:1000, 1], s=1, c="0.8")
            ax.scatter(x[:, 0], x[:, 1], s=1, c="C0")
            ax.set_xlim(-3.5, 3.5), ax.set_ylim(-3.5, 3.5), ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"step {step}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle("one-step generators over training, seed 0 (grey: data). GANs: generator steps; "
                 "RF: distillation steps, step 0 = the 1-RF's one-step sampler", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "samples_over_training.png"), dpi=110)
    print(f"wrote {args.out}/table.md and samples_over_training.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
