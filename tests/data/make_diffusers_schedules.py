"""Reference DDPM schedules from diffusers for tests/test_processes.py.

Run in a side environment with torch and diffusers (never in genflow's own; CI reads the .npz):

    python tests/data/make_diffusers_schedules.py        # diffusers 0.42.1 made the committed file

Writes DDPMScheduler(...).alphas_cumprod (float32, as diffusers keeps it) for the linear,
scaled_linear and squaredcos_cap_v2 schedules over 1000 steps, and for a trained_betas table.
"""
import os

import numpy as np
from diffusers import DDPMScheduler

CASES = {
    "linear": dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02),
    "scaled_linear": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    "squaredcos_cap_v2": dict(beta_schedule="squaredcos_cap_v2"),
}
TRAINED = np.linspace(2e-4, 0.03, 200) ** 1.5


def main(out):
    arrays = {}
    for name, kwargs in CASES.items():
        arrays[name] = DDPMScheduler(num_train_timesteps=1000, **kwargs).alphas_cumprod.numpy()
    arrays["trained_betas"] = TRAINED
    arrays["trained"] = DDPMScheduler(num_train_timesteps=200, trained_betas=TRAINED).alphas_cumprod.numpy()
    np.savez_compressed(out, **arrays)
    print("wrote", out, {k: v.dtype for k, v in arrays.items()})


if __name__ == "__main__":
    main(os.path.join(os.path.dirname(__file__), "diffusers_schedules.npz"))
