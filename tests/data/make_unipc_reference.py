"""Reference outputs of the UniPC authors' sampler for tests/test_samplers_reference.py.

Run in a side environment with torch (never in genflow's own; CI reads the .npz):

    python tests/data/make_unipc_reference.py /path/to/UniPC      # a checkout of wl-zhao/UniPC (cf9de85)

It imports that checkout's uni_pc.py and runs UniPC (data prediction, multistep,
lower_order_final) in float64 with the continuous linear VP schedule (beta_0 = 0.1, beta_1 = 20,
genflow's VP()) on the exact noise prediction of the 2-D mixture of make_kdiffusion_samplers.py,
from x = z at t = 1 to t = 1e-3 in 10 steps, for orders 2 and 3, variants bh1 and bh2, on the
authors' time-uniform and logSNR grids; the grids are saved beside the outputs.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from make_kdiffusion_samplers import MEANS, STDS, WEIGHTS, denoiser  # noqa: E402

torch.set_default_dtype(torch.float64)
STEPS = 10


def main(checkout: str, out: str) -> None:
    spec = importlib.util.spec_from_file_location("uni_pc", os.path.join(checkout, "uni_pc.py"))
    uni_pc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(uni_pc)
    ns = uni_pc.NoiseScheduleVP("linear", continuous_beta_0=0.1, continuous_beta_1=20.0)

    def noise_pred(x, t):   # x (B, 2, 1, 1): the authors' code is written for images (einsum over c, h, w)
        y = x.reshape(x.shape[0], 2)
        a, s = ns.marginal_alpha(t)[:, None], ns.marginal_std(t)[:, None]
        return ((y - a * denoiser(y / a, (s / a)[:, 0])) / s).reshape(x.shape)

    z = np.random.default_rng(0).standard_normal((64, 2))
    arrays = {"z": z, "means": MEANS, "stds": STDS, "weights": WEIGHTS}
    for skip in ("time_uniform", "logSNR"):
        for variant in ("bh1", "bh2"):
            for order in (2, 3):
                solver = uni_pc.UniPC(noise_pred, ns, algorithm_type="data_prediction", variant=variant)
                with contextlib.redirect_stdout(io.StringIO()):   # the authors' code prints each step
                    x = solver.sample(torch.as_tensor(z).reshape(64, 2, 1, 1), steps=STEPS, t_start=1.0, t_end=1e-3, order=order,
                                      skip_type=skip, method="multistep", lower_order_final=True)
                arrays[f"{skip}_{variant}_order{order}"] = x.reshape(64, 2).numpy()
        arrays[f"{skip}_grid"] = solver.get_time_steps(skip, 1.0, 1e-3, STEPS, "cpu").numpy()
    np.savez_compressed(out, **arrays)
    print("wrote", out, sorted(arrays))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__),
                                                                        "unipc_reference.npz"))
