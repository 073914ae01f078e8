"""Kill and resume: a run stopped at any step continues to the same losses."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import pytest

from genflow import config as C
from genflow.cli.run import train

TINY = C.Experiment(name="tiny", data=C.Data(name="moons"), process=C.Process(name="rectified_flow"),
                    net=C.Net(width=32, depth=1), predicts="velocity", objective="flow_matching",
                    train=C.Train(batch_size=16, steps=12, log_every=1, ckpt_every=5),
                    sample=C.Sample(sampler="euler_ode", steps=4, num=16))


def losses(workdir):
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return {r["step"]: r["loss"] for r in rows}


def assert_same_power_emas(a, b):
    """The post-hoc EMA state of two runs is bit-identical: the same snapshot steps with equal arrays
    in RUN/ema_snapshots, and equal power-function EMAs (state.phema) in their last checkpoints."""
    import numpy as np

    from genflow.cli.run import load_run
    from genflow.training import Checkpointer, ema_snapshots

    da, db = (os.path.join(w, ema_snapshots.DIRNAME) for w in (a, b))
    assert ema_snapshots.steps(da) == ema_snapshots.steps(db) and ema_snapshots.steps(da)
    assert sorted(os.listdir(da)) == sorted(os.listdir(db))     # no temporary file left behind
    for s in ema_snapshots.steps(da):
        with np.load(ema_snapshots.path(da, s)) as za, np.load(ema_snapshots.path(db, s)) as zb:
            assert sorted(za.files) == sorted(zb.files)
            for k in za.files:
                np.testing.assert_array_equal(za[k], zb[k])
    like = load_run(a).params
    tracked = []
    for w in (a, b):
        ckpt = Checkpointer(os.path.join(w, "checkpoints"))
        tracked.append(ckpt.restore_weights((like, like), field="phema"))
        ckpt.close()
    (sa, pa), (sb, pb) = tracked
    assert sa == sb
    for x, y in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_stop_and_resume_reproduces_the_uninterrupted_losses(tmp_path):
    full = str(tmp_path / "full")
    train(TINY, full, progress=False)
    part = str(tmp_path / "part")
    train(C.with_overrides(TINY, ["train.steps=7"]), part, progress=False)  # checkpoints at 5 and 7
    # Pretend the process died after step 7 but before its last save: drop that checkpoint.
    import shutil

    shutil.rmtree(os.path.join(part, "checkpoints", "7"))
    train(TINY, part, resume=True, progress=False)
    assert losses(part) == losses(full)
    assert sorted(losses(part)) == list(range(1, 13))  # rows past the checkpoint were rewritten once
    # the power EMAs too: the snapshot at 7 (past the resume point 5) is gone, 10 and 12 rewritten
    assert_same_power_emas(part, full)


KILL_EXP = ("from genflow.config import *\n"
            "config = Experiment(name='tiny', data=Data(name='moons'), process=Process(name='rectified_flow'),"
            " net=Net(width=32, depth=1), predicts='velocity', objective='flow_matching',"
            " train=Train(batch_size=16, steps={steps}, log_every=1, ckpt_every=7),"
            " sample=Sample(sampler='euler_ode', steps=4, num=16))\n")


def _rows(path):
    return len(open(path).readlines()) if os.path.exists(path) else 0


def _inode(path):
    return os.stat(path).st_ino if os.path.exists(path) else None


def _run_until(cmd, metrics, rows, sig, timeout=120):
    """Start ``cmd``, send ``sig`` by PID once its training loop has begun (it rewrites metrics.jsonl,
    a new inode) and the file has at least ``rows`` rows; (returncode, stderr)."""
    before = _inode(metrics)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and (_inode(metrics) in (None, before)
                                                              or _rows(metrics) < rows):
        time.sleep(0.002)
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@pytest.mark.parametrize("kills", [pytest.param(4, marks=pytest.mark.slow), 3])
def test_hard_kills_sigterm_and_ctrl_c_at_random_steps_resume_bit_identically(tmp_path, kills):
    """A real run is killed by PID at seeded random steps: with SIGKILL (twice with kills=4; no
    chance to save: resume from the last checkpoint, up to 6 steps back), then SIGTERM (saves, exit
    143, prints the command that continues it) and SIGINT (saves, exit 130). Resumed each time with
    only `--workdir W --resume`, it ends with the metrics rows, EMA weights, power-function EMAs and
    post-hoc EMA snapshots of an uninterrupted run, bit for bit."""
    import numpy as np

    from genflow.cli.run import load_run

    steps = 200
    exp = tmp_path / "exp.py"
    exp.write_text(KILL_EXP.format(steps=steps))
    workdir = str(tmp_path / "run")
    metrics = os.path.join(workdir, "metrics.jsonl")
    start = [sys.executable, "-m", "genflow.cli.main", "train", str(exp), "--workdir", workdir, "--no-progress"]
    resume = [sys.executable, "-m", "genflow.cli.main", "train", "--workdir", workdir, "--resume", "--no-progress"]
    rng = np.random.default_rng(13)
    targets = 15 + 40 * np.arange(4) + rng.integers(0, 20, size=4)   # rows 15..154, at least 21 apart
    plan = [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 143),
            (signal.SIGINT, 130)][4 - kills:]
    targets = targets[4 - kills:]
    for i, ((sig, code), target) in enumerate(zip(plan, targets)):
        rc, err = _run_until(start if i == 0 else resume, metrics, int(target), sig)
        assert rc == code, (sig, rc, err)
        if sig != signal.SIGKILL:
            assert "checkpoint saved" in err and f"genflow train --workdir {workdir} --resume" in err
            assert "Traceback" not in err
    done = subprocess.run(resume, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ref = str(tmp_path / "ref")
    train(C.with_overrides(TINY, [f"train.steps={steps}", "train.ckpt_every=7"]), ref, progress=False)
    assert losses(workdir) == losses(ref) and sorted(losses(workdir)) == list(range(1, steps + 1))
    a, b = load_run(workdir), load_run(ref)
    assert a.step == b.step == steps
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert_same_power_emas(workdir, ref)


def test_resume_uses_the_runs_own_config_and_logs_identical_rows(tmp_path, capsys):
    """Stopped at a step that is not a multiple of log_every, a run resumed with only
    `--workdir W --resume` (its config.json, including the --set flags it was started with)
    logs exactly the rows of an uninterrupted run."""
    from genflow.cli.main import main

    flags = ["--set", "data.name=moons", "--set", "process.name=rectified_flow", "--set", "predicts=velocity",
             "--set", "objective=flow_matching", "--set", "net.width=24", "--set", "net.depth=1",
             "--set", "train.batch_size=16", "--set", "train.log_every=4", "--set", "train.ckpt_every=3",
             "--set", "sample.sampler=euler_ode", "--set", "sample.steps=2", "--set", "sample.num=16"]
    full, part = str(tmp_path / "full"), str(tmp_path / "part")
    assert main(["train", *flags, "--set", "train.steps=10", "--workdir", full, "--no-progress"]) == 0
    assert main(["train", *flags, "--set", "train.steps=7", "--workdir", part, "--no-progress"]) == 0
    import shutil

    shutil.rmtree(os.path.join(part, "checkpoints", "7"))      # died after step 7, before its save: resume at 6
    assert main(["train", "--workdir", part, "--resume", "--set", "train.steps=10", "--no-progress"]) == 0
    assert json.load(open(os.path.join(part, "config.json")))["net"]["width"] == 24
    assert losses(part) == losses(full) and sorted(losses(full)) == [4, 8, 10]
    capsys.readouterr()
    empty = str(tmp_path / "empty")
    assert main(["train", *flags, "--set", "train.steps=2", "--set", "train.ckpt_every=5", "--workdir", empty,
                 "--no-progress"]) == 0
    shutil.rmtree(os.path.join(empty, "checkpoints", "2"))
    assert main(["train", "--workdir", empty, "--resume"]) == 2
    assert "has no checkpoint left to continue from" in capsys.readouterr().err


def _data_files(directory):
    files = [os.path.join(r, f) for r, _, fs in os.walk(directory) for f in fs]
    return [f for f in files if os.path.getsize(f) > 512]


@pytest.mark.parametrize("damage", ["flip", pytest.param("truncate", marks=pytest.mark.slow)])
def test_a_corrupt_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, capsys, damage):
    """Flipped bytes or a truncated file in the latest checkpoint: sampling and resuming use the one
    before, with a warning naming both; the resumed run still ends with the uninterrupted losses."""
    from genflow.cli.main import main

    exp = C.with_overrides(TINY, ["train.steps=10", "train.ckpt_every=4"])        # checkpoints 8 and 10
    workdir = str(tmp_path / "run")
    train(exp, workdir, progress=False)
    for path in _data_files(os.path.join(workdir, "checkpoints", "10", "state")):
        data = bytearray(open(path, "rb").read())
        if damage == "flip":   # every array's bytes, the EMA's included
            for i in range(len(data) // 3, len(data) // 3 + 64):
                data[i] ^= 0xFF
        else:
            data = data[: len(data) // 2]
        open(path, "wb").write(bytes(data))
    capsys.readouterr()
    out = str(tmp_path / "s.npz")
    assert main(["sample", workdir, "--num", "8", "--out", out]) == 0
    err = capsys.readouterr().err
    assert "checkpoint step 10" in err and "is corrupt or unreadable" in err and "restored step 8 instead" in err
    assert main(["train", "--workdir", workdir, "--resume", "--set", "train.steps=12", "--no-progress"]) == 0
    assert "restored step 8 instead" in capsys.readouterr().err
    ref = str(tmp_path / "ref")
    train(C.with_overrides(TINY, ["train.steps=12", "train.ckpt_every=4"]), ref, progress=False)
    assert losses(workdir) == losses(ref)
