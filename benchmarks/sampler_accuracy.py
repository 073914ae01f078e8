"""Sampler accuracy vs NFE on the 2-D 8-Gaussians mixture with its exact score (no training).

Run:  python benchmarks/sampler_accuracy.py [--samples 4000] [--nfe 5 10 20 50 100]
Prints two tables, every sampler started from the same prior draws x1 at t = 1 and stopped at
the process's t_min (no final denoising step, so the NFE column is exact):
  1. energy distance (x 1e3) to fresh data draws, with the Monte-Carlo floor: the energy
     distance between two independent samples of the data of the same size (mean +- std);
  2. for the deterministic (PF-ODE) samplers, the RMS distance to the exact PF-ODE transport of
     the same x1 (adaptive Tsit5 at rtol = atol = 1e-10), an upper bound on W2 to the
     sampler's target p_{t_min} that is free of Monte-Carlo noise;
and the adaptive dopri5 solver's NFE and errors across tolerances. float64 on CPU, a few minutes.
"""
from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from genflow.data import GaussianMixture  # noqa: E402
from genflow.metrics import energy_distance  # noqa: E402
from genflow.processes import DDPM, VP  # noqa: E402
from genflow.samplers import (ancestral, ddim, dpm_solver_pp_2m, edm_heun, euler_maruyama, euler_ode,  # noqa: E402
                              grids, ode_sample, predictor_corrector, sde_sample)

KEY = jax.random.PRNGKey(1)


def mixture():
    d = GaussianMixture.eight_gaussians()
    return GaussianMixture(*(jnp.asarray(a, jnp.float64) for a in (d.means, d.stds, d.weights)))


def _vp(data):
    return data.exact_model(VP(), "eps")


def _ancestral(data, x1, nfe):
    process = DDPM(num_steps=nfe, schedule="cosine")             # K = NFE (K - 1 steps + Tweedie)
    return ancestral(data.exact_model(process, "eps"), x1 * process.sigma(1.0), process.timesteps(), key=KEY)[0]


# name (with its grid) -> (deterministic?, run(data, x1, nfe) -> x0, or None where the NFE does not fit)
SAMPLERS = {
    "euler_ode (uniform)": (True, lambda d, x1, n: euler_ode(_vp(d), x1, grids.uniform(VP(), n))[0]),
    "ddim eta=0 (karras)": (True, lambda d, x1, n: ddim(_vp(d), x1, grids.karras(VP(), n))[0]),
    "ode_sample heun (karras)": (True, lambda d, x1, n: None if n % 2 else
                                 ode_sample(_vp(d), x1, grids.karras(VP(), n // 2), solver="heun")[0]),
    "edm_heun (karras)": (True, lambda d, x1, n: None if n % 2 else
                          edm_heun(_vp(d), x1, grids.karras(VP(), n // 2))[0]),
    "dpm_solver_pp_2m (log_snr)": (True, lambda d, x1, n: dpm_solver_pp_2m(_vp(d), x1, grids.log_snr(VP(), n))[0]),
    "dpm_solver_pp_2m (karras)": (True, lambda d, x1, n: dpm_solver_pp_2m(_vp(d), x1, grids.karras(VP(), n))[0]),
    "euler_maruyama (uniform)": (False, lambda d, x1, n: euler_maruyama(_vp(d), x1, grids.uniform(VP(), n),
                                                                        key=KEY)[0]),
    "sde_sample euler": (False, lambda d, x1, n: sde_sample(_vp(d), x1, grids.uniform(VP(), n), key=KEY)[0]),
    "ddim eta=1 (uniform)": (False, lambda d, x1, n: ddim(_vp(d), x1, grids.uniform(VP(), n), key=KEY, eta=1.0)[0]),
    "ancestral (DDPM cosine, K=NFE)": (False, _ancestral),
    "pc rev.diff+langevin (uniform)": (False, lambda d, x1, n: None if n % 2 else predictor_corrector(
        _vp(d), x1, grids.uniform(VP(), n // 2), key=KEY, snr=0.16)[0]),
    "edm_heun churn=20 (karras)": (False, lambda d, x1, n: None if n % 2 else edm_heun(
        _vp(d), x1, grids.karras(VP(), n // 2), key=KEY, s_churn=20.0, s_max=10.0)[0]),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    args = parser.parse_args()
    n, nfes = args.samples, args.nfe
    data, process = mixture(), VP()
    x1 = process.prior(jax.random.PRNGKey(0), (n, 2), jnp.float64)   # VP prior = N(0, I); DDPM's is rescaled
    fresh = data.sample(jax.random.PRNGKey(2), n)
    start = time.time()

    null = np.array([float(energy_distance(data.sample(jax.random.PRNGKey(100 + i), n),
                                           data.sample(jax.random.PRNGKey(200 + i), n))) for i in range(5)])
    exact, _ = ode_sample(_vp(data), x1, rtol=1e-10, atol=1e-10, max_steps=100_000)

    def rms(x):
        return float(jnp.sqrt(jnp.mean(jnp.sum((x - exact) ** 2, axis=1))))

    width = max(len(k) for k in SAMPLERS) + 2
    head = "sampler".ljust(width) + "".join(f"NFE={k:<7d}" for k in nfes)
    ed_rows, w_rows = [], []
    for name, (deterministic, run) in SAMPLERS.items():
        ed, w = [], []
        for nfe in nfes:
            x = run(data, x1, nfe)
            if x is None:
                ed.append("-"), w.append("-")
                continue
            ed.append(f"{1e3 * float(energy_distance(x, fresh)):.2f}")
            w.append(f"{rms(x):.4f}" if deterministic else "-")
        ed_rows.append(name.ljust(width) + "".join(f"{v:<11s}" for v in ed))
        if deterministic:
            w_rows.append(name.ljust(width) + "".join(f"{v:<11s}" for v in w))

    print(f"8-Gaussians (radius 2, std 0.15), VP process (t_min = 1e-3), exact score, {n} samples, float64.\n")
    print("Energy distance x 1e3 to fresh data (lower is better; '-': NFE does not fit the sampler)")
    print(head)
    print("\n".join(ed_rows))
    print("Monte-Carlo floor".ljust(width)
          + f"{1e3 * null.mean():.2f} +- {1e3 * null.std(ddof=1):.2f}  (two independent data samples of {n})\n")
    print("RMS distance to the exact PF-ODE transport of the same x1 (bounds W2; no Monte-Carlo noise)")
    print(head)
    print("\n".join(w_rows))
    print("\nAdaptive dopri5 (PIDController, rtol = atol)")
    print(f"{'rtol':<10s}{'NFE':<8s}{'rejected':<10s}{'ED x 1e3':<11s}{'RMS to exact':<12s}")
    for tol in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
        x, stats = ode_sample(_vp(data), x1, solver="dopri5", rtol=tol, atol=tol)
        print(f"{tol:<10.0e}{int(stats['nfe']):<8d}{int(stats['num_rejected_steps']):<10d}"
              f"{1e3 * float(energy_distance(x, fresh)):<11.2f}{rms(x):<12.2e}")
    print(f"\n({time.time() - start:.0f} s on {jax.devices()[0].platform})")


if __name__ == "__main__":
    main()
