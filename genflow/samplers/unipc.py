"""UniPC (Zhao et al. 2023): a multistep predictor (UniP) with a corrector (UniC) that reuses the
next step's model evaluation, so the corrector costs no extra NFE. Data prediction, B(h) = h
(``bh1``) or e^h - 1 (``bh2``), for any Gaussian path.

In lambda = log(alpha / sigma), h = lambda_t - lambda_s, with x0_hat values m_k of the history:
    x_t' = (sigma_t / sigma_s) x_s + alpha_t (1 - e^{-h}) m_s                       (DDIM)
    UniP-p:  x_t = x_t' - alpha_t B(h) sum_k rho^p_k D_k,   D_k = (m_{s_k} - m_s) / r_k
    UniC-p:  x_t^c = x_t' - alpha_t B(h) (sum_k rho^c_k D_k + rho^c_p (m(x_t, t) - m_s))
with r_k = (lambda_{s_k} - lambda_s) / h and rho solving R rho = b, R_{ik} = r_k^{i-1},
b_i = i! phi_{i+1}(-h) h / B(h) (phi the exponential-integrator functions); rho^p = 1/2 at p = 2
and rho^c = 1/2 at p = 1 (the paper's simplified low orders). m(x_t, t), taken at the predicted
point, is both the corrector's input and the next step's history. The step order warms up
1, 2, ..., and with ``lower_order_final`` falls back to 2 and 1 over the last steps; the last
step has no corrector (it would need an evaluation no later step uses). From alpha = 0
(lambda = -inf, rectified flow at t = 1) the step is DDIM's and a history entry there is left out.

Reference: Zhao et al. 2023, "UniPC", Algorithms 2 and 3; the authors' ``uni_pc.py``
(``multistep_uni_pc_bh_update``), which tests/data/unipc_reference.npz was made with.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model
from genflow.samplers._common import Stats, finish, sampler
from genflow.samplers.noise_level import level_ratio
from genflow.samplers.registry import register


def _check(model, x1, ts, *, order: int = 3, variant: str = "bh2", **_):
    if order not in (1, 2, 3, 4):
        raise ValueError(f"unipc: order must be 1, 2, 3 or 4, got {order}.")
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"unipc: variant must be 'bh1' or 'bh2', got {variant!r}.")


def step_orders(n: int, order: int, lower_order_final: bool) -> list[int]:
    """The order of each of the n steps: warm-up 1, 2, ..., then ``order``; with
    ``lower_order_final`` min(order, n + 1 - j) at step j (the authors' schedule)."""
    order = min(order, n)
    return [min(j, order, n + 1 - j) if lower_order_final else min(j, order) for j in range(1, n + 1)]


def _coefficients(h: Array, rks: list[Array], p: int, variant: str) -> tuple[Array, Array | None, Array]:
    """(B(h), rho^p (p-1,) or None, rho^c (p,)) for order p; rks the p - 1 history ratios r_k."""
    hh = -h
    h_phi_1 = jnp.expm1(hh)
    b_h = hh if variant == "bh1" else h_phi_1
    h_phi_k = h_phi_1 / hh - 1.0
    factorial, b = 1, []
    for i in range(1, p + 1):
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    b = jnp.stack(b)
    r = jnp.stack(list(rks) + [jnp.ones_like(h)])
    big_r = jnp.stack([r ** (i - 1) for i in range(1, p + 1)])
    rho_p = None
    if p == 2:
        rho_p = jnp.full((1,), 0.5, h.dtype)
    elif p > 2:
        rho_p = jnp.linalg.solve(big_r[:-1, :-1], b[:-1])
    rho_c = jnp.full((1,), 0.5, h.dtype) if p == 1 else jnp.linalg.solve(big_r, b)
    return b_h, rho_p, rho_c


@sampler("unipc", static_argnames=("order", "variant", "lower_order_final", "denoise"), check=_check)
def unipc(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None, denoise: bool = False,
          order: int = 3, variant: str = "bh2", lower_order_final: bool = True) -> tuple[Array, Stats]:
    """UniPC-p multistep with its corrector (see the module docstring); 1 NFE per step.

    Args: x1 (B, ...) prior draw; ts (n+1,) decreasing (the authors use uniform t or log-SNR
      grids); order (static) 1-4, capped at n; variant "bh1" or "bh2" (static; bh2 is the
      authors' choice for guided and few-step sampling); lower_order_final (static) lowers the
      order over the last steps, as the authors do below ~15 steps. ``key`` unused.
    Returns: (x at ts[-1], or E[x0 | x] with ``denoise=True``, stats).
    """
    process = model.process
    n = ts.shape[0] - 1
    orders = step_orders(n, order, lower_order_final)
    p_max = max(orders)
    lam = lambda t: 0.5 * process.log_snr(t)                         # lambda = log(alpha / sigma)

    m0 = model.x0(x1, ts[0], cond)
    hist_m = jnp.zeros((p_max,) + x1.shape, x1.dtype).at[0].set(m0)    # newest first
    hist_lam = jnp.zeros((p_max,), x1.dtype).at[0].set(lam(ts[0]))
    count = jnp.where(jnp.isfinite(lam(ts[0])), 1, 0)                 # usable history entries

    def step(carry, inputs):
        x, hist_m, hist_lam, count = carry
        s, t, p_step, corrector = inputs
        lam_s, lam_t = hist_lam[0], lam(t)
        sig_s, sig_t, a_t = process.sigma(s), process.sigma(t), process.alpha(t)
        m_s = hist_m[0]
        finite = jnp.isfinite(lam_s)
        h = jnp.where(finite, lam_t - jnp.where(finite, lam_s, 0.0), 1.0)
        # Coefficients from a finite h and, for history entries that do not exist (yet, or at
        # lambda = -inf), distinct stand-in ratios -k: those orders are never selected, but their
        # linear solves must stay regular, or their NaNs would poison gradients (tune_grid).
        h_c = jnp.where(jnp.isfinite(h), h, 1.0)
        lam_0 = jnp.where(finite, lam_s, 0.0)
        e_minus_h = level_ratio(process, s, t)                        # e^{-h}, 0 from alpha = 0
        x_ddim = (sig_t / sig_s) * x + a_t * (1.0 - e_minus_h) * m_s
        p_eff = jnp.minimum(p_step, jnp.maximum(count, 1))
        preds, coefs = [], []
        for p in range(1, p_max + 1):
            rks = [(jnp.where(k < count, hist_lam[k], lam_0 - (k + 1.0) * h_c) - lam_0) / h_c for k in range(1, p)]
            d1s = [(hist_m[k] - m_s) / rks[k - 1] for k in range(1, p)]
            b_h, rho_p, rho_c = _coefficients(h_c, rks, p, variant)
            pred = x_ddim if rho_p is None else x_ddim - a_t * b_h * sum(rho_p[k] * d1s[k] for k in range(p - 1))
            preds.append(pred)
            coefs.append((b_h, rho_c, d1s))
        choose = [p_eff == p for p in range(1, p_max + 1)]
        x_pred = jnp.select(choose, preds) if p_max > 1 else preds[0]
        x_pred = jnp.where(finite, x_pred, x_ddim)

        def correct(_):
            m_t = model.x0(x_pred, t, cond)
            outs = []
            for b_h, rho_c, d1s in coefs:
                res = sum((rho_c[k] * d1s[k] for k in range(len(d1s))), jnp.zeros_like(x)) + rho_c[-1] * (m_t - m_s)
                outs.append(x_ddim - a_t * b_h * res)
            x_c = jnp.select(choose, outs) if p_max > 1 else outs[0]
            return jnp.where(finite, x_c, x_pred), m_t

        x_next, m_t = jax.lax.cond(corrector, correct, lambda _: (x_pred, m_s), None)
        hist_m = jnp.concatenate([m_t[None], hist_m[:-1]])
        hist_lam = jnp.concatenate([lam_t[None], hist_lam[:-1]])
        count = jnp.minimum(count + 1, p_max)
        return (x_next.astype(x.dtype), hist_m, hist_lam, count), corrector.astype(jnp.int32)

    xs = (ts[:-1], ts[1:], jnp.asarray(orders, jnp.int32), jnp.arange(1, n + 1) < n)
    (x, _, _, _), nfe = jax.lax.scan(step, (x1, hist_m, hist_lam, count), xs)
    return finish(model, x, ts[-1], cond, denoise, 1 + jnp.sum(nfe))


register("unipc", unipc, summary="UniPC: multistep predictor + free corrector (bh2; order 3 default)",
         nfe_per_step="1", order="p + 1 with the corrector (order=p, 3)", stochastic=False)

