"""k-rectified flow and distillation: flow matching on stored couples, with the standard train step.

How the coupled noise reaches the objective: batches are mappings, and a coupling batch is
``{"x0": x0, "x1": x1}`` (plus ``"cond"`` for a class-conditional flow, whose couplings keep
the label each sample was generated with). ``make_train_step`` passes every field but x0 to
the objective by keyword, and ``flow_matching(..., x1=...)`` uses the coupled noise in place
of fresh noise. So the couples travel sharded exactly like data, and the train step, label
dropout, EMA, non-finite guard, checkpoints and loop are used unchanged.

Distillation is the same regression with t restricted to the Euler grid: ``grid_time(k)``
draws t from {1, 1 - 1/k, ..., 1/k}. With k = 1 it is t = 1 and x_t = x1, and flow matching
becomes || v(x1, 1) - (x1 - x0) ||^2 = || g(x1) - x0 ||^2 for the one-step generator
g(x1) = x1 - v(x1, 1) (one Euler step from t = 1 to 0): regression of x0 on x1. For k > 1 the
x_t are the points a k-step Euler sampler visits when the couple's path is straight.
Reference: Liu, Gong & Liu 2023, Sec. 2.3 (reflow, distillation) and Algorithm 1.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import Array
from jax.sharding import Mesh

from genflow.data.pipeline import IndexedBatches, put_local
from genflow.models.model import Model
from genflow.models.spec import ModelSpec
from genflow.objectives.denoising import flow_matching
from genflow.placement import Placement, as_placement
from genflow.processes.base import AbstractProcess
from genflow.samplers import grids
from genflow.samplers.euler import euler_ode
from genflow.training import Checkpointer, init_state, make_train_step, train_loop
from genflow.training.state import TrainState


def coupled(objective: Callable = flow_matching, **kwargs) -> Callable:
    """``objective(model, x0, key, x1=..., **kwargs)`` as a train-step objective that requires the
    batch's coupled noise ``x1`` (B, ...): a batch without couples is an error, not fresh noise."""

    def objective_on_couples(model: Model, x0: Array, key: Array, *, x1: Array | None = None, cond: Any = None):
        if x1 is None:
            raise ValueError('a coupled objective needs batches {"x0", "x1"} of couples.')
        return objective(model, x0, key, x1=x1, cond=cond, **kwargs)

    return objective_on_couples


def grid_time(k: int):
    """Time sampler drawing t uniformly from the k left ends of a uniform k-step grid from t_max,
    {t_max, t_max - h, ..., t_min + h} with h = (t_max - t_min) / k: where a k-step Euler sampler
    evaluates the velocity."""
    if k < 1:
        raise ValueError(f"a distilled sampler needs at least one step, got k={k}.")

    def sample(key: Array, n: int, process: AbstractProcess) -> Array:
        i = jax.random.randint(key, (n,), 0, k)
        return process.t_max - (process.t_max - process.t_min) * (i / k)

    return sample


def distillation(k: int = 1) -> Callable:
    """The k-step distillation objective on couples: flow matching with ``grid_time(k)``."""
    return coupled(flow_matching, time_sampler=grid_time(k))


def one_step_sample(model: Model, x1: Array, cond: Any = None) -> Array:
    """The one-step generator g(x1) = x1 - v(x1, t_max) (t_max - t_min) of a distilled flow."""
    return euler_ode(model, x1, grids.uniform(model.process, 1), cond=cond)[0]


class CoupleBatches(IndexedBatches):
    """Epoch-shuffled batches ``{"x0", "x1"}`` (and ``"cond"`` with labels) of stored couples."""

    def __init__(self, x0: np.ndarray, x1: np.ndarray, labels: np.ndarray | None, batch_size: int, **kwargs):
        if x0.shape != x1.shape:
            raise ValueError(f"couples must pair equal shapes, got x0 {x0.shape} and x1 {x1.shape}.")
        self.x0, self.x1, self.labels = x0, x1, labels
        super().__init__(lambda idx: (x0[idx], idx), len(x0), batch_size, prefetch=False, **kwargs)

    def __next__(self):
        i = self._position
        idx = self.indices(i)
        nproc, pid = jax.process_count(), jax.process_index()
        idx = idx[pid * self.batch_size // nproc:(pid + 1) * self.batch_size // nproc]
        self._position = i + 1
        fields = {"x0": self.x0[idx], "x1": self.x1[idx]}
        if self.labels is not None:
            fields["cond"] = self.labels[idx]
        if self.sharding is not None:
            fields = {k: put_local(v, self.sharding, self.batch_size) for k, v in fields.items()}
        return fields


def train_on_couples(spec: ModelSpec, params: nnx.State, tx: optax.GradientTransformation, x0: np.ndarray,
                     x1: np.ndarray, *, labels: np.ndarray | None = None, p_uncond: float = 0.0,
                     workdir: str, steps: int, batch_size: int, seed: int = 0, ema_decay: float = 0.999,
                     objective: Callable | None = None, mesh: "Mesh | Placement | None" = None,
                     meta: dict | None = None, microbatches: int = 1,
                     log_every: int = 100, ckpt_every: int = 1000, keep: int = 2,
                     on_sample: Callable[[TrainState, int], None] | None = None, sample_every: int = 0,
                     progress: bool = True) -> tuple[TrainState, bool]:
    """Train a flow on couples (x0[i], x1[i]) from ``params`` (e.g. the previous flow's EMA weights);
    with ``labels`` (N,) a class-conditional flow (label dropout ``p_uncond``).

    Checkpoints (state and data position, atomically) go to ``workdir/checkpoints``, metrics to
    ``workdir/metrics.jsonl``; a workdir with checkpoints is resumed to the same losses.
    ``objective`` defaults to ``coupled(flow_matching)`` (k-rectified flow); ``distillation(k)``
    trains a k-step sampler. ``mesh`` (a ``Placement``, or a plain mesh: data parallel) places the
    state, born placed by its rule, and splits the couples over every device; ``microbatches``
    accumulates the gradient inside the step (``make_train_step``). Returns (state, signal): the number of the signal that stopped it
    early, or None.
    """
    if x0.shape != x1.shape:
        raise ValueError(f"couples must pair equal shapes, got x0 {x0.shape} and x1 {x1.shape}.")
    placement = as_placement(mesh)
    n_dev = 1 if placement is None else placement.size
    if batch_size % n_dev:
        raise ValueError(f"batch size {batch_size} does not split over {n_dev} devices; use a multiple of {n_dev}.")
    if batch_size > len(x0):
        raise ValueError(f"batch size {batch_size} exceeds the {len(x0)} couples; generate more couples.")
    objective = coupled() if objective is None else objective
    init = lambda p: init_state(jax.tree.map(jnp.copy, p), tx, seed)  # noqa: E731  (copies: the step donates its state)
    state = init(params) if placement is None else placement.init(init, params)
    os.makedirs(workdir, exist_ok=True)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), keep=keep)
    position, pending = 0, None
    if checkpointer.latest_step() is not None:
        state, saved = checkpointer.restore(state)
        position, pending = int(saved["data_position"]), saved.get("pending_metrics")
    sharding = placement.batch() if placement is not None else None
    batches = CoupleBatches(np.asarray(x0), np.asarray(x1), labels, batch_size, seed=seed, sharding=sharding,
                            position=position)
    step_fn = make_train_step(spec, objective, tx, ema_decay=ema_decay, p_uncond=p_uncond, mesh=placement,
                              microbatches=microbatches)
    state, stopped = train_loop(state, step_fn, batches, steps=steps, checkpointer=checkpointer, meta=meta,
                                metrics_path=os.path.join(workdir, "metrics.jsonl"), log_every=log_every,
                                ckpt_every=ckpt_every, on_sample=on_sample, sample_every=sample_every,
                                progress=progress, pending=pending)
    checkpointer.close()
    return state, stopped
