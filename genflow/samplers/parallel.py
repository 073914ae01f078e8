"""Parallel-in-time sampling: a fixed-grid sampler's N steps solved as one fixed point.

A sampler is a recurrence c_{k+1} = F_k(c_k) (``genflow.samplers.recurrence``), and its whole
trajectory (c_1 .. c_N) is the fixed point of the map that applies every F_k to the previous
guess at once (seed equations, section 9). Each round of the driver takes a window of W steps,
evaluates the network at all W guesses in **one batched call** (the steps' times stacked into the
batch, optionally sharded over devices) and updates the window by one of:

* ``"picard"``: the window's steps re-run in order with the network's answers held fixed
  (``FrozenOutput``). Only the network's part of each step lags one round; the rest (the
  process's linear drift, the multistep history, the fixed noise) is exact, so for a network
  predicting the velocity on a straight path this is ParaDiGMS's Picard iteration
  x_{k+1} = x_{i0} + sum_{j<=k} dt_j v(x_j) (Shih et al. 2023), and in general a stronger one.
  It is also Newton's iteration below with the network's Jacobian set to zero.
* ``"newton"``: F_k linearised at the guess, c_{k+1} = F_k(c_k^old) + J_k (c_k - c_k^old), and this
  linear recurrence solved for the whole window by ``jax.lax.associative_scan`` (DEER, Lim et al.
  2024; quasi-DEER, Gonzalez et al. 2024). ``jacobian="full"`` is the exact per-example Jacobian
  (one JVP per carry dimension; for low-dimensional data); ``"isotropic"`` approximates every
  (carry part i, carry part j) block of J_k by a multiple of the identity, its trace estimated
  by Hutchinson's estimator with one Rademacher probe (one network JVP per step; for images).
  A round whose Newton update is not finite falls back to the Picard update (counted).

Both keep the property that makes the window slide: if c_{i0} is exact, one round makes c_{i0+1}
exact, so after at most N rounds the trajectory is the sequential one (rounding aside), and
usually after far fewer. After each round the window's start moves to the first step whose update
changed its sample by more than ``tol`` times the noise level there (ParaDiGMS's criterion,
rms(x_new - x_old) / sigma(t_{k+1}) <= tol, sigma floored at the grid's smallest positive sigma),
and at least one step. ``stats``: ``rounds`` (the sequential depth in network calls), ``nfe``
(network evaluations, all rounds), ``jvp`` (Jacobian-vector products, Newton), ``residual`` (the
last round's largest update, in units of tol's scale), ``converged``, ``fallbacks``.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from genflow.models.model import Model
from genflow.samplers import registry
from genflow.samplers._common import Stats, check_inputs, finish
from genflow.samplers.recurrence import FrozenOutput, Recurrence

METHODS = ("picard", "newton")
JACOBIANS = ("isotropic", "full")


def supported() -> tuple[str, ...]:
    """The registered samplers the driver can run (those with a ``recurrence``)."""
    return tuple(name for name, info in registry.SAMPLERS.items() if info.recurrence is not None)


def _check(sampler: str, method: str, window: int | None, tol: float, max_rounds: int | None, jacobian: str,
           n: int) -> None:
    if sampler not in registry.SAMPLERS:
        registry.get(sampler)
    if registry.SAMPLERS[sampler].recurrence is None:
        raise ValueError(f"parallel sampling runs fixed-grid samplers with one network call per step; "
                         f"{sampler!r} is not one of them. Choose one of {', '.join(supported())}.")
    if method not in METHODS:
        raise ValueError(f"unknown parallel method {method!r}; choose one of {', '.join(METHODS)}.")
    if jacobian not in JACOBIANS:
        raise ValueError(f"unknown Jacobian {jacobian!r} for Newton's iteration; choose one of "
                         f"{', '.join(JACOBIANS)}.")
    if window is not None and (not isinstance(window, (int, np.integer)) or window < 1):
        raise ValueError(f"window must be a positive number of steps (at most the {n} of the grid), got {window!r}.")
    if not (isinstance(tol, (int, float)) and np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0 (0: iterate until nothing changes), got {tol!r}.")
    if max_rounds is not None and (not isinstance(max_rounds, (int, np.integer)) or max_rounds < 1):
        raise ValueError(f"max_rounds must be a positive integer (default: the number of steps), got {max_rounds!r}.")


def sample(model: Model, x1: Array, ts: Array, *, sampler: str = "ddim", method: str = "picard",
           key: Array | None = None, cond: Any = None, denoise: bool = False, window: int | None = None,
           tol: float = 1e-3, max_rounds: int | None = None, jacobian: str = "isotropic",
           sharding: jax.sharding.Sharding | None = None, **options) -> tuple[Array, Stats]:
    """``sampler``'s answer on the grid ``ts``, computed by Picard or Newton iteration in time.

    Args: model, x1 (B, ...), ts (N+1,), key, cond, denoise and ``options`` (e.g. ``eta``) as the
      sequential ``sampler`` takes them; method "picard" or "newton"; window W steps per round
      (default N: the whole trajectory); tol the accepted per-step update relative to the noise
      level (0: iterate to the fixed point); max_rounds (default N, which always suffices);
      jacobian "isotropic" or "full" (Newton); sharding, e.g. ``Placement.create().batch()``,
      for the stacked window batch (W * B, ...): the window's steps spread over devices.
    Returns: (x, stats) with x the sequential sampler's output to within the tolerance.
    """
    n = int(np.shape(ts)[0]) - 1 if hasattr(ts, "shape") and np.ndim(ts) == 1 else 0
    check_inputs(f"parallel {sampler}", model, x1, ts, cond)
    _check(sampler, method, window, tol, max_rounds, jacobian, n)
    own_check = getattr(registry.SAMPLERS[sampler].fn, "check", None)
    if own_check is not None:
        own_check(model, x1, ts, key=key, cond=cond, **options)
    window = n if window is None else min(int(window), n)
    max_rounds = n if max_rounds is None else int(max_rounds)
    return _solve(model, x1, ts, key, cond, jnp.asarray(tol, jnp.float32), jnp.asarray(max_rounds, jnp.int32),
                  sampler=sampler, method=method, window=window, jacobian=jacobian, denoise=denoise,
                  sharding=sharding, options=tuple(sorted(options.items())))


@functools.partial(jax.jit, static_argnames=("sampler", "method", "window", "jacobian", "denoise", "sharding",
                                             "options"))
def _solve(model, x1, ts, key, cond, tol, max_rounds, *, sampler, method, window, jacobian, denoise, sharding,
           options):
    rec: Recurrence = registry.SAMPLERS[sampler].recurrence(model, ts, key=key, **dict(options))
    n, w = rec.num_steps, window
    carry0 = jnp.stack(rec.init(x1))                                  # (L, B, ...)
    num_parts, b = carry0.shape[0], x1.shape[0]
    times = jnp.concatenate([rec.times, jnp.broadcast_to(rec.times[-1:], (w,))]).astype(x1.dtype)
    sigma = model.process.sigma(ts[1:]).astype(x1.dtype)              # noise level of c_{k+1}
    floor = jnp.min(jnp.where(sigma > 0, sigma, jnp.inf))
    level = jnp.concatenate([jnp.maximum(sigma, floor), jnp.ones((w,), x1.dtype)])
    # trajectory guess c_0 .. c_{N+W-1}; entries past N are padding that windows near the end read
    traj = jnp.broadcast_to(carry0, (n + w,) + carry0.shape)
    cond_w = None if cond is None else jnp.tile(jnp.asarray(cond), w)

    def network(xs, ks):                                              # (W, B, ...) -> (W, B, ...)
        flat = xs.reshape((w * b,) + xs.shape[2:])
        if sharding is not None:
            flat = jax.lax.with_sharding_constraint(flat, sharding)
        out = model(flat, jnp.repeat(times[ks], b), cond_w)
        return out.reshape(xs.shape)

    def frozen_step(c, out, k):                                       # F_k with the network's answer fixed
        nxt = jnp.stack(rec.step(FrozenOutput(model, out), tuple(c), k, cond))
        return jnp.where(k < n, nxt, c)

    def picard(start, outs, ks):
        def body(c, inputs):
            c = frozen_step(c, *inputs)
            return c, c

        return jax.lax.scan(body, start, (outs, ks))[1]

    def newton(start, win, ks, round_key):
        xs = win[:, 0]
        if jacobian == "full":
            outs = network(xs, ks)
            a = _full_jacobians(model, rec, win, ks, cond, n)         # (W, B, P, P)
            f = jax.vmap(frozen_step)(win, outs, ks)                  # F_k(c_k^old), (W, L, B, ...)
            flat = lambda c: jnp.moveaxis(c, 1, 0).reshape(c.shape[1], -1, 1)  # (L, B, ...) -> (B, P, 1)
            c_old, f, c_start = jax.vmap(flat)(win), jax.vmap(flat)(f), flat(start)
            jvps = c_old.shape[2]                                     # P JVPs per step
        else:
            z = jax.random.rademacher(round_key, xs.shape, xs.dtype)
            outs, douts = jax.jvp(lambda v: network(v, ks), (xs,), (z,))
            f = jax.vmap(frozen_step)(win, outs, ks)
            a = _isotropic_jacobians(frozen_step, win, outs, douts, z, ks)   # (W, B, L, L)
            flat = lambda c: jnp.moveaxis(c, 1, 0).reshape(c.shape[1], c.shape[0], -1)  # -> (B, L, D)
            c_old, f, c_start = jax.vmap(flat)(win), jax.vmap(flat)(f), flat(start)
            jvps = 1
        valid = (ks < n)[:, None, None, None]
        eye = jnp.eye(a.shape[-1], dtype=a.dtype)

        def solve(a):                                                 # c_{k+1} = a_k c_k + bias_k
            a = jnp.where(valid, a, eye)
            bias = jnp.where(valid, f - a @ c_old, 0.0)
            pre_a, pre_b = jax.lax.associative_scan(_compose, (a, bias))
            new = pre_a @ c_start[None] + pre_b                       # (W, B, L, D) or (W, B, P, 1)
            return jnp.moveaxis(new.reshape((new.shape[0], b, num_parts) + x1.shape[1:]), 2, 1).astype(win.dtype)

        return solve(a), solve(_contract(a)), outs, jvps

    def rnd(state):
        traj, i0, last, rounds, nfe, jvp, residual, fallbacks = state
        idx = i0 + jnp.arange(w + 1, dtype=jnp.int32)
        # window carries c_{i0} .. c_{i0+W}; a step never updated yet starts from the furthest estimate
        ext = jnp.take(traj, jnp.minimum(idx, n + w - 1), axis=0)
        ext = jnp.where((idx > last)[(...,) + (None,) * carry0.ndim], traj[last][None], ext)
        win, old_next, ks = ext[:w], ext[1:], idx[:w]
        if method == "picard":
            outs = network(win[:, 0], ks)
            new, used_jvp, fell = picard(win[0], outs, ks), 0, jnp.zeros((), jnp.int32)
        else:
            exact, clipped, outs, used_jvp = newton(win[0], win, ks, jax.random.fold_in(jax.random.PRNGKey(0), rounds))
            fallback = picard(win[0], outs, ks)
            # Newton's step where it stays within the sample's own scale of Picard's, else the same
            # step through the clipped Jacobian, else Picard's (a damped, never-diverging Newton)
            ok_exact, ok_clipped = _trusted(exact, fallback, level[ks]), _trusted(clipped, fallback, level[ks])
            new = jnp.where(_per_step(ok_exact, exact), exact,
                            jnp.where(_per_step(ok_clipped, clipped), clipped, fallback))
            fell = jnp.sum(~ok_exact & (ks < n)).astype(jnp.int32)
        # a step whose update is not finite (the network at a diverged guess) keeps its old guess
        good = _finite_per_step(new)
        new = jnp.where(_per_step(good, new), new, old_next)
        diff = (new[:, 0] - old_next[:, 0]).reshape(w, b, -1)
        # an update within a few rounding errors of the sample is no change: a tol below the
        # precision's resolution at small sigma would otherwise never be met
        rounding = 4 * jnp.finfo(x1.dtype).eps * jnp.sqrt(jnp.mean(jnp.square(new[:, 0].reshape(w, b, -1)), axis=-1))
        rms = jnp.maximum(jnp.sqrt(jnp.mean(jnp.square(diff), axis=-1)) - rounding, 0.0)
        err = rms.max(axis=1) / level[ks]
        err = jnp.where(ks < n, jnp.where(good & jnp.isfinite(err), err, jnp.inf), 0.0)
        above = err > tol
        stride = jnp.maximum(jnp.where(jnp.any(above), jnp.argmax(above), w), 1).astype(jnp.int32)
        traj = jax.lax.dynamic_update_slice_in_dim(traj, new, i0 + 1, axis=0)
        valid = jnp.sum(ks < n).astype(jnp.int32)
        return (traj, jnp.minimum(i0 + stride, n), jnp.maximum(last, i0 + w), rounds + 1, nfe + valid,
                jvp + valid * used_jvp, jnp.max(err).astype(x1.dtype), fallbacks + fell)

    zero = jnp.zeros((), jnp.int32)
    state = (traj, zero, zero, zero, zero, zero, jnp.zeros((), x1.dtype), zero)
    state = jax.lax.while_loop(lambda s: (s[1] < n) & (s[3] < max_rounds), rnd, state)
    traj, i0, _, rounds, nfe, jvp, residual, fallbacks = state
    x, stats = finish(model, traj[n, 0], ts[-1] if rec.end is None else rec.end, cond, denoise, nfe)
    stats.update(rounds=rounds, jvp=jvp, residual=residual, converged=i0 >= n, fallbacks=fallbacks)
    return x, stats


def _finite_per_step(c: Array) -> Array:
    """(W,) whether step k's whole proposal (W, L, B, ...) is finite."""
    return jnp.all(jnp.isfinite(c.reshape(c.shape[0], -1)), axis=1)


def _trusted(newton: Array, picard: Array, level: Array) -> Array:
    """(W,) whether Newton's proposal for step k is finite and within rms(Picard's) + sigma of it."""
    rms = lambda v: jnp.sqrt(jnp.mean(jnp.square(v.reshape(v.shape[0], -1)), axis=1))  # noqa: E731
    return _finite_per_step(newton) & (rms(newton - picard) <= rms(picard) + level)


def _per_step(mask: Array, like: Array) -> Array:
    return mask.reshape(mask.shape + (1,) * (like.ndim - 1))


def _contract(a: Array) -> Array:
    """a / max(1, ||a||_2) for (..., P, P): the linear recurrence through the window stays bounded
    (quasi-DEER's clipped Jacobian), so a guess far from the fixed point cannot blow it up."""
    norm = jnp.linalg.norm(a, ord=2, axis=(-2, -1))[..., None, None]
    return a / jnp.maximum(norm, 1.0)


def _compose(early, late):
    """(A_late A_early, A_late b_early + b_late): two affine steps c -> A c + b, early first."""
    a1, b1 = early
    a2, b2 = late
    return a2 @ a1, a2 @ b1 + b2


def _isotropic_jacobians(frozen_step, win, outs, douts, z, ks):
    """(W, B, L, L): block (i, j) of each step's Jacobian as m_ij I, m_ij = mean(z * (J e_j z)_i)
    (Hutchinson; exact where the block is a multiple of the identity). Only part 0 (x) feeds the
    network, so the probe of part j > 0 needs no network JVP."""
    num_parts = win.shape[1]
    cols = []
    for j in range(num_parts):
        dc = jnp.zeros_like(win).at[:, j].set(z)
        dout = douts if j == 0 else jnp.zeros_like(douts)
        _, jv = jax.vmap(lambda c, o, k, tc, to: jax.jvp(lambda c_, o_: frozen_step(c_, o_, k), (c, o), (tc, to)))(
            win, outs, ks, dc, dout)                                  # (W, L, B, ...)
        m = jnp.mean((jv * z[:, None]).reshape(jv.shape[:3] + (-1,)), axis=-1)   # (W, L, B)
        cols.append(jnp.moveaxis(m, 1, 2))                            # (W, B, L)
    return jnp.stack(cols, axis=-1)                                   # (W, B, L_i, L_j)


def _full_jacobians(model, rec, win, ks, cond, n):
    """(W, B, P, P): the exact Jacobian of each step per example, P = L * prod(x.shape[1:])."""
    num_parts, b = win.shape[1], win.shape[2]
    shape = win.shape[3:]

    def per_example(c_flat, k, label):
        c = c_flat.reshape((num_parts, 1) + shape)
        label = None if label is None else label[None]
        out = jnp.stack(rec.step(model, tuple(c), k, label))
        return out.reshape(-1)

    def per_step(c, k):                                               # c (L, B, ...)
        flat = jnp.moveaxis(c, 1, 0).reshape(b, -1)
        labels = None if cond is None else jnp.broadcast_to(jnp.asarray(cond), (b,))
        if labels is None:
            return jax.vmap(lambda cf: jax.jacfwd(per_example)(cf, k, None))(flat)
        return jax.vmap(lambda cf, lab: jax.jacfwd(per_example)(cf, k, lab))(flat, labels)

    return jax.vmap(per_step)(win, ks)
