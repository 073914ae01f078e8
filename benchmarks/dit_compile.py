"""Compile time of a DiT training step against depth, with the blocks unrolled or scanned.

Run:  PYTHONPATH=. python benchmarks/dit_compile.py [--depths 12 28] [--width 64] [--heads 4] [--remat]

For each depth and each mode (unrolled: one copy of the block per layer in the program; scanned:
parameters stacked by nnx.vmap and one block run by lax.scan) it lowers and compiles
value_and_grad of a mean-squared error plus an SGD update on 16x16x4 inputs (64 tokens at patch 2,
batch 8), from abstract shapes only (nothing is initialised), with XLA's persistent compilation
cache off, and prints the lowering (tracing) and compile seconds. The width is small because
compile time depends on the program's size (which grows with depth when unrolled and not when
scanned), not on the arrays'. Measured on 2 shared CPU cores (2026-12-04, about 6 minutes in all,
nearly all of it the unrolled 28-block compile; `--depths 12` alone takes half a minute):

    depth  mode       lower s  compile s  total s
       12  unrolled      0.47      20.44    20.91
       12  scanned       0.18       4.64     4.83
       28  unrolled      1.09     291.24   292.33
       28  scanned       0.38       5.57     5.95
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from flax import nnx

from genflow.models.dit import DiT


def step_program(depth: int, scan: bool, width: int, heads: int, remat: bool):
    """(lower seconds, compile seconds) of one SGD training step of a DiT."""
    shape = (16, 16, 4)
    abstract = nnx.eval_shape(lambda: DiT(shape, hidden=width, depth=depth, heads=heads, patch=2, num_classes=10,
                                          scan=scan, remat=remat, rngs=nnx.Rngs(0)))
    graphdef, params = nnx.split(abstract, nnx.Param)

    def step(params, x, t, y):
        def loss(p):
            return jnp.mean((nnx.merge(graphdef, p)(x, t, y) - x) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads), value

    args = (params, jax.ShapeDtypeStruct((8, *shape), jnp.float32), jax.ShapeDtypeStruct((8,), jnp.float32),
            jax.ShapeDtypeStruct((8,), jnp.int32))
    start = time.perf_counter()
    lowered = jax.jit(step).lower(*args)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    lowered.compile()
    return lower_s, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[12, 28])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--remat", action="store_true", help="remat every block")
    args = parser.parse_args()
    jax.config.update("jax_enable_compilation_cache", False)  # measure compiling, not reading a cache
    step_program(2, True, args.width, args.heads, args.remat)   # warm-up: JAX's own one-time start-up
    print(f"DiT train step (width {args.width}, {args.heads} heads, patch 2, 16x16x4, batch 8, "
          f"remat {'on' if args.remat else 'off'}), {jax.devices()[0].platform}")
    print(f"{'depth':>5}  {'mode':<9} {'lower s':>8} {'compile s':>10} {'total s':>8}")
    for depth in args.depths:
        for scan in (False, True):
            lower_s, compile_s = step_program(depth, scan, args.width, args.heads, args.remat)
            mode = "scanned" if scan else "unrolled"
            print(f"{depth:>5}  {mode:<9} {lower_s:8.2f} {compile_s:10.2f} {lower_s + compile_s:8.2f}", flush=True)


if __name__ == "__main__":
    main()
