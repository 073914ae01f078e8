"""Reference outputs of iPNDM from its authors' collection (zju-pi/diff-sampler) for
tests/test_samplers_reference.py.

Run in a side environment with torch (never in genflow's own; CI reads the .npz):

    python tests/data/make_ipndm_reference.py /path/to/diff-sampler/diff-solvers-main   # (68d5ce4)

Imports that directory's solvers.py (and its solver_utils.py) and runs ``ipndm_sampler`` in float64
on the exact denoiser of the 2-D mixture of make_kdiffusion_samplers.py, from x = 80 z on the
10-step Karras levels from 80 to 0.002, for max_order 4 and 2, with and without
``denoise_to_zero``; the levels are saved beside the outputs.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from make_kdiffusion_samplers import MEANS, STDS, WEIGHTS, denoiser  # noqa: E402

torch.set_default_dtype(torch.float64)


def main(directory: str, out: str) -> None:
    sys.path.insert(0, directory)
    import solvers  # the authors' diff-solvers-main/solvers.py

    n = 10
    ramp = np.linspace(0, 1, n + 1)
    sigmas = (80.0 ** (1 / 7) + ramp * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    z = np.random.default_rng(1).standard_normal((64, 2))

    def net(x, t, class_labels=None):
        return denoiser(x, t.reshape(-1).expand(x.shape[0]))

    arrays = {"sigmas": sigmas, "z": z, "means": MEANS, "stds": STDS, "weights": WEIGHTS}
    for order in (4, 2):
        for denoise in (False, True):
            x = solvers.ipndm_sampler(net, torch.as_tensor(z), t_steps=torch.as_tensor(sigmas), max_order=order,
                                      denoise_to_zero=denoise)
            arrays[f"order{order}_denoise{int(denoise)}"] = x.numpy()
    np.savez_compressed(out, **arrays)
    print("wrote", out, sorted(arrays))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__),
                                                                        "ipndm_reference.npz"))
