"""The ``genflow`` command: train, sample, config."""
from __future__ import annotations

import argparse
import os
import runpy
import sys

from genflow import config as C
from genflow.config import ConfigError


def load_experiment(path: str | None) -> C.Experiment:
    """The ``config`` object of an experiment file; no path means the embedded digits default."""
    if path is None:
        return C.Experiment()
    if not os.path.exists(path) and os.path.exists(os.path.join("experiments", path + ".py")):
        path = os.path.join("experiments", path + ".py")
    if not os.path.exists(path):
        raise ConfigError(f"experiment file {path!r} does not exist; pass a file from experiments/ "
                          "or no experiment for the digits default.")
    cfg = runpy.run_path(path).get("config")
    if not isinstance(cfg, C.Experiment):
        raise ConfigError(f"{path} defines no `config = Experiment(...)`; see experiments/digits.py.")
    return cfg


def _default_workdir(name: str) -> str:
    base = os.path.join("runs", name)
    path, i = base, 2
    while os.path.exists(path):
        path, i = f"{base}-{i}", i + 1
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genflow", description="Diffusion and flow generative models in JAX.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an experiment (default: the embedded 8x8 digits)")
    t.add_argument("experiment", nargs="?", help="experiment file, e.g. experiments/moons_flow.py")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    t.add_argument("--workdir", help="run directory (default: runs/<name>, or the next free runs/<name>-N)")
    t.add_argument("--resume", action="store_true", help="continue the run in --workdir from its last checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="draw samples from a trained run's EMA weights")
    s.add_argument("run_dir")
    s.add_argument("--num", type=int, default=64)
    s.add_argument("--out", default=None, help="output .png (grid), .npz or .npy (default RUN_DIR/sample.png)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sampler", default=None, help="euler_ode or euler_maruyama (default: the run's)")
    s.add_argument("--steps", type=int, default=None, help="number of solver steps (default: the run's)")

    e = sub.add_parser("eval", help="print the metrics table of a run (sample quality of its EMA weights)")
    e.add_argument("run_dir")
    e.add_argument("--seed", type=int, default=0)

    c = sub.add_parser("config", help="print an experiment's config keys and values")
    c.add_argument("experiment", nargs="?")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "config":
            exp = C.with_overrides(load_experiment(args.experiment), args.set)
            for key, value in C.flat_keys(exp).items():
                print(f"{key} = {value!r}")
            return 0
        if args.command == "train":
            exp = C.with_overrides(load_experiment(args.experiment), args.set)
            if args.resume and not args.workdir:
                raise ConfigError("--resume needs the --workdir of the run to continue.")
            workdir = args.workdir or _default_workdir(exp.name)
            from genflow.cli.run import train

            summary = train(exp, workdir, resume=args.resume, progress=not args.no_progress)
            if summary["stopped"]:
                print(f"stopped at step {summary['step']:,}; checkpoint saved. Continue with "
                      f"`genflow train {args.experiment or ''} --workdir {workdir} --resume`.".replace("  ", " "),
                      file=sys.stderr)
                return 143
            for line in summary.get("report", []):
                print(line)
            print(f"done: step {summary['step']:,}; wrote {workdir}/samples.png, loss.png, metrics.jsonl",
                  file=sys.stderr)
            return 0
        if args.command == "eval":
            from genflow.cli.run import eval_run

            print("\n".join(eval_run(args.run_dir, seed=args.seed)))
            return 0
        if args.command == "sample":
            from genflow.cli.run import sample

            sample(args.run_dir, args.num, args.out or os.path.join(args.run_dir, "sample.png"),
                   seed=args.seed, sampler=args.sampler, steps=args.steps)
            return 0
    except ConfigError as e:
        print(f"genflow: error: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
