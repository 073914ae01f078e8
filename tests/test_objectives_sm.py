"""Exact, implicit and sliced score matching: hand-computed values on a tiny case, unbiased
trace estimators, and equality with the Fisher divergence up to the known constants."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow._pytree import pytree_dataclass
from genflow.data import GaussianMixture
from genflow.models import Model
from genflow.objectives import (denoising_score_matching, divergence, exact_score_matching,
                                implicit_score_matching, sliced_score_matching, sliced_score_matching_vr,
                                weighting)
from genflow.processes import VE, VP

T = 0.4
A = np.array([[-1.3, 0.4], [0.2, -0.7]])
B = np.array([0.3, -0.1])


def fixed_time(t):
    # a strongly typed float64 t (a weak-typed one would promote the process's float32 constants down)
    return lambda key, n, process: jnp.full((n,), t, dtype=jax.dtypes.canonicalize_dtype(jnp.float64))


@pytree_dataclass
class LinearScore:
    """A network that outputs the score s(x) = A x + b directly (its Jacobian is A)."""
    a: jax.Array
    b: jax.Array

    def __call__(self, x, t, cond=None):
        return x @ self.a.T + self.b


def linear_score_model(process, a=A, b=B):
    return Model(LinearScore(jnp.asarray(a), jnp.asarray(b)), process, "score")


def hand_draws(process, x0, key, n_probes=None, probe="gaussian"):
    """The (x_t, probes) the objectives draw from ``key``, recomputed in numpy."""
    kt, ke = jax.random.split(key)
    eps = np.asarray(jax.random.normal(ke, x0.shape, x0.dtype))
    a, s = float(process.alpha(T)), float(process.sigma(T))
    xt = a * np.asarray(x0) + s * eps
    v = None
    if n_probes:
        kv = jax.random.fold_in(key, 0x5BCE5)  # the objectives' probe stream
        draw = jax.random.rademacher if probe == "rademacher" else jax.random.normal
        v = np.asarray(draw(kv, (n_probes,) + x0.shape, x0.dtype))
    return xt, v


def test_hand_computed_values_on_a_tiny_case(x64):
    process = VP()
    x0 = jnp.array([[0.5, -1.0], [1.5, 0.2]])
    key = jax.random.PRNGKey(7)
    model = linear_score_model(process)
    kw = dict(weighting=weighting.uniform, time_sampler=fixed_time(T))
    xt, v = hand_draws(process, x0, key, n_probes=3, probe="gaussian")
    s = xt @ A.T + B
    d = 2

    # exact SM against a made-up "true" score -x: mean_b sum_d (s + x)^2 / D
    loss, _ = exact_score_matching(model, x0, key, true_score=lambda x, t: -x, **kw)
    assert float(loss) == pytest.approx(np.mean(np.sum((s + xt) ** 2, 1)) / d, rel=1e-12)

    # implicit SM, exact trace: mean_b (||s||^2 + 2 tr A) / D
    loss, _ = implicit_score_matching(model, x0, key, trace="exact", **kw)
    assert float(loss) == pytest.approx(np.mean(np.sum(s**2, 1) + 2 * np.trace(A)) / d, rel=1e-12)

    # sliced SM: mean_b mean_k [2 v^T A v + (v^T s)^2] / D; VR form replaces (v^T s)^2 by ||s||^2
    vav = np.einsum("kbi,ij,kbj->kb", v, A, v)
    vs = np.einsum("kbi,bi->kb", v, s)
    loss, _ = sliced_score_matching(model, x0, key, probe="gaussian", n_probes=3, **kw)
    assert float(loss) == pytest.approx(np.mean(2 * vav + vs**2) / d, rel=1e-12)
    loss, _ = sliced_score_matching_vr(model, x0, key, probe="gaussian", n_probes=3, **kw)
    assert float(loss) == pytest.approx(np.mean(2 * vav.mean(0) + np.sum(s**2, 1)) / d, rel=1e-12)

    # implicit SM with Rademacher Hutchinson probes
    _, v = hand_draws(process, x0, key, n_probes=4, probe="rademacher")
    vav = np.einsum("kbi,ij,kbj->kb", v, A, v)
    loss, _ = implicit_score_matching(model, x0, key, trace="rademacher", n_probes=4, **kw)
    assert float(loss) == pytest.approx(np.mean(np.sum(s**2, 1) + 2 * vav.mean(0)) / d, rel=1e-12)


def test_weightings_are_moved_onto_the_score_error(x64):
    """A weighting in eps space is sigma^2 on the score error; likelihood is g^2."""
    process = VE()
    x0 = jnp.array([[0.5, -1.0]])
    key = jax.random.PRNGKey(1)
    model = linear_score_model(process)
    true = lambda x, t: -x
    loss = lambda w: float(exact_score_matching(model, x0, key, true_score=true, weighting=w,
                                                time_sampler=fixed_time(T))[0])
    base, t = loss(weighting.uniform), fixed_time(T)(None, 1, process)
    assert loss(weighting.eps) == pytest.approx(base * float(process.sigma(t)[0]) ** 2, rel=1e-12)
    assert loss(weighting.sigma2) == pytest.approx(base * float(process.sigma(t)[0]) ** 2, rel=1e-12)
    assert loss(weighting.likelihood) == pytest.approx(base * float(process.g2(t)[0]), rel=1e-12)


def nonlinear_map(x):
    """A batched map acting on each example alone, with a non-symmetric Jacobian; x (B, 2, 3)."""
    w = jnp.arange(36.0).reshape(6, 6) / 40.0 - 0.4
    flat = x.reshape(x.shape[0], -1)
    return (jnp.tanh(flat @ w) + 0.3 * flat**2).reshape(x.shape)


@pytest.mark.parametrize("trace", ["rademacher", "gaussian"])
def test_hutchinson_trace_is_unbiased(trace, x64):
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 3))
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda y: nonlinear_map(y[None])[0].reshape(-1))))(x).reshape(3, 6, 6)
    exact = np.trace(np.asarray(jac), axis1=1, axis2=2)
    y, div = jax.jit(lambda x: divergence(nonlinear_map, x, trace="exact"))(x)
    np.testing.assert_allclose(div, exact, rtol=1e-12)
    np.testing.assert_allclose(y, nonlinear_map(x), rtol=1e-12)
    # many independent single-probe estimates: their mean is within 5 standard errors of the trace
    n = 4000
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    est = np.asarray(jax.jit(jax.vmap(lambda k: divergence(nonlinear_map, x, k, trace=trace)[1]))(keys))  # (n, 3)
    se = est.std(0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(est.mean(0) - exact) <= 5 * se), (est.mean(0), exact, se)
    assert np.all(se > 0)
    # and n_probes averages them: its single draw equals the mean of its own probes
    _, div_many = jax.jit(lambda k: divergence(nonlinear_map, x, k, trace=trace, n_probes=n))(jax.random.PRNGKey(2))
    assert np.all(np.abs(np.asarray(div_many) - exact) <= 5 * se * 1.0001)


def test_objectives_equal_the_fisher_divergence_up_to_their_constants(x64):
    """At fixed t on Gaussian data N(m, s0^2 I): grad log p_t = -(x - a m) / v, v = a^2 s0^2 + sigma^2.
    With sigma^2 weighting and D dims: SM - ISM = sigma^2 E||grad log p_t||^2 / D = sigma^2 / v and
    DSM - SM = 1 - sigma^2 / v, whatever the model (checked for three, common random numbers)."""
    process, m, s0, n = VP(), 0.7, 0.5, 40_000
    data = GaussianMixture.gaussian(jnp.full((2,), m), jnp.full((2,), s0))
    x0 = data.sample(jax.random.PRNGKey(0), n)
    a, sig = float(process.alpha(T)), float(process.sigma(T))
    v = a**2 * s0**2 + sig**2
    true = lambda x, t: data.score(x, process, t)
    kw = dict(weighting=weighting.sigma2, time_sampler=fixed_time(T))
    key = jax.random.PRNGKey(3)
    models = [linear_score_model(process), linear_score_model(process, -0.5 * A, 2 * B),
              data.exact_model(process, "eps")]

    @jax.jit
    def losses(model):
        return (exact_score_matching(model, x0, key, true_score=true, **kw)[0],
                implicit_score_matching(model, x0, key, **kw)[0],
                sliced_score_matching(model, x0, key, n_probes=2, **kw)[0],
                sliced_score_matching_vr(model, x0, key, probe="rademacher", **kw)[0],
                denoising_score_matching(model, x0, key, **kw)[0])

    for model in models:
        sm, ism, ssm, ssm_vr, dsm = map(float, losses(model))
        # generous MC tolerances: per-example terms are O(1) with n = 40,000 (sd of a mean ~ 0.005-0.02)
        assert sm - ism == pytest.approx(sig**2 / v, abs=0.03), (sm, ism)
        assert sm - ssm == pytest.approx(sig**2 / v, abs=0.08), (sm, ssm)
        assert sm - ssm_vr == pytest.approx(sig**2 / v, abs=0.03), (sm, ssm_vr)
        assert dsm - sm == pytest.approx(1 - sig**2 / v, abs=0.03), (dsm, sm)
    # the exact model's Fisher divergence is zero
    assert float(exact_score_matching(models[2], x0, key, true_score=true, **kw)[0]) == pytest.approx(0, abs=1e-20)


def test_unknown_estimators_are_rejected():
    process = VP()
    model = linear_score_model(process)
    x0 = jnp.zeros((2, 2))
    with pytest.raises(ValueError, match="unknown trace estimator 'hutch'"):
        implicit_score_matching(model, x0, jax.random.PRNGKey(0), trace="hutch")
    with pytest.raises(ValueError, match="unknown probe 'sphere'"):
        sliced_score_matching(model, x0, jax.random.PRNGKey(0), probe="sphere")
