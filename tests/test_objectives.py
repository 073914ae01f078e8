"""DSM and flow matching with the exact model equal their closed-form minimum."""
import jax
import jax.numpy as jnp
import pytest

from genflow.data import GaussianMixture
from genflow.models import PREDICTIONS
from genflow.objectives import denoising_score_matching, flow_matching, lognormal_sigma, weighting
from genflow.processes import EDM, VP, RectifiedFlow
from tests.helpers import ALL_PROCESSES, IDS

M0, S0 = 0.7, 0.5  # data N(M0, S0^2) in each of D dimensions
D, N = 4, 10_000


def fixed_time(t):
    return lambda key, n, process: jnp.full((n,), t)


def var_x0_given_x(process, t):
    a, s = process.alpha(t), process.sigma(t)
    return S0**2 * s**2 / (a**2 * S0**2 + s**2)


def expected_minimum(process, w, t):
    """lambda(t) E||Q - E[Q | x_t]||^2 / D for Q = P x0 + Q_eps eps: with eps = (x - a x0)/s given x,
    Q = (P - Q_eps a / s) x0 + const, so the conditional variance is (P - Q_eps a/s)^2 Var(x0 | x)."""
    from genflow.models import coefficients

    p, q = coefficients(process, w.space, t)
    return w(process, t) * (p - q * process.alpha(t) / process.sigma(t)) ** 2 * var_x0_given_x(process, t)


@pytest.mark.parametrize("process", ALL_PROCESSES, ids=IDS)
@pytest.mark.parametrize("w", [weighting.eps, weighting.likelihood, weighting.uniform, weighting.velocity,
                               weighting.edm(0.5)], ids=lambda w: w.name)
def test_dsm_with_the_exact_model_is_the_known_constant(process, w, x64):
    """The DSM minimum is E tr Cov[target | x_t] (seed equations, section 3), whichever space the
    network predicts in: this also checks the output-space rescaling of every weighting."""
    data = GaussianMixture.gaussian(jnp.full((D,), M0), jnp.full((D,), S0))
    x0 = data.sample(jax.random.PRNGKey(0), N)
    t = 0.3
    expected = float(expected_minimum(process, w, jnp.asarray(t)))
    for predicts in PREDICTIONS:
        loss, _ = denoising_score_matching(data.exact_model(process, predicts), x0, jax.random.PRNGKey(1),
                                           weighting=w, time_sampler=fixed_time(t))
        # per-example losses are expected * chi^2_D / D (Gaussian residuals): relative sd sqrt(2/(D N)).
        assert abs(float(loss) - expected) <= 5 * expected * (2 / (D * N)) ** 0.5, (predicts, float(loss), expected)


def test_flow_matching_minimum_and_coupling(x64):
    process = RectifiedFlow()
    data = GaussianMixture.gaussian(jnp.full((D,), M0), jnp.full((D,), S0))
    x0 = data.sample(jax.random.PRNGKey(0), N)
    model = data.exact_model(process, "velocity")
    loss, _ = flow_matching(model, x0, jax.random.PRNGKey(1), time_sampler=fixed_time(0.6))
    expected = float(expected_minimum(process, weighting.velocity, jnp.asarray(0.6)))
    assert abs(float(loss) - expected) <= 5 * expected * (2 / (D * N)) ** 0.5
    # A given coupling x1 replaces the noise: with x1 = x0 every straight path is a point and
    # the velocity target x1 - x0 is 0, so a zero network has zero loss.
    zero = type(model)(lambda x, t, c: jnp.zeros_like(x), process, "velocity")
    loss, _ = flow_matching(zero, x0, jax.random.PRNGKey(1), x1=x0)
    assert float(loss) == 0.0


def test_hand_computed_dsm_on_a_tiny_case(x64):
    # one example, one dimension, VP at t = 0.5, net eps_hat = 0: loss = eps^2 exactly.
    process = VP()
    x0 = jnp.array([[0.3]])
    key = jax.random.PRNGKey(3)
    eps = jax.random.normal(jax.random.split(key)[1], x0.shape, x0.dtype)
    from genflow.models import Model

    zero = Model(lambda x, t, c: jnp.zeros_like(x), process, "eps")
    loss, _ = denoising_score_matching(zero, x0, key, time_sampler=fixed_time(0.5))
    assert float(loss) == pytest.approx(float(eps[0, 0] ** 2), rel=1e-12)


def test_lognormal_sigma_sampling_follows_edm(x64):
    process = EDM()
    t = lognormal_sigma(-1.2, 1.2)(jax.random.PRNGKey(0), 20_000, process)
    log_s = jnp.log(process.sigma(t))
    inside = (log_s > jnp.log(0.002) + 0.1) & (log_s < jnp.log(80.0) - 0.1)
    assert abs(float(jnp.mean(log_s)) + 1.2) < 5 * 1.2 / 20_000**0.5 + 1e-3
    assert bool(inside.mean() > 0.99)
