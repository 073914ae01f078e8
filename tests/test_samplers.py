"""Euler PF-ODE and Euler–Maruyama on Gaussian data with the exact model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.data import GaussianMixture
from genflow.samplers import euler_maruyama, euler_ode, grids
from tests.helpers import ALL_PROCESSES, IDS

M, S = 2.0, 0.5
DATA = GaussianMixture.gaussian(jnp.array([M]), jnp.array([S]))


def exact_transport(process, x1, t_end):
    """The PF-ODE of Gaussian data is affine: z = (x - alpha m) / sqrt(alpha^2 s^2 + sigma^2) is constant."""
    sd = lambda t: jnp.sqrt(process.alpha(t) ** 2 * S**2 + process.sigma(t) ** 2)
    z = (x1 - process.alpha(1.0) * M) / sd(1.0)
    return process.alpha(t_end) * M + sd(t_end) * z


@pytest.mark.parametrize("process", ALL_PROCESSES, ids=IDS)
def test_euler_ode_converges_at_first_order(process, x64):
    model = DATA.exact_model(process, "velocity")
    x1 = process.prior(jax.random.PRNGKey(0), (256, 1), jnp.float64)
    t_end = max(process.t_min, 1e-2)
    errors = []
    for n in (200, 400):
        ts = grids.uniform(process, n, t_min=t_end)
        errors.append(float(jnp.max(jnp.abs(euler_ode(model, x1, ts)[0] - exact_transport(process, x1, t_end)))))
    order = np.log2(errors[0] / errors[1])
    assert 0.8 < order < 1.3, errors
    assert errors[1] < 0.05 * max(1.0, float(process.sigma(1.0)))  # 5% of the prior scale


@pytest.mark.parametrize("process", ALL_PROCESSES[:4], ids=IDS[:4])
def test_euler_maruyama_reaches_the_data_distribution(process, x64):
    model = DATA.exact_model(process, "eps")
    n = 20_000
    x1 = process.prior(jax.random.PRNGKey(0), (n, 1), jnp.float64)
    ts = grids.uniform(process, 500)
    x, _ = euler_maruyama(model, x1, ts, key=jax.random.PRNGKey(1), denoise=False)
    t = ts[-1]
    mean, sd = float(process.alpha(t) * M), float(jnp.sqrt(process.alpha(t) ** 2 * S**2 + process.sigma(t) ** 2))
    # 5 standard errors plus 2% for the O(1/n) bias of Euler–Maruyama with 500 steps.
    assert abs(float(x.mean()) - mean) < 5 * sd / n**0.5 + 0.02 * abs(mean)
    assert abs(float(x.std()) - sd) < 5 * sd / (2 * n) ** 0.5 + 0.02 * sd


def test_samplers_compile_once_per_grid_length():
    process = ALL_PROCESSES[0]
    model = DATA.exact_model(process, "eps")
    x1 = jnp.ones((4, 1))
    euler_ode(model, x1, grids.uniform(process, 5))
    size = euler_ode.jitted._cache_size()
    euler_ode(model, x1, grids.uniform(process, 5, t_min=0.1))  # new values, same length
    euler_ode(DATA.exact_model(type(process)(beta_max=15.0), "eps"), x1, grids.uniform(process, 5))
    assert euler_ode.jitted._cache_size() == size
