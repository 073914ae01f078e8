"""Bad values stop with one sentence before anything is written; non-finite training never reaches a
checkpoint and a run that is all non-finite stops (issue 13, first part)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from genflow.cli.main import main
from genflow.models import MLP, ModelSpec
from genflow.objectives import denoising_score_matching
from genflow.processes import VP
from genflow.training import Checkpointer, init_state, make_train_step, split_net, train_loop
from genflow.training.loop import TrainingDiverged


@pytest.mark.parametrize("override, message", [
    ("train.keep=0", "train.keep must be positive (the number of checkpoints kept; 0 would delete them all), got 0."),
    ("optim.lr=nan", "optim.lr must be a finite number, got nan."),
    ("optim.lr=inf", "optim.lr must be a finite number, got inf."),
    ("optim.grad_clip=0", "optim.grad_clip must be positive (or None for no clipping), got 0.0."),
    ("optim.b1=1.0", "optim.b1 must be in [0, 1), got 1.0."),
    ("optim.b2=-0.1", "optim.b2 must be in [0, 1), got -0.1."),
    ("optim.warmup_steps=-5", "optim.warmup_steps must be zero or positive, got -5."),
    ("optim.rms_floor=-1", "optim.rms_floor must be zero or positive, got -1.0."),
    ("optim.name=tigr", "optim.name 'tigr' is not one of adam, adamw, lion, tiger, tiger_rms."),
    ("process.beta_min=-1", "process.beta_min must be zero or positive, got -1.0."),
    ("process.t_min=1.5", "process.t_min must be in [0, 1), got 1.5."),
    ("train.sample_every=-1", "train.sample_every must be zero or positive, got -1."),
    ("data.holdout=-3", "data.holdout must be zero or positive, got -3."),
    ("net.width=0", "net.width must be positive, got 0."),
    ("net.depth=0", "net.depth must be positive, got 0."),
    ("net.channels=0", "net.channels must be positive, got 0."),
    ("net.dropout=1.0", "net.dropout must be in [0, 1), got 1.0."),
    ("train.p_uncond=1.5", "train.p_uncond must be in [0, 1], got 1.5."),
    ("sample.sampler=heunn", "sample.sampler 'heunn' is not one of"),
    ("sample.guidance=2", "is classifier-free guidance, which needs a class-conditional run"),
    ("train.ema_sigma_rels=0.05,0.3", "train.ema_sigma_rels takes EMA lengths sigma_rel between 0 and 0.2887"),
    ("train.ema_sigma_rels=0.1,0.1", "train.ema_sigma_rels lists a value twice (0.1, 0.1)"),
    ("train.ema_snapshot_every=0", "train.ema_snapshot_every must be positive (or None for every train.ckpt_every "
                                   "steps), got 0."),
])
def test_bad_value_is_one_sentence_and_writes_nothing(capsys, tmp_path, override, message):
    workdir = str(tmp_path / "never")
    code = main(["train", "--set", override, "--workdir", workdir])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not os.path.exists(workdir)


@pytest.mark.parametrize("overrides, message", [
    (["process.name=ve", "process.sigma_min=50", "process.sigma_max=10"], "must be below process.sigma_max"),
    (["process.name=rectified_flow", "predicts=eps"], "predicts=eps is singular on rectified flow"),
    (["process.name=ddpm", "process.num_steps=1"], "process.num_steps must be at least 2"),
])
def test_process_values_that_would_give_nan(capsys, tmp_path, overrides, message):
    workdir = str(tmp_path / "never")
    code = main(["train", *[a for o in overrides for a in ("--set", o)], "--workdir", workdir])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not os.path.exists(workdir)


def _setup(tx):
    net = MLP((2,), width=16, depth=1, rngs=nnx.Rngs(0))
    spec = ModelSpec.from_net(net, VP(), "eps")
    _, params, _ = split_net(net)
    return spec, init_state(params, tx, seed=0)


def test_a_non_finite_update_with_finite_gradients_is_skipped():
    """A NaN learning rate gives a finite loss and gradient but NaN parameters: the step keeps the old ones."""
    tx = optax.sgd(float("nan"))
    spec, state = _setup(tx)
    before = [np.asarray(p).copy() for p in jax.tree.leaves(state.params)]
    step = make_train_step(spec, denoising_score_matching, tx, ema_decay=0.9)
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 2))
    state, m = step(state, {"x0": x})
    assert int(m["skipped"]) == 1 and np.isfinite(float(m["loss"])) and np.isfinite(float(m["grad_norm"]))
    for a, b in zip(before, jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert int(state.step) == 1


def _nan_loss(model, x0, key, **kw):
    loss, metrics = denoising_score_matching(model, x0, key, **kw)
    return loss * jnp.nan, metrics


class _Batches:
    position = 0

    def __next__(self):
        self.position += 1
        return {"x0": jax.random.normal(jax.random.PRNGKey(self.position), (16, 2))}


def test_an_all_non_finite_run_stops_and_keeps_the_last_finite_checkpoint(tmp_path):
    tx = optax.adam(1e-3)
    spec, state = _setup(tx)
    init = [np.asarray(p).copy() for p in jax.tree.leaves(state.params)]
    step = make_train_step(spec, _nan_loss, tx, ema_decay=0.9)
    ckpt = Checkpointer(str(tmp_path / "ckpt"))
    metrics = str(tmp_path / "metrics.jsonl")
    with pytest.raises(TrainingDiverged, match=r"the last 6 training steps \(to step 6\) were all non-finite.*"
                                               r"the last checkpoint \(step 4\) holds the last finite state"):
        train_loop(state, step, _Batches(), steps=50, checkpointer=ckpt, metrics_path=metrics, log_every=2,
                   ckpt_every=4, progress=False, max_skipped=5)
    _, restored = ckpt.restore_weights(jax.tree.map(jnp.zeros_like, state.params), field="params")
    for a, b in zip(init, jax.tree.leaves(restored)):
        np.testing.assert_array_equal(a, np.asarray(b))
    ckpt.close()
    rows = [json.loads(line) for line in open(metrics)]       # strict JSON: no NaN
    assert [r["loss"] for r in rows] == [None, None, None] and [r["skipped"] for r in rows] == [2, 2, 2]
