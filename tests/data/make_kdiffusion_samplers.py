"""Reference outputs of k-diffusion's samplers for tests/test_samplers_reference.py.

Run in a side environment with torch, torchsde, torchdiffeq, scipy, tqdm and jax (never in
genflow's own; CI only reads the .npz this writes):

    python tests/data/make_kdiffusion_samplers.py /path/to/k-diffusion   # a checkout of crowsonkb/k-diffusion

It loads k_diffusion/sampling.py from that checkout (commit 4601bf0 made the committed file)
with a two-line stand-in for its ``utils`` (only ``append_dims`` is used), and runs each sampler in
float64 on the exact denoiser of a 2-D Gaussian mixture (closed form, written here in torch) from
y = 80 z, on get_sigmas_karras(10, 0.002, 80) (which ends at sigma = 0). The stochastic samplers
get, as their ``noise_sampler``, step i's N(0, I) draw jax.random.normal(fold_in(key(7), i)) in
float64: genflow's own noise for step i, so the two runs see the same noise.
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import types

import numpy as np
import torch

MEANS = np.array([[2.0, 0.0], [-1.0, 1.5], [-1.0, -1.5], [0.5, 0.5]])
STDS = np.array([0.3, 0.5, 0.2, 0.8])
WEIGHTS = np.array([0.4, 0.3, 0.2, 0.1])
N_STEPS, SIGMA_MIN, SIGMA_MAX, BATCH, NOISE_SEED = 10, 0.002, 80.0, 64, 7

# (fixture name, k-diffusion function, keyword arguments)
CASES = [
    ("euler", "sample_euler", {}),
    ("heun", "sample_heun", {}),
    ("euler_ancestral", "sample_euler_ancestral", {"eta": 1.0}),
    ("euler_ancestral_eta05", "sample_euler_ancestral", {"eta": 0.5, "s_noise": 0.9}),
    ("dpm_2", "sample_dpm_2", {}),
    ("dpm_2_ancestral", "sample_dpm_2_ancestral", {"eta": 1.0}),
    ("lms", "sample_lms", {"order": 4}),
    ("lms_order2", "sample_lms", {"order": 2}),
    ("dpmpp_2s_ancestral", "sample_dpmpp_2s_ancestral", {"eta": 1.0}),
    ("dpmpp_2m", "sample_dpmpp_2m", {}),
    ("dpmpp_2m_sde", "sample_dpmpp_2m_sde", {"eta": 1.0}),
    ("dpmpp_2m_sde_heun", "sample_dpmpp_2m_sde", {"eta": 0.7, "solver_type": "heun"}),
    ("dpmpp_2m_ode", "sample_dpmpp_2m_sde", {"eta": 0.0}),
    ("dpmpp_3m_sde", "sample_dpmpp_3m_sde", {"eta": 1.0}),
    ("dpmpp_3m", "sample_dpmpp_3m_sde", {"eta": 0.0}),
]


def load_sampling(checkout: str):
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = [os.path.join(checkout, "k_diffusion")]
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    sys.modules["k_diffusion"], sys.modules["k_diffusion.utils"] = pkg, utils
    pkg.utils = utils
    spec = importlib.util.spec_from_file_location("k_diffusion.sampling",
                                                  os.path.join(checkout, "k_diffusion", "sampling.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def denoiser(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """E[x0 | x0 + sigma eps = y] for the isotropic mixture sum_k w_k N(mu_k, s_k^2 I)."""
    mu, s2, w = (torch.as_tensor(a, dtype=torch.float64) for a in (MEANS, STDS**2, WEIGHTS))
    sig2 = sigma.reshape(-1, 1) ** 2                                    # (B, 1)
    var = s2[None, :] + sig2                                            # (B, K)
    d2 = ((y[:, None, :] - mu[None]) ** 2).sum(-1)                      # (B, K)
    logits = torch.log(w)[None] - 0.5 * d2 / var - y.shape[1] / 2 * torch.log(var)
    r = torch.softmax(logits, dim=1)
    post = (s2[None, :, None] * y[:, None, :] + sig2[:, :, None] * mu[None]) / var[:, :, None]
    return (r[:, :, None] * post).sum(1)


def main(checkout: str, out: str) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    sampling = load_sampling(checkout)
    torch.manual_seed(0)
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (BATCH, 2), jax.numpy.float64))
    sigmas = sampling.get_sigmas_karras(N_STEPS, SIGMA_MIN, SIGMA_MAX).to(torch.float64)
    key = jax.random.PRNGKey(NOISE_SEED)
    noises = np.stack([np.asarray(jax.random.normal(jax.random.fold_in(key, i), (BATCH, 2), jax.numpy.float64))
                       for i in range(N_STEPS)])
    levels = [float(s) for s in sigmas]

    def noise_sampler(sigma, sigma_next):
        return torch.as_tensor(noises[levels.index(float(sigma))])

    y0 = z * SIGMA_MAX     # k-diffusion's start, x = randn * sigma_max (its sigmas[0] is 80 rounded to float32)
    arrays = {"sigmas": sigmas.numpy(), "z": z, "y0": y0, "noises": noises, "means": MEANS, "stds": STDS,
              "weights": WEIGHTS}
    for name, fn, kwargs in CASES:
        f = getattr(sampling, fn)
        if "noise_sampler" in inspect.signature(f).parameters:   # (f is wrapped by torch.no_grad)
            kwargs = dict(kwargs, noise_sampler=noise_sampler)
        elif kwargs.get("eta", 0) or fn in ("sample_euler_ancestral", "sample_dpm_2_ancestral"):
            raise RuntimeError(f"{fn} takes no noise_sampler: its noise would not be genflow's")
        y = f(denoiser, torch.as_tensor(y0), sigmas, disable=True, **kwargs)
        arrays[name] = y.numpy()
        print(f"{name:24s} {fn}({kwargs}) -> mean {y.mean(0).numpy()}")
    np.savez_compressed(out, **arrays)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__),
                                                                        "kdiffusion_samplers.npz"))
