"""The jitted, sharded train step: one pure function of (state, batch)."""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from genflow.models.conditioning import drop_labels
from genflow.models.model import Model
from genflow.models.spec import ModelSpec
from genflow.training import posthoc_ema
from genflow.training.state import TrainState

LABEL_STREAM = 0x6C61626C  # "labl": label dropout's key, fold_in(step key, LABEL_STREAM)
Objective = Callable  # (model, x0, key, *, cond=None, **batch fields) -> (loss, metrics)


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all devices (every process's, in a multi-host run) with axis ``data``."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices).reshape(-1), ("data",))


def has_dropout_stream(rest: nnx.State) -> bool:
    """Whether the non-parameter state holds a ``dropout`` RNG stream to reseed each step."""
    return any(getattr(v, "tag", None) == "dropout" for v in jax.tree.leaves(rest, is_leaf=lambda v: isinstance(v, nnx.Variable)))


def make_train_step(spec: ModelSpec, objective: Objective, tx: optax.GradientTransformation, *, ema_decay: float,
                    p_uncond: float = 0.0, mesh: Mesh | None = None, ema_sigma_rels: tuple[float, ...] = ()):
    """``train_step(state, batch) -> (state, metrics)``, jitted with the state donated.

    ``batch`` is a mapping with ``"x0"`` (B, ...) and optionally ``"cond"`` (B,) integer labels
    and any other per-example fields the objective takes by keyword (ReFlow's coupled noise
    ``"x1"``): the objective is called as ``objective(model, x0, key, cond=..., x1=...)``.
    For a class-conditional network (``spec.null_label`` set) each label is replaced by the null
    label with probability ``p_uncond`` inside the step (label dropout, from the step's key).

    The state is replicated and the batch split over the mesh's ``data`` axis; XLA inserts
    the gradient all-reduce. A step whose loss, gradient norm or update is not finite keeps the old
    params, optimizer state and EMA (``metrics['skipped']`` = 1) but still advances ``step``
    so the RNG and data stream stay aligned with an uninterrupted run.

    ``ema_sigma_rels``: the power-function EMAs in ``state.phema`` (one per value, EDM2 Sec. 3),
    updated after the constant-decay ``ema``. They average the parameters the step leaves (the old
    ones on a skipped step), so their profile over the run's actual trajectory stays exact.
    """
    reseed = has_dropout_stream(spec.rest)
    null = spec.null_label
    gammas = tuple(float(g) for g in posthoc_ema.sigma_rel_to_gamma(ema_sigma_rels)) if ema_sigma_rels else ()
    if p_uncond and not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must be in [0, 1], got {p_uncond}.")

    def loss_fn(params, batch, key):
        # copy=True: reseeding mutates RNG variables, which must belong to this trace level.
        net = spec.net(params, copy=True)
        k_obj, k_drop = jax.random.split(key)
        k_label = jax.random.fold_in(key, LABEL_STREAM)
        if reseed:
            nnx.reseed(net, dropout=k_drop)
        extras = {k: v for k, v in batch.items() if k != "x0"}
        if extras.get("cond") is not None and null is not None and p_uncond:
            extras["cond"] = drop_labels(k_label, extras["cond"], p_uncond, null)
        model = Model(net, spec.process, spec.parameterization)
        return objective(model, batch["x0"], k_obj, **extras)

    def train_step(state: TrainState, batch):
        if len(state.phema) != len(gammas):   # at trace time: a state built for other profiles
            raise ValueError(f"the state tracks {len(state.phema)} power-function EMAs but the step was built for "
                             f"{len(gammas)} (ema_sigma_rels={tuple(ema_sigma_rels)}); build both from the same values.")
        key = jax.random.fold_in(state.key, state.step)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, dict(batch), key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state.ema, params)
        grad_norm = optax.tree.norm(grads)
        # The update is checked too: a finite gradient can still make non-finite parameters (a NaN
        # learning rate, an optimizer state that overflowed), and those must never reach a checkpoint.
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.tree.norm(updates))
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
        new_params = keep(params, state.params)
        new_state = TrainState(step=state.step + 1, params=new_params,
                               opt_state=keep(opt_state, state.opt_state), ema=keep(ema, state.ema),
                               key=state.key, phema=posthoc_ema.update(state.phema, new_params, state.step + 1, gammas))
        metrics = dict(metrics, grad_norm=grad_norm, skipped=(~ok).astype(jnp.int32))
        return new_state, metrics

    if mesh is None:
        return jax.jit(train_step, donate_argnums=0)
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(train_step, donate_argnums=0, in_shardings=(replicated, split),
                   out_shardings=(replicated, replicated))
