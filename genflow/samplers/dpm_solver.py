"""DPM-Solver++: (2M), the multistep second-order exponential integrator in data prediction, and
k-diffusion's (2S) ancestral, (2M) SDE, (3M) and (3M) SDE."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model
from genflow.samplers._common import Stats, finish, need_key, normal_like, sampler, x0_and_eps
from genflow.samplers.noise_level import ancestral_split, level_ratio, noise_check, t_at_level
from genflow.samplers.recurrence import Recurrence, run
from genflow.samplers.registry import register


def safe_neg_log(r: Array) -> Array:
    """-log r, +inf at r = 0, with a zero (not NaN) gradient there: grids can be tuned through a
    step from alpha = 0 (``genflow.samplers.tune_grid``)."""
    positive = r > 0
    return jnp.where(positive, -jnp.log(jnp.where(positive, r, 1.0)), jnp.inf)


def dpm_solver_pp_2m_recurrence(model: Model, ts: Array, *, key: Array | None = None) -> Recurrence:
    """``dpm_solver_pp_2m``'s steps as a ``Recurrence`` with carry (x_k, x0_hat_{k-1}); the step
    sizes h come from the grid, so the history is one array shaped like x."""
    process = model.process

    def neg_log_ratio(t, s):
        e_minus_h = (process.alpha(t) * process.sigma(s)) / (process.alpha(s) * process.sigma(t))
        return e_minus_h, safe_neg_log(e_minus_h)                    # h = +inf where e^{-h} = 0

    def step(m: Model, carry, i, cond):
        x, x0_prev = carry
        t, s = ts[i], ts[i + 1]
        x0 = m.x0(x, t, cond)
        e_minus_h, h = neg_log_ratio(t, s)
        _, h_prev = neg_log_ratio(ts[jnp.maximum(i - 1, 0)], t)
        second = (i > 0) & jnp.isfinite(h) & jnp.isfinite(h_prev) & (h_prev > 0)
        half_over_r = jnp.where(second, h / (2.0 * jnp.where(second, h_prev, 1.0)), 0.0)
        d = x0 + half_over_r * (x0 - x0_prev)
        x_next = (process.sigma(s) / process.sigma(t)) * x + process.alpha(s) * (1.0 - e_minus_h) * d
        return x_next.astype(x.dtype), x0.astype(x.dtype)

    return Recurrence(lambda x1: (x1, jnp.zeros_like(x1)), step, ts[:-1])


@sampler("dpm_solver_pp_2m")
def dpm_solver_pp_2m(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
                     denoise: bool = False) -> tuple[Array, Stats]:
    """DPM-Solver++(2M) for any Gaussian path; 1 NFE per step. ``key`` unused.

    In lambda = log(alpha / sigma) (half the log-SNR) with h_i = lambda_{t_i} - lambda_{t_{i-1}}:
        x_{t_i} = (sigma_i / sigma_{i-1}) x_{t_{i-1}} - alpha_i (e^{-h_i} - 1) D_i,
        D_i = (1 + 1 / (2 r_i)) x0_hat_{i-1} - 1 / (2 r_i) x0_hat_{i-2},  r_i = h_{i-1} / h_i,
    with x0_hat_j = E[x0 | x_{t_j}] from the model; the first step uses D_1 = x0_hat_0 (DPM-Solver++ 1,
    i.e. DDIM). e^{-h} = (alpha_{i-1} sigma_i) / (alpha_i sigma_{i-1}) is formed as a product, so a
    step from alpha = 0 (rectified flow at t = 1) or to sigma = 0 is finite: h is infinite there and
    the step is first order (x_{t_i} = alpha_i x0_hat where sigma_i = 0), as the 2M correction
    extrapolates x0_hat linearly in lambda, which diverges over an infinite step.

    Args: x1 (B, ...) prior draw; ts (n+1,) decreasing from t_max to t_min (``grids.log_snr`` is
      the paper's grid; ``grids.karras`` also works well).
    Returns: (x at ts[-1], or E[x0 | x] there with ``denoise=True`` (1 more NFE), stats).
    Reference: Lu et al. 2022, "DPM-Solver++", Algorithm 2 (multistep second order).
    """
    x = run(model, dpm_solver_pp_2m_recurrence(model, ts), x1, cond)
    return finish(model, x, ts[-1], cond, denoise, ts.shape[0] - 1)


register("dpm_solver_pp_2m", dpm_solver_pp_2m, summary="DPM-Solver++(2M), multistep exponential integrator",
         nfe_per_step="1", order="2", stochastic=False, recurrence=dpm_solver_pp_2m_recurrence)


# -- the rest of k-diffusion's DPM-Solver++ family: 2S ancestral, 2M SDE, 3M (SDE) -------------------
# Written like dpm_solver_pp_2m: k-diffusion's steps in y = x / alpha at noise level s = sigma / alpha
# (its t = -log s is our lambda = log(alpha / sigma)), moved to x with the ratio e^{-h} = s'/s formed
# as the product (sigma' alpha) / (alpha' sigma), which is 0 from alpha = 0; a multistep correction
# whose history step was infinite (from alpha = 0) is left out, as its weight h / h_last is 0 there.


@sampler("dpm_solver_pp_2s_ancestral", static_argnames=("eta", "denoise"),
         check=noise_check("dpm_solver_pp_2s_ancestral"))
def dpm_solver_pp_2s_ancestral(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
                               denoise: bool = False, eta: float = 1.0, s_noise: float = 1.0) -> tuple[Array, Stats]:
    """DPM-Solver++(2S) ancestral (k-diffusion's ``sample_dpmpp_2s_ancestral``); 2 NFE per step.

    From level s to s': the singlestep second-order DPM-Solver++ step down to s_down (midpoint
    r = 1/2 in lambda: y_mid = x0_hat + s_mid eps_hat, then y_down = (s_down/s) y + (1 - s_down/s)
    x0_hat(y_mid)), then noise of level s_up (``noise_level.ancestral_split``). To s_down = 0 the
    step is Euler's (1 NFE); from alpha = 0 it is first order (no midpoint exists at s = inf).

    Args: x1 (B, ...) prior draw; ts (n+1,) decreasing; key (needed when eta > 0); eta (static),
      s_noise as ``euler_ancestral``.
    Returns: (x at ts[-1], or E[x0 | x] with ``denoise=True``, stats).
    Reference: k-diffusion ``sampling.sample_dpmpp_2s_ancestral``; Lu et al. 2022, Algorithm 1.
    """
    if eta:
        need_key(f"dpm_solver_pp_2s_ancestral with eta={eta}", key)
    process = model.process
    n = ts.shape[0] - 1

    def step(x, inputs):
        t, t_next, i = inputs
        x0, eps = x0_and_eps(model, x, t, cond)
        ratio = level_ratio(process, t, t_next)
        down, up = ancestral_split(ratio, eta)
        a, a_next, sig_next = process.alpha(t), process.alpha(t_next), process.sigma(t_next)
        first = a_next * x0 + down * sig_next * eps          # Euler to s_down (and from alpha = 0)

        def singlestep(_):
            frac = down * ratio                                # s_down / s = e^{-h}
            half = jnp.sqrt(frac)                              # e^{-h/2}
            t_mid = t_at_level(process, t, t_next, half)
            x_mid = process.alpha(t_mid) * x0 + process.sigma(t_mid) * eps
            x0_mid = model.x0(x_mid, t_mid, cond)
            return frac * (a_next / a) * x + a_next * (1.0 - frac) * x0_mid

        second = (a > 0) & (down * sig_next > 0)
        x_next = jax.lax.cond(second, singlestep, lambda _: first, None)
        if eta:
            x_next = x_next + sig_next * up * s_noise * normal_like(key, i, x)
        return x_next.astype(x.dtype), 1 + second.astype(jnp.int32)

    x, nfe = jax.lax.scan(step, x1, (ts[:-1], ts[1:], jnp.arange(n)))
    return finish(model, x, ts[-1], cond, denoise, jnp.sum(nfe))


def _multistep_sde(model, x1, ts, key, cond, denoise, eta, s_noise, order, solver_type):
    """k-diffusion's ``sample_dpmpp_2m_sde`` (order 2) and ``sample_dpmpp_3m_sde`` (order 3) in x.

    With H = (1 + eta) h and r = e^{-h} = s'/s: x' = (sigma'/sigma) r^eta x + alpha' (1 - e^{-H}) x0_hat
    + alpha' (multistep correction) + sigma' sqrt(1 - r^(2 eta)) s_noise z; a step to sigma = 0 lands
    on alpha' x0_hat."""
    if eta:
        need_key(f"dpm_solver_pp_{order}m_sde with eta={eta}", key)
    process = model.process
    n = ts.shape[0] - 1

    def step(carry, inputs):
        x, d1, d2, h1, h2 = carry                        # the last two x0_hat and their steps h
        t, t_next, i = inputs
        x0 = model.x0(x, t, cond)
        a_next, sig_next, sig = process.alpha(t_next), process.sigma(t_next), process.sigma(t)
        r = level_ratio(process, t, t_next)
        h = safe_neg_log(r)                              # +inf from alpha = 0
        big_h = (1.0 + eta) * h
        decay = jnp.exp(-big_h)                          # e^{-H} = r^(1 + eta)
        keep = jnp.exp(-eta * h) if eta else jnp.ones_like(r)         # r^eta
        x_next = (sig_next / sig) * keep * x + a_next * (1.0 - decay) * x0
        finite = jnp.isfinite(h)
        ok1 = (i >= 1) & finite & jnp.isfinite(h1)
        ok2 = ok1 & (i >= 2) & jnp.isfinite(h2)
        safe = jnp.where(finite, h, 1.0)
        inv_r0 = jnp.where(ok1, safe / jnp.where(ok1, h1, 1.0), 0.0)   # 1 / r0 = h / h_1
        safe_h = jnp.where(finite & (big_h > 0), big_h, 1.0)
        phi_2 = jnp.where(finite, jnp.expm1(-safe_h) / safe_h + 1.0, 1.0)
        if order == 2:
            if solver_type == "heun":
                corr = phi_2 * inv_r0 * (x0 - d1)
            else:                                        # midpoint
                corr = 0.5 * (1.0 - decay) * inv_r0 * (x0 - d1)
        else:
            inv_r1 = jnp.where(ok2, safe / jnp.where(ok2, h2, 1.0), 0.0)
            r0 = jnp.where(ok1, jnp.where(ok1, h1, 1.0) / safe, 1.0)  # (inner wheres: no NaN gradient
            r1 = jnp.where(ok2, jnp.where(ok2, h2, 1.0) / safe, 1.0)  #  through an infinite step)
            d1_0 = (x0 - d1) * inv_r0
            d1_1 = (d1 - d2) * inv_r1
            third_d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
            third_d2 = (d1_0 - d1_1) / (r0 + r1)
            phi_3 = jnp.where(finite, phi_2 / safe_h - 0.5, -0.5)
            corr = jnp.where(ok2, phi_2 * third_d1 - phi_3 * third_d2, phi_2 * d1_0)
        x_next = x_next + a_next * corr
        if eta:
            x_next = x_next + sig_next * jnp.sqrt(-jnp.expm1(-2.0 * eta * h)) * s_noise * normal_like(key, i, x)
        x_next = jnp.where(sig_next > 0, x_next, a_next * x0)        # the denoising step to sigma = 0
        return (x_next.astype(x.dtype), x0.astype(x.dtype), d1, h.astype(h1.dtype), h1), 1

    zeros = jnp.zeros_like(x1)
    h0 = jnp.zeros((), x1.dtype)
    (x, _, _, _, _), nfe = jax.lax.scan(step, (x1, zeros, zeros, h0, h0), (ts[:-1], ts[1:], jnp.arange(n)))
    return finish(model, x, ts[-1], cond, denoise, jnp.sum(nfe))


@sampler("dpm_solver_pp_2m_sde", static_argnames=("eta", "solver_type", "denoise"),
         check=noise_check("dpm_solver_pp_2m_sde"))
def dpm_solver_pp_2m_sde(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
                         denoise: bool = False, eta: float = 1.0, s_noise: float = 1.0,
                         solver_type: str = "midpoint") -> tuple[Array, Stats]:
    """DPM-Solver++(2M) SDE (k-diffusion's ``sample_dpmpp_2m_sde``); 1 NFE per step.

    The multistep second-order DPM-Solver++ for the SDE whose noise share is eta (eta = 0 is the
    ODE, with k-diffusion's "midpoint" or "heun" form of the correction). Args as
    ``dpm_solver_pp_2m`` plus key (needed when eta > 0), eta, s_noise and solver_type (static).
    Reference: k-diffusion ``sampling.sample_dpmpp_2m_sde``; Lu et al. 2022, Sec. 5 (DPM-Solver++ SDE).
    """
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"dpm_solver_pp_2m_sde: solver_type must be 'midpoint' or 'heun', got {solver_type!r}.")
    return _multistep_sde(model, x1, ts, key, cond, denoise, eta, s_noise, 2, solver_type)


@sampler("dpm_solver_pp_3m_sde", static_argnames=("eta", "denoise"), check=noise_check("dpm_solver_pp_3m_sde"))
def dpm_solver_pp_3m_sde(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
                         denoise: bool = False, eta: float = 1.0, s_noise: float = 1.0) -> tuple[Array, Stats]:
    """DPM-Solver++(3M) SDE (k-diffusion's ``sample_dpmpp_3m_sde``); 1 NFE per step, third order
    per step for eta = 0 (``dpm_solver_pp_3m``). The first two steps, without a history, are first
    and second order, which holds the global order of the ODE solver at 2 (its error constant is
    smaller than 2M's: tests/test_samplers_suite.py measures both).
    Reference: k-diffusion ``sampling.sample_dpmpp_3m_sde``; Lu et al. 2022 (multistep, order 3).
    """
    return _multistep_sde(model, x1, ts, key, cond, denoise, eta, s_noise, 3, None)


@sampler("dpm_solver_pp_3m")
def dpm_solver_pp_3m(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
                     denoise: bool = False) -> tuple[Array, Stats]:
    """DPM-Solver++(3M): the deterministic third-order multistep solver, ``dpm_solver_pp_3m_sde``
    with eta = 0 (k-diffusion's ``sample_dpmpp_3m_sde(eta=0)``); 1 NFE per step. ``key`` unused."""
    return _multistep_sde(model, x1, ts, None, cond, denoise, 0.0, 1.0, 3, None)


register("dpm_solver_pp_2s_ancestral", dpm_solver_pp_2s_ancestral,
         summary="DPM-Solver++(2S) ancestral (k-diffusion)", nfe_per_step="2 (1 on a step to sigma = 0)",
         order="2 (eta = 0)", stochastic=True, config={"eta": "eta"})
register("dpm_solver_pp_2m_sde", dpm_solver_pp_2m_sde, summary="DPM-Solver++(2M) SDE (k-diffusion, midpoint)",
         nfe_per_step="1", order="2 (eta = 0)", stochastic=True, config={"eta": "eta"})
register("dpm_solver_pp_3m", dpm_solver_pp_3m, summary="DPM-Solver++(3M), third-order multistep (Euler start)",
         nfe_per_step="1", order="3 (2 overall, from its Euler start)", stochastic=False)
register("dpm_solver_pp_3m_sde", dpm_solver_pp_3m_sde, summary="DPM-Solver++(3M) SDE (k-diffusion)",
         nfe_per_step="1", order="as 3M (eta = 0)", stochastic=True, config={"eta": "eta"})
