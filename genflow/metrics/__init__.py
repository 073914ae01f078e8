"""Metrics: sample-quality distances, the Fréchet distance, FID/KID, and the Fréchet digits distance."""
from genflow.metrics.digits_classifier import frechet_digits_distance
from genflow.metrics.distances import energy_distance, mmd_rbf, sliced_wasserstein
from genflow.metrics.fid import fid_from_features, kid, load_stats, save_stats
from genflow.metrics.frechet import feature_stats, frechet_distance

__all__ = ["energy_distance", "mmd_rbf", "sliced_wasserstein", "feature_stats", "frechet_distance",
           "frechet_digits_distance", "fid_from_features", "kid", "load_stats", "save_stats"]
