"""The one model interface: a network plus a process plus a parameterization.

A network predicting ``out = p x0 + q eps`` (the parameterization's output map; see
``genflow.models.parameterization`` for the table) and the input x_t give, by one 2x2 solve,
    x0 = (q x - sigma out) / det,   eps = (alpha out - p x) / det,   det = alpha q - sigma p,
and from those any other quantity. The conversion is singular where det = 0:
eps -> anything divides by alpha (0 at t = 1 for rectified flow), x0 -> anything by sigma
(0 at t = 0 for VP and rectified flow); velocity is regular on all of [0, 1] for rectified flow,
and EDM's preconditioned output (``predicts="edm"``) is regular everywhere for every process.
"""
from __future__ import annotations

import types
from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.parameterization import PREDICTIONS, Parameterization, as_parameterization, coefficients
from genflow.processes.base import AbstractProcess, expand_like, float_dtype


def output_scale(process: AbstractProcess, predicts: "str | Parameterization", target: str, t: Array) -> Array:
    """d(target)/d(out) for a network predicting ``predicts``: an error in the network's own
    output space times this factor is the error in ``target`` space. Exactly 1 when equal."""
    param = as_parameterization(predicts)
    if param.predicts == target:
        return jnp.ones_like(jnp.asarray(t, dtype=float_dtype(t)))
    a, s = process.alpha(t), process.sigma(t)
    p, q = param.output(process, t)
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
        A class-conditional network takes integer labels ``cond`` (B,) and has a ``null_label``
        attribute: the label that means "no label" (used by label dropout and guidance).
      process: the Gaussian path the network was trained on.
      predicts: a ``Parameterization``, or the name of one of ``eps, x0, score, v, velocity, edm``.
        The network is called as ``net(c_in(t) x, c_noise(t), cond)``, unless it has a true
        ``raw_inputs`` attribute (analytic "networks" such as an exact mixture's posterior mean,
        which take x_t and t themselves).

    A ``Model`` is a pytree, so it can be passed to ``jax.jit``-ed samplers and objectives.
    Build one from a network's parameters with ``genflow.models.ModelSpec``.
    """

    def __init__(self, net: Callable[..., Array], process: AbstractProcess,
                 predicts: "str | Parameterization" = "eps"):
        self.net, self.process, self.parameterization = net, process, as_parameterization(predicts)

    @property
    def predicts(self) -> str:
        """The name of what the network outputs (``parameterization.predicts``)."""
        return self.parameterization.predicts

    @property
    def null_label(self) -> int | None:
        """The network's "no label" class, or None for an unconditional network."""
        return getattr(self.net, "null_label", None)

    # pytree protocol
    def tree_flatten(self):
        if _is_static_function(self.net):
            return (self.process, self.parameterization), (self.net,)
        return (self.net, self.process, self.parameterization), (None,)

    @classmethod
    def tree_unflatten(cls, aux, children):
        (static_net,) = aux
        obj = object.__new__(cls)
        if static_net is not None:
            obj.net, (obj.process, obj.parameterization) = static_net, children
        else:
            obj.net, obj.process, obj.parameterization = children
        return obj

    def __repr__(self):
        return f"Model(net={type(self.net).__name__}, process={self.process!r}, predicts={self.predicts!r})"

    # raw output and its meaning
    def __call__(self, x: Array, t: Array, cond: Any = None) -> Array:
        """The network's raw output (``predicts`` space) at x_t = x: ``net(c_in x, c_noise, cond)``.
        t is broadcast to (B,)."""
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])
        param = self.parameterization
        if (param.predicts == "edm" or param.noise_label != "t") and not getattr(self.net, "raw_inputs", False):
            x_in = (expand_like(param.c_in(self.process, t), x) * x).astype(x.dtype)
            return self.net(x_in, param.c_noise(self.process, t).astype(x.dtype), cond)
        return self.net(x, t, cond)

    def target(self, x0: Array, eps: Array, t: Array) -> Array:
        """What the network should output for the pair (x0, eps) at time t."""
        p, q = self.parameterization.output(self.process, expand_like(t, x0))
        return p * x0 + q * eps

    def predict(self, name: str, x: Array, t: Array, cond: Any = None, out: Array | None = None) -> Array:
        """Quantity ``name`` at (x, t), through the process (see the module docstring)."""
        out = self(x, t, cond) if out is None else out
        if name == self.predicts:
            return out
        if name not in PREDICTIONS:
            raise ValueError(f"unknown quantity {name!r}; choose one of {', '.join(PREDICTIONS)}.")
        te = expand_like(jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1]), x)
        a, s = self.process.alpha(te), self.process.sigma(te)
        p, q = self.parameterization.output(self.process, te)
        det = a * q - s * p
        x0 = (q * x - s * out) / det
        eps = (a * out - p * x) / det
        big_p, big_q = coefficients(self.process, name, te, self.parameterization.sigma_data)
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


class WrappedModel(Model):
    """A Model standing on another one, ``self.model``: its process, parameterization, network and
    null label are the inner model's; a subclass changes only how the raw output is produced
    (``__call__``: guidance's two branches, a parallel sampler's fixed answer). Subclasses are
    pytrees of their own."""

    @property
    def process(self):
        return self.model.process

    @property
    def parameterization(self):
        return self.model.parameterization

    @property
    def net(self):
        return self.model.net

    @property
    def null_label(self):
        return self.model.null_label
