"""genflow: diffusion and flow generative models in JAX.

Time convention everywhere: t = 0 is data, t = 1 is noise; x_t = alpha(t) x0 + sigma(t) eps.
"""
from genflow import data, models, objectives, processes, samplers, training
from genflow.config import ConfigError, Experiment
from genflow.data import GaussianMixture
from genflow.models import MLP, Model
from genflow.objectives import denoising_score_matching, flow_matching
from genflow.processes import DDPM, EDM, VE, VP, AbstractProcess, RectifiedFlow, SubVP
from genflow.samplers import euler_maruyama, euler_ode
from genflow.training import TrainState, make_optimizer, make_train_step, tiger

__version__ = "0.1.0"

__all__ = ["data", "models", "objectives", "processes", "samplers", "training", "ConfigError", "Experiment",
           "GaussianMixture", "MLP", "Model", "denoising_score_matching", "flow_matching", "AbstractProcess",
           "VP", "SubVP", "VE", "EDM", "RectifiedFlow", "DDPM", "euler_ode", "euler_maruyama", "TrainState",
           "make_optimizer", "make_train_step", "tiger"]
