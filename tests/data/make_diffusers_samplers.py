"""Reference outputs of diffusers' schedulers for tests/test_samplers_reference.py.

Run in a side environment with torch and diffusers (never in genflow's own; CI reads the .npz):

    python tests/data/make_diffusers_samplers.py        # diffusers 0.42.1 made the committed file

Each scheduler runs its own loop (set_timesteps(10), model(x, t), step(...).prev_sample) over the
1000-step linear DDPM schedule with "trailing" timestep spacing (integer timesteps), on the exact
noise prediction of the 2-D mixture of make_kdiffusion_samplers.py at each discrete timestep j
(alpha^2 = alphas_cumprod[j], diffusers' own float32 table). The timesteps, the start x and
alphas_cumprod are saved beside the outputs.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from make_kdiffusion_samplers import MEANS, STDS, WEIGHTS, denoiser  # noqa: E402

COMMON = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
              timestep_spacing="trailing", prediction_type="epsilon")


def cases():
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler

    return {
        "dpmsolver_multistep_2": DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
                                                             final_sigmas_type="zero", **COMMON),
        "euler_discrete": EulerDiscreteScheduler(**COMMON),
        "ddim": DDIMScheduler(set_alpha_to_one=True, clip_sample=False, **COMMON),
        "unipc_multistep_2": UniPCMultistepScheduler(solver_order=2, solver_type="bh2", final_sigmas_type="zero",
                                                     **COMMON),
        "unipc_multistep_3": UniPCMultistepScheduler(solver_order=3, solver_type="bh2", final_sigmas_type="zero",
                                                     **COMMON),
    }


def main(out: str) -> None:
    z = np.random.default_rng(2).standard_normal((64, 2))
    arrays = {"z": z, "means": MEANS, "stds": STDS, "weights": WEIGHTS}
    for name, sch in cases().items():
        acp = sch.alphas_cumprod.to(torch.float64)

        def eps(x, t):
            a, s = acp[int(t)].sqrt(), (1 - acp[int(t)]).sqrt()
            y = x / a
            return (x - a * denoiser(y, (s / a).expand(x.shape[0]))) / s

        sch.set_timesteps(10)
        x = torch.as_tensor(z) * sch.init_noise_sigma
        arrays[f"{name}_x_start"] = x.numpy().copy()
        arrays[f"{name}_timesteps"] = sch.timesteps.numpy().astype(np.int64)
        for t in sch.timesteps:
            model_in = sch.scale_model_input(x, t)
            x = sch.step(eps(model_in, t), t, x).prev_sample
        arrays[name] = x.numpy()
        arrays["alphas_cumprod"] = sch.alphas_cumprod.numpy()
        print(name, sch.timesteps.tolist(), float(sch.init_noise_sigma))
    np.savez_compressed(out, **arrays)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "diffusers_samplers.npz"))
