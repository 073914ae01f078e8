"""Data: the embedded digits, toy 2-D sets, the exact Gaussian mixture, and sharded batches."""
from genflow.data.digits import load_digits, to_uint8
from genflow.data.pipeline import ArrayBatches, SampledBatches, data_sharding, put_global
from genflow.data.toy2d import TOY_SETS, GaussianMixture, checkerboard, moons, swissroll

__all__ = ["load_digits", "to_uint8", "ArrayBatches", "SampledBatches", "data_sharding", "put_global",
           "TOY_SETS", "GaussianMixture", "checkerboard", "moons", "swissroll"]
