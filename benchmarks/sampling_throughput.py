"""Sampling throughput of the CIFAR-10 DDPM++ U-Net with EDM's Heun sampler (18 steps, 35 NFE).

Prints images/s at batch 512 in float32 and bfloat16, next to the float32 figure of the same run
(the baseline), and the model FLOPs utilisation from XLA's cost analysis of the whole sampler.
The network has random weights: speed does not depend on them.

    PYTHONPATH=. python3 benchmarks/sampling_throughput.py            # on the GPU machine
    PYTHONPATH=. python3 benchmarks/sampling_throughput.py --tiny     # a CPU smoke run
"""
from __future__ import annotations

import argparse
import time

import jax

from _cifar import cifar_experiment, compiled_flops
from genflow.cli import build
from genflow.models import ModelSpec
from genflow.samplers import edm_heun, grids
from genflow.training import split_net


def measure(exp, batch: int, dtype: str, steps: int, iters: int) -> dict:
    process = build.build_process(exp.process)
    net = build.build_net(exp.net, (32, 32, 3), dtype, 0)
    net.eval()
    spec = ModelSpec.from_net(net, process, build.build_parameterization(exp))
    _, params, _ = split_net(net)
    ts = grids.karras(process, steps)

    @jax.jit
    def sample(params, key):
        x, stats = edm_heun(spec.model(params), process.prior(key, (batch, 32, 32, 3)), ts, key=key)
        return x, stats["nfe"]   # the sampler's own count of network evaluations

    key = jax.random.PRNGKey(0)
    compiled = sample.lower(params, key).compile()
    flops = compiled_flops(compiled)
    _, nfe = jax.block_until_ready(sample(params, key))
    t0 = time.perf_counter()
    for i in range(iters):
        x, _ = sample(params, jax.random.fold_in(key, i))
    jax.block_until_ready(x)
    dt = (time.perf_counter() - t0) / iters
    return {"img_s": batch / dt, "s_per_batch": dt, "tflops": flops / dt / 1e12,
            "nfe": int(nfe)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=18)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, default=873.0)
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    exp = cifar_experiment(args.tiny)
    if args.tiny:
        args.batch, args.steps, args.iters = 4, 3, 1
    print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()}, jax {jax.__version__}")
    rows = [(d, measure(exp, args.batch, d, args.steps, args.iters)) for d in args.dtypes]
    base = rows[0][1]["img_s"]
    print(f"\n| dtype | batch | NFE | img/s | s/batch | TFLOP/s | MFU | vs {rows[0][0]} |")
    print("|---|---|---|---|---|---|---|---|")
    for d, r in rows:
        print(f"| {d} | {args.batch} | {r['nfe']} | {r['img_s']:.1f} | {r['s_per_batch']:.2f} | {r['tflops']:.1f} | "
              f"{100 * r['tflops'] / args.peak_tflops:.1f}% | {r['img_s'] / base:.2f}x |")


if __name__ == "__main__":
    main()
