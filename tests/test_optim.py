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


def test_tiger_rms_hand_computed_update():
    """Tiger as its article proposes it, one step with lr = 0.1, beta = 0.9, wd = 0.2, floor 0.01,
    computed by hand (m0 = 0, so m1 = 0.1 g and sign(m1) = sign(g)):
    kernel w = [[3, -4], [0, 0]]: RMS = sqrt(25 / 4) = 2.5, eta = 0.25, g = [[1, -2], [0.5, 0]]
      -> w - 0.25 ([[1, -1], [1, 0]] + 0.2 w) = [[2.6, -3.55], [-0.25, 0]];
    bias b = [0, 0], g = [-3, 2]: eta = lr / 2 = 0.05, no decay -> [0.05, -0.05];
    zero kernel z = [0, 0], g = [1, -1]: RMS 0 floored to 0.01, eta = 1e-3 -> [-1e-3, 1e-3];
    embedding E = [[1, 1], [0, 2]]: row RMS [1, sqrt 2], g = [[1, 0], [-1, 1]]
      -> row 0: [1, 1] - 0.1 ([1, 0] + 0.2 [1, 1]) = [0.88, 0.98],
         row 1: [0, 2] - 0.1 sqrt 2 ([-1, 1] + 0.2 [0, 2]) = [0.1 sqrt 2, 2 - 0.14 sqrt 2];
    norm scale s = [1, 2] with a NaN gradient: momentum kept at 0, s -> 1 + 0.99 (s - 1) = [1, 1.99]."""
    from genflow.training import tiger_rms

    params = {"dense": {"kernel": jnp.array([[3.0, -4.0], [0.0, 0.0]]), "bias": jnp.zeros(2)},
              "zero": {"kernel": jnp.zeros(2)},
              "label": {"embedding": jnp.array([[1.0, 1.0], [0.0, 2.0]])},
              "norm": {"scale": jnp.array([1.0, 2.0])}}
    grads = {"dense": {"kernel": jnp.array([[1.0, -2.0], [0.5, 0.0]]), "bias": jnp.array([-3.0, 2.0])},
             "zero": {"kernel": jnp.array([1.0, -1.0])},
             "label": {"embedding": jnp.array([[1.0, 0.0], [-1.0, 1.0]])},
             "norm": {"scale": jnp.array([jnp.nan, 1.0])}}
    tx = tiger_rms(0.1, beta=0.9, weight_decay=0.2, rms_floor=0.01)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    r2 = np.sqrt(2.0)
    np.testing.assert_allclose(new["dense"]["kernel"], [[2.6, -3.55], [-0.25, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(new["dense"]["bias"], [0.05, -0.05], rtol=1e-6)
    np.testing.assert_allclose(new["zero"]["kernel"], [-1e-3, 1e-3], rtol=1e-6)
    np.testing.assert_allclose(new["label"]["embedding"], [[0.88, 0.98], [0.1 * r2, 2 - 0.14 * r2]], rtol=1e-6)
    np.testing.assert_allclose(new["norm"]["scale"], [1.0, 1.99], rtol=1e-6)
    np.testing.assert_allclose(state.mu["dense"]["kernel"], 0.1 * grads["dense"]["kernel"], rtol=1e-6)
    np.testing.assert_array_equal(state.mu["norm"]["scale"], [0.0, 0.0])
    # A kernel with an infinite gradient shrinks towards 0: 0.99 w.
    grads["dense"]["kernel"] = jnp.array([[jnp.inf, 0.0], [0.0, 0.0]])
    updates, _ = tx.update(grads, state, new)
    np.testing.assert_allclose(optax.apply_updates(new, updates)["dense"]["kernel"],
                               0.99 * np.asarray(new["dense"]["kernel"]), rtol=1e-6)


def test_tiger_rms_trains_an_nnx_network_through_make_optimizer():
    """The article's form through the config's name on flax NNX state (roles from NNX names): a tiny
    regression's loss falls, the LayerNorm scale is a gain and the Embed table an embedding."""
    from flax import nnx

    from genflow.training.optim import tiger_role

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(3, 4, rngs=rngs)
            self.norm = nnx.LayerNorm(4, rngs=rngs)
            self.out = nnx.Linear(4, 1, rngs=rngs)

        def __call__(self, y):
            return self.out(self.norm(self.embed(y)))[:, 0]

    net = Net(nnx.Rngs(0))
    graphdef, params = nnx.split(net, nnx.Param)
    roles = {jax.tree_util.keystr(p): tiger_role(p, x) for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    assert sorted(set(roles.values())) == ["bias", "embedding", "gain", "tensor"], roles
    y, target = jnp.array([0, 1, 2]), jnp.array([1.0, -1.0, 2.0])

    def loss(p):
        return jnp.mean((nnx.merge(graphdef, p)(y) - target) ** 2)

    tx = make_optimizer("tiger_rms", 3e-2, b1=0.9, warmup_steps=0, grad_clip=1.0)
    state, first = tx.init(params), float(loss(params))
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
    for _ in range(60):
        updates, state = step(params, state)
        params = optax.apply_updates(params, updates)
    assert float(loss(params)) < 0.2 * first, (first, float(loss(params)))
