"""Bad input, tried as a new user would: each case's outcome, classified, as a table.

    PYTHONPATH=. python benchmarks/bad_input.py

Outcomes: "sentence" (exit 2 or 1 with one `genflow: error:` line and nothing written where the
case says so), "works" (the input is fine after all and the command succeeds), "traceback" (an
uncaught exception) and "silent wrong" (exit 0 with a wrong or missing result). The target is
zero of the last two. The tests (tests/test_cli_sentences.py, test_validation.py, test_cli.py,
test_resume.py, test_samplers_suite.py) assert each case; this script only counts them.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
import traceback

os.environ.setdefault("NPROC", "16")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from genflow.cli.main import main  # noqa: E402

TINY = ["--set", "data.name=moons", "--set", "process.name=rectified_flow", "--set", "predicts=velocity",
        "--set", "objective=flow_matching", "--set", "net.width=16", "--set", "net.depth=1",
        "--set", "train.batch_size=16", "--set", "train.steps=6", "--set", "train.log_every=2",
        "--set", "train.ckpt_every=3", "--set", "sample.sampler=euler_ode", "--set", "sample.steps=3",
        "--set", "sample.num=16", "--no-progress"]


def run(argv) -> tuple[str, str]:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    except BaseException:  # noqa: BLE001
        return "traceback", traceback.format_exc().strip().splitlines()[-1]
    text = err.getvalue().strip()
    lines = [line for line in text.splitlines() if line.startswith("genflow: error:")]
    if code in (1, 2) and len(lines) == 1:
        return "sentence", lines[0][len("genflow: error: "):][:110]
    if code == 0:
        return "works", text.splitlines()[-1][:110] if text else ""
    return f"exit {code}", text[:110]


def api(fn) -> tuple[str, str]:
    try:
        fn()
    except (ValueError, TypeError) as e:
        message = str(e)
        if "\n" not in message and len(message) < 400:
            return "sentence", message[:110]
        return "traceback", message.splitlines()[0][:110]
    except BaseException:  # noqa: BLE001
        return "traceback", traceback.format_exc().strip().splitlines()[-1][:110]
    return "silent wrong", "accepted"


def main_table() -> None:
    root = tempfile.mkdtemp(prefix="genflow-bad-input-")
    cwd = os.getcwd()
    os.chdir(root)
    rows = []

    def case(name, outcome, expect="sentence"):
        kind, text = outcome
        rows.append((name, kind if kind in ("sentence", "works", "traceback") else kind, text, expect))

    for override in ["train.keep=0", "optim.lr=nan", "optim.lr=inf", "optim.grad_clip=0", "optim.b1=1.0",
                     "optim.b2=-0.1", "optim.warmup_steps=-5", "process.beta_min=-1", "process.t_min=1.5",
                     "train.sample_every=-1", "data.holdout=-3", "net.width=0", "net.depth=0", "net.channels=0",
                     "optim.learning_rate=1e-4", "train.steps=many", "sample.sampler=heunn"]:
        case(f"--set {override}", run(["train", "--workdir", "w_" + override.replace("=", "_"), "--set", override]))
    case("rectified flow with predicts=eps", run(["train", "--workdir", "w_rf_eps", "--set",
                                                  "process.name=rectified_flow", "--set", "predicts=eps"]))
    case("VE sigma_min >= sigma_max", run(["train", "--workdir", "w_ve", "--set", "process.name=ve", "--set",
                                           "process.sigma_min=50", "--set", "process.sigma_max=10"]))
    for name, source in [("experiment with a syntax error", "config = Experiment(name='x'\n"),
                         ("experiment with an unknown field", "config = Experiment(train=Train(stepz=3))\n"),
                         ("experiment with a wrong-typed field", "config = Experiment(train=Train(steps='3'))\n"),
                         ("experiment importing a missing module", "import no_such_module\n")]:
        path = os.path.join(root, name.replace(" ", "_") + ".py")
        open(path, "w").write("from genflow.config import *\n" + source)
        case(name, run(["train", path, "--workdir", "w_" + os.path.basename(path)]))
    assert run(["train", "--workdir", "good", *TINY])[0] == "works"
    for name, text in [("torn config.json", '{"name": "tiny", '), ("wrong-typed config.json",
                                                                   '{"train": {"steps": "6"}}'),
                       ("config.json with an unknown key", '{"trian": {}}'), ("config.json that is a list", "[1]")]:
        d = "bad_" + name.replace(" ", "_").replace(".", "_")
        shutil.copytree("good", d)
        open(os.path.join(d, "config.json"), "w").write(text)
        case(f"sample, {name}", run(["sample", d, "--num", 4]))
        case(f"resume, {name}", run(["train", "--workdir", d, "--resume"]))
    shutil.copytree("good", "torn")
    shutil.rmtree("torn/checkpoints/6")
    open("torn/metrics.jsonl", "a").write('{"step": 7, "lo')
    case("resume with a torn last metrics.jsonl row", run(["train", "--workdir", "torn", "--resume", "--no-progress"]),
         expect="works")
    open("afile", "w").write("x")
    case("--workdir that is a file", run(["train", "--workdir", "afile", *TINY]))
    case("--workdir on a read-only file system (/sys)", run(["train", "--workdir", "/sys/genflow-run", *TINY]))
    case("sample --out inside a file", run(["sample", "good", "--num", 4, "--out", "afile/x.png"]))
    case("sample --out with a bad extension", run(["sample", "good", "--num", 4, "--out", "x.jpg"]))
    case("sample --num 0", run(["sample", "good", "--num", 0]))
    case("sample --labels on an unconditional run", run(["sample", "good", "--num", 4, "--labels", "1,2"]))
    case("resume with no checkpoint left", (lambda: (shutil.copytree("good", "nock"), shutil.rmtree("nock/checkpoints"),
                                                     run(["train", "--workdir", "nock", "--resume"]))[-1])())
    case("folder data with image_size=0", run(["train", "--workdir", "w_folder", "--set", "data.name=folder",
                                               "--set", "data.path=.", "--set", "data.image_size=0"]))
    case("folder data with channels=2", run(["train", "--workdir", "w_folder2", "--set", "data.name=folder",
                                             "--set", "data.path=.", "--set", "data.channels=2"]))
    case("eval of a missing run", run(["eval", "nope"]))

    from genflow.data import GaussianMixture
    from genflow.processes import VP
    from genflow.samplers import ddim, dpm_solver_pp_2m, euler_maruyama, grids, lms

    p = VP()
    m = GaussianMixture.eight_gaussians().exact_model(p, "eps")
    x1 = jnp.zeros((4, 2))
    case("sampler on an increasing grid", api(lambda: dpm_solver_pp_2m(m, x1, jnp.linspace(0.001, 1.0, 5))))
    case("sampler on a one-point grid", api(lambda: ddim(m, x1, jnp.ones((1,)))))
    case("sampler on grids.uniform(process, 0)", api(lambda: euler_maruyama(m, x1, grids.uniform(p, 0),
                                                                            key=jnp.zeros(2, jnp.uint32))))
    case("sampler on a grid past t_max", api(lambda: ddim(m, x1, jnp.linspace(2.0, 0.1, 5))))
    case("sampler with integer x1", api(lambda: ddim(m, jnp.zeros((4, 2), jnp.int32), grids.uniform(p, 4))))
    case("sampler with a scalar x1", api(lambda: ddim(m, jnp.zeros(()), grids.uniform(p, 4))))
    case("stochastic sampler without a key", api(lambda: euler_maruyama(m, x1, grids.uniform(p, 4))))
    case("lms of order 7", api(lambda: lms(m, x1, grids.uniform(p, 4), order=7)))
    case("sampler given a network, not a Model", api(lambda: ddim(m.net, x1, grids.uniform(p, 4))))
    os.chdir(cwd)
    shutil.rmtree(root, ignore_errors=True)

    print("| case | outcome | what the user reads |")
    print("|---|---|---|")
    for name, kind, text, expect in rows:
        flag = "" if kind == expect else f" (expected {expect})"
        print(f"| {name} | {kind}{flag} | {text.replace('|', '/')} |")
    counts = {k: sum(1 for r in rows if r[1] == k) for k in ("sentence", "works", "traceback", "silent wrong")}
    other = len(rows) - sum(counts.values())
    print(f"\n{len(rows)} cases: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + (f", {other} other" if other
                                                                                         else ""))
    bad = [r for r in rows if r[1] != r[3]]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main_table()
