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


COND = C.Experiment(name="tinycond", data=C.Data(name="digits"), process=C.Process(name="vp"),
                    net=C.Net(width=32, depth=1, num_classes=10), train=C.Train(batch_size=16, steps=4, log_every=2,
                                                                                ckpt_every=4),
                    sample=C.Sample(sampler="ddim", steps=3, num=16))


def test_conditional_run_trains_and_samples_with_labels_and_guidance(capsys, tmp_path):
    workdir = str(tmp_path / "cond")
    train(COND, workdir, progress=False)
    out = str(tmp_path / "g.npz")
    code, err = run_cli(capsys, "sample", workdir, "--num", "12", "--labels", "3,7", "--guidance", "2",
                        "--guidance-interval", "0.1,20", "--out", out)
    assert code == 0, err
    assert "guidance w=2 in (0.1, 20.0) (classifier-free)" in err
    z = np.load(out)
    assert z["samples"].shape == (12, 8, 8, 1) and np.isfinite(z["samples"]).all()
    np.testing.assert_array_equal(z["labels"], [3, 7] * 6)
    code, err = run_cli(capsys, "sample", workdir, "--num", "4", "--out", out)       # no labels: uniform, said so
    assert code == 0 and "labels are drawn uniformly" in err
    assert np.load(out)["labels"].shape == (4,)
    code, err = run_cli(capsys, "sample", workdir, "--num", "20", "--labels", "all", "--out", out)
    assert code == 0 and list(np.load(out)["labels"]) == list(range(10)) * 2
    code, err = run_cli(capsys, "sample", workdir, "--num", "4", "--labels", "10", "--out", out)
    assert code == 2 and "label 10 is not a class of this run; its classes are 0..9." in err
    code, err = run_cli(capsys, "sample", workdir, "--num", "4", "--labels", "three", "--out", out)
    assert code == 2 and "--labels takes class numbers" in err
    # autoguidance: the same run as its own guide is the conditional model itself (exactly)
    code, err = run_cli(capsys, "sample", workdir, "--num", "4", "--labels", "1", "--guidance", "3", "--guide",
                        workdir, "--out", out)
    assert code == 0 and "autoguidance" in err


def test_unconditional_run_refuses_labels_and_cfg(capsys, tmp_path):
    workdir = str(tmp_path / "run")
    train(C.with_overrides(TINY, ["train.steps=2"]), workdir, progress=False)
    out = str(tmp_path / "s.npz")
    code, err = run_cli(capsys, "sample", workdir, "--num", "4", "--labels", "1", "--out", out)
    assert code == 2 and "this run is unconditional" in err and not os.path.exists(out)
    code, err = run_cli(capsys, "sample", workdir, "--num", "4", "--guidance", "1", "--out", out)
    assert code == 2 and "needs a class-conditional run" in err and not os.path.exists(out)
    code, err = run_cli(capsys, "train", "--set", "net.num_classes=10", "--set", "data.name=moons",
                        "--workdir", str(tmp_path / "never"))
    assert code == 2 and "has no labels" in err and not os.path.exists(str(tmp_path / "never"))


@pytest.mark.slow  # a 32x32 U-Net compiled end to end; the CIFAR-free load path is the same as the digits runs'
def test_sampling_a_cifar10_run_needs_no_cifar10_files(capsys, tmp_path, monkeypatch):
    """A run's config and checkpoint are all `genflow sample` reads: a CIFAR-10 (U-Net, EDM
    preconditioning) run with no TFDS data anywhere samples; reading the data would fail."""
    from genflow.cli import build
    from genflow.training import Checkpointer, init_state, split_net

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no_tfds"))
    exp = C.Experiment(name="c10", data=C.Data(name="cifar10", data_dir=str(tmp_path / "no_tfds")),
                       process=C.Process(name="vp"),
                       net=C.Net(name="unet", channels=8, channel_mult=(1, 1), num_res_blocks=1, attn_resolutions=()),
                       predicts="edm", weighting="edm", time_sampling="lognormal",
                       sample=C.Sample(sampler="edm_heun", grid="karras", steps=2, num=8))
    workdir = tmp_path / "c10"
    workdir.mkdir()
    (workdir / "config.json").write_text(C.dumps(exp))
    net = build.build_net(exp.net, (32, 32, 3), exp.train.dtype, 0)
    _, params, _ = split_net(net)
    ckpt = Checkpointer(str(workdir / "checkpoints"))
    ckpt.save(1, init_state(params, build.build_optimizer(exp.optim), 0), {"step": 1, "data_position": 1})
    ckpt.close()
    with pytest.raises(C.ConfigError, match="not prepared"):
        build.build_data(exp.data, 8, 0, None)
    out = str(tmp_path / "c10.npz")
    code, err = run_cli(capsys, "sample", str(workdir), "--num", "8", "--out", out)
    assert code == 0, err
    assert np.load(out)["samples"].shape == (8, 32, 32, 3)


@pytest.mark.slow  # the unconditional reflow/distill commands and conditional sampling are checked by the default run
def test_conditional_reflow_and_distillation(capsys, tmp_path):
    """A class-conditional rectified flow reflows: each couple keeps the label it was generated with,
    and the 2-RF and the distilled sampler are conditional runs that sample with labels."""
    from genflow.reflow import load_couplings

    exp = C.Experiment(name="cflow", data=C.Data(name="digits"), process=C.Process(name="rectified_flow"),
                       net=C.Net(width=32, depth=1, num_classes=10), predicts="velocity", objective="flow_matching",
                       train=C.Train(batch_size=16, steps=2, log_every=1, ckpt_every=2),
                       sample=C.Sample(sampler="euler_ode", steps=2, num=16, denoise=False))
    workdir = str(tmp_path / "cflow")
    train(exp, workdir, progress=False)
    small = ["--num-couples", "32", "--ode-steps", "2", "--steps", "2", "--batch-size", "16"]
    assert main(["reflow", workdir, *small]) == 0
    assert main(["distill", workdir, *small]) == 0
    c = load_couplings(os.path.join(workdir, "couplings"))
    assert c.labels is not None and c.labels.shape == (32,) and set(c.labels.tolist()) <= set(range(10))
    out = str(tmp_path / "d.npz")
    code, err = run_cli(capsys, "sample", workdir + "-distill1", "--num", "8", "--labels", "4", "--out", out)
    assert code == 0, err
    assert list(np.load(out)["labels"]) == [4] * 8
