"""Samplers: one signature, one registry, written once against the Model interface.

    sampler(model, x1, ts, *, key=None, cond=None, denoise=False, **options) -> (x, stats)

Every sampler integrates from ts[0] (t_max, the prior) down to the small-t cut-off ts[-1] and
returns a draw of p_{ts[-1]} with ``stats["nfe"]`` the model evaluations it made;
``denoise=True`` replaces the draw by Tweedie's E[x0 | x] there (see ``genflow.samplers._common``).
``registry.SAMPLERS`` names them for configs, the CLI and the docs. Likelihoods go through the
PF-ODE (``log_likelihood``).
"""
from genflow.samplers import grids, registry
# Import order is the registry's (and the README table's) order.
from genflow.samplers.euler import euler_maruyama, euler_ode  # noqa: I001
from genflow.samplers.ddim import ddim
from genflow.samplers.ancestral import ancestral
from genflow.samplers.predictor_corrector import predictor_corrector
from genflow.samplers.edm import edm_euler, edm_heun
from genflow.samplers.noise_level import dpm_2, dpm_2_ancestral, euler_ancestral, ipndm, lms
from genflow.samplers.dpm_solver import (dpm_solver_pp_2m, dpm_solver_pp_2m_sde, dpm_solver_pp_2s_ancestral,
                                         dpm_solver_pp_3m, dpm_solver_pp_3m_sde)
from genflow.samplers.unipc import unipc
from genflow.samplers.diffrax_solvers import ode_sample, sde_sample
from genflow.samplers.likelihood import bits_per_dim, log_likelihood
from genflow.samplers.tuned_grid import tune_grid
from genflow.samplers.registry import SAMPLERS, SamplerInfo, register

__all__ = ["grids", "registry", "SAMPLERS", "SamplerInfo", "register", "euler_ode", "euler_maruyama", "ancestral",
           "ddim", "predictor_corrector", "ode_sample", "sde_sample", "edm_heun", "edm_euler", "dpm_solver_pp_2m",
           "euler_ancestral", "dpm_2", "dpm_2_ancestral", "lms", "dpm_solver_pp_2s_ancestral", "dpm_solver_pp_2m_sde",
           "dpm_solver_pp_3m", "dpm_solver_pp_3m_sde", "unipc", "ipndm", "log_likelihood", "bits_per_dim", "tune_grid"]
