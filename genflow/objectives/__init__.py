"""Training objectives: pure functions (model, x0, key, ...) -> (loss, metrics)."""
from genflow.objectives import weighting
from genflow.objectives.denoising import denoising_score_matching, flow_matching
from genflow.objectives.time_sampling import lognormal_sigma, uniform_time
from genflow.objectives.weighting import Weighting

__all__ = ["denoising_score_matching", "flow_matching", "uniform_time", "lognormal_sigma",
           "Weighting", "weighting"]
