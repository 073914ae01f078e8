"""Batches as global ``jax.Array``s sharded over a mesh's ``data`` axis.

Each source is deterministic in (seed, position): batch i depends on nothing but i, so the
data position saved in a checkpoint (the number of batches consumed) resumes the stream
exactly. In a multi-host run every process computes the same global batch indices and reads
only its own slice of them; ``jax.make_array_from_process_local_data`` assembles the global array.

Why not grain: its samplers give the same per-epoch shuffling, but a stream that is a pure
function of (seed, i) needs no iterator state in checkpoints and no worker processes (which
need absl flags marked as parsed); host threads reading batches ahead (``workers``) are enough
for data sets that decode this cheaply: 10,700 img/s of CIFAR-10 records on one core, 3.3x what a
GPU trains on (benchmarks/data_rate.py).
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from genflow.placement import as_placement

Fetch = Callable[[np.ndarray], tuple[np.ndarray, "np.ndarray | None"]]


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every device: the mesh's placement's ``batch()``."""
    return as_placement(mesh).batch()


def put_global(batch: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """Place a host array (the same on every process) as a global array with ``sharding``."""
    return jax.make_array_from_callback(batch.shape, sharding, lambda idx: batch[idx])


def put_local(local: np.ndarray, sharding: NamedSharding, global_batch: int) -> jax.Array:
    """Assemble this process's slice of a batch into the global array (all processes call it)."""
    return jax.make_array_from_process_local_data(sharding, local, (global_batch,) + local.shape[1:])


class IndexedBatches:
    """Epoch-shuffled batches of a random-access source of ``size`` examples.

    ``fetch(indices) -> (x, labels or None)`` reads examples; the permutation of each epoch comes
    from (seed, epoch), and the last incomplete batch of an epoch is dropped so shapes stay
    static. ``random_flip`` mirrors images (B, H, W, C) left-right with probability 1/2, drawn
    from (seed, position). With ``prefetch`` the next ``workers`` batches are read ahead, each on
    its own host thread; since batch i is a function of (seed, i) alone, the order in which the
    threads finish changes nothing, and ``workers`` changes speed only, never a batch.
    Batches are mappings ``{"x0": x}``, with the labels under ``label_field`` (``"cond"``; None
    drops them) when the source has any.
    """

    def __init__(self, fetch: Fetch, size: int, batch_size: int, *, seed: int = 0, random_flip: bool = False,
                 sharding: NamedSharding | None = None, position: int = 0, prefetch: bool = True,
                 workers: int = 1, label_field: str | None = "cond"):
        if batch_size > size:
            raise ValueError(f"batch size {batch_size} exceeds the {size} training examples; lower train.batch_size.")
        nproc = jax.process_count()
        if workers < 1:
            raise ValueError(f"data workers must be at least 1, got {workers}.")
        if batch_size % nproc:
            raise ValueError(f"batch size {batch_size} does not split over {nproc} processes; use a multiple of {nproc}.")
        self.fetch, self.size, self.batch_size, self.seed = fetch, size, batch_size, seed
        self.random_flip, self.sharding, self.label_field = random_flip, sharding, label_field
        self.per_epoch = size // batch_size
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="genflow-data") if prefetch else None
        self._ahead: dict[int, Future] = {}
        self.position = position

    @property
    def position(self) -> int:
        """Batches handed out so far: the data position saved in checkpoints."""
        return self._position

    @position.setter
    def position(self, value: int) -> None:
        for future in getattr(self, "_ahead", {}).values():
            future.cancel()  # batches read ahead for the old position are not wanted
        self._position, self._ahead = int(value), {}

    def indices(self, i: int) -> np.ndarray:
        """Global example indices of batch i."""
        epoch, j = divmod(i, self.per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        return perm[j * self.batch_size:(j + 1) * self.batch_size]

    def host_batch(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """This process's slice of batch i, as host arrays."""
        nproc, pid = jax.process_count(), jax.process_index()
        local = slice(pid * self.batch_size // nproc, (pid + 1) * self.batch_size // nproc)
        x, y = self.fetch(self.indices(i)[local])
        if self.random_flip:
            flip = (np.random.default_rng([self.seed, i, 1]).random(self.batch_size) < 0.5)[local]
            x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
        return x, y

    def _read(self, i: int):
        return self.host_batch(i)

    def __iter__(self):
        return self

    def __next__(self):
        i = self._position
        ahead = self._ahead.pop(i, None)
        x, y = ahead.result() if ahead is not None else self._read(i)
        if self._pool is not None:
            for j in range(i + 1, i + 1 + self.workers):
                if j not in self._ahead:
                    self._ahead[j] = self._pool.submit(self._read, j)
        self._position = i + 1
        if self.sharding is not None:
            x = put_local(x, self.sharding, self.batch_size)
            y = None if y is None else put_local(y, self.sharding, self.batch_size)
        return as_batch(x, y, self.label_field)


def as_batch(x, y=None, label_field: str | None = "cond") -> dict:
    """A batch mapping: ``{"x0": x}``, plus ``{label_field: y}`` where there are labels."""
    return {"x0": x} if y is None or label_field is None else {"x0": x, label_field: y}


class ArrayBatches(IndexedBatches):
    """``IndexedBatches`` over in-memory arrays x (N, ...) and optional per-example ``labels`` (N, ...),
    delivered under ``label_field`` (``"cond"`` for class labels, ``"x1"`` for ReFlow's couples)."""

    def __init__(self, x: np.ndarray, batch_size: int, *, labels: np.ndarray | None = None, **kwargs):
        self.x, self.labels = x, labels
        fetch = lambda idx: (x[idx], None if labels is None else labels[idx])
        super().__init__(fetch, len(x), batch_size, prefetch=False, **kwargs)


DATA_STREAM = 0x64617461  # "data": the data's keys hang off fold_in(key(seed), DATA_STREAM)


class SampledBatches:
    """Batches ``{"x0": x}`` of fresh draws ``sample_fn(fold_in(data_key, i), batch_size)`` for toy data; batch i
    depends only on (seed, i), and every process draws the same global batch.

    ``data_key = fold_in(key(seed), DATA_STREAM)``: the train step's keys are
    ``fold_in(key(seed), step)``, and with JAX's default keys ``fold_in(k, i) == split(k, n)[i]``,
    so drawing the data from ``fold_in(key(seed), i)`` too would reuse the step's key."""

    def __init__(self, sample_fn: Callable, batch_size: int, *, seed: int = 0,
                 sharding: NamedSharding | None = None, position: int = 0):
        self.sample_fn = sample_fn
        self.batch_size, self.seed, self.sharding, self.position = batch_size, seed, sharding, position
        data_key = jax.random.fold_in(jax.random.PRNGKey(seed), DATA_STREAM)
        # key derivation and draw in one program: one dispatch per batch, not four
        self._draw = jax.jit(lambda i: sample_fn(jax.random.fold_in(data_key, i), batch_size))

    def host_batch(self, i: int) -> tuple[np.ndarray, None]:
        return np.asarray(self._draw(np.uint32(i))), None

    def __iter__(self):
        return self

    def __next__(self):
        x, _ = self.host_batch(self.position)
        self.position += 1
        return {"x0": put_global(x, self.sharding) if self.sharding is not None else x}
