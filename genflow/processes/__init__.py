"""Gaussian paths x_t = alpha(t) x0 + sigma(t) eps with t = 0 data and t = 1 noise."""
from genflow.processes.base import AbstractProcess, expand_like
from genflow.processes.continuous import EDM, VE, VP, RectifiedFlow, SubVP
from genflow.processes.ddpm import DDPM

__all__ = ["AbstractProcess", "expand_like", "VP", "SubVP", "VE", "EDM", "RectifiedFlow", "DDPM"]
