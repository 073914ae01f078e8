"""Batches as global ``jax.Array``s sharded over a mesh's ``data`` axis.

Each source is deterministic in (seed, position): batch i depends on nothing but i, so the
data position saved in a checkpoint (the number of batches consumed) resumes the stream
exactly, and every process of a multi-host run builds the same global batch and places only
its addressable shards.
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the mesh's ``data`` axis."""
    return NamedSharding(mesh, P("data"))


def put_global(batch: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """Place a host array (the same on every process) as a global array with ``sharding``."""
    return jax.make_array_from_callback(batch.shape, sharding, lambda idx: batch[idx])


class ArrayBatches:
    """Epoch-shuffled batches of an in-memory array (N, ...), reshuffled every epoch from
    ``seed``; the last incomplete batch of an epoch is dropped so shapes stay static.

    ``labels`` (N,) come along as a second output when given; ``random_flip`` mirrors images
    (N, H, W, C) left-right with probability 1/2, drawn from (seed, position)."""

    def __init__(self, x: np.ndarray, batch_size: int, *, seed: int = 0, labels: np.ndarray | None = None,
                 random_flip: bool = False, sharding: NamedSharding | None = None, position: int = 0):
        if batch_size > len(x):
            raise ValueError(f"batch size {batch_size} exceeds the {len(x)} training examples; lower train.batch_size.")
        self.x, self.labels, self.batch_size, self.seed = x, labels, batch_size, seed
        self.random_flip, self.sharding, self.position = random_flip, sharding, position
        self.per_epoch = len(x) // batch_size

    def indices(self, i: int) -> np.ndarray:
        epoch, j = divmod(i, self.per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.x))
        return perm[j * self.batch_size:(j + 1) * self.batch_size]

    def host_batch(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        idx = self.indices(i)
        x = self.x[idx]
        if self.random_flip:
            flip = np.random.default_rng([self.seed, i, 1]).random(len(idx)) < 0.5
            x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
        return x, (None if self.labels is None else self.labels[idx])

    def __iter__(self):
        return self

    def __next__(self):
        x, y = self.host_batch(self.position)
        self.position += 1
        if self.sharding is not None:
            x = put_global(x, self.sharding)
            y = None if y is None else put_global(y, self.sharding)
        return x, y


class SampledBatches:
    """Fresh draws ``sample_fn(fold_in(key(seed), i), batch_size)`` for toy data; batch i
    depends only on (seed, i)."""

    def __init__(self, sample_fn: Callable, batch_size: int, *, seed: int = 0,
                 sharding: NamedSharding | None = None, position: int = 0):
        self.sample_fn = jax.jit(sample_fn, static_argnums=1)
        self.batch_size, self.seed, self.sharding, self.position = batch_size, seed, sharding, position

    def host_batch(self, i: int) -> tuple[np.ndarray, None]:
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), i)
        return np.asarray(self.sample_fn(key, self.batch_size)), None

    def __iter__(self):
        return self

    def __next__(self):
        x, _ = self.host_batch(self.position)
        self.position += 1
        return (put_global(x, self.sharding) if self.sharding is not None else x), None
