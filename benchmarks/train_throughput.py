"""Training throughput of the CIFAR-10 DDPM++ U-Net (experiments/cifar10_ddpmpp.py), or of a DiT.

Prints img/s, compile time and model-FLOPs utilisation for batch 128 and 512 in float32 and
bfloat16, with FLOPs per step from XLA's cost analysis of the compiled train step, one row as
each is measured, next to the reference:
NVlabs' EDM PyTorch code, same network, same H100: 2150 img/s (torch.compile, fp16, batch 512)
and 1643 img/s (no compile). Cross-check: torch's flop counter gives 127.1 GFLOP per training
image for this network. MFU is against 873 TFLOP/s, the bf16 matmul peak measured through JAX
on an H100 (pass --peak-tflops for other hardware).

The step is the real one (make_train_step: DSM loss, Adam, EMA, non-finite guard) on synthetic
device-resident batches, so data loading is not measured.

    PYTHONPATH=. python3 benchmarks/train_throughput.py              # on the GPU machine
    PYTHONPATH=. python3 benchmarks/train_throughput.py --tiny       # a seconds-long CPU smoke run
    PYTHONPATH=. python3 benchmarks/train_throughput.py --net dit --dit B/2 --shape 32 32 4 --dtypes bfloat16
                                                    # DiT-B/2 on 32x32x4 latents (256 tokens), unconditional
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from _cifar import cifar_experiment, compiled_flops
from genflow import config as C
from genflow.cli import build
from genflow.models import ModelSpec
from genflow.training import init_state, make_mesh, make_optimizer, make_train_step, split_net

REFERENCE = {"EDM PyTorch, torch.compile fp16, batch 512": 2150.0, "EDM PyTorch, eager, batch 512": 1643.0}


def measure(exp, batch: int, dtype: str, warmup: int, iters: int, shape: tuple[int, ...] = (32, 32, 3)) -> dict:
    mesh = make_mesh()
    process = build.build_process(exp.process)
    net = build.build_net(exp.net, shape, dtype, 0)
    spec = ModelSpec.from_net(net, process, build.build_parameterization(exp))
    _, params, _ = split_net(net)
    o = exp.optim
    tx = make_optimizer(o.name, o.lr, b1=o.b1, b2=o.b2, warmup_steps=o.warmup_steps, grad_clip=o.grad_clip)
    state = jax.device_put(init_state(params, tx, 0), NamedSharding(mesh, P()))
    step = make_train_step(spec, build.build_objective(exp, process), tx, ema_decay=o.ema_decay, mesh=mesh)
    x = jax.device_put(jax.random.normal(jax.random.PRNGKey(0), (batch,) + shape), NamedSharding(mesh, P("data")))
    batch_x = {"x0": x}   # batches are dicts; an unconditional step needs only "x0"
    t0 = time.perf_counter()
    compiled = step.lower(state, batch_x).compile()
    compile_s = time.perf_counter() - t0
    flops = compiled_flops(compiled)
    # calls go to the compiled program: calling the jitted step would compile it a second time
    for _ in range(warmup):
        state, m = compiled(state, batch_x)
    jax.block_until_ready(m["loss"])
    t0 = time.perf_counter()
    for _ in range(iters):
        state, m = compiled(state, batch_x)
    jax.block_until_ready(m["loss"])
    dt = (time.perf_counter() - t0) / iters
    return {"img_s": batch / dt, "step_ms": dt * 1e3, "gflop_per_img": flops / batch / 1e9,
            "tflops": flops / dt / 1e12, "loss": float(m["loss"]), "compile_s": compile_s}


def dit_experiment(exp, size: str | None, tiny: bool):
    """``exp`` with an unconditional DiT of DiT's Table 1 (``size``, e.g. B/2), scanned blocks; ``tiny``:
    width 64, 2 blocks, for a CPU smoke run."""
    net = (C.Net(name="dit", width=64, depth=2, heads=2, patch=4, scan=True) if tiny
           else C.Net(name="dit", dit=size, scan=True))
    return dataclasses.replace(exp, net=net)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--peak-tflops", type=float, default=873.0, help="the bf16 peak MFU is measured against")
    ap.add_argument("--peak-tflops-fp32", type=float, default=None,
                    help="the peak for float32 rows (default: --peak-tflops)")
    ap.add_argument("--net", choices=["unet", "dit"], default="unet")
    ap.add_argument("--dit", default="B/2", help="with --net dit: a size of DiT's Table 1")
    ap.add_argument("--shape", type=int, nargs=3, default=[32, 32, 3], metavar=("H", "W", "C"))
    ap.add_argument("--tiny", action="store_true", help="a small network and batch, for a CPU smoke run")
    args = ap.parse_args()
    exp = cifar_experiment(args.tiny)
    if args.net == "dit":
        exp = dit_experiment(exp, args.dit, args.tiny)
    if args.tiny:
        args.batches, args.warmup, args.iters = [8], 1, 2
    shape = tuple(args.shape)
    peaks = {"bfloat16": args.peak_tflops, "float32": args.peak_tflops_fp32 or args.peak_tflops}
    unet_cifar = args.net == "unet" and shape == (32, 32, 3)
    name = "DDPM++ U-Net" if args.net == "unet" else f"DiT-{args.dit}" if not args.tiny else "DiT (tiny)"
    print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()}, jax {jax.__version__}; "
          f"{name} on {'x'.join(map(str, shape))}, MFU against {peaks['bfloat16']:g} (bf16) and "
          f"{peaks['float32']:g} (fp32) TFLOP/s")
    # rows print as they are measured: a run stopped by a time limit keeps the rows it finished
    print("\n| net | dtype | batch | img/s | ms/step | compile s | GFLOP/img (XLA) | TFLOP/s | MFU | vs compiled EDM |")
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for dtype in args.dtypes:
        for batch in args.batches:
            r = measure(exp, batch, dtype, args.warmup, args.iters, shape)
            edm = r['img_s'] / REFERENCE['EDM PyTorch, torch.compile fp16, batch 512']
            print(f"| {name} | {dtype} | {batch} | {r['img_s']:.0f} | {r['step_ms']:.1f} | {r['compile_s']:.1f} | "
                  f"{r['gflop_per_img']:.3g} | {r['tflops']:.3g} | {100 * r['tflops'] / peaks[dtype]:.1f}% | "
                  f"{f'{edm:.2f}x' if unet_cifar else '-'} |", flush=True)
    if unet_cifar:
        print("\nreference (same network, H100):")
        for ref, v in REFERENCE.items():
            print(f"  {ref}: {v:.0f} img/s")
        print("  torch flop counter: 127.1 GFLOP per training image")


if __name__ == "__main__":
    main()
