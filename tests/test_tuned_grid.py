"""tune_grid: a grid fit to the model's own PF-ODE endpoints, checked on a Gaussian, whose exact
endpoint (an affine map of x1) is known in closed form, on prior draws it was not fit to."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.data import GaussianMixture
from genflow.processes import VP, RectifiedFlow
from genflow.samplers import dpm_solver_pp_2m, dpm_solver_pp_3m, grids, tune_grid
from tests.helpers import tiered_product
from tests.test_samplers_suite import gaussian_transport


# Default run: 2M on VP and 3M on rectified flow (the other two pairings with GENFLOW_SLOW=1).
@pytest.mark.parametrize("sampler, process, predicts", tiered_product(
    [dpm_solver_pp_2m, dpm_solver_pp_3m], ["2m", "3m"], [(VP(), "eps"), (RectifiedFlow(), "velocity")], ["vp", "rf"],
    fast=lambda i, j: i == j))
def test_a_tuned_grid_beats_its_start_on_other_draws(process, predicts, sampler, x64):
    data = GaussianMixture.gaussian(jnp.array([2.0, -1.0]), jnp.array([0.5, 0.05]))   # anisotropic
    model = data.exact_model(process, predicts)
    calib = process.prior(jax.random.PRNGKey(1), (256, 2), jnp.float64)
    test = process.prior(jax.random.PRNGKey(2), (256, 2), jnp.float64)
    init = grids.log_snr(process, 5)
    target = gaussian_transport(process, calib, init[-1], m=data.means[0], s=data.stds[0])
    ts, info = tune_grid(model, sampler, calib, init, target=target, iters=150)
    assert ts.shape == init.shape and float(ts[0]) == float(init[0]) and float(ts[-1]) == float(init[-1])
    assert bool(jnp.all(jnp.diff(ts) < 0)) and float(info["best_loss"]) <= float(info["init_loss"])

    def error(grid):
        exact = gaussian_transport(process, test, grid[-1], m=data.means[0], s=data.stds[0])
        return float(jnp.sqrt(jnp.mean(jnp.sum((sampler(model, test, grid)[0] - exact) ** 2, axis=1))))

    assert error(ts) < 0.7 * error(init), (error(ts), error(init))


def test_the_default_target_is_the_adaptive_ode_endpoint_and_bad_grids_are_refused(x64):
    process = VP()
    data = GaussianMixture.gaussian(jnp.array([1.0]), jnp.array([0.3]))
    model = data.exact_model(process, "eps")
    x1 = process.prior(jax.random.PRNGKey(0), (64, 1), jnp.float64)
    ts, info = tune_grid(model, dpm_solver_pp_2m, x1, grids.log_snr(process, 4), iters=5)
    exact = gaussian_transport(process, x1, ts[-1], m=1.0, s=0.3)
    x, _ = dpm_solver_pp_2m(model, x1, grids.log_snr(process, 4))
    np.testing.assert_allclose(float(info["init_loss"]), float(jnp.mean(jnp.sum((x - exact) ** 2, axis=1))),
                               rtol=1e-6)   # the ODE target at rtol 1e-8 is the closed form
    with pytest.raises(ValueError, match="at least 2 steps"):
        tune_grid(model, dpm_solver_pp_2m, x1, grids.log_snr(process, 1))
