"""The diffusion / flow-matching train step: an objective on the training stack (``stack.py``)."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from genflow.models.conditioning import drop_labels
from genflow.models.model import Model
from genflow.models.spec import ModelSpec
from genflow.placement import Placement, as_placement  # noqa: F401  (as_placement: its old import path)
from genflow.training import posthoc_ema
from genflow.training.stack import Step, accumulate, advance, apply_gradients, make_step
from genflow.training.state import TrainState

LABEL_STREAM = 0x6C61626C  # "labl": label dropout's key, fold_in(step key, LABEL_STREAM)
Objective = Callable  # (model, x0, key, *, cond=None, **batch fields) -> (loss, metrics)


def make_mesh(devices=None) -> Mesh:
    """The data-parallel mesh over all devices (every process's, in a multi-host run): axes
    (data, fsdp) with fsdp = 1 (``genflow.placement.Placement`` builds the others)."""
    return Placement.create({"data": -1, "fsdp": 1}, devices).mesh


def has_dropout_stream(rest: nnx.State) -> bool:
    """Whether the non-parameter state holds a ``dropout`` RNG stream to reseed each step."""
    return any(getattr(v, "tag", None) == "dropout" for v in jax.tree.leaves(rest, is_leaf=lambda v: isinstance(v, nnx.Variable)))


def make_train_step(spec: ModelSpec, objective: Objective, tx: optax.GradientTransformation, *, ema_decay: float,
                    p_uncond: float = 0.0, mesh: "Mesh | Placement | None" = None,
                    ema_sigma_rels: tuple[float, ...] = (), microbatches: int = 1) -> Step:
    """``train_step(state, batch) -> (state, metrics)``, jitted with the state donated: the objective's
    loss on the training stack (``accumulate``, ``apply_gradients``, ``advance``, ``make_step``).

    ``batch`` is a mapping with ``"x0"`` (B, ...) and optionally ``"cond"`` (B,) integer labels
    and any other per-example fields the objective takes by keyword (ReFlow's coupled noise
    ``"x1"``): the objective is called as ``objective(model, x0, key, cond=..., x1=...)``.
    For a class-conditional network (``spec.null_label`` set) each label is replaced by the null
    label with probability ``p_uncond`` inside the step (label dropout, from the step's key).

    ``mesh`` (a ``Placement``, or a plain mesh: data parallel) places the state by the placement's
    rule (replicated, or FSDP-sharded parameters, EMAs and optimizer moments) and splits the batch
    over every device; XLA inserts the gathers, the gradient all-reduce or reduce-scatter.
    ``microbatches = k`` accumulates the gradient over k pieces of the batch inside the one step
    (piece i holds examples i, i + k, ..., so each piece still spans every device; its randomness
    is ``fold_in(key, i)``): the step's memory is that of B / k examples. A step whose loss,
    gradient norm or update is not finite keeps the old params, optimizer state and EMA
    (``metrics['skipped']`` = 1) but still advances ``step`` so the RNG and data stream stay
    aligned with an uninterrupted run.

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

    loss_and_grad = accumulate(jax.value_and_grad(loss_fn, has_aux=True), microbatches)

    def train_step(state: TrainState, batch):
        if len(state.phema) != len(gammas):   # at trace time: a state built for other profiles
            raise ValueError(f"the state tracks {len(state.phema)} power-function EMAs but the step was built for "
                             f"{len(gammas)} (ema_sigma_rels={tuple(ema_sigma_rels)}); build both from the same values.")
        key = jax.random.fold_in(state.key, state.step)
        (loss, metrics), grads = loss_and_grad(state.params, dict(batch), key)
        update = apply_gradients(tx, state.params, state.opt_state, grads, loss)
        new_state = advance(state, update, ema_decay=ema_decay, gammas=gammas)
        metrics = dict(metrics, grad_norm=update.grad_norm, skipped=(~update.ok).astype(jnp.int32))
        return new_state, metrics

    return make_step(train_step, mesh)
