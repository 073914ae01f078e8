"""Metrics: sample-quality distances, the Fréchet distance, and the Fréchet digits distance."""
from genflow.metrics.digits_classifier import frechet_digits_distance
from genflow.metrics.distances import energy_distance, mmd_rbf, sliced_wasserstein
from genflow.metrics.frechet import feature_stats, frechet_distance

__all__ = ["energy_distance", "mmd_rbf", "sliced_wasserstein", "feature_stats", "frechet_distance",
           "frechet_digits_distance"]
