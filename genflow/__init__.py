"""genflow: diffusion and flow generative models in JAX.

Time convention everywhere: t = 0 is data, t = 1 is noise; x_t = alpha(t) x0 + sigma(t) eps.
"""
from genflow import data, gan, metrics, models, objectives, pretrained, processes, reflow, samplers, training
from genflow.config import ConfigError, Experiment
from genflow.data import GaussianMixture
from genflow.models import MLP, DiT, Guided, Model, ModelSpec, Parameterization, guided
from genflow.objectives import (denoising_score_matching, exact_score_matching, flow_matching, implicit_score_matching,
                                sliced_score_matching, sliced_score_matching_vr)
from genflow.pretrained import load_edm_network, read_edm_pickle
from genflow.processes import DDPM, EDM, VE, VP, AbstractProcess, RectifiedFlow, SubVP
from genflow.samplers import (SAMPLERS, ancestral, bits_per_dim, ddim, dpm_solver_pp_2m, edm_euler, edm_heun,
                              euler_maruyama, euler_ode, log_likelihood, ode_sample, predictor_corrector, sde_sample)
from genflow.training import TrainState, make_optimizer, make_train_step, tiger, tiger_rms

__version__ = "0.1.0"

__all__ = ["data", "gan", "metrics", "models", "objectives", "pretrained", "processes", "reflow", "samplers", "training", "ConfigError", "Experiment",
           "GaussianMixture", "MLP", "DiT", "Model", "ModelSpec", "Parameterization", "Guided", "guided", "SAMPLERS", "edm_euler", "denoising_score_matching", "flow_matching", "exact_score_matching",
           "implicit_score_matching", "sliced_score_matching", "sliced_score_matching_vr", "AbstractProcess",
           "VP", "SubVP", "VE", "EDM", "RectifiedFlow", "DDPM", "euler_ode", "euler_maruyama", "ancestral", "ddim",
           "predictor_corrector", "ode_sample", "sde_sample", "edm_heun", "dpm_solver_pp_2m", "log_likelihood",
           "bits_per_dim", "TrainState", "make_optimizer", "make_train_step", "tiger", "tiger_rms", "load_edm_network",
           "read_edm_pickle"]
