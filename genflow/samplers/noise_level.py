"""k-diffusion's samplers in the noise level s = sigma / alpha, for any Gaussian path.

k-diffusion writes its samplers for EDM's alpha = 1 path, y' = y + (s' - s) d with the
derivative d = (y - D(y, s)) / s = eps_hat (Karras et al. 2022, eq. 4 with sigma(t) = t). Every
Gaussian path is that path in y = x / alpha (as ``genflow.samplers.edm`` explains), so each
sampler here is k-diffusion's, step for step, with the denoiser D = E[x0 | x_t] and eps_hat
from the model at the t whose noise level is s, and y mapped back by x = alpha y. The steps are
written in x with the level ratios formed as products (s'/s = sigma' alpha / (alpha' sigma)), so
they stay finite where alpha = 0 (rectified flow at t = 1, s = infinite). From an infinite
level the only finite step is the first-order one (a midpoint or a multistep history at
s = inf does not exist), and that is what a step from alpha = 0 takes; from any finite level
the step is k-diffusion's exactly (tests/data/kdiffusion_samplers.npz holds its outputs).

Noise for step i is ``fold_in(key, i)`` (one draw per step), k-diffusion's ``noise_sampler``.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from genflow.models.model import Model
from genflow.samplers._common import Stats, _concrete, finish, need_key, normal_like, sampler, x0_and_eps
from genflow.samplers.edm import churned_scan
from genflow.samplers.registry import register


def level_ratio(process, t: Array, t_next: Array) -> Array:
    """s(t_next) / s(t), s = sigma / alpha, as (sigma' alpha) / (alpha' sigma): 0 where alpha(t) = 0."""
    return (process.sigma(t_next) * process.alpha(t)) / (process.alpha(t_next) * process.sigma(t))


def ancestral_split(ratio: Array, eta: float) -> tuple[Array, Array]:
    """k-diffusion's ``get_ancestral_step`` as fractions of the next level s': (down, up) with
    s_up = min(s', eta s' sqrt(1 - (s'/s)^2)) = up s' and s_down = sqrt(s'^2 - s_up^2) = down s'."""
    up = jnp.minimum(1.0, eta * jnp.sqrt(jnp.maximum(1.0 - ratio**2, 0.0)))
    return jnp.sqrt(jnp.maximum(1.0 - up**2, 0.0)), up


def t_at_level(process, t: Array, t_next: Array, frac: Array) -> Array:
    """The time in [t_next, t] whose noise level is ``frac * s(t)`` (s(t_next)/s(t) <= frac <= 1): the
    process's log-SNR inverse at lambda(t) - 2 log frac, bracketed by the step itself (so a grid
    that runs below the process's t_min, down to 0, is inverted exactly too)."""
    return process.t_from_log_snr(process.log_snr(t) - 2.0 * jnp.log(frac), lo=t_next, hi=t)


def noise_check(name: str):
    """The sampler decorator's ``check`` for samplers with ``eta`` and ``s_noise`` (checked where concrete)."""

    def check(model, x1, ts, *, eta: float = 1.0, s_noise=1.0, **_):
        if not eta >= 0.0:
            raise ValueError(f"{name}: eta must be zero or positive (1 is the ancestral step), got {eta}.")
        value = _concrete(s_noise)
        if value is not None and not np.all(value >= 0.0):
            raise ValueError(f"{name}: s_noise must be zero or positive, got {s_noise}.")

    return check


@sampler("euler_ancestral", static_argnames=("eta", "denoise"), check=noise_check("euler_ancestral"))
def euler_ancestral(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
                    denoise: bool = False, eta: float = 1.0, s_noise: float = 1.0) -> tuple[Array, Stats]:
    """Euler ancestral (k-diffusion's ``sample_euler_ancestral``); 1 NFE per step.

    From level s to s': an Euler step of dy/ds = eps_hat down to s_down, then fresh noise of
    level s_up (``ancestral_split``): y' = x0_hat + s_down eps_hat + s_noise s_up z, i.e.
    x' = alpha' x0_hat + sigma' (down eps_hat + s_noise up z). eta = 0 is DDIM (eta = 0); on a
    step to sigma = 0 no noise is added.

    Args: x1 (B, ...) prior draw; ts (n+1,) decreasing; key a PRNG key (needed when eta > 0);
      eta (static) the share of ancestral noise, s_noise its scale.
    Returns: (x at ts[-1], or E[x0 | x] there with ``denoise=True``, stats).
    Reference: k-diffusion ``sampling.sample_euler_ancestral``; Karras et al. 2022, eq. 4.
    """
    if eta:
        need_key(f"euler_ancestral with eta={eta}", key)
    process = model.process
    n = ts.shape[0] - 1

    def step(x, inputs):
        t, t_next, i = inputs
        x0, eps = x0_and_eps(model, x, t, cond)
        down, up = ancestral_split(level_ratio(process, t, t_next), eta)
        sig_next = process.sigma(t_next)
        x_next = process.alpha(t_next) * x0 + sig_next * down * eps
        if eta:
            x_next = x_next + sig_next * up * s_noise * normal_like(key, i, x)
        return x_next.astype(x.dtype), 1

    x, nfe = jax.lax.scan(step, x1, (ts[:-1], ts[1:], jnp.arange(n)))
    return finish(model, x, ts[-1], cond, denoise, jnp.sum(nfe))


def _dpm_2_step(model, x, t, x0, eps, t_next, down, cond):
    """k-diffusion's DPM-Solver-2 step from (x, t) down to the level s_down = down * s(t_next):
    Euler to the geometric-mean level s_mid = sqrt(s s_down), then the full step with the
    derivative there. Returns (alpha(t_next) y_down, NFE). To s_down = 0 it is the Euler step (as
    in k-diffusion), and from alpha = 0 (s infinite, where no midpoint exists) too."""
    process = model.process
    a, sig = process.alpha(t), process.sigma(t)
    a_next, sig_next = process.alpha(t_next), process.sigma(t_next)
    euler = a_next * x0 + down * sig_next * eps                 # y_down = x0 + s_down eps
    safe_a = jnp.where(a > 0, a, 1.0)

    def midpoint(_):
        frac = down * level_ratio(process, t, t_next)           # s_down / s
        half = jnp.sqrt(frac)                                   # s_mid / s
        t_mid = t_at_level(process, t, t_next, half)
        a_mid = process.alpha(t_mid)
        x_mid = a_mid * x0 + half * (sig * a_mid / safe_a) * eps   # y_mid = x0 + s_mid eps
        eps_mid = model.eps(x_mid, t_mid, cond)
        # y' = y + (s_down - s) eps_mid, in x: (alpha' / alpha) x + (down sigma' - alpha' s) eps_mid
        return (a_next / safe_a) * x + (down * sig_next - a_next * sig / safe_a) * eps_mid

    second = (a > 0) & (down * sig_next > 0)
    return jax.lax.cond(second, midpoint, lambda _: euler, None), 1 + second.astype(jnp.int32)


@sampler("dpm_2", static_argnames=("s_churn", "denoise"))
def dpm_2(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None, denoise: bool = False,
          s_churn: float = 0.0, s_min: float = 0.0, s_max: float = float("inf"),
          s_noise: float = 1.0) -> tuple[Array, Stats]:
    """DPM-Solver-2 (k-diffusion's ``sample_dpm_2``): a midpoint in log s; 2 NFE per step (1 on a
    step to sigma = 0 or from alpha = 0). Second order.

    Per step (after EDM's optional churn, as ``edm_heun``): y_mid = y + (s_mid - s) eps_hat with
    s_mid = sqrt(s s') (the geometric mean), then y' = y + (s' - s) eps_hat(y_mid, s_mid).

    Args: as ``edm_heun`` (s_churn, s_min, s_max, s_noise: EDM's churn in units of s).
    Returns: (x at ts[-1], or E[x0 | x] with ``denoise=True``, stats).
    Reference: k-diffusion ``sampling.sample_dpm_2``; Lu et al. 2022 (DPM-Solver-2, r = 1/2).
    """
    def step(model, x, t, t_next, cond):
        x0, eps = x0_and_eps(model, x, t, cond)
        return _dpm_2_step(model, x, t, x0, eps, t_next, 1.0, cond)

    return churned_scan(model, x1, ts, key, cond, s_churn, s_min, s_max, s_noise, denoise, step,
                        name="dpm_2 with s_churn")


@sampler("dpm_2_ancestral", static_argnames=("eta", "denoise"), check=noise_check("dpm_2_ancestral"))
def dpm_2_ancestral(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
                    denoise: bool = False, eta: float = 1.0, s_noise: float = 1.0) -> tuple[Array, Stats]:
    """DPM-Solver-2 ancestral (k-diffusion's ``sample_dpm_2_ancestral``); 2 NFE per step.

    The ``dpm_2`` step down to s_down, then noise of level s_up (``ancestral_split``). As in
    k-diffusion, where s_down = 0 (the last step) the step is Euler's and adds no noise; from
    alpha = 0 it is ``euler_ancestral``'s step.

    Args/Returns: as ``euler_ancestral``.
    Reference: k-diffusion ``sampling.sample_dpm_2_ancestral``.
    """
    if eta:
        need_key(f"dpm_2_ancestral with eta={eta}", key)
    process = model.process
    n = ts.shape[0] - 1

    def step(x, inputs):
        t, t_next, i = inputs
        x0, eps = x0_and_eps(model, x, t, cond)
        down, up = ancestral_split(level_ratio(process, t, t_next), eta)
        x_next, nfe = _dpm_2_step(model, x, t, x0, eps, t_next, down, cond)
        if eta:
            noise = process.sigma(t_next) * up * s_noise * normal_like(key, i, x)
            # k-diffusion adds none on its Euler branch (s_down = 0, the last step); from alpha = 0
            # with eta >= 1 the step is a full re-noising y' = x0_hat + s' z, so the noise stays there
            keep = (down > 0) | (process.alpha(t) <= 0)
            x_next = x_next + jnp.where(keep, 1.0, 0.0) * noise
        return x_next.astype(x.dtype), nfe

    x, nfe = jax.lax.scan(step, x1, (ts[:-1], ts[1:], jnp.arange(n)))
    return finish(model, x, ts[-1], cond, denoise, jnp.sum(nfe))


_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(4)   # float64 host arrays, cast at trace time


def lms_coefficients(levels: Array, order: int) -> Array:
    """Adams-Bashforth weights in s: c_j = int_{s_i}^{s_{i+1}} prod_{k != j} (u - s_{i-k}) / (s_{i-j} - s_{i-k}) du
    for j < order, with ``levels`` = (s_{i+1}, s_i, s_{i-1}, ..., s_{i-order+1}). The integrand is
    a polynomial of degree order - 1 <= 3, so 4-point Gauss-Legendre is exact (k-diffusion
    integrates it with scipy's ``quad``)."""
    s_next, nodes = levels[0], levels[1:order + 1]
    lo, hi = nodes[0], s_next
    u = 0.5 * (hi - lo) * jnp.asarray(_GAUSS_NODES, levels.dtype) + 0.5 * (hi + lo)
    w = 0.5 * (hi - lo) * jnp.asarray(_GAUSS_WEIGHTS, levels.dtype)
    out = []
    for j in range(order):
        basis = jnp.ones_like(u)
        for k in range(order):
            if k != j:
                basis = basis * (u - nodes[k]) / (nodes[j] - nodes[k])
        out.append(jnp.sum(w * basis))
    return jnp.stack(out)


@sampler("lms", static_argnames=("order", "denoise"))
def lms(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None, denoise: bool = False,
        order: int = 4) -> tuple[Array, Stats]:
    """Linear multistep (Adams-Bashforth in s, k-diffusion's ``sample_lms``); 1 NFE per step.

    y_{i+1} = y_i + sum_j c_j eps_hat_{i-j}, the c_j integrating the Lagrange polynomial through
    the last min(i + 1, order) derivatives over [s_i, s_{i+1}] (``lms_coefficients``). A
    derivative at s = infinite (alpha = 0) is left out of the history (its step is Euler's).

    Args: x1 (B, ...) prior draw; ts (n+1,) decreasing; order (static) 1..4 (4 is k-diffusion's).
    Returns: (x at ts[-1], or E[x0 | x] with ``denoise=True``, stats). ``key`` unused.
    Reference: k-diffusion ``sampling.sample_lms``; Karras et al. 2022, eq. 4.
    """
    if order not in (1, 2, 3, 4):
        raise ValueError(f"lms: order must be 1, 2, 3 or 4, got {order}.")
    process = model.process
    n = ts.shape[0] - 1

    def step(carry, inputs):
        x, hist, levels, count = carry           # hist (order, B, ...) newest first; levels (order,) their s
        t, t_next, i = inputs
        x0, eps = x0_and_eps(model, x, t, cond)
        a, sig, a_next, sig_next = process.alpha(t), process.sigma(t), process.alpha(t_next), process.sigma(t_next)
        finite = a > 0
        s = sig / jnp.where(finite, a, 1.0)
        s_next = sig_next / a_next
        hist = jnp.concatenate([eps[None], hist[:-1]], axis=0)
        levels = jnp.concatenate([s[None], levels[:-1]])
        count = jnp.where(finite, jnp.minimum(count + 1, order), 0)
        # y' = y + sum_j c_j eps_j, in x: (alpha' / alpha) x + alpha' sum_j c_j eps_j
        coeffs = [jnp.pad(lms_coefficients(jnp.concatenate([s_next[None], levels]), k), (0, order - k))
                  for k in range(1, order + 1)]
        c = jnp.select([count == k for k in range(1, order + 1)], coeffs, jnp.zeros(order, x.dtype))
        update = jnp.tensordot(c.astype(x.dtype), hist, axes=1)
        multistep = (a_next / jnp.where(finite, a, 1.0)) * x + a_next * update
        euler = a_next * x0 + sig_next * eps                 # the step from alpha = 0 (DDIM)
        x_next = jnp.where(finite, multistep, euler)
        return (x_next.astype(x.dtype), hist, levels, count), 1

    dtype = x1.dtype
    init = (x1, jnp.zeros((order,) + x1.shape, dtype), jnp.ones((order,), dtype), jnp.zeros((), jnp.int32))
    (x, _, _, _), nfe = jax.lax.scan(step, init, (ts[:-1], ts[1:], jnp.arange(n)))
    return finish(model, x, ts[-1], cond, denoise, jnp.sum(nfe))


# Adams-Bashforth weights for equal steps, newest derivative first (iPNDM's fixed coefficients).
_AB = {1: (1.0,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


@sampler("ipndm", static_argnames=("max_order", "denoise"))
def ipndm(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None, denoise: bool = False,
          max_order: int = 4) -> tuple[Array, Stats]:
    """iPNDM (Zhang & Chen 2023, "improved PNDM"): Adams-Bashforth in the noise level with the fixed
    equal-step weights, order min(i + 1, max_order) at step i; 1 NFE per step.

    y' = y + (s' - s) sum_j c_j eps_hat_{i-j}, c the AB weights of that order (1; 3/2, -1/2;
    23/12, -16/12, 5/12; 55/24, -59/24, 37/24, -9/24); in x: (alpha'/alpha) x + alpha' (s' - s) sum_j ...
    A step to sigma = 0 lands on x0_hat (as ComfyUI's port), and from alpha = 0 the first step is
    Euler's (it is first order anyway). The fixed weights assume equal steps in s; on the usual
    Karras grids it is still the strongest of the cheap multisteps at few NFE (Zhang & Chen, Table 2).

    Args: x1 (B, ...) prior draw; ts (n+1,) decreasing; max_order (static) 1-4. ``key`` unused.
    Returns: (x at ts[-1], or E[x0 | x] with ``denoise=True`` (the authors' ``denoise_to_zero``), stats).
    Reference: zju-pi/diff-sampler ``ipndm_sampler`` (tests/data/kdiffusion_samplers.npz holds its
    outputs); Zhang & Chen 2023 (DEIS), Sec. 4.
    """
    if max_order not in _AB:
        raise ValueError(f"ipndm: max_order must be 1, 2, 3 or 4, got {max_order}.")
    process = model.process
    n = ts.shape[0] - 1

    def step(carry, inputs):
        x, hist = carry                                      # hist (max_order, B, ...): eps_hat, newest first
        t, t_next, i = inputs
        x0, eps = x0_and_eps(model, x, t, cond)
        hist = jnp.concatenate([eps[None], hist[:-1]], axis=0)
        a, sig, a_next, sig_next = process.alpha(t), process.sigma(t), process.alpha(t_next), process.sigma(t_next)
        finite = a > 0
        safe_a = jnp.where(finite, a, 1.0)
        order = jnp.minimum(i + 1, max_order)
        combos = [sum(c * hist[j] for j, c in enumerate(_AB[k])) for k in range(1, max_order + 1)]
        combo = jnp.select([order == k for k in range(1, max_order + 1)], combos) if max_order > 1 else combos[0]
        multistep = (a_next / safe_a) * x + (sig_next - a_next * sig / safe_a) * combo
        x_next = jnp.where(finite, multistep, a_next * x0 + sig_next * eps)
        x_next = jnp.where(sig_next > 0, x_next, a_next * x0)
        return (x_next.astype(x.dtype), hist), 1

    init = (x1, jnp.zeros((max_order,) + x1.shape, x1.dtype))
    (x, _), nfe = jax.lax.scan(step, init, (ts[:-1], ts[1:], jnp.arange(n)))
    return finish(model, x, ts[-1], cond, denoise, jnp.sum(nfe))


register("euler_ancestral", euler_ancestral, summary="Euler ancestral in the noise level (k-diffusion)",
         nfe_per_step="1", order="1 (weak)", stochastic=True, config={"eta": "eta"})
register("dpm_2", dpm_2, summary="DPM-Solver-2, a geometric-mean midpoint in the noise level (k-diffusion)",
         nfe_per_step="2 (1 on a step to sigma = 0)", order="2", stochastic=True, config={"churn": "s_churn"})
register("dpm_2_ancestral", dpm_2_ancestral, summary="DPM-Solver-2 ancestral (k-diffusion)",
         nfe_per_step="2 (1 on a step to sigma = 0)", order="1 (weak)", stochastic=True, config={"eta": "eta"})
register("lms", lms, summary="linear multistep (Adams-Bashforth) in the noise level, order 4 (k-diffusion)",
         nfe_per_step="1", order="4", stochastic=False)
register("ipndm", ipndm, summary="iPNDM: Adams-Bashforth in the noise level, fixed weights (diff-sampler)",
         nfe_per_step="1", order="4 on equal steps", stochastic=False)
