"""The training stack: one step builder generic over what the state holds, and the pieces a step is made of.

Every trainer in genflow (diffusion and flow matching in ``make_train_step``, ReFlow and
distillation through it, the GAN's two-player step, the objective comparison) is built from these:

* ``accumulate(value_and_grad, k)``: the loss and gradient over k microbatches inside the step;
* ``apply_gradients(tx, params, opt_state, grads, loss)``: one optax step and whether it is finite
  (loss, gradient norm and the update itself), before anything is kept;
* ``advance(state, update, ema_decay=...)``: the non-finite guard applied to a ``TrainState``
  (params, optimizer state and EMA kept where the update was not finite), the EMA and
  power-function EMAs updated, the step counter advanced;
* ``make_step(update_fn, placement)``: ``update_fn(state, batch) -> (state, metrics)`` jitted
  whole with the state donated, every sharding from the ``Placement`` (the state's by its rule,
  computed from the state's shapes at the first call; the batch split over every device; the
  metrics replicated).

So FSDP, accumulation, the guard and the EMA are written once; a trainer writes only its loss and
the order of its updates. The loop (``genflow.training.loop.train_loop``) is as generic: it reads
``state.step`` and saves whatever pytree the state is.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from genflow.placement import Placement, as_placement
from genflow.training import posthoc_ema
from genflow.training.state import TrainState

ValueAndGrad = Callable[[Any, Any, jax.Array], tuple[tuple[jax.Array, dict], Any]]


def accumulate(value_and_grad: ValueAndGrad, microbatches: int = 1) -> ValueAndGrad:
    """``value_and_grad(params, batch, key) -> ((loss, aux), grads)`` averaged over ``microbatches``
    equal pieces of ``batch`` inside one program (a ``lax.scan``): the memory of B / k examples.

    Piece i holds examples i, i + k, ... (so under a batch sharded over devices each piece still
    spans every device) and draws its randomness from ``fold_in(key, i)``. Every leaf of ``batch``
    needs a leading axis divisible by k. With k = 1 it is ``value_and_grad`` itself.
    """
    if microbatches < 1:
        raise ValueError(f"microbatches must be a positive integer, got {microbatches}.")
    if microbatches == 1:
        return value_and_grad
    k = microbatches

    def accumulated(params, batch, key):
        pieces = jax.tree.map(lambda v: v.reshape((v.shape[0] // k, k) + v.shape[1:]).swapaxes(0, 1), batch)

        def body(acc, inputs):
            i, piece = inputs
            out = value_and_grad(params, piece, jax.random.fold_in(key, i))
            return jax.tree.map(jnp.add, acc, out), None

        shapes = jax.eval_shape(value_and_grad, params, jax.tree.map(lambda v: v[0], pieces), key)
        zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
        total, _ = jax.lax.scan(body, zeros, (jnp.arange(k), pieces))
        return jax.tree.map(lambda v: v / k, total)        # means of equal pieces: the batch's mean

    return accumulated


class Update(NamedTuple):
    """One optimizer step before the guard: the new params and optimizer state, ``ok`` (a bool
    scalar: loss, gradient norm and update all finite) and the gradient's global norm."""

    params: Any
    opt_state: Any
    ok: jax.Array
    grad_norm: jax.Array


def apply_gradients(tx: optax.GradientTransformation, params, opt_state, grads, loss) -> Update:
    """One optax step on ``grads`` and its finiteness; nothing is kept or dropped yet (``guard``)."""
    updates, opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    grad_norm = optax.tree.norm(grads)
    # The update is checked too: a finite gradient can still make non-finite parameters (a NaN
    # learning rate, an optimizer state that overflowed), and those must never reach a checkpoint.
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.tree.norm(updates))
    return Update(new_params, opt_state, ok, grad_norm)


def guard(ok: jax.Array, new, old):
    """The non-finite guard: ``new`` where ``ok``, else ``old``, leaf by leaf (a select: bit exact)."""
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)


def ema_update(ema, params, decay: float):
    """The constant-decay EMA: ``decay * ema + (1 - decay) * params``."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def advance(state: TrainState, update: Update, *, ema_decay: float | None,
            gammas: Sequence[float] = ()) -> TrainState:
    """``state`` after ``update``, guarded: params, optimizer state and EMA move only where
    ``update.ok`` (a skipped update leaves them bit for bit), ``step`` always advances (the RNG
    and data stream stay aligned with an uninterrupted run).

    ``ema_decay`` None leaves ``state.ema`` alone (a state without an EMA to keep, e.g. the GAN's
    critic). ``gammas``: one per power-function EMA in ``state.phema`` (EDM2 Sec. 3), updated over
    the parameters the step leaves (the old ones on a skipped step), so their profile over the
    run's actual trajectory stays exact.
    """
    ok = update.ok
    params = guard(ok, update.params, state.params)
    ema = state.ema if ema_decay is None else guard(ok, ema_update(state.ema, update.params, ema_decay), state.ema)
    step = state.step + 1
    return TrainState(step=step, params=params, opt_state=guard(ok, update.opt_state, state.opt_state), ema=ema,
                      key=state.key, phema=posthoc_ema.update(state.phema, params, step, gammas))


class Step:
    """``step(state, batch) -> (state, metrics)``: one update function jitted whole, state donated.

    With a placement the program is compiled at the first call with the state's shardings from
    the placement's rule (replicated, or FSDP-sharded parameters, EMAs and optimizer moments),
    the batch split over every device (``placement.batch()``; a mapping of per-example fields:
    each field is split along its leading axis) and the metrics replicated; XLA inserts the
    gathers and the gradient all-reduce or reduce-scatter. ``lower(state, batch)`` gives the
    same program ahead of time (the comparison harness reads its memory analysis).
    """

    def __init__(self, update_fn: Callable[[Any, Any], tuple[Any, dict]], placement: Placement | None):
        self.update_fn, self.placement = update_fn, placement
        self._jit = jax.jit(update_fn, donate_argnums=0) if placement is None else None

    def jitted(self, state):
        """The jitted program for states shaped like ``state``."""
        if self._jit is None:   # the state's shardings follow from its shapes: built at the first call
            shardings = self.placement.shardings(state)
            self._jit = jax.jit(self.update_fn, donate_argnums=0,
                                in_shardings=(shardings, self.placement.batch()),
                                out_shardings=(shardings, self.placement.replicated()))
        return self._jit

    def __call__(self, state, batch):
        return self.jitted(state)(state, batch)

    def lower(self, state, batch):
        return self.jitted(state).lower(state, batch)

    def _cache_size(self) -> int:
        """Programs compiled so far (jax.jit's count): a step compiles once per state shape."""
        return 0 if self._jit is None else self._jit._cache_size()


def make_step(update_fn: Callable[[Any, Any], tuple[Any, dict]], placement: "Placement | Mesh | None" = None) -> Step:
    """``update_fn(state, batch) -> (state, metrics)``, any state pytree, as a jitted, donated,
    sharded ``Step`` (``placement`` None: one device, jax's default placement)."""
    return Step(update_fn, as_placement(placement))
