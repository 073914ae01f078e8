"""ReFlow couplings: (noise, sample) pairs of a trained flow, stored on disk in chunks.

A coupling is x1 ~ prior and x0 = Flow(x1), the PF-ODE integrated from t = 1 down to t_min
(genflow's time: t = 0 data, t = 1 noise; rectified-flow papers call x1 "Z_0" and x0 "Z_1").
They are written as ``<directory>/chunk_00012.npz`` files, each holding ``x1`` and ``x0`` for
``chunk_size`` couples, through a temporary file and ``os.replace``, so a file that exists is
complete. Chunk i's noise is a pure function of (seed, i) (``chunk_noise``), so a run that was
killed and started again skips the chunks on disk and produces the others exactly as an
uninterrupted run would: nothing is duplicated or lost. ``meta.json`` beside the chunks records
what made them (solver, tolerances, seed, chunk size, data shape, which weights); a later call
with different settings is refused rather than mixing two coupling sets.

Reference: Liu, Gong & Liu 2023 (rectified flow), Algorithm 1 (ReFlow) and Sec. 2.3.
"""
from __future__ import annotations

import glob
import json
import math
import os
import re
import tempfile
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.sharding import Mesh

from genflow.models.spec import ModelSpec
from genflow.placement import Placement, as_placement
from genflow.processes.base import AbstractProcess
from genflow.samplers import grids
from genflow.samplers.diffrax_solvers import ODE_SOLVERS, ode_sample
from genflow.samplers.euler import euler_ode
from genflow.progress import progress_bar

CHUNK_RE = re.compile(r"^chunk_(\d{5,})\.npz$")
META = "meta.json"
# Settings that must agree between the runs that fill one coupling directory.
_FIXED_KEYS = ("seed", "chunk_size", "shape", "dtype", "solver", "ode_steps", "rtol", "atol", "source")


def chunk_path(directory: str, i: int) -> str:
    return os.path.join(directory, f"chunk_{i:05d}.npz")


def chunk_key(seed: int | Array, i: int | Array) -> Array:
    """The PRNG key of chunk i: fold_in(PRNGKey(seed), i), independent of the device count."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), i)


def chunk_noise(process: AbstractProcess, seed: int, i: int, chunk_size: int, shape: tuple[int, ...],
                dtype=jnp.float32) -> Array:
    """x1 of chunk i: ``process.prior(chunk_key(seed, i), (chunk_size, *shape))``."""
    return process.prior(chunk_key(seed, i), (chunk_size,) + tuple(shape), dtype)


def pf_ode_sampler(solver: str = "tsit5", ode_steps: int | None = None, rtol: float = 1e-5,
                   atol: float = 1e-5) -> Callable[..., Array]:
    """``sample(model, x1, cond=None) -> x0`` on the PF-ODE: Euler on a uniform grid of ``ode_steps``
    (``solver="euler"``), a diffrax solver on ``ode_steps`` fixed steps, or (``ode_steps`` None)
    a diffrax adaptive solver with ``PIDController(rtol, atol)``."""
    if solver != "euler" and solver not in ODE_SOLVERS:
        raise ValueError(f"unknown ODE solver {solver!r}; choose one of {', '.join(ODE_SOLVERS)}.")
    if solver == "euler":
        if not ode_steps:
            raise ValueError("solver 'euler' needs a step count (ode_steps); adaptive steps need tsit5, dopri5, "
                             "heun or midpoint.")
        return lambda model, x1, cond=None: euler_ode(model, x1, grids.uniform(model.process, ode_steps), cond=cond)[0]
    if ode_steps:
        return lambda model, x1, cond=None: ode_sample(model, x1, grids.uniform(model.process, ode_steps),
                                                       cond=cond, solver=solver)[0]
    return lambda model, x1, cond=None: ode_sample(model, x1, cond=cond, solver=solver, rtol=rtol, atol=atol)[0]


class Couplings(NamedTuple):
    """Stored couples: noise x1 (N, ...), the flow's sample x0 (N, ...), and for a class-conditional
    flow the label (N,) each sample was generated with (None otherwise)."""
    x1: np.ndarray
    x0: np.ndarray
    labels: np.ndarray | None = None


def chunk_labels(seed: int | Array, i: int | Array, chunk_size: int, num_classes: int) -> Array:
    """Labels of chunk i of a class-conditional flow's couplings, uniform over the classes."""
    return jax.random.randint(jax.random.fold_in(chunk_key(seed, i), 1), (chunk_size,), 0, num_classes)


def make_coupler(spec: ModelSpec, shape: tuple[int, ...], chunk_size: int, *, sampler: Callable[..., Array],
                 mesh: "Mesh | Placement | None" = None, num_classes: int | None = None,
                 dtype=jnp.float32) -> Callable[[Any, Array, Array], dict[str, Array]]:
    """``couple(params, seed, i) -> {"x1", "x0"[, "labels"]}`` for chunk i, jitted once for every chunk.

    The noise (and, with ``num_classes``, a uniform label per couple: the flow is integrated
    conditioned on it) is drawn inside the compiled program; with a ``mesh`` (a ``Placement``, or a
    plain mesh: data parallel) it and the integration are split over every device
    (``placement.batch()``; ``chunk_size`` must divide evenly) and the parameters are placed by the
    placement's rule (replicated, or FSDP-sharded as the training state holds them).
    """
    shape = tuple(shape)
    process = spec.process
    placement = as_placement(mesh)

    def couple(params, seed, i):
        x1 = chunk_noise(process, seed, i, chunk_size, shape, dtype)
        labels = None if num_classes is None else chunk_labels(seed, i, chunk_size, num_classes)
        if placement is not None:
            x1 = jax.lax.with_sharding_constraint(x1, placement.batch())
        out = {"x1": x1, "x0": sampler(spec.model(params), x1, labels)}
        if labels is not None:
            out["labels"] = labels
        return out

    if placement is None:
        return jax.jit(couple)
    if chunk_size % placement.size:
        raise ValueError(f"chunk size {chunk_size} does not split over {placement.size} devices; "
                         f"use a multiple of {placement.size}.")
    compiled: dict = {}

    def couple_placed(params, seed, i):
        # the parameters' shardings follow from their shapes (the placement's rule): built at the first call
        if "fn" not in compiled:
            compiled["fn"] = jax.jit(couple, in_shardings=(placement.shardings(params), None, None),
                                     out_shardings=placement.batch())
        return compiled["fn"](params, seed, i)

    return couple_placed


def params_fingerprint(params) -> str:
    """A short checksum of parameter values: a coupling set belongs to one set of weights."""
    leaves = [np.asarray(jax.device_get(x)) for x in jax.tree.leaves(params)]
    total = sum(float(np.sum(np.abs(x.astype(np.float64)))) for x in leaves)
    size = sum(x.size for x in leaves)
    return f"{size}:{total:.10e}"


def _to_host(x: Array) -> np.ndarray:
    if jax.process_count() > 1:  # every process holds a slice; gather the whole chunk
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def _write_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
    """np.savez to a temporary file in the same directory, then rename: never half a chunk."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_json_atomic(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def read_meta(directory: str) -> dict | None:
    path = os.path.join(directory, META)
    return json.load(open(path)) if os.path.exists(path) else None


def existing_chunks(directory: str) -> list[int]:
    """Indices of the complete chunk files in ``directory``, sorted."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(m.group(1)) for name in os.listdir(directory) if (m := CHUNK_RE.match(name)))


def generate_couplings(couple: Callable, params, directory: str, *, num_couples: int, chunk_size: int,
                       seed: int, meta: dict[str, Any], progress: bool = True,
                       should_stop: Callable[[int], bool] | None = None) -> dict[str, Any]:
    """Fill ``directory`` with ceil(num_couples / chunk_size) chunks; skip those already written.

    Args:
      couple: ``couple(params, seed, i) -> {"x1", "x0"[, "labels"]}`` from ``make_coupler``.
      params: the flow's parameters (EMA weights, usually).
      num_couples: rounded up to whole chunks (every chunk has the same shape: one compilation).
      meta: settings that identify the coupling set (solver, tolerances, weights...); stored in
        ``meta.json`` with seed and chunk_size, and compared with an existing one.
      should_stop: called with each chunk index before it is computed; True stops there (tests
        use it to simulate a run killed part-way).
    Returns the stored meta (with ``num_chunks`` and ``num_couples`` on disk).
    """
    if num_couples <= 0 or chunk_size <= 0:
        raise ValueError(f"num_couples and chunk_size must be positive, got {num_couples} and {chunk_size}.")
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, "chunk_*.npz.*.tmp")):  # left by a killed writer
        os.remove(stale)
    meta = dict(meta, seed=int(seed), chunk_size=int(chunk_size))
    old = read_meta(directory)
    if old is not None:
        diffs = [k for k in _FIXED_KEYS if k in meta and old.get(k) != meta.get(k)]
        if diffs:
            k = diffs[0]
            raise ValueError(f"{directory} holds couplings made with {k}={old.get(k)!r}, not {meta.get(k)!r}; "
                             "delete that directory or pass the same settings.")
    n_chunks = math.ceil(num_couples / chunk_size)
    done = set(existing_chunks(directory))
    todo = [i for i in range(n_chunks) if i not in done]
    is_writer = jax.process_index() == 0
    if is_writer:
        _write_json_atomic(os.path.join(directory, META), dict(old or {}, **meta))
    bar = progress_bar(n_chunks, initial=n_chunks - len(todo), disable=not progress, desc="couplings", unit="chunk",
                       every=max(1, n_chunks // 20))
    for i in todo:
        if should_stop is not None and should_stop(i):
            break
        arrays = {k: _to_host(v) for k, v in couple(params, jnp.asarray(seed, jnp.uint32),
                                                     jnp.asarray(i, jnp.uint32)).items()}
        if not (np.all(np.isfinite(arrays["x0"]))):
            bar.close()
            raise ValueError(f"chunk {i} of the couplings is not finite: the flow diverged; "
                             "check the run's samples or use a smaller ODE tolerance.")
        if is_writer:
            _write_atomic(chunk_path(directory, i), dict(arrays, index=np.asarray(i)))
        bar.update(1)
    bar.close()
    if jax.process_count() > 1:  # the others read the chunks next: wait until process 0 has written them
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"genflow couplings written: {os.path.abspath(directory)}")
    on_disk = existing_chunks(directory)
    return dict(read_meta(directory) or meta, num_chunks=len(on_disk), num_couples=len(on_disk) * chunk_size)


def load_couplings(directory: str, num_couples: int | None = None) -> Couplings:
    """``Couplings(x1, x0, labels)``, each (N, ...), from chunks 0, 1, ... in order; N = whole chunks
    covering ``num_couples`` (all chunks when None). Raises if a chunk that is needed is missing."""
    meta = read_meta(directory)
    chunks = existing_chunks(directory)
    if meta is None or not chunks:
        raise ValueError(f"{directory} holds no couplings; generate them first (genflow reflow RUN_DIR).")
    n = len(chunks) if num_couples is None else math.ceil(num_couples / meta["chunk_size"])
    missing = sorted(set(range(n)) - set(chunks))
    if missing:
        raise ValueError(f"{directory} lacks chunk {missing[0]} of {n}; run the coupling generation again "
                         "to finish it (written chunks are kept).")
    x1s, x0s, labels = [], [], []
    for i in range(n):
        with np.load(chunk_path(directory, i)) as z:
            x1s.append(z["x1"])
            x0s.append(z["x0"])
            if "labels" in z:
                labels.append(z["labels"])
    return Couplings(np.concatenate(x1s), np.concatenate(x0s), np.concatenate(labels) if labels else None)
