"""The solver suite against exact answers: Gaussian and Gaussian-mixture data with the exact model.

Deterministic checks carry most of the weight (point-mass exactness, the DDPM recursion's
linear coefficient, DDIM(eta=1) == ancestral bit for bit, orders as slopes); the energy-distance
checks confirm that each sampler as a whole lands on the 8-Gaussians mixture.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.data import GaussianMixture
from genflow.metrics import energy_distance
from genflow.models.model import Model
from genflow.processes import DDPM, EDM, VE, VP, RectifiedFlow
from genflow.samplers import (ancestral, ddim, dpm_2, dpm_2_ancestral, dpm_solver_pp_2m, dpm_solver_pp_2m_sde,
                              dpm_solver_pp_2s_ancestral, dpm_solver_pp_3m, dpm_solver_pp_3m_sde, edm_euler, edm_heun,
                              euler_ancestral, grids, ipndm, lms, ode_sample, predictor_corrector, sde_sample, unipc)
from genflow.samplers import SAMPLERS
from genflow.samplers import euler_maruyama as euler_maruyama_
from tests.helpers import ALL_PROCESSES, IDS, tiered, tiered_product

N = 2000  # samples per energy-distance check
M, S = 2.0, 0.5


def eight_gaussians():
    d = GaussianMixture.eight_gaussians()                 # float64 under the x64 fixture
    return GaussianMixture(*(jnp.asarray(a, jnp.result_type(float)) for a in (d.means, d.stds, d.weights)))


def gaussian_transport(process, x1, t_end, m=M, s=S):
    """The PF-ODE of N(m, s^2) data is affine: (x - alpha m) / sqrt(alpha^2 s^2 + sigma^2) is constant."""
    sd = lambda t: jnp.sqrt(process.alpha(t) ** 2 * s**2 + process.sigma(t) ** 2)
    return process.alpha(t_end) * m + sd(t_end) * (x1 - process.alpha(1.0) * m) / sd(1.0)


# -- grids --------------------------------------------------------------------------------------

@pytest.mark.parametrize("process", ALL_PROCESSES, ids=IDS)
def test_grids_run_from_t_max_to_t_min_and_decrease(process, x64):
    for ts in (grids.uniform(process, 12), grids.karras(process, 12), grids.log_snr(process, 12)):
        assert ts.shape == (13,)
        assert float(ts[0]) == process.t_max and float(ts[-1]) == process.t_min
        assert bool(jnp.all(jnp.diff(ts) < 0)), ts


def test_karras_grid_is_uniform_in_t_for_edm_and_log_snr_grid_is_uniform_in_lambda(x64):
    # EDM's sigma(t) is the Karras schedule itself, so Karras spacing in sigma is uniform in t.
    np.testing.assert_allclose(grids.karras(EDM(), 18), grids.uniform(EDM(), 18), atol=1e-12)
    lam = VP().log_snr(grids.log_snr(VP(), 10))
    np.testing.assert_allclose(jnp.diff(lam), jnp.full(10, (lam[-1] - lam[0]) / 10), rtol=1e-9)
    # Karras eq. 5 in the noise level s = sigma / alpha, checked on VP.
    p, rho = VP(), 7.0
    s = p.sigma(grids.karras(p, 10, rho)) / p.alpha(grids.karras(p, 10, rho))
    r = s ** (1 / rho)
    np.testing.assert_allclose(jnp.diff(r), jnp.full(10, (r[-1] - r[0]) / 10), rtol=1e-9)


# -- exactness on a point mass: catches any off-by-one in the time grid -------------------------

POINT_MASS_SAMPLERS = [ddim, edm_euler, edm_heun, dpm_solver_pp_2m, dpm_2, lms, dpm_solver_pp_3m,
                       lambda m, x, ts: dpm_solver_pp_2m_sde(m, x, ts, eta=0.0),
                       lambda m, x, ts: euler_ancestral(m, x, ts, eta=0.0),
                       lambda m, x, ts: dpm_solver_pp_2s_ancestral(m, x, ts, eta=0.0),
                       unipc, lambda m, x, ts: unipc(m, x, ts, variant="bh1", order=2), ipndm]
POINT_MASS_IDS = ["ddim", "edm_euler", "edm_heun", "dpm_solver_pp_2m", "dpm_2", "lms", "dpm_solver_pp_3m",
                  "dpm_solver_pp_2m_sde_eta0", "euler_ancestral_eta0", "dpm_solver_pp_2s_eta0",
                  "unipc_bh2_3", "unipc_bh1_2", "ipndm"]


# Default run: every sampler on the discrete DDPM chain (whose knots catch an off-by-one first) and
# on one other process in turn, so every process meets at least one multistep and one single-step
# sampler; GENFLOW_SLOW=1 checks the whole grid.
@pytest.mark.parametrize("sampler, process", tiered_product(
    POINT_MASS_SAMPLERS, POINT_MASS_IDS, ALL_PROCESSES, IDS, fast=lambda i, j: j == 5 or j == i % 7))
def test_deterministic_samplers_are_exact_for_a_point_mass(process, sampler, x64):
    # For data at one point m, x0_hat = m and eps_hat = (x - alpha m) / sigma are exact, and the
    # PF-ODE keeps (x - alpha m) / sigma constant; each of these steps keeps it constant too, in
    # any number of steps. Evaluating the model one grid point off (t vs s) breaks this.
    mean = jnp.array([1.5, -0.5])
    data = GaussianMixture.gaussian(mean, jnp.zeros(2))
    model = data.exact_model(process, "x0")            # regular at t = 1 for rectified flow too
    x1 = process.prior(jax.random.PRNGKey(0), (16, 2), jnp.float64)
    ts = grids.karras(process, 7)
    z = (x1 - process.alpha(1.0) * mean) / process.sigma(1.0)
    expected = process.alpha(ts[-1]) * mean + process.sigma(ts[-1]) * z
    scale = max(1.0, float(process.sigma(1.0)))
    np.testing.assert_allclose(sampler(model, x1, ts)[0], expected, atol=1e-11 * scale)


# -- DDPM: ancestral sampling ---------------------------------------------------------------------

def ddpm_moments(process, variance, m=M, s=S):
    """Closed-form mean/variance recursion of ancestral sampling with the exact eps of N(m, s^2).

    eps_hat(x_k) = bbar_k (x_k - abar_k m) / v_k with v_k = abar_k^2 s^2 + bbar_k^2 makes each step
    affine, x_{k-1} = A_k x_k + B_k + s_k z, A_k = (1 - b_k^2 / v_k) / a_k, B_k = b_k^2 abar_k m / (v_k a_k);
    the last step k = 1 has no noise. Returns (prod_k A_k, output mean, output variance)."""
    beta = np.asarray(process.betas(), np.float64)
    log_abar = np.asarray(process.log_alpha_knots(), np.float64)
    abar, bbar2 = np.exp(log_abar), -np.expm1(2 * log_abar)
    big_k = process.num_steps
    mean, var, coef = 0.0, float(process.sigma(1.0)) ** 2, 1.0          # the prior N(0, sigma(1)^2)
    for k in range(big_k, 0, -1):
        a, b2 = math.sqrt(1 - beta[k - 1]), beta[k - 1]
        v = abar[k] ** 2 * s**2 + bbar2[k]
        big_a, big_b = (1 - b2 / v) / a, b2 * abar[k] * m / (v * a)
        s2 = 0.0 if k == 1 else (b2 if variance == "beta" else b2 * bbar2[k - 1] / bbar2[k])
        mean, var, coef = big_a * mean + big_b, big_a**2 * var + s2, coef * big_a
    return coef, mean, var


@pytest.mark.parametrize("variance", ["posterior", "beta"])
def test_ancestral_follows_the_closed_form_recursion(variance, x64):
    # 20 cosine steps: a step is large, so evaluating eps at (k - 1)/K instead of k/K changes
    # the linear coefficient prod A_k by a lot (checked below with a deliberately shifted model).
    process = DDPM(num_steps=20, schedule="cosine")
    data = GaussianMixture.gaussian(jnp.array([M]), jnp.array([S]))
    model = data.exact_model(process, "eps")
    coef, mean, var = ddpm_moments(process, variance)
    key = jax.random.PRNGKey(1)
    x1 = process.prior(jax.random.PRNGKey(0), (20_000, 1), jnp.float64)
    ts = process.timesteps()
    out = ancestral(model, x1, ts, key=key, variance=variance)[0]
    # Deterministic: same noise, shifted start -> output moves by prod_k A_k exactly.
    np.testing.assert_allclose(ancestral(model, x1 + 1.0, ts, key=key, variance=variance)[0] - out, coef, rtol=1e-9)
    # Statistical: 5 standard errors of the sample mean and variance (n = 20,000).
    n = x1.shape[0]
    assert abs(float(out.mean()) - mean) < 5 * math.sqrt(var / n)
    assert abs(float(out.var()) - var) < 5 * var * math.sqrt(2 / n)

    shifted = Model(lambda x, t, c: model.net(x, t - 1.0 / process.num_steps, c), process, "eps")
    off_by_one = (ancestral(shifted, x1 + 1.0, ts, key=key, variance=variance)[0]
                  - ancestral(shifted, x1, ts, key=key, variance=variance)[0])
    assert abs(float(off_by_one[0, 0]) - coef) > 1e-3 * abs(coef)   # the check above would catch it


def test_ddim_with_eta_one_is_ancestral_sampling(x64):
    # Song et al. 2021 (DDIM), Sec. 4.1: eta = 1 with the posterior variance is DDPM. Same key, same
    # noise layout (step i from fold_in(key, i)): equal to rounding (a 250-step linear chain).
    process = DDPM(num_steps=250, beta_end=0.08)
    model = eight_gaussians().exact_model(process, "eps")
    x1 = process.prior(jax.random.PRNGKey(0), (64, 2), jnp.float64)
    key = jax.random.PRNGKey(3)
    ref = ancestral(model, x1, process.timesteps(), key=key, variance="posterior")[0]
    # the full grid k = K..0 lands on Tweedie's mean by its last step; K..1 + denoise is the same.
    np.testing.assert_allclose(ddim(model, x1, process.timesteps(), key=key, eta=1.0)[0], ref, atol=1e-10)
    np.testing.assert_allclose(ddim(model, x1, process.timesteps()[:-1], key=key, eta=1.0, denoise=True)[0], ref,
                               atol=1e-10)
    assert float(jnp.max(jnp.abs(ancestral(model, x1, process.timesteps(), key=key, variance="beta")[0] - ref))) > 1e-3


def test_ancestral_rejects_a_continuous_process():
    with pytest.raises(ValueError, match="DDPM's discrete chain"):
        ancestral(eight_gaussians().exact_model(VP(), "eps"), jnp.zeros((2, 2)), grids.uniform(VP(), 4),
                  key=jax.random.PRNGKey(0))


def test_stochastic_samplers_need_a_key():
    model = eight_gaussians().exact_model(VP(), "eps")
    with pytest.raises(ValueError, match="draws noise"):
        ddim(model, jnp.zeros((2, 2)), grids.uniform(VP(), 4), eta=0.5)
    with pytest.raises(ValueError, match="draws noise"):
        edm_heun(model, jnp.zeros((2, 2)), grids.karras(VP(), 4), s_churn=5.0)


# -- orders of convergence -----------------------------------------------------------------------

ORDER_CASES = [
    ("edm_heun", edm_heun, grids.karras, 2.0),
    ("dpm_solver_pp_2m", dpm_solver_pp_2m, grids.log_snr, 2.0),
    ("ddim", ddim, grids.karras, 1.0),
    ("dpm_2", dpm_2, grids.karras, 2.0),
    ("dpm_solver_pp_2s_eta0", lambda m, x, ts: dpm_solver_pp_2s_ancestral(m, x, ts, eta=0.0), grids.log_snr, 2.0),
    ("unipc_2", lambda m, x, ts: unipc(m, x, ts, order=2), grids.log_snr, 3.0),   # UniC adds an order
]


# Default run: each sampler on one of the three processes in turn (each process gets two).
@pytest.mark.parametrize("name, sampler, grid, order, process", tiered_product(
    ORDER_CASES, [c[0] for c in ORDER_CASES], [VP(), EDM(), RectifiedFlow()], ["vp", "edm", "rectified_flow"],
    fast=lambda i, j: j == i % 3))
def test_order_of_convergence(name, sampler, grid, order, process, x64):
    # Gaussian data: the exact answer is the affine transport. Slope of log2(error) between
    # 16, 32 and 64 steps (the multistep method starts first order, so its slope reaches 2 late).
    data = GaussianMixture.gaussian(jnp.array([M]), jnp.array([S]))
    model = data.exact_model(process, "x0")
    x1 = process.prior(jax.random.PRNGKey(0), (64, 1), jnp.float64)
    errors = []
    for n in (16, 32, 64):
        ts = grid(process, n)
        errors.append(float(jnp.max(jnp.abs(sampler(model, x1, ts)[0] - gaussian_transport(process, x1, ts[-1])))))
    slopes = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert abs(slopes[-1] - order) < 0.25, (errors, slopes)


@pytest.mark.parametrize("process", tiered([VP(), EDM(), RectifiedFlow()], ["vp", "edm", "rectified_flow"], fast=["vp"]))
def test_higher_order_multisteps_converge_faster_than_2m(process, x64):
    """DPM-Solver++(3M) and LMS(4) start with Euler steps (k-diffusion's warm-up: they have no history
    yet), so their global order is held below their local one: 3M's slope falls towards 2 (the first
    step's O(h^2) error), LMS's climbs towards 4 (its first steps are where the path is nearly
    affine). What they must do: converge at least at second order, and at 64 steps beat 2M by more
    than 2x (3M) and reach a slope above 3 (LMS)."""
    data = GaussianMixture.gaussian(jnp.array([M]), jnp.array([S]))
    model = data.exact_model(process, "x0")
    x1 = process.prior(jax.random.PRNGKey(0), (64, 1), jnp.float64)

    def errors(fn, grid):
        return np.array([float(jnp.max(jnp.abs(fn(model, x1, grid(process, n))[0]
                                               - gaussian_transport(process, x1, grid(process, n)[-1]))))
                         for n in (16, 32, 64)])

    e2m, e3m, elms = errors(dpm_solver_pp_2m, grids.log_snr), errors(dpm_solver_pp_3m, grids.log_snr), \
        errors(lms, grids.karras)
    assert np.all(np.log2(e3m[:-1] / e3m[1:]) > 1.9) and e3m[-1] < 0.5 * e2m[-1], (e3m, e2m)
    assert np.log2(elms[1] / elms[2]) > 3.0, elms


# -- diffrax --------------------------------------------------------------------------------------

@pytest.mark.parametrize("process", ALL_PROCESSES[:5], ids=IDS[:5])
def test_ode_sample_transports_gaussian_exactly(process, x64):
    # STYLE (g): adaptive Tsit5 at tolerance 1e-8 reproduces the affine transport to 1e-5 of the
    # prior scale. (DDPM's alpha has 1000 kinks; its PF-ODE is checked with fixed steps below.)
    data = GaussianMixture.gaussian(jnp.array([M]), jnp.array([S]))
    x1 = process.prior(jax.random.PRNGKey(0), (64, 1), jnp.float64)
    x0, stats = ode_sample(data.exact_model(process, "velocity"), x1, rtol=1e-8, atol=1e-8)
    scale = max(1.0, float(process.sigma(1.0)))
    np.testing.assert_allclose(x0, gaussian_transport(process, x1, process.t_min), atol=1e-5 * scale)
    assert int(stats["nfe"]) == 6 * int(stats["num_steps"]) + 1


def test_ode_sample_on_the_piecewise_ddpm_path(x64):
    # DDPM's log(alpha) is piecewise linear in t (kinks at t = k/K), so its PF-ODE velocity jumps
    # at every knot; the adaptive solver still reaches the affine transport, at a higher NFE.
    process = DDPM(num_steps=16, schedule="cosine")
    data = GaussianMixture.gaussian(jnp.array([M]), jnp.array([S]))
    x1 = process.prior(jax.random.PRNGKey(0), (64, 1), jnp.float64)
    x0, _ = ode_sample(data.exact_model(process, "velocity"), x1, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(x0, gaussian_transport(process, x1, process.t_min), atol=1e-5)


class _Counting:
    """A network wrapper that counts its evaluations on the host (to check the reported NFE)."""

    calls = 0

    def __init__(self, net):
        self.net = net

    def __call__(self, x, t, cond=None):
        jax.debug.callback(_Counting._tick)
        return self.net(x, t, cond)

    @staticmethod
    def _tick():
        _Counting.calls += 1


jax.tree_util.register_pytree_node(_Counting, lambda c: ((c.net,), None), lambda _, ch: _Counting(ch[0]))


@pytest.mark.parametrize("solver, adaptive", tiered(
    [("tsit5", True), ("dopri5", True), ("heun", True), ("euler", False), ("midpoint", False), ("tsit5", False)],
    ["tsit5-True", "dopri5-True", "heun-True", "euler-False", "midpoint-False", "tsit5-False"],
    fast=["tsit5-True", "heun-True", "midpoint-False"]))
def test_reported_nfe_counts_network_evaluations(solver, adaptive, x64):
    process = VP()
    model = Model(_Counting(eight_gaussians().exact_model(process, "eps").net), process, "eps")
    x1 = process.prior(jax.random.PRNGKey(0), (8, 2), jnp.float64)
    kw = dict(rtol=1e-4, atol=1e-4) if adaptive else dict(denoise=True)
    ts = None if adaptive else grids.uniform(process, 7)
    _Counting.calls = 0
    x0, stats = ode_sample(model, x1, ts, solver=solver, **kw)
    jax.block_until_ready(x0)
    assert int(stats["nfe"]) == _Counting.calls > 0


@pytest.mark.parametrize("solver", ["tsit5", "heun"])
def test_nfe_counts_the_restarts_at_ddpm_knots(solver, x64):
    # At each jump time an FSAL solver (tsit5) evaluates the field afresh: one more call per knot.
    process = DDPM(num_steps=6)
    model = Model(_Counting(eight_gaussians().exact_model(process, "eps").net), process, "eps")
    x1 = process.prior(jax.random.PRNGKey(0), (8, 2), jnp.float64)
    _Counting.calls = 0
    x0, stats = ode_sample(model, x1, solver=solver, rtol=1e-4, atol=1e-4, at_jumps=True)
    jax.block_until_ready(x0)
    assert int(stats["nfe"]) == _Counting.calls > 0
    assert int(stats["num_steps"]) >= 5


def test_ode_sample_needs_an_adaptive_solver_without_a_grid():
    with pytest.raises(ValueError, match="no error estimate"):
        ode_sample(eight_gaussians().exact_model(VP(), "eps"), jnp.zeros((2, 2)), solver="euler")


# -- every sampler lands on the 8-Gaussians mixture (energy distance) ----------------------------

@pytest.fixture(scope="module")
def energy_tolerance():
    """Tolerance for energy distance between N samples and N fresh data draws, from the data alone.

    The unbiased energy distance of two independent samples of one distribution has mean 0 and a
    standard deviation sigma0 that shrinks like 1/N; we estimate sigma0 from 8 independent pairs
    of N data draws (fixed seeds). An exact sampler's statistic has that same null distribution,
    so 5 sigma0 is its Monte-Carlo allowance; one more sigma0 is allowed for the solver's bias at
    the NFE used below (chosen so that the benchmark shows that bias well under sigma0).
    """
    jax.config.update("jax_enable_x64", True)
    try:
        data = eight_gaussians()
        null = [float(energy_distance(data.sample(jax.random.PRNGKey(100 + i), N),
                                      data.sample(jax.random.PRNGKey(200 + i), N))) for i in range(8)]
    finally:
        jax.config.update("jax_enable_x64", False)
    return 6.0 * float(np.std(null, ddof=1))


KEY = jax.random.PRNGKey(7)
CASES = {
    "ddim_eta0": (VP(), "eps", lambda m, x1: ddim(m, x1, grids.karras(m.process, 50), denoise=True)[0]),
    "ddim_eta1": (VP(), "eps", lambda m, x1: ddim(m, x1, grids.uniform(m.process, 200), key=KEY, eta=1.0, denoise=True)[0]),
    "ancestral_posterior": (DDPM(), "eps", lambda m, x1: ancestral(m, x1, m.process.timesteps(), key=KEY)[0]),
    "ancestral_beta": (DDPM(), "eps", lambda m, x1: ancestral(m, x1, m.process.timesteps(), key=KEY,
                                                             variance="beta")[0]),
    "pc_reverse_diffusion_ve": (VE(), "eps", lambda m, x1: predictor_corrector(
        m, x1, grids.uniform(m.process, 200), key=KEY, snr=0.16, denoise=True)[0]),
    "pc_euler_maruyama_vp": (VP(), "eps", lambda m, x1: predictor_corrector(
        m, x1, grids.uniform(m.process, 200), key=KEY, predictor="euler_maruyama", snr=0.16, denoise=True)[0]),
    "ode_tsit5": (VP(), "eps", lambda m, x1: ode_sample(m, x1, denoise=True)[0]),
    "ode_heun_rf": (RectifiedFlow(), "velocity", lambda m, x1: ode_sample(m, x1, grids.uniform(m.process, 30), solver="heun")[0]),
    "sde_euler": (VP(), "eps", lambda m, x1: sde_sample(m, x1, grids.uniform(m.process, 200), key=KEY,
                                                               denoise=True)[0]),
    "edm_heun_edm": (EDM(), "x0", lambda m, x1: edm_heun(m, x1, grids.karras(m.process, 18), denoise=True)[0]),
    "edm_heun_churn_vp": (VP(), "eps", lambda m, x1: edm_heun(m, x1, grids.karras(m.process, 40), key=KEY,
                                                              s_churn=20.0, s_max=10.0, denoise=True)[0]),
    "dpm_solver_pp_2m": (VP(), "eps", lambda m, x1: dpm_solver_pp_2m(m, x1, grids.log_snr(m.process, 20),
                                                                     denoise=True)[0]),
    "euler_ancestral_rf": (RectifiedFlow(), "velocity", lambda m, x1: euler_ancestral(
        m, x1, grids.karras(m.process, 100), key=KEY, denoise=True)[0]),
    "dpm_2_ancestral_vp": (VP(), "eps", lambda m, x1: dpm_2_ancestral(m, x1, grids.karras(m.process, 50), key=KEY,
                                                                      denoise=True)[0]),
    "dpm_solver_pp_2s_ancestral_edm": (EDM(), "x0", lambda m, x1: dpm_solver_pp_2s_ancestral(
        m, x1, grids.karras(m.process, 50), key=KEY, denoise=True)[0]),
    "dpm_solver_pp_2m_sde_vp": (VP(), "eps", lambda m, x1: dpm_solver_pp_2m_sde(
        m, x1, grids.karras(m.process, 50), key=KEY, denoise=True)[0]),
    "dpm_solver_pp_3m_sde_rf": (RectifiedFlow(), "velocity", lambda m, x1: dpm_solver_pp_3m_sde(
        m, x1, grids.karras(m.process, 50), key=KEY, denoise=True)[0]),
    "lms_ve": (VE(), "eps", lambda m, x1: lms(m, x1, grids.karras(m.process, 20), denoise=True)[0]),
    "ipndm_edm": (EDM(), "x0", lambda m, x1: ipndm(m, x1, grids.karras(m.process, 15), denoise=True)[0]),
    "unipc_rf": (RectifiedFlow(), "velocity", lambda m, x1: unipc(m, x1, grids.uniform(m.process, 15), denoise=True)[0]),
    "dpm_2_rf": (RectifiedFlow(), "velocity", lambda m, x1: dpm_2(m, x1, grids.karras(m.process, 12), denoise=True)[0]),
    "dpm_solver_pp_3m_ddpm": (DDPM(), "eps", lambda m, x1: dpm_solver_pp_3m(m, x1, grids.log_snr(m.process, 20),
                                                                            denoise=True)[0]),
}


# Default run: one of each family (deterministic multistep, ancestral, predictor-corrector, SDE,
# adaptive ODE, EDM's churn, the SDE multisteps) on each process at least once.
FAST_MIXTURE = ["ddim_eta1", "ancestral_posterior", "pc_reverse_diffusion_ve", "ode_tsit5", "ode_heun_rf",
                "edm_heun_churn_vp", "dpm_2_ancestral_vp", "dpm_solver_pp_2s_ancestral_edm", "dpm_solver_pp_3m_sde_rf",
                "lms_ve", "ipndm_edm", "dpm_solver_pp_3m_ddpm"]


@pytest.mark.parametrize("name", tiered(list(CASES), list(CASES), fast=FAST_MIXTURE))
def test_sampler_reaches_the_mixture(name, energy_tolerance, x64):
    process, predicts, run = CASES[name]
    data = eight_gaussians()
    x1 = process.prior(jax.random.PRNGKey(0), (N, 2), jnp.float64)
    x0 = run(data.exact_model(process, predicts), x1)
    assert bool(jnp.all(jnp.isfinite(x0)))
    distance = float(energy_distance(x0, data.sample(jax.random.PRNGKey(1), N)))
    assert distance < energy_tolerance, (distance, energy_tolerance)


def test_energy_tolerance_rejects_a_wrong_sampler(energy_tolerance, x64):
    # What the tolerance can see: DDIM with 2 steps (a real failure mode: far too few steps).
    data, process = eight_gaussians(), VP()
    x1 = process.prior(jax.random.PRNGKey(0), (N, 2), jnp.float64)
    x0, _ = ddim(data.exact_model(process, "eps"), x1, grids.karras(process, 2), denoise=True)
    assert float(energy_distance(x0, data.sample(jax.random.PRNGKey(1), N))) > energy_tolerance


def test_reverse_sde_and_pf_ode_share_marginals(energy_tolerance, x64):
    # Two independent runs (different prior draws): if both sample p_{t_min}, their energy distance
    # has the same null distribution as two data samples, so the same tolerance applies.
    data, process = eight_gaussians(), VP()
    model = data.exact_model(process, "eps")
    # (the same configurations as the cases above, so nothing new is compiled)
    x_sde, _ = sde_sample(model, process.prior(jax.random.PRNGKey(10), (N, 2), jnp.float64),
                          grids.uniform(process, 200), key=KEY, denoise=True)
    x_ode, _ = ode_sample(model, process.prior(jax.random.PRNGKey(11), (N, 2), jnp.float64), denoise=True)
    assert float(energy_distance(x_sde, x_ode)) < energy_tolerance


def test_jit_tells_processes_apart():
    # The samplers' compile cache is keyed on the Model's treedef; models of different processes
    # must never compare equal, or a cached executable of one is run with the other's parameters.
    data = eight_gaussians()
    structures = [jax.tree_util.tree_structure(data.exact_model(p, "eps")) for p in ALL_PROCESSES]
    for i, a in enumerate(structures):
        for j, b in enumerate(structures):
            assert (a == b) == (i == j) or type(ALL_PROCESSES[i]) is type(ALL_PROCESSES[j]), (IDS[i], IDS[j])


# -- compile once ----------------------------------------------------------------------------------

COMPILE_CASES = {
    "ddim": (ddim, lambda m, x1, ts: ddim(m, x1, ts, key=KEY, eta=0.5)),
    "predictor_corrector": (predictor_corrector, lambda m, x1, ts: predictor_corrector(m, x1, ts, key=KEY)),
    "edm_heun": (edm_heun, lambda m, x1, ts: edm_heun(m, x1, ts, key=KEY, s_churn=1.0)),
    "dpm_solver_pp_2m": (dpm_solver_pp_2m, lambda m, x1, ts: dpm_solver_pp_2m(m, x1, ts)),
    "ode_sample": (ode_sample, lambda m, x1, ts: ode_sample(m, x1, ts, solver="heun")),
    "euler_ancestral": (euler_ancestral, lambda m, x1, ts: euler_ancestral(m, x1, ts, key=KEY, s_noise=float(ts[1]))),
    "dpm_2": (dpm_2, lambda m, x1, ts: dpm_2(m, x1, ts)),
    "lms": (lms, lambda m, x1, ts: lms(m, x1, ts)),
    "unipc": (unipc, lambda m, x1, ts: unipc(m, x1, ts)),
    "ipndm": (ipndm, lambda m, x1, ts: ipndm(m, x1, ts)),
    "dpm_solver_pp_3m_sde": (dpm_solver_pp_3m_sde, lambda m, x1, ts: dpm_solver_pp_3m_sde(m, x1, ts, key=KEY)),
    "dpm_solver_pp_2s_ancestral": (dpm_solver_pp_2s_ancestral,
                                   lambda m, x1, ts: dpm_solver_pp_2s_ancestral(m, x1, ts, key=KEY)),
    # adaptive: a new end time and new tolerances are values too
    "ode_sample_adaptive": (ode_sample, lambda m, x1, ts: ode_sample(m, x1, t1=ts[-1], rtol=1e-3 * float(ts[-2]))),
    "sde_sample": (sde_sample, lambda m, x1, ts: sde_sample(m, x1, ts, key=KEY)),
}


@pytest.mark.parametrize("name", tiered(list(COMPILE_CASES), list(COMPILE_CASES), fast=[
    "ddim", "edm_heun", "dpm_solver_pp_2m", "ode_sample", "unipc", "ode_sample_adaptive", "sde_sample"]))
def test_samplers_compile_once_per_configuration(name):
    fn, call = COMPILE_CASES[name]
    data = eight_gaussians()
    x1 = jnp.ones((4, 2))
    call(data.exact_model(VP(), "eps"), x1, grids.karras(VP(), 5))
    size = fn.jitted._cache_size()
    call(data.exact_model(VP(), "eps"), x1, grids.uniform(VP(), 5, t_min=0.05))     # new grid values
    call(data.exact_model(VP(beta_max=15.0), "eps"), x1, grids.log_snr(VP(), 5))     # new process params
    assert fn.jitted._cache_size() == size


def test_ancestral_compiles_once_per_configuration():
    data, x1 = eight_gaussians(), jnp.ones((4, 2))
    ts = DDPM(num_steps=10).timesteps()
    ancestral(data.exact_model(DDPM(num_steps=10), "eps"), x1, ts, key=KEY)
    size = ancestral.jitted._cache_size()
    ancestral(data.exact_model(DDPM(num_steps=10, beta_end=0.03), "eps"), x1, ts, key=jax.random.PRNGKey(5))
    ancestral(data.exact_model(DDPM(num_steps=10), "eps"), x1, ts[::3], key=KEY)   # a subsequence, same length
    assert ancestral.jitted._cache_size() == size + 1


def test_ancestral_on_a_subsequence_of_steps_is_the_respaced_chain(x64):
    """On the steps k = K, K - s, ..., the chain respaced to those steps (Nichol & Dhariwal 2021):
    for data at a point every step is exact (x0_hat = m), and with the posterior variance each step
    samples q(x_j | x_k, x0 = m), so the output mean is m and its variance 0 on the last step to 0."""
    mean = jnp.array([1.5, -0.5])
    process = DDPM(num_steps=100)
    model = GaussianMixture.gaussian(mean, jnp.zeros(2)).exact_model(process, "eps")
    x1 = process.prior(jax.random.PRNGKey(0), (16, 2), jnp.float64)
    ts = process.timesteps()[::10]                  # k = 100, 90, ..., 0
    x, stats = ancestral(model, x1, ts, key=KEY)
    np.testing.assert_allclose(x, jnp.broadcast_to(mean, x.shape), atol=1e-9)
    assert int(stats["nfe"]) == 10
    with pytest.raises(ValueError, match="one of DDPM's steps"):
        ancestral(model, x1, jnp.linspace(1.0, 0.0, 7), key=KEY)


# -- the one signature, and the registry -------------------------------------------------------------

# Default run: half the registry here, the other half in test_guidance's every-sampler check, so
# each registered sampler is called through the registry once (both halves in each with GENFLOW_SLOW=1).
NFE_FAST = ["euler_ode", "ddim", "ancestral", "edm_heun", "dpm_2", "lms", "dpm_solver_pp_2m", "dpm_solver_pp_2m_sde",
            "unipc", "tsit5", "heun"]


@pytest.mark.parametrize("name", tiered(list(SAMPLERS), list(SAMPLERS), fast=NFE_FAST))
def test_every_registered_sampler_counts_its_network_calls(name, x64):
    """stats["nfe"] is the number of network evaluations actually made (a host-side counter)."""
    info = SAMPLERS[name]
    process = DDPM(num_steps=8) if info.ddpm_only else VP()
    model = Model(_Counting(eight_gaussians().exact_model(process, "eps").net), process, "eps")
    x1 = process.prior(jax.random.PRNGKey(0), (4, 2), jnp.float64)
    ts = process.timesteps() if info.ddpm_only else grids.karras(process, 5)
    _Counting.calls = 0
    x, stats = info.fn(model, x1, ts, key=KEY, denoise=True)
    jax.block_until_ready(x)
    assert int(stats["nfe"]) == _Counting.calls > 0, name


def test_edm_heun_skips_and_does_not_count_the_correction_on_a_step_to_sigma_zero(x64):
    process = RectifiedFlow()
    model = Model(_Counting(eight_gaussians().exact_model(process, "velocity").net), process, "velocity")
    x1 = process.prior(jax.random.PRNGKey(0), (4, 2), jnp.float64)
    _Counting.calls = 0
    x, stats = edm_heun(model, x1, grids.uniform(process, 5))      # ends at t = 0 (sigma = 0); starts at alpha = 0
    jax.block_until_ready(x)
    assert int(stats["nfe"]) == _Counting.calls == 2 * 5 - 2


@pytest.mark.parametrize("ts, message", [
    (jnp.linspace(0.0, 1.0, 5), "must decrease strictly"),
    (jnp.array([1.0]), "at least 2 points"),
    (jnp.linspace(1.0, 0.5, 5).reshape(5, 1), "1-D time grid"),
    (jnp.linspace(2.0, 0.1, 5), "outside the process's time range"),
    (jnp.array([1.0, jnp.nan]), "non-finite"),
])
def test_a_bad_grid_is_one_sentence(ts, message):
    model = eight_gaussians().exact_model(VP(), "eps")
    x1 = jnp.zeros((2, 2))
    for sampler in (ddim, euler_maruyama_, dpm_solver_pp_2m):
        with pytest.raises(ValueError, match=message):
            sampler(model, x1, ts, key=KEY)


def test_bad_prior_draws_are_one_sentence():
    model = eight_gaussians().exact_model(VP(), "eps")
    ts = grids.uniform(VP(), 4)
    with pytest.raises(TypeError, match="floating-point"):
        ddim(model, jnp.zeros((2, 2), jnp.int32), ts)
    with pytest.raises(ValueError, match="one label per example"):
        ddim(model, jnp.zeros((2, 2)), ts, cond=jnp.zeros((3,), jnp.int32))
    with pytest.raises(TypeError, match="genflow Model"):
        ddim(lambda x: x, jnp.zeros((2, 2)), ts)


def test_a_network_in_place_of_a_model_is_one_sentence():
    net = eight_gaussians().exact_model(VP(), "eps").net
    with pytest.raises(TypeError, match="takes a genflow Model as its first argument, got ExactNet"):
        ddim(net, jnp.zeros((4, 2)), grids.uniform(VP(), 4))
