"""Guidance as a Model wrapper, checked against the closed-form conditional mixture.

Label c of the conditional 8-Gaussians model is component c, and the null label 8 the whole
mixture, so p_t(x | c) and p_t(x) are known exactly at every t and so is the guided score
(1 + w) grad log p_t(x | c) - w grad log p_t(x) (Ho & Salimans 2022, eq. 6).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

from genflow.data import GaussianMixture
from genflow.metrics import energy_distance
from genflow.models import Guided, Model, edm
from genflow.processes import VE, VP, RectifiedFlow
from genflow.samplers import SAMPLERS, ddim, dpm_solver_pp_2m, euler_ode, grids
from tests.helpers import tiered

MIX = GaussianMixture.eight_gaussians()
PROCESSES = [VP(), VE(), RectifiedFlow()]


def points(process, n=16):
    t = jnp.linspace(0.1, 0.9, n)
    x = process.sample(MIX.sample(jax.random.PRNGKey(0), n), t, jax.random.normal(jax.random.PRNGKey(1), (n, 2)))
    return x, t, jnp.arange(n) % 8


@pytest.mark.parametrize("process", PROCESSES, ids=["vp", "ve", "rectified_flow"])
@pytest.mark.parametrize("predicts", ["eps", "velocity", "x0"])
def test_guided_score_is_the_closed_form(process, predicts, x64):
    x, t, c = points(process)
    model = MIX.exact_model(process, predicts, conditional=True)
    for w in (0.0, 1.0, 3.5):
        guided = Guided(model, w)
        expected = (1 + w) * MIX.score(x, process, t, c) - w * MIX.score(x, process, t)
        assert_allclose(guided.score(x, t, c), expected, rtol=1e-8, atol=1e-8)
        # eps space, as the convention is written
        e_c, e_u = model.eps(x, t, c), model.eps(x, t)
        assert_allclose(guided.eps(x, t, c), (1 + w) * e_c - w * e_u, rtol=1e-8, atol=1e-8)


def test_edm_parameterization_guides_the_same(x64):
    process = VP()
    x, t, c = points(process)
    a = Guided(MIX.exact_model(process, "eps", conditional=True), 2.0).x0(x, t, c)
    b = Guided(MIX.exact_model(process, edm(0.5), conditional=True), 2.0).x0(x, t, c)
    assert_allclose(a, b, rtol=1e-8, atol=1e-8)


def test_both_branches_are_one_batched_network_call():
    calls = []

    def net(x, t, cond):
        calls.append((x.shape[0], None if cond is None else np.asarray(cond)))
        return jnp.zeros_like(x)

    net.null_label = 8
    process = VP()
    x, t, c = points(process, 4)
    Guided(Model(net, process, "eps"), 1.0)(x, t, c)
    assert len(calls) == 1 and calls[0][0] == 8
    assert_allclose(calls[0][1], np.concatenate([np.asarray(c), np.full(4, 8)]))


def test_w0_samples_the_conditional_distribution():
    """w = 0 is the conditional model: its samples of label 3 are component 3, with the energy
    distance to fresh draws of that component within the Monte-Carlo floor (6 standard deviations
    of the null statistic, estimated from 8 pairs of independent draws; see test_samplers_suite)."""
    n, c = 2000, 3
    null = [float(energy_distance(MIX.sample_component(jax.random.PRNGKey(100 + i), n, c),
                                  MIX.sample_component(jax.random.PRNGKey(200 + i), n, c))) for i in range(8)]
    allowance = 6.0 * float(np.std(null, ddof=1))
    process = VP()
    model = Guided(MIX.exact_model(process, "eps", conditional=True), 0.0)
    x1 = process.prior(jax.random.PRNGKey(5), (n, 2))
    x, stats = dpm_solver_pp_2m(model, x1, grids.log_snr(process, 100), cond=jnp.full((n,), c), denoise=True)
    assert int(stats["nfe"]) == 101
    d = float(energy_distance(x, MIX.sample_component(jax.random.PRNGKey(9), n, c)))
    assert abs(d) < allowance, (d, allowance)
    # and it is not the unconditional mixture
    assert float(energy_distance(x, MIX.sample(jax.random.PRNGKey(9), n))) > 20 * allowance


def test_a_new_scale_or_interval_does_not_recompile():
    process = VP()
    model = MIX.exact_model(process, "eps", conditional=True)
    x1 = process.prior(jax.random.PRNGKey(0), (8, 2))
    ts = grids.uniform(process, 5)
    c = jnp.zeros((8,), jnp.int32)
    ddim(Guided(model, 1.0), x1, ts, cond=c)
    size = ddim.jitted._cache_size()
    ddim(Guided(model, 4.0), x1, ts, cond=c)
    ddim(Guided(model, 2.0, interval=(0.5, 3.0)), x1, ts, cond=c)
    assert ddim.jitted._cache_size() == size


def test_guidance_interval(x64):
    """Inside (s_lo, s_hi] the model is guided, outside it is the conditional model."""
    process = VP()
    x, t, c = points(process)
    model = MIX.exact_model(process, "eps", conditional=True)
    s = process.sigma(t) / process.alpha(t)
    lo, hi = float(s[4] + s[5]) / 2, float(s[11] + s[12]) / 2
    inside = (s > lo) & (s <= hi)
    g = Guided(model, 2.0, interval=(lo, hi))
    full = Guided(model, 2.0)
    expected = jnp.where(inside[:, None], full.eps(x, t, c), model.eps(x, t, c))
    assert_allclose(g.eps(x, t, c), expected, rtol=1e-10, atol=1e-10)
    assert 0 < int(jnp.sum(inside)) < len(t)


def test_autoguidance_is_the_combination_of_two_models(x64):
    """(1 + w) D_good - w D_guide in x0 space, also when the guide predicts something else."""
    process = VP()
    x, t, c = points(process)
    good = MIX.exact_model(process, "eps", conditional=True)
    weak_mix = GaussianMixture(MIX.means * 0.8, MIX.stds * 2.0, MIX.weights)
    for predicts in ("eps", "velocity"):
        weak = weak_mix.exact_model(process, predicts, conditional=True)
        g = Guided(good, 1.5, guide=weak)
        expected = 2.5 * good.x0(x, t, c) - 1.5 * weak.x0(x, t, c)
        assert_allclose(g.x0(x, t, c), expected, rtol=1e-8, atol=1e-8)


def linear_ramp(w, t, process):
    """A schedule: the full scale at t = 1, none at t = 0."""
    return w * t


def test_schedule_hook(x64):
    process = VP()
    x, t, c = points(process)
    model = MIX.exact_model(process, "eps", conditional=True)
    g = Guided(model, 2.0, schedule=linear_ramp)
    assert_allclose(g.scale(t), 2.0 * t)
    w = (2.0 * t)[:, None]
    assert_allclose(g.eps(x, t, c), (1 + w) * model.eps(x, t, c) - w * model.eps(x, t), rtol=1e-8, atol=1e-8)


def test_unconditional_call_is_the_unconditional_model(x64):
    process = VP()
    x, t, _ = points(process)
    model = MIX.exact_model(process, "eps", conditional=True)
    assert_allclose(Guided(model, 3.0).eps(x, t), MIX.exact_model(process, "eps").eps(x, t), rtol=1e-9)


def test_guidance_needs_a_null_label():
    with pytest.raises(ValueError, match="needs a class-conditional network with a null label"):
        Guided(MIX.exact_model(VP(), "eps"), 1.0)
    with pytest.raises(ValueError, match="s_lo < s_hi"):
        Guided(MIX.exact_model(VP(), "eps", conditional=True), 1.0, interval=(2.0, 1.0))


# Default run: the half of the registry that test_samplers_suite's NFE check leaves to the slow tier.
GUIDED_FAST = ["euler_maruyama", "pc", "edm_euler", "euler_ancestral", "dpm_2_ancestral", "ipndm",
               "dpm_solver_pp_2s_ancestral", "dpm_solver_pp_3m", "dpm_solver_pp_3m_sde", "dopri5"]
CONTINUOUS = [name for name, info in SAMPLERS.items() if not info.ddpm_only]


@pytest.mark.parametrize("name", tiered(CONTINUOUS, CONTINUOUS, fast=GUIDED_FAST))
def test_every_sampler_accepts_a_guided_model(name):
    process = VP()
    model = Guided(MIX.exact_model(process, "eps", conditional=True), 1.0)
    x1 = process.prior(jax.random.PRNGKey(0), (4, 2))
    x, stats = SAMPLERS[name].fn(model, x1, grids.uniform(process, 4), key=jax.random.PRNGKey(1), cond=jnp.arange(4))
    assert x.shape == x1.shape and bool(jnp.all(jnp.isfinite(x))), name
    assert int(stats["nfe"]) > 0


def test_a_guided_model_samples_without_a_key():
    process = VP()
    model = Guided(MIX.exact_model(process, "eps", conditional=True), 1.0)
    x, _ = euler_ode(model, process.prior(jax.random.PRNGKey(0), (4, 2)), grids.uniform(process, 4), cond=jnp.arange(4))
    assert bool(jnp.all(jnp.isfinite(x)))
