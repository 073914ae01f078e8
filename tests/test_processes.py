"""Every process against closed forms: derivatives, the SDE identity, forward-SDE marginals."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

from genflow.processes import DDPM, VP
from tests.helpers import ALL_PROCESSES, IDS


def interior_times(process, n=9):
    # Off DDPM's knots t = k/K, where its piecewise derivative jumps.
    lo = max(process.t_min, 1e-3)
    return jnp.linspace(lo, 1.0, n + 2)[1:-1] + 0.37 / 1000


@pytest.mark.parametrize("process", ALL_PROCESSES, ids=IDS)
def test_closed_form_derivatives_match_jvp(process, x64):
    t = interior_times(process)
    for value, deriv in [(process.alpha, process.alpha_dot), (process.sigma, process.sigma_dot)]:
        _, tangent = jax.jvp(value, (t,), (jnp.ones_like(t),))
        assert_allclose(deriv(t), tangent, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("process", ALL_PROCESSES, ids=IDS)
def test_variance_identity_by_finite_differences(process, x64):
    # d(sigma^2)/dt = 2 f sigma^2 + g^2 (seed equations, section 2), central differences, h = 1e-6.
    t, h = interior_times(process), 1e-6
    fd = (process.sigma(t + h) ** 2 - process.sigma(t - h) ** 2) / (2 * h)
    rhs = 2 * process.f(t) * process.sigma(t) ** 2 + process.g2(t)
    assert_allclose(fd, rhs, rtol=1e-6)


@pytest.mark.parametrize("process", ALL_PROCESSES, ids=IDS)
def test_forward_sde_paths_have_the_path_marginals(process, x64):
    """Simulate dx = f x dt + g dW from the exact x_{t_a} to t_b and compare mean and variance.

    x0 = 1.5 fixed, so x_{t_b} ~ N(alpha(t_b) 1.5, sigma(t_b)^2). The simulation is exact in
    distribution per step for the linear SDE when coefficients are frozen; with 400
    midpoint steps the bias is far below the Monte-Carlo tolerance (5 standard errors).
    """
    n_paths, n_steps, x0 = 20_000, 400, 1.5
    t_a, t_b = max(process.t_min, 0.02), 0.9
    ts = jnp.linspace(t_a, t_b, n_steps + 1)
    key = jax.random.PRNGKey(0)
    x = process.alpha(t_a) * x0 + process.sigma(t_a) * jax.random.normal(key, (n_paths,))

    def step(x, inp):
        t, s, k = inp
        m = 0.5 * (t + s)
        # exact for frozen f: mean factor exp(f dt), variance g^2 (e^{2 f dt} - 1) / (2 f)
        f, g2, dt = process.f(m), process.g2(m), s - t
        decay = jnp.exp(f * dt)
        var = jnp.where(jnp.abs(f * dt) > 1e-12, g2 * jnp.expm1(2 * f * dt) / (2 * f), g2 * dt)
        return decay * x + jnp.sqrt(var) * jax.random.normal(k, x.shape), None

    keys = jax.random.split(jax.random.PRNGKey(1), n_steps)
    x, _ = jax.lax.scan(step, x, (ts[:-1], ts[1:], keys))
    mean, sd = float(process.alpha(t_b) * x0), float(process.sigma(t_b))
    se_mean, se_var = sd / math.sqrt(n_paths), sd**2 * math.sqrt(2.0 / n_paths)
    assert abs(float(jnp.mean(x)) - mean) < 5 * se_mean + 1e-3 * abs(mean)
    assert abs(float(jnp.var(x)) - sd**2) < 5 * se_var + 2e-3 * sd**2


@pytest.mark.parametrize("process", ALL_PROCESSES, ids=IDS)
def test_log_snr_inverts(process, x64):
    t = interior_times(process)
    assert_allclose(process.t_from_log_snr(process.log_snr(t)), t, atol=1e-9)


@pytest.mark.parametrize("process", ALL_PROCESSES, ids=IDS)
def test_prior_logp_is_the_normal_density(process, x64):
    from scipy.stats import norm

    x = process.prior(jax.random.PRNGKey(0), (5, 3, 2), jnp.float64)
    s = float(process.sigma(1.0))
    expected = norm.logpdf(np.asarray(x), scale=s).reshape(5, -1).sum(1)
    assert_allclose(process.prior_logp(x), expected, rtol=1e-10)
    assert x.shape == (5, 3, 2)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddpm_knots_are_the_discrete_chain(schedule, x64):
    """x_k = a_k x_{k-1} + b_k eps_k gives abar_k = prod a_i and bbar_k^2 = 1 - abar_k^2 at t_k = k/K."""
    p = DDPM(num_steps=50, schedule=schedule)
    betas = np.asarray(p.betas(), np.float64)
    a, b = np.sqrt(1 - betas), np.sqrt(betas)
    mean, var = [1.0], [0.0]
    for k in range(50):  # moments of x_k given x0 = 1 through the recursion itself
        mean.append(a[k] * mean[-1])
        var.append(a[k] ** 2 * var[-1] + b[k] ** 2)
    tk = p.time_of_step(jnp.arange(51))
    assert_allclose(p.alpha(tk), mean, rtol=1e-10)
    assert_allclose(p.sigma(tk) ** 2, var, rtol=1e-10, atol=1e-14)
    assert_allclose(p.step_of_time(tk), np.arange(51))
    assert p.t_min == 1 / 50 and p.timesteps()[0] == 1.0 and p.timesteps()[-1] == 0.0


def test_ddpm_linear_is_the_vp_sde_in_the_limit(x64):
    """beta_k = beta(t_k)/K with beta_min = K beta_start, beta_max = K beta_end (Song et al. 2021, App. B).

    log abar differs from -B(t)/2 by the higher-order terms of log(1 - beta) = -beta - beta^2/2 - ...,
    at most sum (-log(1 - beta) - beta) / 2 (0.034 for the linear schedule), plus the O(1/K)
    Riemann-sum error of sum beta_k against B(t) (1e-3 is ample: beta_max / K = 0.02).
    """
    ddpm, vp = DDPM(num_steps=1000), VP(beta_min=0.1, beta_max=20.0)
    t = jnp.linspace(0.01, 1.0, 50)
    b = ddpm.betas()
    bound = 0.5 * float(jnp.sum(-jnp.log1p(-b) - b)) + 1e-3
    gap = jnp.abs(jnp.log(ddpm.alpha(t)) - jnp.log(vp.alpha(t)))
    assert float(gap.max()) <= bound
    assert float(gap[:10].max()) < 1e-3  # early on, where beta is small, they agree closely


def test_processes_are_pytrees_and_new_values_do_not_recompile():
    traces = []

    @jax.jit
    def g(process, t):
        traces.append(1)
        return process.sigma(t)

    g(VP(), 0.5)
    g(VP(beta_max=10.0), 0.5)
    assert len(traces) == 1
    assert float(g(VP(beta_max=10.0), 0.5)) != float(g(VP(), 0.5))


# -- DDPM schedules against diffusers (tests/data/diffusers_schedules.npz, from
#    tests/data/make_diffusers_schedules.py with diffusers 0.42.1) ------------------------------------

def _diffusers():
    import os

    return np.load(os.path.join(os.path.dirname(__file__), "data", "diffusers_schedules.npz"))


@pytest.mark.parametrize("name, process", [
    ("linear", DDPM()),
    ("scaled_linear", DDPM(schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)),
    ("squaredcos_cap_v2", DDPM(schedule="cosine")),
])
def test_ddpm_schedules_equal_diffusers(name, process, x64):
    """diffusers' 0-based timestep j is genflow's t = (j + 1) / K: alpha(t)^2 = alphas_cumprod[j].
    diffusers keeps alphas_cumprod in float32, a cumulative product of 1000 factors: relative
    error up to 1000 * 2^-24 = 6e-5, hence the 1e-4."""
    ref = _diffusers()[name]
    k = jnp.arange(1, 1001)
    np.testing.assert_allclose(np.asarray(process.alpha(process.time_of_step(k))) ** 2, ref, rtol=1e-4)


def test_ddpm_from_a_table_of_betas_or_alphas_cumprod(x64):
    f = _diffusers()
    p = DDPM.from_betas(f["trained_betas"])
    assert p.num_steps == 200 and p.schedule == "table"
    k = jnp.arange(1, 201)
    np.testing.assert_allclose(np.asarray(p.alpha(p.time_of_step(k))) ** 2, f["trained"], rtol=1e-5)  # 200 factors
    np.testing.assert_allclose(p.betas(), f["trained_betas"], rtol=1e-9)   # a beta of 3e-6 from a log difference
    acp = np.cumprod(1.0 - f["trained_betas"])
    q = DDPM.from_alphas_cumprod(acp)
    np.testing.assert_allclose(np.asarray(q.alpha(q.time_of_step(k))) ** 2, acp, rtol=1e-14)   # exact knots
    np.testing.assert_allclose(q.log_alpha_knots(), p.log_alpha_knots(), rtol=1e-12)
    with pytest.raises(ValueError, match="decrease strictly"):
        DDPM.from_alphas_cumprod([0.9, 0.95, 0.5])
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        DDPM.from_betas([0.1, 1.5])
    with pytest.raises(ValueError, match="unknown DDPM schedule 'quadratic'"):
        DDPM(schedule="quadratic")


def test_a_table_schedule_is_a_leaf_and_samples(x64):
    """A new table of the same length does not recompile a sampler, and DDPM's ancestral sampler
    on it is exact for a point mass."""
    from genflow.data import GaussianMixture
    from genflow.samplers import ancestral

    acp = np.cumprod(1.0 - np.linspace(1e-3, 0.05, 40))
    mean = jnp.array([1.5, -0.5])
    for table in (acp, acp ** 1.1):
        p = DDPM.from_alphas_cumprod(table)
        model = GaussianMixture.gaussian(mean, jnp.zeros(2)).exact_model(p, "eps")
        x, _ = ancestral(model, p.prior(jax.random.PRNGKey(0), (8, 2), jnp.float64), p.timesteps(),
                         key=jax.random.PRNGKey(1))
        np.testing.assert_allclose(x, jnp.broadcast_to(mean, x.shape), atol=1e-9)
        if table is acp:
            size = ancestral.jitted._cache_size()
    assert ancestral.jitted._cache_size() == size
