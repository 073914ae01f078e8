"""Training throughput of the CIFAR-10 DDPM++ U-Net (experiments/cifar10_ddpmpp.py).

Prints img/s and model-FLOPs utilisation for batch 128 and 512 in float32 and bfloat16, with
FLOPs per step from XLA's cost analysis of the compiled train step, next to the reference:
NVlabs' EDM PyTorch code, same network, same H100: 2150 img/s (torch.compile, fp16, batch 512)
and 1643 img/s (no compile). Cross-check: torch's flop counter gives 127.1 GFLOP per training
image for this network. MFU is against 873 TFLOP/s, the bf16 matmul peak measured through JAX
on an H100 (pass --peak-tflops for other hardware).

The step is the real one (make_train_step: DSM loss, Adam, EMA, non-finite guard) on synthetic
device-resident batches, so data loading is not measured.

    PYTHONPATH=. python3 benchmarks/train_throughput.py              # on the GPU machine
    PYTHONPATH=. python3 benchmarks/train_throughput.py --tiny       # a seconds-long CPU smoke run
"""
from __future__ import annotations

import argparse
import time

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from _cifar import cifar_experiment, compiled_flops
from genflow.cli import build
from genflow.models import ModelSpec
from genflow.training import init_state, make_mesh, make_optimizer, make_train_step, split_net

REFERENCE = {"EDM PyTorch, torch.compile fp16, batch 512": 2150.0, "EDM PyTorch, eager, batch 512": 1643.0}


def measure(exp, batch: int, dtype: str, warmup: int, iters: int) -> dict:
    mesh = make_mesh()
    process = build.build_process(exp.process)
    net = build.build_net(exp.net, (32, 32, 3), dtype, 0)
    spec = ModelSpec.from_net(net, process, build.build_parameterization(exp))
    _, params, _ = split_net(net)
    o = exp.optim
    tx = make_optimizer(o.name, o.lr, b1=o.b1, b2=o.b2, warmup_steps=o.warmup_steps, grad_clip=o.grad_clip)
    state = jax.device_put(init_state(params, tx, 0), NamedSharding(mesh, P()))
    step = make_train_step(spec, build.build_objective(exp, process), tx, ema_decay=o.ema_decay, mesh=mesh)
    x = jax.device_put(jax.random.normal(jax.random.PRNGKey(0), (batch, 32, 32, 3)), NamedSharding(mesh, P("data")))
    batch_x = {"x0": x}   # batches are dicts; an unconditional step needs only "x0"
    compiled = step.lower(state, batch_x).compile()
    flops = compiled_flops(compiled)
    for _ in range(warmup):
        state, m = step(state, batch_x)
    jax.block_until_ready(m["loss"])
    t0 = time.perf_counter()
    for _ in range(iters):
        state, m = step(state, batch_x)
    jax.block_until_ready(m["loss"])
    dt = (time.perf_counter() - t0) / iters
    return {"img_s": batch / dt, "step_ms": dt * 1e3, "gflop_per_img": flops / batch / 1e9,
            "tflops": flops / dt / 1e12, "loss": float(m["loss"])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--peak-tflops", type=float, default=873.0)
    ap.add_argument("--tiny", action="store_true", help="a small U-Net and batch, for a CPU smoke run")
    args = ap.parse_args()
    exp = cifar_experiment(args.tiny)
    if args.tiny:
        args.batches, args.warmup, args.iters = [8], 1, 2
    print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()}, jax {jax.__version__}")
    rows = []
    for dtype in args.dtypes:
        for batch in args.batches:
            r = measure(exp, batch, dtype, args.warmup, args.iters)
            rows.append((dtype, batch, r))
    print("\n| dtype | batch | img/s | ms/step | GFLOP/img (XLA) | TFLOP/s | MFU | vs compiled EDM |")
    print("|---|---|---|---|---|---|---|---|")
    for dtype, batch, r in rows:
        print(f"| {dtype} | {batch} | {r['img_s']:.0f} | {r['step_ms']:.1f} | {r['gflop_per_img']:.1f} | "
              f"{r['tflops']:.1f} | {100 * r['tflops'] / args.peak_tflops:.1f}% | "
              f"{r['img_s'] / REFERENCE['EDM PyTorch, torch.compile fp16, batch 512']:.2f}x |")
    print("\nreference (same network, H100):")
    for name, v in REFERENCE.items():
        print(f"  {name}: {v:.0f} img/s")
    print("  torch flop counter: 127.1 GFLOP per training image")


if __name__ == "__main__":
    main()
