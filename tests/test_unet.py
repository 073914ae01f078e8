"""Tests of the DDPM++ U-Net (CPU, tiny configurations; the full one is only shape-evaluated)."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genflow.models.unet import UNet

TINY = dict(channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,))
SHAPE = (8, 8, 3)


def _inputs(b=2):
    kx, kt = jax.random.split(jax.random.key(0))
    return jax.random.normal(kx, (b, *SHAPE)), jax.random.uniform(kt, (b,))


def _perturb(model, scale=0.1, seed=1):
    """Add noise to every parameter, so near-zero-initialised output layers pass signal."""
    params = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [p + scale * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
    nnx.update(model, jax.tree.unflatten(treedef, leaves))


def test_shape_eval_determinism_and_dropout():
    model = UNet(SHAPE, dropout=0.5, **TINY, rngs=nnx.Rngs(params=0, dropout=1))
    _perturb(model)
    x, t = _inputs()
    y1 = model(x, t)
    assert y1.shape == x.shape and y1.dtype == x.dtype
    nnx.reseed(model, dropout=2)
    y2 = model(x, t)
    assert not np.allclose(y1, y2)
    nnx.reseed(model, dropout=1)
    np.testing.assert_array_equal(model(x, t), y1)

    model.eval()
    np.testing.assert_array_equal(model(x, t), model(x, t))
    nnx.reseed(model, dropout=3)
    e = model(x, t)
    model.train()
    assert not np.allclose(model(x, t), e)
    np.testing.assert_array_equal(nnx.view(model, deterministic=True)(x, t), e)


def test_no_dropout_with_plain_rngs_and_bf16():
    model = UNet(SHAPE, **TINY, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    x, t = _inputs()
    y = model(x, t)
    assert y.shape == x.shape and y.dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_jit_split_merge_and_grad():
    model = UNet(SHAPE, dropout=0.1, **TINY, rngs=nnx.Rngs(params=0, dropout=1))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x, t = _inputs()

    @jax.jit
    def step(params, rest, x, t):
        def loss(p):
            m = nnx.merge(graphdef, p, rest)
            return jnp.mean((m(x, t) - x) ** 2)
        return jax.value_and_grad(loss)(params)

    val, grads = step(params, rest, x, t)
    assert np.isfinite(val)
    g = jax.tree.leaves(grads)
    assert len(g) == len(jax.tree.leaves(params))
    assert all(np.all(np.isfinite(a)) for a in g)
    assert any(float(jnp.abs(a).max()) > 0 for a in g)


def test_cifar_param_count():
    model = nnx.eval_shape(lambda: UNet((32, 32, 3), rngs=nnx.Rngs(0)))
    n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    print(f"DDPM++ CIFAR-10 UNet parameters: {n:,}")
    assert abs(n - 55_733_763) / 55_733_763 < 0.05


def test_labels_change_output():
    model = UNet(SHAPE, num_classes=10, **TINY, rngs=nnx.Rngs(0))
    _perturb(model)
    x, t = _inputs()
    y0 = model(x, t, jnp.array([0, 0]))
    y1 = model(x, t, jnp.array([3, 3]))
    assert y0.shape == x.shape
    assert not np.allclose(y0, y1)
    assert not np.allclose(model(x, t), y0)  # cond=None: no label
