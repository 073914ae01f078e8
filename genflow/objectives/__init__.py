"""Training objectives: pure functions (model, x0, key, ...) -> (loss, metrics)."""
from genflow.objectives import weighting
from genflow.objectives.denoising import denoising_score_matching, flow_matching
from genflow.objectives.exact import exact_score_matching, score_weight
from genflow.objectives.implicit import divergence, implicit_score_matching, probe_vectors
from genflow.objectives.sliced import sliced_score_matching, sliced_score_matching_vr
from genflow.objectives.time_sampling import lognormal_sigma, uniform_time
from genflow.objectives.weighting import Weighting

__all__ = ["denoising_score_matching", "flow_matching", "exact_score_matching", "implicit_score_matching",
           "sliced_score_matching", "sliced_score_matching_vr", "divergence", "probe_vectors", "score_weight",
           "uniform_time", "lognormal_sigma", "Weighting", "weighting"]
