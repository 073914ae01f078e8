"""Time grids for samplers: arrays ts of shape (n+1,), decreasing from t_max to t_min.

A grid is an array argument of a sampler: its length fixes the compiled program, its
values do not.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import Array

from genflow.processes.base import AbstractProcess


def uniform(process: AbstractProcess, n: int, t_min: float | None = None) -> Array:
    """n uniform steps from t_max down to t_min (the process's own cut-off by default)."""
    lo = process.t_min if t_min is None else t_min
    return jnp.linspace(process.t_max, lo, n + 1)
