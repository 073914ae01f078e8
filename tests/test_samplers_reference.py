"""genflow's samplers equal k-diffusion's, step for step, on every process whose noise level
reaches 0 (tests/data/kdiffusion_samplers.npz, made by tests/data/make_kdiffusion_samplers.py).

k-diffusion runs in EDM's variables (y, s) with s = sigma / alpha; genflow runs the same grid of
noise levels on VP, sub-VP, rectified flow and DDPM in their own (x, t), starting from
x1 = alpha(t_0) y_0, and must land on k-diffusion's y at s = 0 (alpha = 1 there). Both run in
float64 on the mixture's exact denoiser, the stochastic ones on the same per-step noise. They
agree to 3e-14 (measured, outputs of size ~2); the tolerance, 1e-11, leaves room for float64
rounding amplified by ten steps near the mixture's narrow components and for the bisection that
maps each s back to t, while any wrong coefficient, noise scale or off-by-one in a multistep
history moves the outputs by 1e-4 or more.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.data import GaussianMixture
from genflow.processes import DDPM, VP, RectifiedFlow, SubVP
from genflow.samplers import grids
from genflow.samplers import (dpm_2, dpm_2_ancestral, dpm_solver_pp_2m, dpm_solver_pp_2m_sde,
                              dpm_solver_pp_2s_ancestral, dpm_solver_pp_3m, dpm_solver_pp_3m_sde, edm_euler, edm_heun,
                              euler_ancestral, lms)
from tests.helpers import tiered_product

FIXTURE = np.load(os.path.join(os.path.dirname(__file__), "data", "kdiffusion_samplers.npz"))
KEY = jax.random.PRNGKey(7)

# fixture name -> the genflow call that gives the same numbers (the porting guide's rows)
CALLS = {
    "euler": lambda m, x, ts: edm_euler(m, x, ts),
    "heun": lambda m, x, ts: edm_heun(m, x, ts),
    "euler_ancestral": lambda m, x, ts: euler_ancestral(m, x, ts, key=KEY, eta=1.0),
    "euler_ancestral_eta05": lambda m, x, ts: euler_ancestral(m, x, ts, key=KEY, eta=0.5, s_noise=0.9),
    "dpm_2": lambda m, x, ts: dpm_2(m, x, ts),
    "dpm_2_ancestral": lambda m, x, ts: dpm_2_ancestral(m, x, ts, key=KEY, eta=1.0),
    "lms": lambda m, x, ts: lms(m, x, ts, order=4),
    "lms_order2": lambda m, x, ts: lms(m, x, ts, order=2),
    "dpmpp_2s_ancestral": lambda m, x, ts: dpm_solver_pp_2s_ancestral(m, x, ts, key=KEY, eta=1.0),
    "dpmpp_2m": lambda m, x, ts: dpm_solver_pp_2m(m, x, ts),
    "dpmpp_2m_sde": lambda m, x, ts: dpm_solver_pp_2m_sde(m, x, ts, key=KEY, eta=1.0),
    "dpmpp_2m_sde_heun": lambda m, x, ts: dpm_solver_pp_2m_sde(m, x, ts, key=KEY, eta=0.7, solver_type="heun"),
    "dpmpp_2m_ode": lambda m, x, ts: dpm_solver_pp_2m_sde(m, x, ts, eta=0.0),
    "dpmpp_3m_sde": lambda m, x, ts: dpm_solver_pp_3m_sde(m, x, ts, key=KEY, eta=1.0),
    "dpmpp_3m": lambda m, x, ts: dpm_solver_pp_3m(m, x, ts),
}
PROCESSES = {"vp": VP(), "subvp": SubVP(), "rectified_flow": RectifiedFlow(), "ddpm": DDPM()}


def grid_of_levels(process, sigmas):
    """The times whose noise levels sigma/alpha are k-diffusion's sigmas (the last one, 0, is t = 0):
    the process's log-SNR inverse bracketed by [0, t_max] (its default bracket stops at t_min)."""
    target = -2.0 * jnp.log(jnp.asarray(sigmas[:-1], jnp.float64))
    ts = process.t_from_log_snr(target, iters=80, lo=0.0)
    return jnp.concatenate([ts, jnp.zeros((1,), jnp.float64)])


def mixture():
    stds = np.repeat(FIXTURE["stds"][:, None], 2, axis=1)
    return GaussianMixture(*(jnp.asarray(a, jnp.float64) for a in (FIXTURE["means"], stds, FIXTURE["weights"])))


def test_the_fixture_noise_is_genflows_step_noise(x64):
    from genflow.samplers._common import normal_like

    x = jnp.zeros(FIXTURE["z"].shape, jnp.float64)
    for i, noise in enumerate(FIXTURE["noises"]):
        np.testing.assert_array_equal(np.asarray(normal_like(KEY, i, x)), noise)


# Default run: each k-diffusion sampler on one of the four processes in turn (the samplers' steps
# are process-free given the levels; the process enters through the model's conversions).
@pytest.mark.parametrize("name, process_name", tiered_product(
    list(CALLS), list(CALLS), list(PROCESSES), list(PROCESSES), fast=lambda i, j: j == i % len(PROCESSES)))
def test_equals_k_diffusion(name, process_name, x64):
    process = PROCESSES[process_name]
    ts = grid_of_levels(process, FIXTURE["sigmas"])
    s = process.sigma(ts[:-1]) / process.alpha(ts[:-1])
    np.testing.assert_allclose(s, FIXTURE["sigmas"][:-1], rtol=1e-12)        # the same levels
    model = mixture().exact_model(process, "x0")
    y0 = FIXTURE["y0"]                    # 80 z, while the grid starts at 80 rounded to float32, as in k-diffusion
    x, _ = CALLS[name](model, process.alpha(ts[0]) * jnp.asarray(y0), ts)
    np.testing.assert_allclose(np.asarray(x) / float(process.alpha(ts[-1])), FIXTURE[name], atol=1e-11, rtol=0)


# -- UniPC against its authors' code (tests/data/unipc_reference.npz, made by
#    tests/data/make_unipc_reference.py from wl-zhao/UniPC cf9de85's uni_pc.py) ---------------------

UNIPC = np.load(os.path.join(os.path.dirname(__file__), "data", "unipc_reference.npz"))


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("skip", ["time_uniform", "logSNR"])
def test_unipc_equals_the_authors_code(skip, variant, order, x64):
    """The authors' continuous linear VP is genflow's VP(); same grid, same x1 = z, float64."""
    from genflow.samplers import unipc

    process = VP()
    stds = np.repeat(UNIPC["stds"][:, None], 2, axis=1)
    data = GaussianMixture(*(jnp.asarray(a, jnp.float64) for a in (UNIPC["means"], stds, UNIPC["weights"])))
    ts = jnp.asarray(UNIPC[f"{skip}_grid"])
    ours = {"time_uniform": grids.uniform, "logSNR": grids.log_snr}[skip](process, 10)   # the porting guide's row
    np.testing.assert_allclose(ours, ts, rtol=1e-9, atol=1e-12)
    x, stats = unipc(data.exact_model(process, "eps"), jnp.asarray(UNIPC["z"]), ts, order=order, variant=variant)
    assert int(stats["nfe"]) == 10
    np.testing.assert_allclose(np.asarray(x), UNIPC[f"{skip}_{variant}_order{order}"], atol=1e-11, rtol=0)


# -- iPNDM against its authors' collection (tests/data/ipndm_reference.npz, made by
#    tests/data/make_ipndm_reference.py from zju-pi/diff-sampler 68d5ce4) -----------------------------

IPNDM = np.load(os.path.join(os.path.dirname(__file__), "data", "ipndm_reference.npz"))


@pytest.mark.parametrize("order, denoise, process_name", tiered_product(
    [(4, False), (2, False), (4, True), (2, True)], ["4-False", "2-False", "4-True", "2-True"],
    list(PROCESSES), list(PROCESSES), fast=lambda i, j: j == i % len(PROCESSES)))
def test_ipndm_equals_diff_sampler(order, denoise, process_name, x64):
    from genflow.samplers import ipndm

    process = PROCESSES[process_name]
    ts = grid_of_levels(process, np.append(IPNDM["sigmas"], 0.0))[:-1]      # the levels 80 ... 0.002
    stds = np.repeat(IPNDM["stds"][:, None], 2, axis=1)
    data = GaussianMixture(*(jnp.asarray(a, jnp.float64) for a in (IPNDM["means"], stds, IPNDM["weights"])))
    x1 = process.alpha(ts[0]) * jnp.asarray(IPNDM["z"] * IPNDM["sigmas"][0])
    x, stats = ipndm(data.exact_model(process, "x0"), x1, ts, max_order=order, denoise=denoise)
    y = np.asarray(x) if denoise else np.asarray(x) / float(process.alpha(ts[-1]))
    assert int(stats["nfe"]) == 10 + denoise
    np.testing.assert_allclose(y, IPNDM[f"order{order}_denoise{int(denoise)}"], atol=1e-10, rtol=0)


# -- diffusers' schedulers (tests/data/diffusers_samplers.npz, made by
#    tests/data/make_diffusers_samplers.py with diffusers 0.42.1) ------------------------------------

DIFFUSERS = np.load(os.path.join(os.path.dirname(__file__), "data", "diffusers_samplers.npz"))


@pytest.mark.parametrize("name", ["dpmsolver_multistep_2", "euler_discrete", "ddim", "unipc_multistep_2",
                                  "unipc_multistep_3"])
def test_equals_diffusers_schedulers(name, x64):
    """diffusers' own loop on the 1000-step linear DDPM with "trailing" spacing: its timestep j is
    genflow's t = (j + 1) / 1000, and its last step (to alphas_cumprod = 1, sigma = 0) is t = 0. The
    DDPM is built from diffusers' float32 alphas_cumprod table, so the schedules are the same
    numbers; what is left is diffusers' float32 arithmetic inside step() (measured 8e-7 on outputs
    of size ~2.4), hence 1e-5."""
    from genflow.processes import DDPM
    from genflow.samplers import ddim, dpm_solver_pp_2m, edm_euler, unipc

    calls = {"dpmsolver_multistep_2": dpm_solver_pp_2m, "euler_discrete": edm_euler, "ddim": ddim,
             "unipc_multistep_2": lambda m, x, ts: unipc(m, x, ts, order=2),
             "unipc_multistep_3": lambda m, x, ts: unipc(m, x, ts, order=3)}
    process = DDPM.from_alphas_cumprod(DIFFUSERS["alphas_cumprod"].astype(np.float64))
    stds = np.repeat(DIFFUSERS["stds"][:, None], 2, axis=1)
    data = GaussianMixture(*(jnp.asarray(a, jnp.float64) for a in (DIFFUSERS["means"], stds, DIFFUSERS["weights"])))
    ts = jnp.concatenate([(jnp.asarray(DIFFUSERS[f"{name}_timesteps"], jnp.float64) + 1) / 1000, jnp.zeros(1)])
    start = jnp.asarray(DIFFUSERS[f"{name}_x_start"])
    # EulerDiscrete keeps k-diffusion's variable y = x / alpha (its init_noise_sigma is sqrt(s_max^2 + 1))
    x1 = start * process.alpha(ts[0]) if name == "euler_discrete" else start
    x, _ = calls[name](data.exact_model(process, "eps"), x1, ts)
    np.testing.assert_allclose(np.asarray(x), DIFFUSERS[name], atol=1e-5, rtol=0)
