"""The genflow command: each bad input stops with one clear sentence (exit 2), nothing written."""
import os

import numpy as np
import pytest

from genflow import config as C
from genflow.cli.main import main
from genflow.cli.run import train
from tests.test_resume import TINY


def run_cli(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_unknown_key_suggests_the_closest(capsys):
    code, err = run_cli(capsys, "train", "--set", "optim.learning_rate=1e-4")
    assert code == 2
    assert err.strip() == ("genflow: error: unknown config key 'optim.learning_rate'; did you mean 'optim.lr'? "
                           "(`genflow config` lists the keys).")


@pytest.mark.parametrize("override, message", [
    ("optim.lr=fast", "config key 'optim.lr' takes a float, not 'fast'."),
    ("process.name=vpp", "process.name 'vpp' is not one of ddpm, edm, rectified_flow, subvp, ve, vp."),
    ("train.batch_size=12", "train.batch_size 12 does not split over 8 devices; use a multiple of 8."),
    ("process.sigma_max=80", "process.sigma_max does not apply to process 'vp'"),
    ("optim.ema_decay=1.5", "optim.ema_decay must be in [0, 1), got 1.5."),
    ("train.random_flip=true", "unknown config key 'train.random_flip'; did you mean 'data.random_flip'?"),
])
def test_bad_values_are_one_sentence(capsys, tmp_path, override, message):
    workdir = str(tmp_path / "never")
    code, err = run_cli(capsys, "train", "--set", override, "--workdir", workdir)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not os.path.exists(workdir)


def test_missing_run_dir_and_missing_experiment(capsys, tmp_path):
    code, err = run_cli(capsys, "sample", str(tmp_path / "nope"))
    assert code == 2 and "does not exist; train one with `genflow train --workdir" in err
    code, err = run_cli(capsys, "train", str(tmp_path / "nope.py"))
    assert code == 2 and "experiment file" in err and "does not exist" in err


def test_workdir_rules_and_incompatible_checkpoint(capsys, tmp_path):
    workdir = str(tmp_path / "run")
    train(C.with_overrides(TINY, ["train.steps=5"]), workdir, progress=False)
    with pytest.raises(C.ConfigError, match="already holds a run; pass --resume"):
        train(TINY, workdir, progress=False)
    with pytest.raises(C.ConfigError, match=r"holds a different experiment \(net.width 32 vs 64\)"):
        train(C.with_overrides(TINY, ["net.width=64"]), workdir, resume=True, progress=False)
    # A config.json edited under a checkpoint: restoring must fail with one sentence.
    cfg = open(os.path.join(workdir, "config.json")).read().replace('"width": 32', '"width": 48')
    open(os.path.join(workdir, "config.json"), "w").write(cfg)
    code, err = run_cli(capsys, "sample", workdir, "--num", "8")
    assert code == 2 and "does not fit the network its config.json describes" in err


def test_train_then_sample_end_to_end(capsys, tmp_path):
    workdir = str(tmp_path / "run")
    train(C.with_overrides(TINY, ["train.steps=5"]), workdir, progress=False)
    for name in ("samples.png", "loss.png", "metrics.jsonl", "config.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    out = str(tmp_path / "s.npz")
    code, err = run_cli(capsys, "sample", workdir, "--num", "24", "--out", out, "--steps", "3")
    assert code == 0, err
    x = np.load(out)["samples"]
    assert x.shape == (24, 2) and np.isfinite(x).all()


def test_config_lists_keys(capsys):
    assert main(["config", "--set", "optim.lr=3e-4"]) == 0
    out = capsys.readouterr().out
    assert "optim.lr = 0.0003" in out and "process.name = 'vp'" in out


def test_eval_prints_the_metrics_table_and_tensorboard_has_the_losses(capsys, tmp_path):
    from genflow.training.tensorboard import read_scalars

    workdir = str(tmp_path / "run")
    train(C.with_overrides(TINY, ["train.steps=5"]), workdir, progress=False)
    assert main(["eval", workdir]) == 0
    out = capsys.readouterr().out
    assert "| step" in out and "5 of 5" in out and "energy distance to data (held-out real data)" in out
    event_files = os.listdir(os.path.join(workdir, "tensorboard"))
    scalars = read_scalars(os.path.join(workdir, "tensorboard", event_files[0]))
    assert [s for s, tag, _ in scalars if tag == "loss"] == [1, 2, 3, 4, 5]


def test_sample_with_the_solver_suite_reports_nfe_and_likelihood(capsys, tmp_path):
    workdir = str(tmp_path / "run")
    train(C.with_overrides(TINY, ["train.steps=5"]), workdir, progress=False)
    out = str(tmp_path / "s.npy")
    # denoise=True adds one NFE; on rectified flow Heun's correction is skipped on the first step
    # (from alpha = 0) and on the last (to sigma = 0): 1 + 2 + 2 + 1 + 1. (The hand-written formula
    # the CLI used before the counts came from the sampler said 8: it missed the first skip.)
    for args, nfe in [(["--sampler", "dpm_solver_pp_2m", "--grid", "log_snr", "--steps", "6"], "7 NFE"),
                      (["--sampler", "edm_heun", "--grid", "karras", "--steps", "4"], "7 NFE"),
                      (["--sampler", "tsit5", "--rtol", "1e-3", "--atol", "1e-3"], "NFE per sample")]:
        code, err = run_cli(capsys, "sample", workdir, "--num", "16", "--out", out, *args)
        assert code == 0 and nfe in err, err
        assert np.isfinite(np.load(out)).all()
    code, err = run_cli(capsys, "sample", workdir, "--num", "16", "--out", out, "--grid", "cosine")
    assert code == 2 and "sample.grid 'cosine' is not one of karras, log_snr, uniform." in err
    assert main(["likelihood", workdir, "--num", "8", "--rtol", "1e-3", "--atol", "1e-3"]) == 0
    table = capsys.readouterr().out
    assert "NLL (nats/dim)" in table and "| trace" in table and "exact" in table


def test_reflow_and_distill_commands(capsys, tmp_path):
    workdir = str(tmp_path / "run")
    train(C.with_overrides(TINY, ["train.steps=3"]), workdir, progress=False)
    small = ["--num-couples", "32", "--ode-steps", "3"]    # steps and batch size: the run's own
    assert main(["reflow", workdir, *small]) == 0
    assert main(["distill", workdir, *small, "--steps", "2", "--batch-size", "16"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "2-RF" in text and "distilled 1-step" in text
    from genflow.cli.run import load_run

    rf2, d1 = load_run(workdir + "-2rf"), load_run(workdir + "-distill1")
    assert rf2.step == 3 and rf2.exp.train.batch_size == TINY.train.batch_size
    assert d1.step == 2 and d1.exp.train.batch_size == 16
