"""Power-function EMA and its post-hoc reconstruction (Karras et al. 2024, EDM2, Sec. 3 and App. C).

Conventions: time is the training step t = 1, 2, ...; the parameters after step t are theta_t, and
they hold on the interval (t - 1, t]. A power-function EMA of exponent gamma tracked to step t
averages the trajectory with the profile

    p_{t,gamma}(s) = (gamma + 1) s^gamma / t^(gamma + 1),   0 < s <= t   (EDM2 eq. 121, 108)

whose relative standard deviation (its std divided by t) is sigma_rel, tied to gamma by

    sigma_rel^2 = (gamma + 1) / ((gamma + 2)^2 (gamma + 3))              (EDM2 eq. 123)

It is tracked with the per-step decay beta_t = (1 - 1/t)^(gamma + 1) (eq. 127). That recursion
gives theta_tau the weight w_tau = (tau^(gamma+1) - (tau-1)^(gamma+1)) / t^(gamma+1), which is
exactly the integral of p_{t,gamma} over (tau - 1, tau]: the tracked EMA *is* the integral of the
profile against the piecewise-constant trajectory, with no discretisation error. Any other profile
is then approximated by a linear combination of stored snapshots (t_i, gamma_i), with the
coefficients that minimise the L2 distance between profiles; the inner products of two profiles are
known in closed form (eq. 151, Algorithm 3). NVlabs/edm2's ``training/phema.py`` is the reference.

Everything here is pure: numpy float64 for the small linear algebra, jax for the per-step update.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

SIGMA_REL_MAX = float(np.sqrt(1.0 / 12.0))  # sigma_rel at gamma = 0 (a uniform average): the longest profile here


def gamma_to_sigma_rel(gamma) -> np.ndarray:
    """sigma_rel of the power profile of exponent ``gamma`` (EDM2 eq. 123)."""
    g = np.float64(gamma)
    return np.sqrt((g + 1) / ((g + 2) ** 2 * (g + 3)))


def sigma_rel_to_gamma(sigma_rel) -> np.ndarray:
    """The exponent gamma > 0 whose profile has relative std ``sigma_rel`` in (0, sqrt(1/12)).

    Inverting eq. 123 is the cubic gamma^3 + 7 gamma^2 + (16 - s^-2) gamma + (12 - s^-2) = 0
    (eq. 126, Algorithm 2); its largest real root is the one wanted. Elementwise, float64."""
    s = np.asarray(sigma_rel, np.float64)
    if np.any(~(s > 0)) or np.any(s >= SIGMA_REL_MAX):
        raise ValueError(f"sigma_rel must lie in (0, {SIGMA_REL_MAX:.4f}), got {s.tolist()}.")
    inv = s.reshape(-1) ** -2
    roots = [np.roots([1.0, 7.0, 16.0 - t, 12.0 - t]) for t in inv]
    gamma = np.array([r[np.abs(r.imag) < 1e-9 * max(1.0, np.abs(r).max())].real.max() for r in roots])
    return gamma.reshape(s.shape)


def profile_weights(t: int, gamma: float) -> np.ndarray:
    """(t,) float64: the weight of theta_1 .. theta_t in the power EMA tracked to step t,
    w_tau = (tau^(gamma+1) - (tau-1)^(gamma+1)) / t^(gamma+1) (the closed form of the recursion)."""
    tau = np.arange(1, t + 1, dtype=np.float64)
    return (tau / t) ** (gamma + 1) - ((tau - 1) / t) ** (gamma + 1)


def profile_dot(t_a, gamma_a, t_b, gamma_b) -> np.ndarray:
    """Inner products <p_{t_a,gamma_a}, p_{t_b,gamma_b}> = integral of their product over s > 0
    (EDM2 eq. 151), broadcasting: (g_a+1)(g_b+1) / (g_a+g_b+1) * (t_lo/t_hi)^(g of the longer) / t_hi."""
    t_a, g_a, t_b, g_b = (np.asarray(v, np.float64) for v in (t_a, gamma_a, t_b, gamma_b))
    ratio = t_a / t_b
    exponent = np.where(t_a < t_b, g_b, -g_a)     # (t_a/t_b)^g_b if a ends first, (t_b/t_a)^g_a otherwise
    return (g_a + 1) * (g_b + 1) * ratio ** exponent / ((g_a + g_b + 1) * np.maximum(t_a, t_b))


def solve_coefficients(in_steps: Sequence[int], in_gammas: Sequence[float], out_step: int,
                       out_gamma: float) -> tuple[np.ndarray, float]:
    """(x (n,), rel_residual): coefficients of the n stored EMAs (step_i, gamma_i) whose combination
    sum_i x_i p_i is closest in L2 to the profile (out_step, out_gamma), scaled to sum to 1 (EDM2
    Algorithm 3: solve A x = b with A_ij = <p_i, p_j>, b_i = <p_i, p_out>).

    ``rel_residual`` = ||sum_i x_i p_i - p_out|| / ||p_out|| for the returned (normalised) x. By
    Cauchy-Schwarz the reconstructed parameters then differ from the directly tracked EMA by at most
    ||sum_i x_i p_i - p_out|| * ||theta||_{L2(0, out_step)} in every coordinate."""
    t = np.asarray(in_steps, np.float64)
    g = np.asarray(in_gammas, np.float64)
    if t.shape != g.shape or t.ndim != 1 or not len(t):
        raise ValueError("in_steps and in_gammas must be 1-D sequences of the same, positive length.")
    A = profile_dot(t[:, None], g[:, None], t[None, :], g[None, :])
    b = profile_dot(t, g, np.float64(out_step), np.float64(out_gamma))
    x = np.linalg.lstsq(A, b, rcond=None)[0]   # lstsq: a duplicate snapshot makes A singular, not fatal
    x = x / x.sum()
    pp = float(profile_dot(out_step, out_gamma, out_step, out_gamma))
    r2 = float(x @ A @ x - 2.0 * x @ b + pp)
    return x, float(np.sqrt(max(r2, 0.0) / pp))


def update(profiles: tuple, params, step, gammas: Sequence[float]) -> tuple:
    """One step of each power EMA: ``profiles[i] <- beta_t profiles[i] + (1 - beta_t) params`` with
    beta_t = (1 - 1/t)^(gamma_i + 1) (EDM2 eq. 127), ``step`` = t the number of the step that made
    ``params`` (1 for the first). jit-friendly; float32 in, float32 out.

    beta_t and 1 - beta_t go through log1p/expm1: (1 - 1/t) rounded to float32 loses 1/t's digits
    past t ~ 1e4 (the update weight 1 - beta would be off by 1% at t = 1e6 and 19% at 1e7 for
    sigma_rel 0.05); this way both keep full float32 precision, and at t = 1 beta is exactly 0 (the
    EMA starts at theta_1)."""
    t = jnp.asarray(step, jnp.float32)
    log_keep = jnp.log1p(-1.0 / t)
    out = []
    for ema, gamma in zip(profiles, gammas):
        x = (gamma + 1.0) * log_keep
        beta, w = jnp.exp(x), -jnp.expm1(x)
        out.append(jax.tree.map(lambda e, p: (beta * e + w * p).astype(e.dtype), ema, params))
    return tuple(out)
