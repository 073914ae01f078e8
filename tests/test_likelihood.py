"""PF-ODE log-likelihood against the exact log-density of Gaussian-mixture data, and bits/dim."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.data import GaussianMixture
from genflow.processes import DDPM, EDM, VE, VP, RectifiedFlow, SubVP
from genflow.samplers import bits_per_dim, log_likelihood
from tests.helpers import tiered

PROCESSES = [VP(), SubVP(), VE(), EDM(), RectifiedFlow()]
IDS = ["vp", "subvp", "ve", "edm", "rectified_flow"]


def eight_gaussians():
    d = GaussianMixture.eight_gaussians()                 # float64 under the x64 fixture
    return GaussianMixture(*(jnp.asarray(a, jnp.result_type(float)) for a in (d.means, d.stds, d.weights)))


def points(data, n=8):
    return data.sample(jax.random.PRNGKey(0), n)


@pytest.mark.parametrize("process", tiered(PROCESSES, IDS, fast=["vp", "ve", "rectified_flow"]))
def test_exact_trace_recovers_the_mixture_log_density(process, x64):
    # log p_{t_min}(x) = log p_1(x_1) + int div v: with the exact velocity and the exact log p_1 of
    # the blurred mixture, the only error is the ODE solver's (tolerance 1e-8 -> ~1e-6 in logp).
    data = eight_gaussians()
    x0 = points(data)
    exact_p1 = lambda x1: data.log_prob(x1, process, process.t_max)
    logp, stats = log_likelihood(data.exact_model(process, "velocity"), x0, rtol=1e-8, atol=1e-8,
                                 prior_logp=exact_p1)
    np.testing.assert_allclose(logp, data.log_prob(x0, process, process.t_min), atol=1e-5)
    assert int(stats["nfe"]) == 6 * int(stats["num_steps"]) + 1


@pytest.mark.parametrize("process", [RectifiedFlow(), VE()], ids=["rectified_flow", "ve"])
def test_default_prior_where_it_is_exact_or_nearly(process, x64):
    # Rectified flow: p_1 = N(0, I) exactly. VE: N(0, s_max^2 I) ignores Var(x0) ~ 4 next to
    # s_max^2 = 2500, a log-density error of about D Var / (2 s_max^2) ~ 2e-3 (<< 1e-2).
    data = eight_gaussians()
    x0 = points(data)
    logp, _ = log_likelihood(data.exact_model(process, "velocity"), x0, rtol=1e-8, atol=1e-8)
    tol = 1e-5 if isinstance(process, RectifiedFlow) else 1e-2
    np.testing.assert_allclose(logp, data.log_prob(x0, process, process.t_min), atol=tol)


def test_gaussian_log_likelihood_on_the_ddpm_path(x64):
    # Seed claim (section 2): the PF-ODE log-likelihood of a Gaussian equals its closed form; here
    # on DDPM's piecewise path with 25 steps, whose 23 interior knots the solver steps onto
    # (at_jumps): there the vector field jumps and no error estimate sees the error of crossing.
    process = DDPM(num_steps=25, schedule="cosine")
    data = GaussianMixture.gaussian(jnp.array([2.0, -1.0]), jnp.array([0.5, 1.5]))
    x0 = data.sample(jax.random.PRNGKey(0), 8)
    exact_p1 = lambda x1: data.log_prob(x1, process, 1.0)
    model = data.exact_model(process, "eps")
    logp, stats = log_likelihood(model, x0, rtol=1e-8, atol=1e-8, prior_logp=exact_p1, at_jumps=True)
    exact = data.log_prob(x0, process, process.t_min)
    np.testing.assert_allclose(logp, exact, atol=1e-6)
    assert int(stats["num_steps"]) >= 24          # at least one step per piece
    crossing, _ = log_likelihood(model, x0, rtol=1e-8, atol=1e-8, prior_logp=exact_p1)
    assert np.max(np.abs(crossing - exact)) > 3 * np.max(np.abs(logp - exact))   # the knots matter


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(probe, x64):
    # Each probe is fixed along its path and the path of x does not depend on it, so
    # E_v[int v^T J v dt] = int tr J dt: the probe mean matches the exact trace within 5 standard
    # errors (estimated from the 256 per-probe values of each point).
    process, data = VP(), eight_gaussians()
    x0 = points(data, 4)
    model = data.exact_model(process, "eps")
    exact, _ = log_likelihood(model, x0, rtol=1e-7, atol=1e-7)
    est, stats = log_likelihood(model, x0, trace="hutchinson", key=jax.random.PRNGKey(3), probe=probe,
                                num_probes=256, rtol=1e-7, atol=1e-7)
    per_probe = stats["logp_per_probe"]
    assert per_probe.shape == (256, 4)
    np.testing.assert_allclose(est, per_probe.mean(0), rtol=1e-12)
    se = per_probe.std(0, ddof=1) / math.sqrt(256)
    assert bool(jnp.all(jnp.abs(est - exact) < 5 * se + 1e-5)), (est, exact, se)
    assert bool(jnp.all(se > 0))                      # a mixture's Jacobian is not diagonal: real noise


def test_rademacher_hutchinson_is_exact_for_a_diagonal_jacobian(x64):
    # Diagonal Gaussian data: the PF-ODE velocity is affine per coordinate, J is diagonal, and
    # v^T J v = tr J for every Rademacher v (v_i^2 = 1). One probe gives the exact answer.
    process = VP()
    data = GaussianMixture.gaussian(jnp.array([1.0, -2.0, 0.5]), jnp.array([0.3, 1.0, 2.0]))
    x0 = data.sample(jax.random.PRNGKey(0), 8)
    model = data.exact_model(process, "eps")
    exact, _ = log_likelihood(model, x0, rtol=1e-8, atol=1e-8)
    one, _ = log_likelihood(model, x0, trace="hutchinson", key=jax.random.PRNGKey(1), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(one, exact, atol=1e-6)


def test_log_likelihood_compiles_once_and_rejects_bad_arguments():
    data = eight_gaussians()
    x0 = jnp.ones((4, 2))
    # (keywords passed or left out change the argument pytree, so both calls pass the same ones)
    log_likelihood(data.exact_model(VP(), "eps"), x0, t0=0.001, rtol=1e-5)
    size = log_likelihood._cache_size()
    log_likelihood(data.exact_model(VP(beta_max=15.0), "eps"), 2 * x0, t0=0.01, rtol=1e-4)
    assert log_likelihood._cache_size() == size
    with pytest.raises(ValueError, match="draws probes"):
        log_likelihood(data.exact_model(VP(), "eps"), x0, trace="hutchinson")
    with pytest.raises(ValueError, match="unknown trace"):
        log_likelihood(data.exact_model(VP(), "eps"), x0, trace="jacobian")


def test_bits_per_dim_of_the_uniform_density_is_eight_bits():
    # z uniform on [-1, 1]^D: log p_z = -D log 2, so bpd = 1 + 7 = 8 bits, exactly the 256 levels.
    d = 3 * 32 * 32
    assert float(bits_per_dim(jnp.array(-d * math.log(2.0)), d)) == pytest.approx(8.0)
    # Per-example shape is kept; a density twice as high everywhere saves 1/D bit per dimension.
    out = bits_per_dim(jnp.array([-d * math.log(2.0), -d * math.log(2.0) + math.log(2.0)]), d)
    np.testing.assert_allclose(out, [8.0, 8.0 - 1.0 / d], rtol=1e-6)
