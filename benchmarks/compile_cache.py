"""Start-up time of a CLI run with and without XLA's persistent compilation cache.

Run:  PYTHONPATH=. python benchmarks/compile_cache.py [EXPERIMENT] [--steps 2] [--set KEY=VALUE ...]

e.g. the CIFAR-10 DDPM++ network on a folder of 32x32 images (no CIFAR-10 files needed):
      PYTHONPATH=. python benchmarks/compile_cache.py experiments/cifar10_ddpmpp.py --set data.name=folder \
          --set data.path=DIR --set data.image_size=32 --set train.batch_size=8 --set sample.num=8 --set sample.steps=2

Runs `genflow train EXPERIMENT --set train.steps=N` three times in fresh processes: with the cache
turned off (GENFLOW_COMPILE_CACHE=0), then twice with an empty cache directory of its own (the
first run fills it, the second reads it), and prints the wall time of each; the difference is
what a resumed or repeated run no longer spends compiling the train step, the sampler and the
evaluation programs. The default experiment is the embedded digits (the README's main job).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def timed_run(experiment: str | None, steps: int, env: dict[str, str], workdir: str, sets: list[str]) -> float:
    cmd = [sys.executable, "-m", "genflow.cli.main", "train", *([experiment] if experiment else []),
           "--workdir", workdir, "--set", f"train.steps={steps}", "--set", f"train.log_every={steps}",
           "--set", f"train.ckpt_every={steps}", "--no-progress", *[a for kv in sets for a in ("--set", kv)]]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", default=None)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="genflow-compile-cache-")
    base = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    rows = []
    try:
        off = timed_run(args.experiment, args.steps, dict(base, GENFLOW_COMPILE_CACHE="0"), os.path.join(root, "a"),
                        args.set)
        rows.append(("cache off (every run)", off))
        env = dict(base, GENFLOW_CACHE=os.path.join(root, "cache"))
        rows.append(("cache on, first run (fills it)", timed_run(args.experiment, args.steps, env,
                                                                 os.path.join(root, "b"), args.set)))
        rows.append(("cache on, second run (reads it)", timed_run(args.experiment, args.steps, env,
                                                                  os.path.join(root, "c"), args.set)))
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(root, "cache"))
                   for f in fs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    name = args.experiment or "the embedded digits (default)"
    extra = "".join(f" --set {kv}" for kv in args.set)
    print(f"`genflow train {name} --set train.steps={args.steps}{extra}` (build, compile, {args.steps} steps, sample, "
          "evaluate), wall time of a fresh process:\n")
    print("| run | seconds | vs cache off |")
    print("|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} | {seconds / off:.2f}x |")
    print(f"\ncache size {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
