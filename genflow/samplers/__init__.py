"""Samplers: functions (model, x1, ts, ...) -> x0, written once against the Model interface.

Every sampler integrates from ts[0] (t_max, the prior) down to the small-t cut-off ts[-1] and
returns a draw of p_{ts[-1]}; ``denoise=True`` replaces it by Tweedie's E[x0 | x] there (see
``genflow.samplers._common``). Likelihoods go through the PF-ODE (``log_likelihood``).
"""
from genflow.samplers import grids
from genflow.samplers.ancestral import ancestral
from genflow.samplers.ddim import ddim
from genflow.samplers.diffrax_solvers import ode_sample, sde_sample
from genflow.samplers.dpm_solver import dpm_solver_pp_2m
from genflow.samplers.edm import edm_euler, edm_heun
from genflow.samplers.euler import euler_maruyama, euler_ode
from genflow.samplers.likelihood import bits_per_dim, log_likelihood
from genflow.samplers.predictor_corrector import predictor_corrector

__all__ = ["grids", "euler_ode", "euler_maruyama", "ancestral", "ddim", "predictor_corrector", "ode_sample",
           "sde_sample", "edm_heun", "edm_euler", "dpm_solver_pp_2m", "log_likelihood", "bits_per_dim"]
