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
    """step (), params and ema (nnx.State of the network's Params), opt_state, key (2,) uint32.

    The per-step key is ``fold_in(key, step)``, so a resumed run draws the same numbers.
    """

    step: Array
    params: nnx.State
    opt_state: optax.OptState
    ema: nnx.State
    key: Array


def split_net(net: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """(graphdef, params, rest): the trainable Params and everything else (RNG streams...)."""
    return nnx.split(net, nnx.Param, ...)


def init_state(params: nnx.State, tx: optax.GradientTransformation, seed: int) -> TrainState:
    """A fresh state; the EMA is a copy, never the params' own buffers (both are donated)."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      ema=jax.tree.map(jnp.copy, params), key=jax.random.PRNGKey(seed))
