"""TrainState: everything a training run carries from step to step, as one pytree."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax import Array

from genflow._pytree import pytree_dataclass


@pytree_dataclass
class TrainState:
    """step (), params and ema (nnx.State of the network's Params), opt_state, key (2,) uint32,
    and phema: one power-function EMA of the params per tracked sigma_rel (a tuple, empty when none
    are tracked; see ``genflow.training.posthoc_ema``), in the order of ``train.ema_sigma_rels``.

    The per-step key is ``fold_in(key, step)``, so a resumed run draws the same numbers. ``ema`` is
    the constant-decay EMA that sampling uses by default.
    """

    step: Array
    params: nnx.State
    opt_state: optax.OptState
    ema: nnx.State
    key: Array
    phema: tuple = ()


def split_net(net: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """(graphdef, params, rest): the trainable Params and everything else (RNG streams...)."""
    return nnx.split(net, nnx.Param, ...)


def init_state(params: nnx.State, tx: optax.GradientTransformation, seed: int,
               ema_sigma_rels: tuple[float, ...] = ()) -> TrainState:
    """A fresh state; each EMA is a copy, never the params' own buffers (all are donated). One
    power-function EMA is tracked per value of ``ema_sigma_rels`` (none by default)."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      ema=jax.tree.map(jnp.copy, params), key=jax.random.PRNGKey(seed),
                      phema=tuple(jax.tree.map(jnp.copy, params) for _ in ema_sigma_rels))
