"""Tracebacks turned into one sentence (issue 13): broken experiment files and config.json, torn
metrics, unusable directories, a full disk, failed starts, and logs that are not terminals."""
import json
import os
import shutil

import numpy as np
import pytest

from genflow import config as C
from genflow.cli import run as run_module
from genflow.cli.main import main
from genflow.cli.run import train
from genflow.training import metrics_file
from tests.test_resume import TINY, losses

TINY_ARGS = ["--set", "data.name=moons", "--set", "process.name=rectified_flow", "--set", "predicts=velocity",
             "--set", "objective=flow_matching", "--set", "net.width=32", "--set", "net.depth=1",
             "--set", "train.batch_size=16", "--set", "train.log_every=1", "--set", "train.ckpt_every=5",
             "--set", "sample.sampler=euler_ode", "--set", "sample.steps=4", "--set", "sample.num=16"]


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_sentence(err: str) -> bool:
    lines = [line for line in err.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("genflow: error: ") and "Traceback" not in err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished 12-step moons run (checkpoints at 5, 10, 12), copied by the tests that damage it."""
    workdir = str(tmp_path_factory.mktemp("tiny") / "run")
    train(TINY, workdir, progress=False)
    return workdir


def copy_run(src, tmp_path):
    dst = str(tmp_path / "copy")
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("source, message", [
    ("config = Experiment(name='x'\n", "line 2: syntax error ('(' was never closed); fix the experiment file."),
    ("config = Experiment(train=Train(stepz=3))\n", "unexpected keyword argument 'stepz' (did you mean 'steps'?)"),
    ("config = Experiment(train=Train(steps='many'))\n", "train.steps must be int, not 'many'."),
    ("config = Experiment(net=Net(width=1.5))\n", "net.width must be int, not 1.5."),
    ("import no_such_module_here\n", "line 2: ModuleNotFoundError: No module named 'no_such_module_here'"),
    ("x = 1\n", "defines no `config = Experiment(...)`"),
])
def test_a_broken_experiment_file_is_one_sentence(capsys, tmp_path, source, message):
    path = tmp_path / "exp.py"
    path.write_text("from genflow.config import *\n" + source)
    for command in (["config", path], ["train", path, "--workdir", tmp_path / "run"]):
        code, err = cli(capsys, *command)
        assert code == 2 and one_sentence(err) and message in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, message", [
    ('{"name": "tiny", ', "is not a readable genflow config (JSONDecodeError"),
    ('[1, 2]', "the top level must be a JSON object, not list"),
    ('{"name": "tiny", "train": {"steps": "12"}}', "train.steps must be int, not '12'"),
    ('{"name": "tiny", "trian": {"steps": 12}}', "unknown key trian; did you mean train?"),
    ('{"name": "tiny", "net": 3}', "net must be a JSON object, not int"),
])
def test_a_corrupt_or_wrong_typed_config_json_is_one_sentence(capsys, tmp_path, tiny_run, text, message):
    workdir = copy_run(tiny_run, tmp_path)
    open(os.path.join(workdir, "config.json"), "w").write(text)
    for command in (["sample", workdir, "--num", 4], ["eval", workdir], ["train", "--workdir", workdir, "--resume"],
                    ["likelihood", workdir]):
        code, err = cli(capsys, *command)
        assert code == 2 and one_sentence(err) and message in err and "config.json" in err, (command, err)


def test_a_torn_last_metrics_row_is_dropped_and_the_resume_rewrites_it(capsys, tmp_path, tiny_run):
    """Killed mid-write after row 12 of 14 was half written: resume from the step-10 checkpoint
    drops the torn line and logs rows equal to an uninterrupted 14-step run."""
    workdir = copy_run(tiny_run, tmp_path)
    shutil.rmtree(os.path.join(workdir, "checkpoints", "12"))
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write('{"step": 13, "loss": 0.')
    code, err = cli(capsys, "eval", workdir)
    assert code == 0 and "is not a complete JSON row" in err
    code, err = cli(capsys, "train", "--workdir", workdir, "--resume", "--set", "train.steps=14", "--no-progress")
    assert code == 0, err
    ref = str(tmp_path / "ref")
    train(C.with_overrides(TINY, ["train.steps=14"]), ref, progress=False)
    assert losses(workdir) == losses(ref) and sorted(losses(workdir)) == list(range(1, 15))


def test_unusable_directories_are_one_sentence_before_any_work(capsys, tmp_path, tiny_run):
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, err = cli(capsys, "train", "--workdir", afile, *TINY_ARGS)
    assert code == 2 and one_sentence(err) and "is a file, not a directory" in err
    code, err = cli(capsys, "train", "--workdir", "/sys/genflow-test-run", *TINY_ARGS)  # sysfs: not writable
    assert code == 2 and one_sentence(err) and "cannot write to /sys/genflow-test-run" in err, err
    code, err = cli(capsys, "sample", tiny_run, "--num", 4, "--out", afile / "x.png")
    assert code == 2 and one_sentence(err) and "is a file, not a directory" in err
    code, err = cli(capsys, "sample", tiny_run, "--num", 4, "--out", "/sys/genflow-test/x.npz")
    assert code == 2 and one_sentence(err) and "cannot write to /sys/genflow-test" in err
    code, err = cli(capsys, "sample", tiny_run, "--num", 4, "--out", tmp_path)
    assert code == 2 and one_sentence(err) and "must end in .png, .npz or .npy" in err
    if os.geteuid() != 0:  # root writes into read-only directories
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        code, err = cli(capsys, "train", "--workdir", ro / "run", *TINY_ARGS)
        assert code == 2 and one_sentence(err) and f"cannot write to {ro / 'run'}" in err


def test_a_full_disk_is_said_before_training_and_nothing_is_left(capsys, tmp_path, monkeypatch, tiny_run):
    real = shutil.disk_usage

    def nearly_full(path):
        return real(path)._replace(free=1 << 20)

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    workdir = tmp_path / "run"
    code, err = cli(capsys, "train", "--workdir", workdir, *TINY_ARGS)
    assert code == 2 and one_sentence(err) and "MiB free but 3 checkpoints" in err and str(workdir) in err, err
    assert not workdir.exists()
    code, err = cli(capsys, "sample", tiny_run, "--num", 100_000, "--out", tmp_path / "s.npz")
    assert code == 2 and one_sentence(err) and "100,000 samples" in err
    assert not (tmp_path / "s.npz").exists()


def test_a_write_error_mid_run_names_the_file(capsys, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "run" / "samples.png"))

    monkeypatch.setattr(run_module, "save_samples", disk_full)
    code, err = cli(capsys, "train", "--workdir", tmp_path / "run", *TINY_ARGS, "--set", "train.steps=2",
                    "--no-progress")
    assert code == 1 and one_sentence(err) and "samples.png (No space left on device)" in err, err
    assert "--resume" in err


@pytest.mark.parametrize("override, message", [
    ("data.image_size=0", "a folder data set needs data.image_size > 0 and data.channels 1 or 3, got 0 and 3."),
    ("data.channels=2", "a folder data set needs data.image_size > 0 and data.channels 1 or 3, got 8 and 2."),
])
def test_a_failed_start_leaves_nothing_that_blocks_the_corrected_command(capsys, tmp_path, override, message):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(images / f"{i}.png")
    workdir = tmp_path / "run"
    args = ["train", "--workdir", workdir, "--set", "data.name=folder", "--set", f"data.path={images}",
            "--set", "data.image_size=8", "--set", "net.name=mlp", "--set", "net.width=16", "--set", "net.depth=1",
            "--set", "train.batch_size=8", "--set", "train.steps=2", "--set", "sample.steps=2", "--set", "sample.num=8",
            "--set", "data.holdout=0", "--no-progress"]
    code, err = cli(capsys, *args, "--set", override)
    assert code == 2 and one_sentence(err) and message in err, err
    assert not workdir.exists()
    # a start that died after writing config.json but before its first checkpoint does not block either
    workdir.mkdir()
    (workdir / "config.json").write_text("{}")
    code, err = cli(capsys, *args)
    assert code == 0, err
    assert "a start that failed before its first checkpoint; starting over" in err
    assert json.load(open(workdir / "config.json"))["data"]["image_size"] == 8


def test_eval_json_and_metrics_are_strict_json(tmp_path):
    run_module.write_eval(str(tmp_path), {"fdd": 1.5, "label_accuracy_heldout": float("nan"), "x": float("inf")}, 3)

    def refuse(constant):
        raise AssertionError(f"{constant} is not strict JSON")

    assert json.loads(open(tmp_path / "eval.json").read(), parse_constant=refuse) == \
        {"fdd": 1.5, "label_accuracy_heldout": None, "x": None, "step": 3}
    metrics_file.append_row(str(tmp_path / "m.jsonl"), {"step": 1, "loss": float("nan")})
    assert json.loads(open(tmp_path / "m.jsonl").read(), parse_constant=refuse) == {"step": 1, "loss": None}
    assert run_module.report_lines({"label_accuracy": 0.5, "label_accuracy_heldout": None}) == \
        ["label accuracy (digits classifier): samples 0.500, held-out real data n/a"]


def test_progress_in_a_log_file_is_one_line_per_log_row(capsys, tmp_path):
    """stderr is not a terminal here (as in CI, nohup or a cluster job): no carriage-return bar."""
    train(C.with_overrides(TINY, ["train.log_every=4"]), str(tmp_path / "run"), progress=True)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("train: ")]
    assert "\r" not in err
    assert [line.split(",")[0] for line in lines] == ["train: 4/12 (33%)", "train: 8/12 (67%)", "train: 12/12 (100%)"]
    assert all("loss=" in line for line in lines)


def test_ctrl_c_during_sampling_writes_what_is_done_and_exits_130(tmp_path, tiny_run):
    """A real `genflow sample` process gets SIGINT once its progress shows chunks done: it finishes
    the chunk, writes the samples so far, says so, and exits 130 without a traceback."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "part.npz"
    proc = subprocess.Popen([sys.executable, "-m", "genflow.cli.main", "sample", tiny_run, "--num", "400000",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("sample: "):          # the log-file progress line: some chunks are done
            proc.send_signal(signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=120)
    err = "".join(seen) + rest
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted after" in err and "those were written" in err
    done = int(err.split("interrupted after ")[1].split(" ")[0])
    assert 0 < done < 400_000 and done % 1024 == 0
    assert np.load(out)["samples"].shape == (done, 2)
