"""One placement policy: FSDP on 8 simulated devices equals data parallelism, holds 1/8 of the
state per device, and checkpoints restore onto other meshes; gradient accumulation equals the
big batch."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genflow.data import put_global
from genflow.models import MLP, ModelSpec
from genflow.objectives import denoising_score_matching
from genflow.placement import Placement, mesh_shape
from genflow.processes import VP
from genflow.training import Checkpointer, init_state, make_optimizer, make_train_step, split_net

# every tensor of the 2 x 256 x 256 MLP is sharded (a floor of 0 bytes), so "1/8" is exact but for
# the replicated scalars (step, key, Adam's count)
def setup(placement, objective=denoising_score_matching, microbatches=1):
    net = MLP((2,), width=256, depth=2, rngs=nnx.Rngs(0))
    spec = ModelSpec.from_net(net, VP(), "eps")
    _, params, _ = split_net(net)
    tx = make_optimizer("adam", 1e-3, grad_clip=1.0)
    state = placement.init(lambda p: init_state(p, tx, seed=0), params)
    step = make_train_step(spec, objective, tx, ema_decay=0.9, mesh=placement, microbatches=microbatches)
    return state, step


def batches(n=3):
    return [np.asarray(jax.random.normal(jax.random.PRNGKey(100 + i), (32, 2))) for i in range(n)]


def train(placement, **kwargs):
    state, step = setup(placement, **kwargs)
    losses = []
    for x in batches():
        state, m = step(state, {"x0": put_global(x, placement.batch())})
        losses.append(float(m["loss"]))
    return state, losses


def placements():
    return {"data 8": Placement.create({"data": 8, "fsdp": 1}),
            "fsdp 8": Placement.create({"data": 1, "fsdp": 8}, min_shard_bytes=0),
            "data 2 x fsdp 4": Placement.create({"data": 2, "fsdp": 4}, min_shard_bytes=0)}


def test_fsdp_equals_data_parallel_and_holds_an_eighth_per_device():
    assert jax.device_count() == 8
    results = {name: train(p) for name, p in placements().items()}
    ref_state, ref_losses = results["data 8"]
    for name, (state, losses) in results.items():
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
        for a, b in zip(jax.tree.leaves(jax.device_get(ref_state)), jax.tree.leaves(jax.device_get(state))):
            np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-5, atol=1e-6)
    total = sum(x.nbytes for x in jax.tree.leaves(ref_state))
    for name, p in placements().items():
        state = results[name][0]
        per_device = p.bytes_per_device(state)
        share = max(per_device.values()) / total
        print(f"{name}: {max(per_device.values()):,} of {total:,} state bytes per device ({share:.3f})")
        expected = 1.0 / p.fsdp
        assert abs(share - expected) < 0.01, (name, share)
        sharded = [leaf for leaf in jax.tree.leaves(state.params) if not leaf.sharding.is_fully_replicated]
        assert (len(sharded) > 0) == (p.fsdp > 1)


def test_an_fsdp_checkpoint_restores_onto_one_device_and_onto_4_x_2(tmp_path):
    fsdp8 = placements()["fsdp 8"]
    state, _ = train(fsdp8)
    ckpt = Checkpointer(str(tmp_path / "ckpt"))
    ckpt.save(3, state, {"note": "fsdp 8"})
    ckpt.wait()
    saved = jax.device_get(state)
    for target in (Placement.create({"data": 1, "fsdp": 1}, devices=jax.devices()[:1]),
                   Placement.create({"data": 4, "fsdp": 2}, min_shard_bytes=0)):
        like, _ = setup(target)
        restored, meta = ckpt.restore(like)
        assert meta["note"] == "fsdp 8"
        for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(jax.device_get(restored))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(like)):
            assert got.sharding.is_equivalent_to(want.sharding, got.ndim)
    ckpt.close()


def quadratic(model, x0, key, **_):
    """A loss with no randomness, so a step over 4 pieces must equal the step over the whole batch."""
    out = model(x0, jnp.full(x0.shape[:1], 0.5), None)
    loss = jnp.mean(jnp.square(out - x0))
    return loss, {"loss": loss}


def test_gradient_accumulation_equals_the_big_batch_step():
    p = placements()["data 2 x fsdp 4"]
    big, big_losses = train(p, objective=quadratic)
    acc, acc_losses = train(p, objective=quadratic, microbatches=4)
    np.testing.assert_allclose(acc_losses, big_losses, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(jax.device_get(big.params)), jax.tree.leaves(jax.device_get(acc.params))):
        # Adam (lr 1e-3) divides by sqrt(v): a gradient entry near zero, summed in another order over
        # the pieces, moves its update by a few 1e-7 (seen: 1.9e-7); 1e-6 is 0.1% of one step
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec,message", [
    ({"data": 3, "fsdp": 1}, "is 3 x 1 = 3 devices, but there are 8"),
    ({"data": -1, "fsdp": 3}, "3 does not divide the 8 devices"),
    ({"data": -1, "fsdp": -1}, "at most one of them -1"),
    ({"model": 2}, "unknown axes ['model']"),
])
def test_a_mesh_that_does_not_fit_is_one_sentence(spec, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        mesh_shape(spec, 8)


def test_the_cli_trains_fsdp_with_accumulation_and_resumes(tmp_path, capsys):
    from genflow import config as C
    from genflow.cli.main import main
    from genflow.cli.run import train as cli_train
    from tests.test_resume import TINY

    exp = C.with_overrides(TINY, ["train.mesh=2,4", "train.microbatches=2", "train.steps=6", "net.width=64"])
    workdir = str(tmp_path / "run")
    cli_train(exp, workdir, progress=False)
    assert main(["train", "--workdir", workdir, "--resume", "--set", "train.steps=8", "--no-progress"]) == 0
    assert main(["train", "--workdir", str(tmp_path / "bad"), "--set", "train.mesh=3,1"]) == 2
    assert "but there are 8" in capsys.readouterr().err
