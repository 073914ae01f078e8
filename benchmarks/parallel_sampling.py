"""Parallel-in-time sampling against the sequential samplers: rounds, NFE, error, latency.

    PYTHONPATH=. python benchmarks/parallel_sampling.py [--run RUN_DIR] [--quick]

Table 1, the exact 8-Gaussian mixture on DDPM's process (no training error, so every error is
the solver's): for 100- and 1000-step samplers, the sequential depth in network calls (rounds)
of Picard and Newton iteration, their total NFE, their error against the sequential output, and
the sampler's own discretisation error (its output against the same sampler on a 4x finer grid;
ODE samplers only, as an SDE sampler's noise differs between grids). Table 2, the same for a
trained image run (``--run``, e.g. the README's digits run), Newton with the isotropic Jacobian.
Table 3, wall-clock latency at batch 1 and 16 on the device present. On a CPU the window's
batched calls share the same cores, so the latency column is a side figure there; the rounds
column is what a GPU turns into latency.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from genflow.data.toy2d import GaussianMixture
from genflow.processes import DDPM
from genflow.samplers import SAMPLERS, grids, parallel

KEY = jax.random.PRNGKey(2)


def ddpm_grid(process, n):
    return process.time_of_step(jnp.round(jnp.linspace(process.num_steps, 0, n + 1)).astype(int))


def grid_for(sampler, process, n):
    if sampler == "ancestral":
        return ddpm_grid(process, n)
    return grids.log_snr(process, n) if sampler.startswith("dpm") else grids.uniform(process, n)


def timed(fn, repeats=3):
    jax.block_until_ready(fn())                                      # compile
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn())
    return (time.perf_counter() - start) / repeats


def row(*cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


def solver_table(model, process, x1, samplers, steps, methods, discretise=True):
    print(row("sampler", "steps", "method", "rounds", "steps / rounds", "NFE", "error vs sequential",
              "discretisation error"))
    print(row(*["---"] * 8))
    for sampler in samplers:
        for n in steps:
            ts = grid_for(sampler, process, n)
            ref, _ = SAMPLERS[sampler].fn(model, x1, ts, key=KEY)
            disc = "n/a (SDE)"
            if discretise and (not SAMPLERS[sampler].stochastic or sampler == "ddim"):   # ddim: eta = 0
                finer, _ = SAMPLERS[sampler].fn(model, x1, grid_for(sampler, process, 4 * n), key=KEY)
                disc = f"{float(jnp.max(jnp.abs(ref - finer))):.1e}"
            for method, jacobian in methods:
                x, st = parallel.sample(model, x1, ts, sampler=sampler, method=method, jacobian=jacobian, key=KEY,
                                        tol=1e-3)
                rounds = int(st["rounds"])
                print(row(sampler, n, method if method == "picard" else f"newton ({jacobian})", rounds,
                          f"{n / rounds:.1f}x", int(st["nfe"]), f"{float(jnp.max(jnp.abs(x - ref))):.1e}", disc),
                      flush=True)


def latency_table(model, process, sampler, n, methods, batches):
    print(row("sampler", "steps", "batch", "sequential (ms)", *[f"{m} (ms)" for m, _ in methods]))
    print(row(*["---"] * (4 + len(methods))))
    ts = grid_for(sampler, process, n)
    for b in batches:
        x1 = process.prior(jax.random.PRNGKey(1), (b,) + model_shape(model))
        seq = timed(lambda: SAMPLERS[sampler].fn(model, x1, ts, key=KEY)[0])
        par = [timed(lambda m=m, j=j: parallel.sample(model, x1, ts, sampler=sampler, method=m, jacobian=j, key=KEY,
                                                     tol=1e-3)[0]) for m, j in methods]
        print(row(sampler, n, b, f"{1e3 * seq:.0f}", *[f"{1e3 * p:.0f}" for p in par]), flush=True)


_SHAPES = {}


def model_shape(model):
    return _SHAPES[id(model)]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=None, help="a trained run directory for table 2 (e.g. the README's digits run)")
    p.add_argument("--quick", action="store_true", help="100 steps only")
    args = p.parse_args()
    steps = (100,) if args.quick else (100, 1000)
    print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()}\n")

    process = DDPM()
    model = GaussianMixture.eight_gaussians().exact_model(process, "eps")
    _SHAPES[id(model)] = (2,)
    x1 = process.prior(jax.random.PRNGKey(1), (16, 2))
    print("Table 1: exact 8-Gaussian mixture, DDPM (linear), batch 16, tol 1e-3\n")
    solver_table(model, process, x1, ["ddim", "dpm_solver_pp_2m", "euler_ode", "ancestral"], steps,
                 [("picard", "isotropic"), ("newton", "full"), ("newton", "isotropic")])

    if args.run:
        from genflow.cli.run import load_run

        run = load_run(args.run)
        rmodel = run.eval_spec.model(run.params)
        _SHAPES[id(rmodel)] = tuple(run.shape)
        rx1 = run.eval_spec.process.prior(jax.random.PRNGKey(1), (16,) + tuple(run.shape))
        print(f"\nTable 2: {args.run} ({run.exp.name}, {run.exp.process.name}), batch 16, tol 1e-3\n")
        solver_table(rmodel, run.eval_spec.process, rx1, ["ddim"], steps,
                     [("picard", "isotropic"), ("newton", "isotropic")])

    print(f"\nTable 3: latency on {jax.devices()[0].device_kind} (after compilation, mean of 3)\n")
    latency_table(model, process, "ddim", steps[-1], [("picard", "isotropic"), ("newton", "full")], (1, 16))


if __name__ == "__main__":
    main()
