"""Sampling throughput of the CIFAR-10 DDPM++ U-Net with EDM's Heun sampler (18 steps, 35 NFE).

Prints images/s at batch 512 in float32 and bfloat16, next to the float32 figure of the same run
(the baseline), the sampler's compile time, and the model FLOPs utilisation from XLA's cost
analysis of the whole sampler; each row prints as it is measured.
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
    t0 = time.perf_counter()
    compiled = sample.lower(params, key).compile()
    compile_s = time.perf_counter() - t0
    flops = compiled_flops(compiled)
    # calls go to the compiled program: calling the jitted function would compile it a second time
    _, nfe = jax.block_until_ready(compiled(params, key))
    t0 = time.perf_counter()
    for i in range(iters):
        x, _ = compiled(params, jax.random.fold_in(key, i))
    jax.block_until_ready(x)
    dt = (time.perf_counter() - t0) / iters
    return {"img_s": batch / dt, "s_per_batch": dt, "tflops": flops / dt / 1e12,
            "nfe": int(nfe), "compile_s": compile_s}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=18)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, default=873.0, help="the bf16 peak MFU is measured against")
    ap.add_argument("--peak-tflops-fp32", type=float, default=None,
                    help="the peak for float32 rows (default: --peak-tflops)")
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    exp = cifar_experiment(args.tiny)
    if args.tiny:
        args.batch, args.steps, args.iters = 4, 3, 1
    peaks = {"bfloat16": args.peak_tflops, "float32": args.peak_tflops_fp32 or args.peak_tflops}
    print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()}, jax {jax.__version__}; "
          f"MFU against {peaks['bfloat16']:g} (bf16) and {peaks['float32']:g} (fp32) TFLOP/s")
    print(f"\n| dtype | batch | NFE | img/s | s/batch | compile s | TFLOP/s | MFU | vs {args.dtypes[0]} |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    base = None
    for d in args.dtypes:
        r = measure(exp, args.batch, d, args.steps, args.iters)
        base = r["img_s"] if base is None else base
        print(f"| {d} | {args.batch} | {r['nfe']} | {r['img_s']:.1f} | {r['s_per_batch']:.2f} | {r['compile_s']:.1f} | "
              f"{r['tflops']:.3g} | {100 * r['tflops'] / peaks[d]:.1f}% | {r['img_s'] / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
