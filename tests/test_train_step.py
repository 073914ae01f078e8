"""The jitted train step: sharded equals single-device, EMA, non-finite steps skipped."""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from genflow.data import put_global
from genflow.models import MLP, ModelSpec
from genflow.objectives import denoising_score_matching
from genflow.processes import VP
from genflow.training import init_state, make_mesh, make_optimizer, make_train_step, split_net


def _setup(mesh, objective=denoising_score_matching, ema_decay=0.9):
    net = MLP((2,), width=32, depth=2, rngs=nnx.Rngs(0))
    spec = ModelSpec.from_net(net, VP(), "eps")
    _, params, _ = split_net(net)
    tx = make_optimizer("adam", 1e-2, grad_clip=1.0)
    state = init_state(params, tx, seed=0)
    if mesh is not None:
        state = jax.device_put(state, NamedSharding(mesh, P()))
    step = make_train_step(spec, objective, tx, ema_decay=ema_decay, mesh=mesh)
    return state, step


def _batches(n=4):
    return [np.asarray(jax.random.normal(jax.random.PRNGKey(100 + i), (32, 2))) for i in range(n)]


def test_eight_devices_equal_one():
    assert jax.device_count() == 8, "conftest should simulate 8 CPU devices"
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = make_mesh(devices)
        state, step = _setup(mesh)
        losses = []
        for x in _batches():
            state, m = step(state, {"x0": put_global(x, NamedSharding(mesh, P("data")))})
            losses.append(float(m["loss"]))
        results.append((losses, jax.device_get(state.params)))
        if len(devices) == 8:
            assert all(len(leaf.sharding.device_set) == 8 for leaf in jax.tree.leaves(state.params))
    (l1, p1), (l8, p8) = results
    np.testing.assert_allclose(l1, l8, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_ema_is_a_separate_average_and_compiles_once():
    state, step = _setup(None, ema_decay=0.9)
    ema0 = jax.device_get(state.ema)
    state, _ = step(state, {"x0": _batches(1)[0]})
    expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, ema0, jax.device_get(state.params))
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(jax.device_get(state.ema))):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    state, _ = step(state, {"x0": _batches(2)[1]})
    assert step._cache_size() == 1
    assert int(state.step) == 2


def test_non_finite_loss_skips_the_update():
    def poisoned(model, x0, key, cond=None):
        loss, m = denoising_score_matching(model, x0, key, cond=cond)
        return loss * jnp.nan, m

    state, step = _setup(None, objective=poisoned)
    before = jax.device_get(state.params)
    state, m = step(state, {"x0": _batches(1)[0]})
    assert int(m["skipped"]) == 1 and int(state.step) == 1
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get(state.params))):
        np.testing.assert_array_equal(a, b)


def test_label_dropout_inside_the_step():
    """p_uncond = 1 drops every label: the step equals the unconditional step (cond=None selects the
    null label); p_uncond = 0 keeps them, and the conditional step differs."""
    net = MLP((2,), width=16, depth=1, num_classes=3, rngs=nnx.Rngs(0))
    assert net.null_label == 3
    spec = ModelSpec.from_net(net, VP(), "eps")
    _, params, _ = split_net(net)
    tx = make_optimizer("adam", 1e-2)
    x = _batches(1)[0]
    labels = np.arange(32) % 3
    after = {}
    for name, p_uncond, batch in [("dropped", 1.0, {"x0": x, "cond": labels}), ("uncond", 0.0, {"x0": x}),
                                  ("kept", 0.0, {"x0": x, "cond": labels})]:
        step = make_train_step(spec, denoising_score_matching, tx, ema_decay=0.9, p_uncond=p_uncond)
        state, m = step(init_state(jax.tree.map(jnp.copy, params), tx, seed=0), batch)
        after[name] = (float(m["loss"]), jax.tree.leaves(state.params))
    assert after["dropped"][0] == after["uncond"][0]
    for a, b in zip(after["dropped"][1], after["uncond"][1]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(after["kept"][1], after["uncond"][1]))
