"""The Model interface: every conversion through the process agrees with exact answers."""
import jax
import jax.numpy as jnp
import pytest
from numpy.testing import assert_allclose

from genflow.data import GaussianMixture
from genflow.models import PREDICTIONS, Model, coefficients, output_scale
from tests.helpers import ALL_PROCESSES, IDS

MIX = GaussianMixture(means=jnp.array([[-1.0, 0.5], [1.5, -0.5]]), stds=jnp.array([[0.3, 0.6], [0.5, 0.2]]),
                      weights=jnp.array([0.3, 0.7]))


def exact_quantity(process, name, x, t):
    e_x0, e_eps = MIX.posterior_means(x, process, t)
    p, q = coefficients(process, name, t[:, None])
    return p * e_x0 + q * e_eps


def points(process):
    t = jnp.linspace(max(process.t_min, 0.05), 0.95, 16)
    x = process.sample(MIX.sample(jax.random.PRNGKey(0), 16), t, jax.random.normal(jax.random.PRNGKey(1), (16, 2)))
    return x, t


@pytest.mark.parametrize("process", ALL_PROCESSES, ids=IDS)
@pytest.mark.parametrize("predicts", PREDICTIONS)
def test_every_conversion_matches_the_exact_quantity(process, predicts, x64):
    model = MIX.exact_model(process, predicts)
    x, t = points(process)
    for name in PREDICTIONS:
        assert_allclose(model.predict(name, x, t), exact_quantity(process, name, x, t), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("process", ALL_PROCESSES, ids=IDS)
def test_score_is_the_gradient_of_the_log_density_and_velocity_the_pf_ode(process, x64):
    x, t = points(process)
    model = MIX.exact_model(process, "eps")
    grad = jax.vmap(jax.grad(lambda xi, ti: MIX.log_prob(xi[None], process, ti)[0]))(x, t)
    assert_allclose(model.score(x, t), grad, rtol=1e-9, atol=1e-9)
    pf = process.f(t)[:, None] * x - 0.5 * process.g2(t)[:, None] * grad
    assert_allclose(model.velocity(x, t), pf, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("process", ALL_PROCESSES, ids=IDS)
@pytest.mark.parametrize("predicts", PREDICTIONS)
def test_round_trip_through_another_parameterization(process, predicts, x64):
    """A net predicting Q built from a P-model converts back to P exactly."""
    x, t = points(process)
    base = MIX.exact_model(process, predicts)
    for other in PREDICTIONS:
        relay_net = lambda x, t, c, other=other: base.predict(other, x, t)  # noqa: E731
        relay_net.raw_inputs = True   # an analytic net of x_t and t, not of EDM's scaled inputs
        relay = Model(relay_net, process, other)
        assert_allclose(relay.predict(predicts, x, t), base(x, t), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("process", ALL_PROCESSES, ids=IDS)
def test_output_scale_is_the_derivative_of_the_conversion(process, x64):
    x, t = points(process)
    for predicts in PREDICTIONS:
        model = MIX.exact_model(process, predicts)
        out = model(x, t)
        for target in PREDICTIONS:
            _, tangent = jax.jvp(lambda o: model.predict(target, x, t, out=o), (out,), (jnp.ones_like(out),))
            assert_allclose(tangent, jnp.broadcast_to(output_scale(process, predicts, target, t)[:, None], x.shape),
                            rtol=1e-9)


def test_unknown_prediction_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown prediction 'noise'; choose one of eps, x0"):
        Model(lambda x, t, c: x, ALL_PROCESSES[0], "noise")
