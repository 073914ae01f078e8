"""Data: the embedded digits, toy 2-D sets, the exact Gaussian mixture, TFDS sets, image folders,
and sharded batches."""
from genflow.data.digits import load_digits, to_uint8
from genflow.data.pipeline import ArrayBatches, IndexedBatches, SampledBatches, data_sharding, put_global, put_local
from genflow.data.toy2d import TOY_SETS, GaussianMixture, checkerboard, moons, swissroll

__all__ = ["load_digits", "to_uint8", "ArrayBatches", "IndexedBatches", "SampledBatches", "data_sharding",
           "put_global", "put_local",
           "TOY_SETS", "GaussianMixture", "checkerboard", "moons", "swissroll"]
