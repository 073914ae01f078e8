"""Time grids for samplers: arrays ts of shape (n+1,), decreasing from t_max to t_min.

A grid is an array argument of a sampler: its length fixes the compiled program, its
values do not. ``karras`` and ``log_snr`` are spaced in the process's noise level
s(t) = sigma(t) / alpha(t) (log-SNR lambda = -2 log s) and mapped back to t with
``process.t_from_log_snr``, so one grid recipe serves every process. Their end points are
exactly t_max and t_min (not the bisection's approximations of them). All are jit-safe:
n is static, the process's parameters may be traced.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import Array

from genflow.processes.base import AbstractProcess

# EDM's noise range (Karras et al. 2022, Table 1); used only where a process's own noise
# level is infinite at an end (rectified flow: alpha(1) = 0 and sigma(0) = 0).
S_MAX_DEFAULT = 80.0
S_MIN_DEFAULT = 0.002


def uniform(process: AbstractProcess, n: int, t_min: float | None = None) -> Array:
    """n uniform steps from t_max down to t_min (the process's own cut-off by default)."""
    lo = process.t_min if t_min is None else t_min
    return jnp.linspace(process.t_max, lo, n + 1)


def _noise_level(process: AbstractProcess, t) -> Array:
    t = jnp.asarray(t, jnp.result_type(float))
    return process.sigma(t) / process.alpha(t)


def _ends(process: AbstractProcess, lo, s_max, s_min) -> tuple[Array, Array]:
    """Noise levels at t_max and t_min; EDM's s_max where s(t_max) is infinite (jit-safe)."""
    s_hi = _noise_level(process, process.t_max) if s_max is None else jnp.asarray(s_max, jnp.result_type(float))
    s_lo = _noise_level(process, lo) if s_min is None else jnp.asarray(s_min, jnp.result_type(float))
    return jnp.where(jnp.isfinite(s_hi), s_hi, S_MAX_DEFAULT), s_lo


def _to_grid(process: AbstractProcess, s: Array, lo) -> Array:
    ts = process.t_from_log_snr(-2.0 * jnp.log(s))
    return ts.at[0].set(process.t_max).at[-1].set(lo)


def karras(process: AbstractProcess, n: int, rho: float = 7.0, t_min: float | None = None,
           s_max: float | None = None, s_min: float | None = None) -> Array:
    """Karras spacing of the noise level s = sigma / alpha, mapped to t; shape (n+1,), decreasing.

    s_i = (s_max^(1/rho) + i/n (s_min^(1/rho) - s_max^(1/rho)))^rho, i = 0..n, then
    t_i = t(s_i) by ``process.t_from_log_snr``. For the EDM process (alpha = 1 and sigma(t) the
    same Karras schedule) this is the uniform grid in t. s_max, s_min default to s(t_max) and
    s(t_min); where s(t_max) is infinite (rectified flow) the interior points use s_max = 80
    and ts[0] stays t_max.
    Reference: Karras et al. 2022, eq. 5 (their i/(N-1) with N = n+1 grid points).
    """
    lo = process.t_min if t_min is None else t_min
    s_hi, s_lo = _ends(process, lo, s_max, s_min)
    frac = jnp.linspace(0.0, 1.0, n + 1)
    hi_r, lo_r = s_hi ** (1.0 / rho), s_lo ** (1.0 / rho)
    s = (hi_r + frac * (lo_r - hi_r)) ** rho
    return _to_grid(process, s, lo)


def log_snr(process: AbstractProcess, n: int, t_min: float | None = None,
            s_max: float | None = None, s_min: float | None = None) -> Array:
    """n steps uniform in log-SNR lambda = 2 log(alpha / sigma), mapped to t; shape (n+1,), decreasing.

    The natural grid of DPM-Solver (Lu et al. 2022, Sec. 3.3: uniform in lambda). Where lambda is
    infinite at an end (rectified flow), the interior points use EDM's noise range
    [0.002, 80] and the ends stay t_max and t_min.
    """
    lo = process.t_min if t_min is None else t_min
    s_hi, s_lo = _ends(process, lo, s_max, s_min)
    s_lo = jnp.where(s_lo > 0, s_lo, S_MIN_DEFAULT)
    lam = jnp.linspace(-2.0 * jnp.log(s_hi), -2.0 * jnp.log(s_lo), n + 1)
    return _to_grid(process, jnp.exp(-0.5 * lam), lo)
