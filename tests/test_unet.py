"""Tests of the DDPM++ U-Net (CPU, tiny configurations; the full one is only shape-evaluated).

Tiny models are built with ``nnx.eval_shape`` and filled from numpy: the real initialisers
are correct but compiling ~100 threefry calls costs tens of seconds on a small CPU.
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genflow.models.unet import UNet

TINY = dict(channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,))
SHAPE = (8, 8, 3)


def _tiny(seed=0, streams=None, **kw):
    """A tiny UNet with random N(0, 0.1^2) parameters (so the near-zero-initialised output
    layers pass signal), fresh RNG keys and zero RNG counts; ``streams`` names the nnx.Rngs
    streams (default: ``nnx.Rngs(0)``)."""
    make_rngs = lambda: nnx.Rngs(0) if streams is None else nnx.Rngs(**streams)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: UNet(SHAPE, **TINY, **kw, rngs=make_rngs())))
    rng = np.random.default_rng(seed)

    def fill(x):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key(int(rng.integers(2**31)))
        if jnp.issubdtype(x.dtype, jnp.integer):
            return jnp.zeros(x.shape, x.dtype)
        return jnp.asarray(0.1 * rng.standard_normal(x.shape), x.dtype)

    return nnx.merge(graphdef, jax.tree.map(fill, state))


@nnx.jit
def _fwd(model, x, t, cond=None):
    """Jitted forward; nnx.jit carries the dropout RNG updates back to ``model``."""
    return model(x, t, cond)


def _inputs(b=2):
    kx, kt = jax.random.split(jax.random.key(0))
    return jax.random.normal(kx, (b, *SHAPE)), jax.random.uniform(kt, (b,))


def test_shape_eval_determinism_and_dropout():
    model = _tiny(dropout=0.5, streams=dict(params=0, dropout=1))
    x, t = _inputs()
    nnx.reseed(model, dropout=1)
    y1 = _fwd(model, x, t)
    assert y1.shape == x.shape and y1.dtype == x.dtype
    assert not np.allclose(_fwd(model, x, t), y1)  # the dropout streams advance per call
    nnx.reseed(model, dropout=2)
    assert not np.allclose(_fwd(model, x, t), y1)
    nnx.reseed(model, dropout=1)  # reseeding reproduces the masks
    np.testing.assert_array_equal(_fwd(model, x, t), y1)

    model.eval()
    e = _fwd(model, x, t)
    nnx.reseed(model, dropout=3)
    np.testing.assert_array_equal(_fwd(model, x, t), e)
    model.train()
    assert not np.allclose(_fwd(model, x, t), e)
    np.testing.assert_array_equal(_fwd(nnx.view(model, deterministic=True), x, t), e)


def test_no_dropout_with_plain_rngs_and_bf16():
    model = _tiny(dtype=jnp.bfloat16)  # dropout=0 with nnx.Rngs(0): no 'dropout' stream needed
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    x, t = _inputs()
    y = _fwd(model, x, t)
    assert y.shape == x.shape and y.dtype == jnp.float32 and np.all(np.isfinite(y))


def test_jit_split_merge_and_grad():
    model = _tiny(dropout=0.1, streams=dict(params=0, dropout=1))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x, t = _inputs()

    @jax.jit
    def step(params, rest, x, t):
        def loss(p):
            # copy=True: dropout advances its RngCount, which must not be a Variable of the
            # outer (jit) trace while inside the grad trace.
            m = nnx.merge(graphdef, p, rest, copy=True)
            return jnp.mean((m(x, t) - x) ** 2), nnx.state(m, nnx.Not(nnx.Param))
        return jax.value_and_grad(loss, has_aux=True)(params)

    (val, new_rest), grads = step(params, rest, x, t)
    assert np.isfinite(val)
    counts = lambda r: [int(c) for c in jax.tree.leaves(nnx.state(r, nnx.RngCount))]
    assert counts(rest) and counts(new_rest) == [c + 1 for c in counts(rest)]
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
    model = _tiny(num_classes=10)
    x, t = _inputs()
    y0 = _fwd(model, x, t, jnp.array([0, 0]))
    y1 = _fwd(model, x, t, jnp.array([3, 3]))
    assert y0.shape == x.shape
    assert not np.allclose(y0, y1)
    assert not np.allclose(_fwd(model, x, t), y0)  # cond=None: no label
