"""Metrics: sample-quality distances (and, later, FID and bits/dim)."""
from genflow.metrics.distances import energy_distance, mmd_rbf, sliced_wasserstein

__all__ = ["energy_distance", "mmd_rbf", "sliced_wasserstein"]
