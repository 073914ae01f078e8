"""Pieces every sampler shares: the signature's checks, the end point, noise inside a step, NFE.

The one sampler signature (k-diffusion's idea, with the grid and the prior draw as arrays):

    sampler(model, x1, ts, *, key=None, cond=None, denoise=False, **options) -> (x, stats)

x1 (B, ...) is the prior draw at ts[0], ts (n+1,) the time grid decreasing from t_max, ``key``
a PRNG key for samplers that draw noise, ``cond`` per-example labels (B,) passed to the network,
and ``stats["nfe"]`` the number of model evaluations the sampler actually made, counted inside
the compiled program (a step that skips a call does not count it). A guided model
(``genflow.models.guidance``) is one evaluation per call: its two branches run as one
batched network call (autoguidance: two networks).

End points, the same in every sampler: a sampler integrates from ts[0] down to the small-t
cut-off ts[-1] (``grids.*`` put the process's ``t_min`` there) and returns a draw of
p_{ts[-1]}, which still holds sigma(ts[-1]) of noise; ``denoise=True`` replaces it by Tweedie's
E[x0 | x_{ts[-1]}] (one more network call). A grid may also end where sigma = 0 (t = 0 for
rectified flow, step 0 of DDPM); the last step then lands on the denoised value itself.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from genflow.models.model import Model

Stats = dict[str, Array]


def finish(model: Model, x: Array, t: Array, cond: Any, denoise: bool, nfe: Array) -> tuple[Array, Stats]:
    """(x, {"nfe": nfe}) or, with ``denoise=True``, Tweedie's E[x0 | x_t = x] and nfe + 1."""
    nfe = jnp.asarray(nfe, jnp.int32)
    if denoise:
        return model.x0(x, t, cond), {"nfe": nfe + 1}
    return x, {"nfe": nfe}


def normal_like(key: Array, i: Array, x: Array) -> Array:
    """N(0, I) shaped like x from ``fold_in(key, i)``: step i's noise, drawn inside the step."""
    return jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)


def x0_and_eps(model: Model, x: Array, t: Array, cond: Any) -> tuple[Array, Array]:
    """(E[x0 | x_t], E[eps | x_t]) from a single network evaluation."""
    out = model(x, t, cond)
    return model.predict("x0", x, t, cond, out=out), model.predict("eps", x, t, cond, out=out)


def need_key(name: str, key: Array | None, why: str = "draws noise") -> None:
    if key is None:
        raise ValueError(f"{name} {why}: pass key=jax.random.PRNGKey(...).")


def _concrete(x) -> np.ndarray | None:
    """x as a host array when its values are known (not a tracer), else None."""
    try:
        return np.asarray(x)
    except Exception:  # noqa: BLE001 - a tracer (TracerArrayConversionError) or an opaque object
        return None


def check_inputs(name: str, model: Model, x1: Array, ts: Array | None, cond: Any = None) -> None:
    """One sentence for a sampler call that cannot give a meaningful answer.

    Shapes and dtypes are checked always (at trace time); the grid's values only where they are
    concrete (a call from Python, not from inside another jit): decreasing, inside [0, t_max].
    """
    if not isinstance(model, Model):
        raise TypeError(f"{name} takes a genflow Model as its first argument, got {type(model).__name__}; "
                        "wrap a network as Model(net, process, predicts).")
    if not hasattr(x1, "shape") or not hasattr(x1, "dtype"):
        raise TypeError(f"{name}: x1 must be an array (B, ...) drawn from the prior, got {type(x1).__name__}.")
    if x1.ndim < 1 or x1.shape[0] == 0:
        raise ValueError(f"{name}: x1 must have a leading batch axis with at least one example, got shape {x1.shape}.")
    if not jnp.issubdtype(x1.dtype, jnp.floating):
        raise TypeError(f"{name}: x1 must be a floating-point array, got dtype {x1.dtype}; "
                        "draw it with process.prior(key, shape).")
    if cond is not None and hasattr(cond, "shape") and cond.ndim >= 1 and cond.shape[0] != x1.shape[0]:
        raise ValueError(f"{name}: cond has {cond.shape[0]} entries for a batch of {x1.shape[0]}; "
                         "pass one label per example.")
    if ts is None:
        return
    if not hasattr(ts, "shape") or ts.ndim != 1 or ts.shape[0] < 2:
        shape = getattr(ts, "shape", None)
        raise ValueError(f"{name}: ts must be a 1-D time grid with at least 2 points (one step), got shape {shape}; "
                         "use genflow.samplers.grids.uniform(process, n) with n >= 1.")
    values = _concrete(ts)
    if values is None:
        return
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: the time grid holds non-finite values {values}.")
    if np.any(np.diff(values) >= 0):
        raise ValueError(f"{name}: ts must decrease strictly from t_max (noise) to t_min (data), got "
                         f"{values[0]:.4g} ... {values[-1]:.4g}; genflow's time runs t = 1 noise -> t = 0 data.")
    t_max = _concrete(model.process.t_max)
    if t_max is not None and (values[0] > float(t_max) + 1e-6 or values[-1] < 0.0):
        raise ValueError(f"{name}: ts runs from {values[0]:.4g} to {values[-1]:.4g}, outside the process's "
                         f"time range [0, {float(t_max):.4g}].")


def sampler(name: str, static_argnames: tuple[str, ...] = ("denoise",), check: Callable | None = None):
    """Decorator: jit a sampler with its static options and check its inputs before tracing
    (``check(model, x1, ts, **kwargs)`` adds a sampler's own checks)."""

    def wrap(fn: Callable) -> Callable:
        jitted = jax.jit(fn, static_argnames=static_argnames)

        @functools.wraps(fn)
        def call(model, x1, ts=None, **kwargs):
            check_inputs(name, model, x1, ts, kwargs.get("cond"))
            if check is not None:
                check(model, x1, ts, **kwargs)
            return jitted(model, x1, ts, **kwargs)

        call.jitted = jitted
        call.check = check          # the sampler's own checks, for drivers that reuse its steps
        return call

    return wrap
