"""The jitted, sharded train step: one pure function of (state, batch)."""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from genflow.models.model import Model
from genflow.processes.base import AbstractProcess
from genflow.training.state import TrainState

Objective = Callable  # (model, x0, key, *, cond) -> (loss, metrics)


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all devices (every process's, in a multi-host run) with axis ``data``."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices).reshape(-1), ("data",))


def has_dropout_stream(rest: nnx.State) -> bool:
    """Whether the non-parameter state holds a ``dropout`` RNG stream to reseed each step."""
    return any(getattr(v, "tag", None) == "dropout" for v in jax.tree.leaves(rest, is_leaf=lambda v: isinstance(v, nnx.Variable)))


def make_train_step(graphdef: nnx.GraphDef, rest: nnx.State, process: AbstractProcess, predicts: str,
                    objective: Objective, tx: optax.GradientTransformation, *, ema_decay: float,
                    mesh: Mesh | None = None):
    """``train_step(state, (x0, cond)) -> (state, metrics)``, jitted with the state donated.

    The state is replicated and the batch split over the mesh's ``data`` axis; XLA inserts
    the gradient all-reduce. A step whose loss or gradient norm is not finite keeps the old
    params, optimizer state and EMA (``metrics['skipped']`` = 1) but still advances ``step``
    so the RNG and data stream stay aligned with an uninterrupted run.
    """
    reseed = has_dropout_stream(rest)

    def loss_fn(params, x0, cond, key):
        # copy=True: reseeding mutates RNG variables, which must belong to this trace level.
        net = nnx.merge(graphdef, params, rest, copy=True)
        k_obj, k_drop = jax.random.split(key)
        if reseed:
            nnx.reseed(net, dropout=k_drop)
        return objective(Model(net, process, predicts), x0, k_obj, cond=cond)

    def train_step(state: TrainState, batch):
        x0, cond = batch
        key = jax.random.fold_in(state.key, state.step)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, x0, cond, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state.ema, params)
        grad_norm = optax.tree.norm(grads)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
        new_state = TrainState(step=state.step + 1, params=keep(params, state.params),
                               opt_state=keep(opt_state, state.opt_state), ema=keep(ema, state.ema),
                               key=state.key)
        metrics = dict(metrics, grad_norm=grad_norm, skipped=(~ok).astype(jnp.int32))
        return new_state, metrics

    if mesh is None:
        return jax.jit(train_step, donate_argnums=0)
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(train_step, donate_argnums=0, in_shardings=(replicated, split),
                   out_shardings=(replicated, replicated))
