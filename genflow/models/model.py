"""The one model interface: a network plus a process plus what the network predicts.

Every quantity a loss or sampler needs is linear in (x0, eps) given x_t = alpha x0 + sigma eps:

    quantity    as p x0 + q eps            note
    eps         (0, 1)
    x0          (1, 0)
    score       (0, -1/sigma)               grad log p(x_t | x0) = -eps / sigma
    v           (-sigma, alpha)             Salimans & Ho (2022) v-prediction
    velocity    (alpha_dot, sigma_dot)      PF-ODE velocity f x - g^2 score / 2

A network predicting ``out = p x0 + q eps`` and the input x_t give, by one 2x2 solve,
    x0 = (q x - sigma out) / det,   eps = (alpha out - p x) / det,   det = alpha q - sigma p,
and from those any other quantity. The conversion is singular where det = 0:
eps -> anything divides by alpha (0 at t = 1 for rectified flow), x0 -> anything by sigma
(0 at t = 0 for VP and rectified flow); velocity is regular on all of [0, 1] for rectified flow.
"""
from __future__ import annotations

import types
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import Array

from genflow.processes.base import AbstractProcess, expand_like, float_dtype

PREDICTIONS = ("eps", "x0", "score", "v", "velocity")


def coefficients(process: AbstractProcess, name: str, t: Array) -> tuple[Array, Array]:
    """(p, q) with quantity ``name`` = p x0 + q eps at time t (shape of t)."""
    t = jnp.asarray(t)
    one = jnp.ones_like(t, dtype=float_dtype(t))
    zero = jnp.zeros_like(one)
    if name == "eps":
        return zero, one
    if name == "x0":
        return one, zero
    if name == "score":
        return zero, -1.0 / process.sigma(t)
    if name == "v":
        return -process.sigma(t), process.alpha(t)
    if name == "velocity":
        return process.alpha_dot(t), process.sigma_dot(t)
    raise ValueError(f"unknown prediction {name!r}; choose one of {', '.join(PREDICTIONS)}.")


def output_scale(process: AbstractProcess, predicts: str, target: str, t: Array) -> Array:
    """d(target)/d(out) for a network predicting ``predicts``: an error in the network's own
    output space times this factor is the error in ``target`` space. Exactly 1 when equal."""
    if predicts == target:
        return jnp.ones_like(jnp.asarray(t, dtype=float_dtype(t)))
    a, s = process.alpha(t), process.sigma(t)
    p, q = coefficients(process, predicts, t)
    big_p, big_q = coefficients(process, target, t)
    return (big_q * a - big_p * s) / (a * q - s * p)


def _is_static_function(net) -> bool:
    # Plain functions carry no arrays: they go in the pytree structure, not its leaves.
    return isinstance(net, (types.FunctionType, types.BuiltinFunctionType, partial))


@jax.tree_util.register_pytree_node_class
class Model:
    """``Model(net, process, predicts)``: every quantity of a Gaussian-path model.

    Args:
      net: ``net(x, t, cond) -> array shaped like x``, with x (B, ...), t (B,). A flax NNX
        module, a pytree with ``__call__`` (e.g. an exact mixture score), or a plain function.
      process: the Gaussian path the network was trained on.
      predicts: what the network outputs, one of ``eps, x0, score, v, velocity``.

    A ``Model`` is a pytree, so it can be passed to ``jax.jit``-ed samplers and objectives.
    """

    def __init__(self, net: Callable[..., Array], process: AbstractProcess, predicts: str = "eps"):
        if predicts not in PREDICTIONS:
            raise ValueError(f"unknown prediction {predicts!r}; choose one of {', '.join(PREDICTIONS)}.")
        self.net, self.process, self.predicts = net, process, predicts

    # pytree protocol
    def tree_flatten(self):
        if _is_static_function(self.net):
            return (self.process,), (self.predicts, self.net)
        return (self.net, self.process), (self.predicts, None)

    @classmethod
    def tree_unflatten(cls, aux, children):
        predicts, static_net = aux
        obj = object.__new__(cls)
        if static_net is not None:
            obj.net, (obj.process,) = static_net, children
        else:
            obj.net, obj.process = children
        obj.predicts = predicts
        return obj

    def __repr__(self):
        return f"Model(net={type(self.net).__name__}, process={self.process!r}, predicts={self.predicts!r})"

    # raw output and its meaning
    def __call__(self, x: Array, t: Array, cond: Any = None) -> Array:
        """The network's raw output (``predicts`` space). t is broadcast to (B,)."""
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])
        return self.net(x, t, cond)

    def target(self, x0: Array, eps: Array, t: Array) -> Array:
        """What the network should output for the pair (x0, eps) at time t."""
        p, q = coefficients(self.process, self.predicts, expand_like(t, x0))
        return p * x0 + q * eps

    def predict(self, name: str, x: Array, t: Array, cond: Any = None, out: Array | None = None) -> Array:
        """Quantity ``name`` at (x, t), through the process (see the module docstring)."""
        out = self(x, t, cond) if out is None else out
        if name == self.predicts:
            return out
        te = expand_like(jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1]), x)
        a, s = self.process.alpha(te), self.process.sigma(te)
        p, q = coefficients(self.process, self.predicts, te)
        det = a * q - s * p
        x0 = (q * x - s * out) / det
        eps = (a * out - p * x) / det
        big_p, big_q = coefficients(self.process, name, te)
        return big_p * x0 + big_q * eps

    def eps(self, x, t, cond=None):
        """E[eps | x_t = x]."""
        return self.predict("eps", x, t, cond)

    def x0(self, x, t, cond=None):
        """E[x0 | x_t = x] (Tweedie's denoiser)."""
        return self.predict("x0", x, t, cond)

    def score(self, x, t, cond=None):
        """grad_x log p_t(x) = -E[eps | x] / sigma(t)."""
        return self.predict("score", x, t, cond)

    def v(self, x, t, cond=None):
        """v-prediction alpha eps - sigma x0."""
        return self.predict("v", x, t, cond)

    def velocity(self, x, t, cond=None):
        """PF-ODE velocity dx/dt = f x - g^2 score / 2 = E[alpha_dot x0 + sigma_dot eps | x]."""
        return self.predict("velocity", x, t, cond)
