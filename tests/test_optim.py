"""Tiger is Lion with b1 = b2 = beta, and its update is the hand-computed one."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genflow.training import make_optimizer, tiger


def _run(tx, params, grads_seq):
    state = tx.init(params)
    for g in grads_seq:
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_tiger_equals_lion_with_equal_betas_bit_for_bit():
    key = jax.random.PRNGKey(0)
    params = {"w": jax.random.normal(key, (5, 3)), "b": jnp.arange(3.0)}
    grads = [jax.tree.map(lambda p, i=i: jax.random.normal(jax.random.fold_in(key, i), p.shape), params)
             for i in range(6)]
    for beta, wd in [(0.945, 0.0), (0.9, 0.1)]:
        ours = _run(tiger(1e-2, beta=beta, weight_decay=wd), params, grads)
        lion = _run(optax.lion(1e-2, b1=beta, b2=beta, weight_decay=wd), params, grads)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(lion)):
            np.testing.assert_array_equal(a, b)


def test_tiger_hand_computed_update():
    # m0 = 0; g1 = [2, -1, 0]: m1 = 0.1 g1 = [0.2, -0.1, 0] -> sign [1, -1, 0];
    # theta = [1, 1, 1] - lr (sign + wd theta) with lr = 0.5, wd = 0.2 -> [0.4, 1.4, 0.9].
    # g2 = [-5, 0, 1]: m2 = 0.9 m1 + 0.1 g2 = [-0.32, -0.09, 0.1] -> sign [-1, -1, 1];
    # theta = [0.4, 1.4, 0.9] - 0.5 ([-1, -1, 1] + 0.2 theta) = [0.86, 1.76, 0.31].
    tx = tiger(0.5, beta=0.9, weight_decay=0.2)
    p = _run(tx, jnp.ones(3), [jnp.array([2.0, -1.0, 0.0])])
    np.testing.assert_allclose(p, [0.4, 1.4, 0.9], rtol=1e-6)
    p = _run(tx, jnp.ones(3), [jnp.array([2.0, -1.0, 0.0]), jnp.array([-5.0, 0.0, 1.0])])
    np.testing.assert_allclose(p, [0.86, 1.76, 0.31], rtol=1e-6)


def test_warmup_and_clipping():
    tx = make_optimizer("adam", 1.0, warmup_steps=4, grad_clip=1e-3)
    params = jnp.zeros(2)
    state = tx.init(params)
    updates, state = tx.update(jnp.array([1e6, 0.0]), state, params)
    assert float(jnp.abs(updates).max()) == 0.0  # lr is 0 at the first warm-up step
    updates, _ = tx.update(jnp.array([1e6, 0.0]), state, params)
    assert 0.2 < float(jnp.abs(updates[0])) <= 0.25 + 1e-6  # lr 1/4, Adam step ~ 1


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="unknown optimizer 'sgdd'; choose one of adam, adamw, lion, tiger"):
        make_optimizer("sgdd", 1e-3)
