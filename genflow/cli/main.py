"""The ``genflow`` command: train, sample, evaluate, ema, import, config."""
from __future__ import annotations

import argparse
import os
import runpy
import sys

from genflow import config as C
from genflow.config import ConfigError
from genflow.training.loop import TrainingDiverged


def load_experiment(path: str | None) -> C.Experiment:
    """The ``config`` object of an experiment file; no path means the embedded digits default."""
    if path is None:
        return C.Experiment()
    if not os.path.exists(path) and os.path.exists(os.path.join("experiments", path + ".py")):
        path = os.path.join("experiments", path + ".py")
    if not os.path.exists(path):
        raise ConfigError(f"experiment file {path!r} does not exist; pass a file from experiments/ "
                          "or no experiment for the digits default.")
    if os.path.isdir(path):
        raise ConfigError(f"{path} is a directory; pass an experiment file (.py) such as experiments/digits.py.")
    cfg = run_experiment_file(path).get("config")
    if not isinstance(cfg, C.Experiment):
        raise ConfigError(f"{path} defines no `config = Experiment(...)`; see experiments/digits.py.")
    C.check_types(cfg, path)
    return cfg


def run_experiment_file(path: str) -> dict:
    """The globals of an experiment file; its errors as one sentence naming the file and line."""
    import traceback

    try:
        return runpy.run_path(path)
    except SyntaxError as e:
        raise ConfigError(f"{path} line {e.lineno}: syntax error ({e.msg}); fix the experiment file.") from None
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any error in user code becomes one sentence
        frames = [f for f in traceback.extract_tb(e.__traceback__) if os.path.abspath(f.filename) == os.path.abspath(path)]
        where = f" line {frames[-1].lineno}" if frames else ""
        message = str(e)
        if isinstance(e, TypeError) and "unexpected keyword argument" in message:
            message += C.field_hint(message)
        raise ConfigError(f"{path}{where}: {type(e).__name__}: {message}; fix the experiment file.") from None


def _sampler_names() -> list[str]:
    from genflow.samplers import SAMPLERS

    return list(SAMPLERS)


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
    t.add_argument("--resume", action="store_true", help="continue the run in --workdir from its last checkpoint, "
                   "with its own config.json (no experiment needed; --set train.steps=N extends it)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="multi-process run: process 0's address (every process runs the same command)")
    t.add_argument("--num-processes", type=int, default=None, help="multi-process run: how many processes")
    t.add_argument("--process-id", type=int, default=None, help="multi-process run: this process's number, 0..N-1")
    t.add_argument("--distributed", action="store_true",
                   help="multi-process run on a cluster JAX detects itself (TPU pod, SLURM): no --coordinator needed")

    s = sub.add_parser("sample", help="draw samples from a trained run's EMA weights")
    s.add_argument("run_dir")
    s.add_argument("--num", type=int, default=64)
    s.add_argument("--out", default=None, help="output .png (grid), .npz or .npy (default RUN_DIR/sample.png)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sampler", default=None, help=f"{', '.join(_sampler_names())} (default: the run's)")
    s.add_argument("--steps", type=int, default=None, help="number of solver steps (default: the run's)")
    s.add_argument("--grid", default=None, help="time grid: uniform, karras or log_snr (default: the run's)")
    s.add_argument("--rtol", type=float, default=None, help="relative tolerance of adaptive solvers")
    s.add_argument("--atol", type=float, default=None, help="absolute tolerance of adaptive solvers")
    s.add_argument("--labels", default=None, metavar="0,1,2|all",
                   help="class labels of a conditional run, repeated to --num ('all': each class in turn; "
                   "default: drawn uniformly)")
    s.add_argument("--guidance", type=float, default=None, metavar="W",
                   help="classifier-free guidance scale w: (1 + w) eps(x|c) - w eps(x) (diffusers' scale is 1 + w)")
    s.add_argument("--guidance-interval", default=None, metavar="LO,HI",
                   help="guide only where the noise level sigma/alpha lies in (LO, HI] (Kynkaanniemi et al. 2024)")
    s.add_argument("--guide", default=None, metavar="RUN2",
                   help="autoguidance: a weaker run of the same task in place of the unconditional branch")
    s.add_argument("--parallel", default=None, choices=["picard", "newton"],
                   help="solve the sampler's steps in parallel in time (fixed-grid samplers with 1 NFE per step)")
    s.add_argument("--window", type=int, default=None, help="parallel: steps per round (default: all)")
    s.add_argument("--tol", type=float, default=None,
                   help="parallel: accepted per-step update relative to the noise level (default 1e-3)")
    s.add_argument("--ema", default=None, metavar="sigma_rel=S",
                   help="sample the post-hoc EMA of relative length S (see `genflow ema`) instead of optim.ema_decay's")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sample.* setting, e.g. --set eta=1.0 or --set churn=40")

    m = sub.add_parser("ema", help="post-hoc EMA: reconstruct the EMA of any length from a run's snapshots "
                       "(EDM2) and write it to RUN_DIR/ema/sigma_rel=S")
    m.add_argument("run_dir")
    m.add_argument("--sigma-rel", type=float, action="append", required=True, metavar="S",
                   help="relative EMA length (std of the averaging profile / training time), e.g. 0.07; repeatable")

    lk = sub.add_parser("likelihood", help="PF-ODE negative log-likelihood (and bits/dim for images) of held-out data")
    lk.add_argument("run_dir")
    lk.add_argument("--num", type=int, default=256, help="held-out examples to evaluate")
    lk.add_argument("--trace", default=None, help="exact (small data) or hutchinson (default: exact up to 64 dims)")
    lk.add_argument("--rtol", type=float, default=1e-5)
    lk.add_argument("--atol", type=float, default=1e-5)
    lk.add_argument("--seed", type=int, default=0)

    k = sub.add_parser("compare-objectives",
                       help="train one network under several score-matching objectives and compare them")
    k.add_argument("experiment", help="experiment file with `config` and `comparison`, e.g. experiments/compare_2d.py")
    k.add_argument("--out", default=None, help="output directory (default: runs/<name>-compare)")
    k.add_argument("--steps", type=int, default=None, help="training steps per objective (default: train.steps)")
    k.add_argument("--seed", type=int, default=None, help="seed (default: train.seed)")

    for name, helptext in [("reflow", "couplings of a trained rectified flow, then the next k-rectified flow on them"),
                           ("distill", "distil a trained rectified flow into a k-step (default one-step) sampler")]:
        r = sub.add_parser(name, help=helptext)
        r.add_argument("run_dir")
        r.add_argument("--out", default=None, help="run directory to write (default: next to RUN_DIR)")
        r.add_argument("--num-couples", type=int, default=20_000, help="(noise, sample) couples to generate")
        r.add_argument("--steps", type=int, default=None, help="training steps (default: the run's train.steps)")
        r.add_argument("--seed", type=int, default=0)
        r.add_argument("--batch-size", type=int, default=None)
        r.add_argument("--chunk-size", type=int, default=None, help="couples per file and per ODE solve")
        r.add_argument("--solver", default="tsit5", help="ODE solver for the couplings (tsit5, dopri5, heun, euler)")
        r.add_argument("--ode-steps", type=int, default=None, help="fixed solver steps (default: adaptive)")
        r.add_argument("--rtol", type=float, default=1e-5)
        r.add_argument("--atol", type=float, default=1e-5)
        r.add_argument("--lr", type=float, default=None)
        r.add_argument("--no-progress", action="store_true")
        if name == "distill":
            r.add_argument("--k", type=int, default=1, help="Euler steps of the distilled sampler")

    e = sub.add_parser("eval", help="print the metrics table of a run (sample quality of its EMA weights)")
    e.add_argument("run_dir")
    e.add_argument("--seed", type=int, default=0)

    f = sub.add_parser("fid", help="FID of a run's samples against reference statistics (pytorch-fid's Inception)")
    f.add_argument("run_dir")
    f.add_argument("--ref", required=True, metavar="STATS.npz",
                   help="pytorch-fid statistics (.npz with mu, sigma), e.g. from `genflow fid-stats`")
    f.add_argument("--num", type=int, default=50_000, help="number of samples (default 50,000)")
    f.add_argument("--batch-size", type=int, default=250, help="samples per sampler call and per Inception pass")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--weights", default=None, help="pt_inception-2015-12-05-6726825d.pth "
                   "(default: $GENFLOW_CACHE or ~/.cache/genflow, downloaded once where there is internet)")
    f.add_argument("--guidance", type=float, default=None, metavar="W",
                   help="classifier-free guidance scale of a conditional run (classes in turn, so the mix is uniform)")
    f.add_argument("--guidance-interval", default=None, metavar="LO,HI")
    f.add_argument("--ema", default=None, metavar="sigma_rel=S", help="use the post-hoc EMA of relative length S")
    f.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any sample.* setting, e.g. --set steps=35 --set sampler=edm_heun")

    fs = sub.add_parser("fid-stats", help="reference FID statistics (pytorch-fid .npz) of a TFDS data set")
    fs.add_argument("dataset", help="mnist, fashion_mnist, cifar10 or celeb_a")
    fs.add_argument("--out", required=True, metavar="STATS.npz")
    fs.add_argument("--num", type=int, default=None, help="first N examples (default: the whole split)")
    fs.add_argument("--split", default="train")
    fs.add_argument("--data-dir", default=None, help="TFDS data_dir (default ~/tensorflow_datasets)")
    fs.add_argument("--batch-size", type=int, default=200)
    fs.add_argument("--weights", default=None)

    ie = sub.add_parser("import-edm", help="an EDM snapshot (NVlabs/edm .pkl) as a run directory, read without torch "
                        "and without running its embedded code")
    ie.add_argument("pickle", metavar="FILE.pkl", help="e.g. edm-cifar10-32x32-uncond-vp.pkl")
    ie.add_argument("--workdir", required=True, help="the run directory to write (new or empty)")

    c = sub.add_parser("config", help="print an experiment's config keys and values")
    c.add_argument("experiment", nargs="?")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return p


def main(argv: list[str] | None = None) -> int:
    """The command line. Errors are one sentence on stderr and an exit status (2 bad input, 1 a failed
    run, 130 Ctrl-C, 143 SIGTERM); GENFLOW_DEBUG=1 shows the traceback of a read/write error instead."""
    args = _parser().parse_args(argv)
    if args.command == "train" and (args.coordinator or args.distributed):
        if args.coordinator and (args.num_processes is None or args.process_id is None):
            print("genflow: error: --coordinator needs --num-processes and --process-id too (the same coordinator "
                  "and count on every process, each its own id).", file=sys.stderr)
            return 2
        from genflow.placement import initialize_distributed

        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    if args.command != "config":
        from genflow.cache import enable_compile_cache

        enable_compile_cache()
    try:
        if args.command == "config":
            exp = C.with_overrides(load_experiment(args.experiment), args.set)
            for key, value in C.flat_keys(exp).items():
                print(f"{key} = {value!r}")
            return 0
        if args.command == "train":
            if args.resume and not args.workdir:
                raise ConfigError("--resume needs the --workdir of the run to continue.")
            from genflow.cli.run import read_config, train

            if args.resume and args.experiment is None:
                # continue exactly the run on disk: its own config.json (with the flags it was started with)
                base = read_config(args.workdir)
            else:
                base = load_experiment(args.experiment)
            exp = C.with_overrides(base, args.set)
            workdir = args.workdir or _default_workdir(exp.name)
            summary = train(exp, workdir, resume=args.resume, progress=not args.no_progress)
            if summary["stopped"]:
                print(f"stopped at step {summary['step']:,}; checkpoint saved. Continue with "
                      f"`genflow train --workdir {workdir} --resume` (it reads the run's own config.json).",
                      file=sys.stderr)
                return 128 + summary["stopped"]  # 130 after Ctrl-C, 143 after SIGTERM
            for line in summary.get("report", []):
                print(line)
            print(f"done: step {summary['step']:,}; wrote {workdir}/samples.png, loss.png, metrics.jsonl",
                  file=sys.stderr)
            return 0
        if args.command == "compare-objectives":
            from genflow.cli.compare import compare_command

            return compare_command(args.experiment, args.out, args.steps, args.seed)
        if args.command in ("reflow", "distill"):
            from genflow.cli.reflow import distill_command, reflow_command

            common = dict(num_couples=args.num_couples, steps=args.steps, seed=args.seed,
                          batch_size=args.batch_size, chunk_size=args.chunk_size, solver=args.solver,
                          ode_steps=args.ode_steps, rtol=args.rtol, atol=args.atol, lr=args.lr,
                          progress=not args.no_progress)
            if args.command == "reflow":
                return reflow_command(args.run_dir, args.out, **common)
            return distill_command(args.run_dir, args.out, k=args.k, **common)
        if args.command == "eval":
            from genflow.cli.run import eval_run

            print("\n".join(eval_run(args.run_dir, seed=args.seed)))
            return 0
        if args.command == "fid":
            from genflow.cli.fid import fid_command

            named = [f"{k}={v}" for k, v in [("guidance", args.guidance), ("guidance_interval", args.guidance_interval)]
                     if v is not None]
            fid_command(args.run_dir, args.ref, args.num, args.batch_size, args.seed, args.weights,
                        overrides=named + args.set, ema=args.ema)
            return 0
        if args.command == "import-edm":
            from genflow.cli.import_edm import import_edm_command

            return import_edm_command(args.pickle, args.workdir)
        if args.command == "fid-stats":
            from genflow.cli.fid import fid_stats_command

            fid_stats_command(args.dataset, args.out, args.num, args.data_dir, args.weights,
                              split=args.split, batch_size=args.batch_size)
            return 0
        if args.command == "sample":
            from genflow.cli.run import sample

            named = [f"{k}={v}" for k, v in [("sampler", args.sampler), ("steps", args.steps), ("grid", args.grid),
                                              ("rtol", args.rtol), ("atol", args.atol), ("guidance", args.guidance),
                                              ("guidance_interval", args.guidance_interval),
                                              ("parallel", args.parallel), ("window", args.window),
                                              ("tol", args.tol)] if v is not None]
            try:
                sample(args.run_dir, args.num, args.out or os.path.join(args.run_dir, "sample.png"),
                       seed=args.seed, overrides=named + args.set, labels=args.labels, guide=args.guide,
                       progress=not args.no_progress, ema=args.ema)
            except KeyboardInterrupt:
                print("genflow: sampling interrupted.", file=sys.stderr)
                return 130
            return 0
        if args.command == "ema":
            from genflow.cli.posthoc import ema_command

            print("\n".join(ema_command(args.run_dir, args.sigma_rel)))
            return 0
        if args.command == "likelihood":
            from genflow.cli.run import likelihood

            print("\n".join(likelihood(args.run_dir, args.num, trace=args.trace, rtol=args.rtol, atol=args.atol,
                                        seed=args.seed)))
            return 0
    except ConfigError as e:
        print(f"genflow: error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"genflow: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C outside the loops that save first (building, compiling, evaluating)
        print("genflow: interrupted.", file=sys.stderr)
        return 130
    except OSError as e:  # a disk filling up or a directory vanishing mid-run: say which file
        if os.environ.get("GENFLOW_DEBUG"):
            raise
        where = f" {e.filename}" if e.filename else ""
        print(f"genflow: error: could not read or write{where} ({e.strerror or e}); check the disk and the path, "
              "then run the command again (--resume continues a training run from its last checkpoint).",
              file=sys.stderr)
        return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
