"""The jitted, sharded train step: one pure function of (state, batch)."""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from genflow.models.conditioning import drop_labels
from genflow.models.model import Model
from genflow.models.spec import ModelSpec
from genflow.placement import AXES, Placement
from genflow.training import posthoc_ema
from genflow.training.state import TrainState

LABEL_STREAM = 0x6C61626C  # "labl": label dropout's key, fold_in(step key, LABEL_STREAM)
Objective = Callable  # (model, x0, key, *, cond=None, **batch fields) -> (loss, metrics)


def make_mesh(devices=None) -> Mesh:
    """The data-parallel mesh over all devices (every process's, in a multi-host run): axes
    (data, fsdp) with fsdp = 1 (``genflow.placement.Placement`` builds the others)."""
    return Placement.create({"data": -1, "fsdp": 1}, devices).mesh


def as_placement(mesh: "Mesh | Placement") -> Placement:
    """A Placement for a mesh given the old way (1-D ``data``) or a Placement itself."""
    if isinstance(mesh, Placement):
        return mesh
    if tuple(mesh.axis_names) == AXES:
        return Placement(mesh)
    return Placement(Mesh(np.asarray(mesh.devices).reshape(-1, 1), AXES))


def has_dropout_stream(rest: nnx.State) -> bool:
    """Whether the non-parameter state holds a ``dropout`` RNG stream to reseed each step."""
    return any(getattr(v, "tag", None) == "dropout" for v in jax.tree.leaves(rest, is_leaf=lambda v: isinstance(v, nnx.Variable)))


def make_train_step(spec: ModelSpec, objective: Objective, tx: optax.GradientTransformation, *, ema_decay: float,
                    p_uncond: float = 0.0, mesh: "Mesh | Placement | None" = None,
                    ema_sigma_rels: tuple[float, ...] = (), microbatches: int = 1):
    """``train_step(state, batch) -> (state, metrics)``, jitted with the state donated.

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
    is ``fold_in(key, i)``): the step's memory is that of B / k examples. A step whose loss, gradient norm or update is not finite keeps the old
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

    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)

    def loss_and_grad(params, batch, key):
        if microbatches == 1:
            return value_and_grad(params, batch, key)
        k = microbatches
        pieces = jax.tree.map(lambda v: v.reshape((v.shape[0] // k, k) + v.shape[1:]).swapaxes(0, 1), batch)

        def body(acc, inputs):
            i, piece = inputs
            out = value_and_grad(params, piece, jax.random.fold_in(key, i))
            return jax.tree.map(jnp.add, acc, out), None

        shapes = jax.eval_shape(value_and_grad, params, jax.tree.map(lambda v: v[0], pieces), key)
        zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
        total, _ = jax.lax.scan(body, zeros, (jnp.arange(k), pieces))
        return jax.tree.map(lambda v: v / k, total)        # means of equal pieces: the batch's mean

    def train_step(state: TrainState, batch):
        if len(state.phema) != len(gammas):   # at trace time: a state built for other profiles
            raise ValueError(f"the state tracks {len(state.phema)} power-function EMAs but the step was built for "
                             f"{len(gammas)} (ema_sigma_rels={tuple(ema_sigma_rels)}); build both from the same values.")
        key = jax.random.fold_in(state.key, state.step)
        (loss, metrics), grads = loss_and_grad(state.params, dict(batch), key)
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

    if microbatches < 1:
        raise ValueError(f"microbatches must be a positive integer, got {microbatches}.")
    if mesh is None:
        return jax.jit(train_step, donate_argnums=0)
    placement = as_placement(mesh)
    compiled: dict = {}

    def jitted(state: TrainState):
        # the state's shardings follow from its shapes (the placement's rule): built at the first call
        if "fn" not in compiled:
            shardings = placement.shardings(state)
            compiled["fn"] = jax.jit(train_step, donate_argnums=0, in_shardings=(shardings, placement.batch()),
                                     out_shardings=(shardings, placement.replicated()))
        return compiled["fn"]

    def step(state: TrainState, batch):
        return jitted(state)(state, batch)

    step.lower = lambda state, batch: jitted(state).lower(state, batch)
    step.placement = placement
    return step
