"""Guidance as a Model: classifier-free guidance, the guidance interval, autoguidance, schedules.

Convention (Ho & Salimans 2022, eq. 6; w = 0 is the plain conditional model):

    eps_guided = (1 + w) eps(x, c) - w eps(x, null),  i.e.
    score_guided = (1 + w) grad log p(x | c) - w grad log p(x),

the score of p(x | c)^(1+w) / p(x)^w up to its normaliser. diffusers' ``guidance_scale`` s is
1 + w (s = 1 is unguided). Every quantity a Model gives is an affine map of the network's raw
output with the same coefficients for both branches (the 2x2 conversion of ``Model``), and
the weights (1 + w, -w) sum to 1, so combining raw outputs is exactly the eps-space (and score-,
x0-, velocity-space) combination: guidance is written in whichever space the parameterization
uses. The conditional and unconditional halves run as **one** batched network call on 2B
examples, the second half with the network's learned null label.

* Guidance interval (Kynkaanniemi et al. 2024): w applies only where the noise level
  s = sigma / alpha lies in (s_lo, s_hi]; outside it the model is the conditional one.
* Autoguidance (Karras et al. 2024): the "unconditional" branch is a second, weaker model of
  the same task and condition (``guide=``): (1 + w) D(x | c) - w D_guide(x | c).
* A schedule ``schedule(w, t, process) -> (B,)`` varies the scale with time (constant by default);
  it is static (pass a module-level function), the scale and the interval are pytree leaves, so a
  new w or interval does not recompile a sampler.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.conditioning import null_labels
from genflow.models.model import Model, WrappedModel
from genflow.processes.base import AbstractProcess, expand_like


def constant(w: Array, t: Array, process: AbstractProcess) -> Array:
    """The default schedule: the same scale w at every time, shape (B,) like t."""
    return jnp.broadcast_to(w, t.shape).astype(t.dtype)


@jax.tree_util.register_pytree_node_class
class Guided(WrappedModel):
    """``Guided(model, w, guide=None, interval=None, schedule=constant)``: a guided Model.

    Args:
      model: the conditional model; for classifier-free guidance its network has a ``null_label``.
      w: guidance scale (w = 0: the conditional model; diffusers' guidance_scale is 1 + w).
      guide: autoguidance's weaker model of the same task, in place of the unconditional branch.
      interval: (s_lo, s_hi) noise levels s = sigma / alpha inside which guidance applies.
      schedule: ``schedule(w, t, process) -> (B,)``, the scale at time t (static).

    Called with ``cond=None`` the model is unconditional and guidance does nothing.
    """

    def __init__(self, model: Model, w: float | Array, *, guide: Model | None = None,
                 interval: tuple[float, float] | None = None, schedule: Callable = constant):
        if guide is None and model.null_label is None:
            raise ValueError("classifier-free guidance needs a class-conditional network with a null label "
                             "(net.num_classes set, trained with label dropout), or an autoguidance guide=model.")
        lo, hi = (0.0, float("inf")) if interval is None else interval
        if not lo < hi:
            raise ValueError(f"the guidance interval needs s_lo < s_hi, got ({lo}, {hi}).")
        self.model, self.guide, self.schedule = model, guide, schedule
        self.w, self.s_lo, self.s_hi = jnp.asarray(w), jnp.asarray(lo), jnp.asarray(hi)

    def tree_flatten(self):
        return (self.model, self.guide, self.w, self.s_lo, self.s_hi), (self.schedule,)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.model, obj.guide, obj.w, obj.s_lo, obj.s_hi = children
        (obj.schedule,) = aux
        return obj

    def __repr__(self):
        kind = "autoguidance" if self.guide is not None else "classifier-free"
        return f"Guided({self.model!r}, {kind})"

    def scale(self, t: Array) -> Array:
        """The guidance scale at each example's time t (B,): the schedule inside the interval, else 0."""
        process = self.process
        w = self.schedule(self.w, t, process)
        s = process.sigma(t) / process.alpha(t)
        return jnp.where((s > self.s_lo) & (s <= self.s_hi), w, 0.0)

    def __call__(self, x: Array, t: Array, cond: Any = None) -> Array:
        """(1 + w) out(x | c) - w out(x | null) in the network's output space (module docstring)."""
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])
        if cond is None and self.guide is None:
            return self.model(x, t, None)
        if self.guide is None:
            b = x.shape[0]
            labels = jnp.concatenate([jnp.broadcast_to(jnp.asarray(cond, jnp.int32), (b,)),
                                      null_labels(b, self.null_label)])
            out = self.model(jnp.concatenate([x, x]), jnp.concatenate([t, t]), labels)
            out_c, out_u = out[:b], out[b:]
        else:
            out_c = self.model(x, t, cond)
            out_u = self.guide(x, t, cond)
            if self.guide.predicts != self.model.predicts or self.model.predicts == "edm":
                # the guide's answer in this model's output space: p x0 + q eps
                te = expand_like(t, x)
                p, q = self.parameterization.output(self.process, te)
                out_u = p * self.guide.predict("x0", x, t, cond, out=out_u) + q * self.guide.predict(
                    "eps", x, t, cond, out=out_u)
        w = expand_like(self.scale(t), x).astype(out_c.dtype)
        return out_c + w * (out_c - out_u)


def guided(model: Model, w: float | Array | None, *, guide: Model | None = None,
           interval: tuple[float, float] | None = None, schedule: Callable = constant) -> Model:
    """``model`` guided with scale w (``Guided``), or ``model`` itself when w is None."""
    if w is None:
        return model
    return Guided(model, w, guide=guide, interval=interval, schedule=schedule)
