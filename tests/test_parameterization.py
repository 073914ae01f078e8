"""EDM's preconditioning as a parameterization, for every process, against closed forms.

Karras et al. 2022, Table 1, for alpha = 1: D(x; s) = c_skip x + c_out F(c_in x; c_noise) with
c_skip = s_d^2 / (s^2 + s_d^2), c_out = s s_d / sqrt(s^2 + s_d^2), c_in = 1 / sqrt(s^2 + s_d^2),
c_noise = ln(s) / 4; for any process through s = sigma / alpha and y = x / alpha.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

from genflow.data import GaussianMixture
from genflow.models import Model, Parameterization, edm, output_scale
from genflow.objectives import weighting
from genflow.processes import EDM, VP, RectifiedFlow
from tests.helpers import ALL_PROCESSES, IDS

SD = 0.7


def times(process, n=33):
    return jnp.linspace(max(process.t_min, 0.02), min(process.t_max, 0.98), n)


@pytest.mark.parametrize("process", ALL_PROCESSES, ids=IDS)
def test_input_and_target_have_unit_variance_for_data_of_std_sigma_data(process, x64):
    """x0 ~ N(0, s_d^2): Var(c_in x_t) = c_in^2 (alpha^2 s_d^2 + sigma^2) = 1 and the target
    p x0 + q eps has variance p^2 s_d^2 + q^2 = 1 at every noise level (exact)."""
    param = edm(SD)
    t = times(process)
    a, s = process.alpha(t), process.sigma(t)
    assert_allclose(param.c_in(process, t) ** 2 * (a**2 * SD**2 + s**2), 1.0, rtol=1e-12)
    p, q = param.output(process, t)
    assert_allclose(p**2 * SD**2 + q**2, 1.0, rtol=1e-12)


def test_unit_variance_by_monte_carlo():
    """The same on samples: 200k draws, so the sample variance is within 5 standard errors
    (sqrt(2 / N) ~ 0.0032) of 1."""
    process = VP()
    param = edm(SD)
    n = 200_000
    x0 = SD * jax.random.normal(jax.random.PRNGKey(0), (n,))
    eps = jax.random.normal(jax.random.PRNGKey(1), (n,))
    for t in (0.05, 0.3, 0.7, 0.95):
        t = jnp.float32(t)
        xt = process.alpha(t) * x0 + process.sigma(t) * eps
        p, q = param.output(process, t)
        assert abs(float(jnp.var(param.c_in(process, t) * xt)) - 1.0) < 5 * np.sqrt(2 / n)
        assert abs(float(jnp.var(p * x0 + q * eps)) - 1.0) < 5 * np.sqrt(2 / n)


@pytest.mark.parametrize("process", [EDM(), VP(), RectifiedFlow()], ids=["edm", "vp", "rectified_flow"])
def test_table_1_coefficients_through_the_scaled_variable(process, x64):
    """A network output F becomes D(y; s) = c_skip y + c_out F with y = x / alpha; the network sees
    c_in y and ln(s) / 4."""
    t = times(process, 9)
    x = jax.random.normal(jax.random.PRNGKey(2), (9, 3), jnp.float64) * 3.0
    f_out = jax.random.normal(jax.random.PRNGKey(3), (9, 3), jnp.float64)
    seen = {}

    def net(x_in, label, cond):
        seen["x"], seen["label"] = x_in, label
        return f_out

    model = Model(net, process, edm(SD))
    x0 = model.x0(x, t)
    a, sig = process.alpha(t)[:, None], process.sigma(t)[:, None]
    s, y = sig / a, x / a
    c_skip, c_out, c_in = SD**2 / (s**2 + SD**2), s * SD / jnp.sqrt(s**2 + SD**2), 1.0 / jnp.sqrt(s**2 + SD**2)
    assert_allclose(x0, c_skip * y + c_out * f_out, rtol=1e-10, atol=1e-12)
    assert_allclose(seen["x"], c_in * y, rtol=1e-10, atol=1e-12)
    assert_allclose(seen["label"], jnp.log(s[:, 0]) / 4.0, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("process", ALL_PROCESSES, ids=IDS)
def test_edm_weighting_is_unit_weight_on_the_network_error(process, x64):
    """lambda(s) = (s^2 + s_d^2) / (s s_d)^2 on the x0 error times (dx0/dF)^2 = c_out^2 is 1."""
    t = times(process)
    scale = output_scale(process, edm(SD), "x0", t)
    assert_allclose(weighting.edm(SD)(process, t) * scale**2, 1.0, rtol=1e-10)


def test_regular_where_alpha_or_sigma_is_zero():
    """Rectified flow at t = 1 (alpha = 0) and t = 0 (sigma = 0): every conversion is finite, and
    at t = 1 the denoiser is c_out F with c_out = s_d (c_skip -> 0), at t = 0 it is x itself."""
    process = RectifiedFlow()
    mix = GaussianMixture.gaussian(jnp.zeros(2), SD * jnp.ones(2))
    model = mix.exact_model(process, edm(SD))
    x = jnp.array([[0.3, -1.2], [2.0, 0.5]])
    for t in (0.0, 1.0):
        for name in ("eps", "x0", "v", "velocity", "edm"):
            assert bool(jnp.all(jnp.isfinite(model.predict(name, x, jnp.full((2,), t)))))
    out = Model(lambda xi, lab, c: jnp.ones_like(xi), process, edm(SD))
    assert_allclose(out.x0(x, jnp.ones(2)), SD * jnp.ones_like(x), rtol=1e-6)
    assert_allclose(out.x0(x, jnp.zeros(2)), x, rtol=1e-6)


def test_exact_edm_model_samples_like_the_eps_model(x64):
    """The same mixture's exact model in EDM's parameterization and in eps gives the same sampler
    output (the parameterization changes what a network learns, not the model)."""
    from genflow.samplers import edm_heun, grids

    process = VP()
    mix = GaussianMixture.eight_gaussians()
    x1 = process.prior(jax.random.PRNGKey(4), (64, 2), jnp.float64)
    ts = grids.karras(process, 18)
    a, _ = edm_heun(mix.exact_model(process, "eps"), x1, ts)
    b, _ = edm_heun(mix.exact_model(process, edm(0.5)), x1, ts)
    assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_bad_names_are_one_sentence():
    with pytest.raises(ValueError, match="unknown prediction 'noise'"):
        Parameterization("noise")
    with pytest.raises(ValueError, match="unknown noise label 'sigma'"):
        Parameterization("edm", 0.5, "sigma")
