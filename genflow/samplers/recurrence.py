"""A fixed-grid sampler as a recurrence: carry_{k+1} = step(model, carry_k, k, cond), k = 0..N-1.

Every sampler with one network call per step (Euler ODE, Euler–Maruyama, DDIM, DDPM's ancestral
chain, DPM-Solver++(2M)) is written once as a ``Recurrence``: the sequential sampler runs it with
``lax.scan`` (``run``) and the parallel-in-time driver (``genflow.samplers.parallel``) solves the
same recurrence as a fixed point over the whole trajectory. The contract that makes both work:

  * ``carry`` is a tuple of arrays shaped like x1, ``carry[0]`` being the sample x_k; a multistep
    method keeps its history there too (2M: (x_k, x0_hat_{k-1})).
  * ``step(model, carry, k, cond)`` calls ``model`` exactly once, at ``(carry[0], times[k], cond)``, and
    is otherwise a function of the grid, the step index and noise drawn from ``fold_in(key, k)``
    (fixed in advance, so a stochastic sampler is a deterministic recurrence given its key).

Because of the second point, ``step(FrozenOutput(model, out), carry, k, cond)`` is the step with the
network's answer ``out`` held fixed, which is how the parallel driver evaluates all the steps of a
window in one batched network call and then applies the cheap rest of each step.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model, WrappedModel

Carry = tuple[Array, ...]


class Recurrence(NamedTuple):
    """One fixed-grid sampler as x_k = F_k(x_{k-1}) (see the module docstring).

    init: x1 (B, ...) -> carry_0.  step: (model, carry_k, k, cond) -> carry_{k+1}, cond the labels
    (B,) or None.  times: (N,) the time at which step k calls the network.  end: the time c_N is
    at, where it differs from ts[-1] (DDPM's chain ends on its nearest discrete step).
    """

    init: Callable[[Array], Carry]
    step: Callable[[Model, Carry, Array, Any], Carry]
    times: Array
    end: Array | None = None

    @property
    def num_steps(self) -> int:
        return self.times.shape[0]


def run(model: Model, rec: Recurrence, x1: Array, cond: Any = None) -> Array:
    """The sequential sampler: carry_N's x after N steps of one ``lax.scan`` (N network calls)."""

    def body(carry, k):
        return rec.step(model, carry, k, cond), None

    carry, _ = jax.lax.scan(body, rec.init(x1), jnp.arange(rec.num_steps))
    return carry[0]


@jax.tree_util.register_pytree_node_class
class FrozenOutput(WrappedModel):
    """``model`` with its network's raw output fixed to ``out`` (any x, t, cond): every prediction
    (x0, eps, score, velocity...) is ``model``'s conversion of ``out`` at the x and t it is asked at."""

    def __init__(self, model: Model, out: Array):
        self.model, self.out = model, out

    def tree_flatten(self):
        return (self.model, self.out), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)

    def __repr__(self):
        return f"FrozenOutput({self.model!r})"

    def __call__(self, x: Array, t: Array, cond: Any = None) -> Array:
        return self.out
