"""Measure a flow the way the ReFlow table reports it: straightness, transport cost, and sample
distance to data at 1, 2, 4, 8 Euler steps and with an adaptive solver."""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax import Array

from genflow.models.model import Model
from genflow.samplers import grids
from genflow.samplers.diffrax_solvers import ode_sample
from genflow.samplers.euler import euler_ode
from genflow.reflow.straightness import coupling_cost, straightness

Distance = Callable[[np.ndarray, np.ndarray], float]
COLUMNS = ("straightness", "transport_cost", "euler_1", "euler_2", "euler_4", "euler_8", "adaptive")


def default_distance(shape: tuple[int, ...]) -> tuple[str, Distance | None]:
    """(name, distance) for data of one example's ``shape``: the energy distance for flat
    low-dimensional data, the Fréchet digits distance for 8x8 digits, else none."""
    shape = tuple(shape)
    if shape == (8, 8, 1):
        from genflow.metrics import frechet_digits_distance

        return "Fréchet digits distance", lambda x, y: float(frechet_digits_distance(np.asarray(x), np.asarray(y)))
    if len(shape) == 1:
        from genflow.metrics import energy_distance

        return "energy distance", lambda x, y: float(energy_distance(np.asarray(x), np.asarray(y)))
    return "", None


def at_sample_size(distance: Distance, n: int) -> Distance:
    """``distance`` averaged over consecutive blocks of ``n`` samples (at least one block).

    Sample-based distances such as FID and FDD are biased upward at small N, so a model's number
    is comparable with the held-out floor only at the floor's N: pass n = len(heldout)."""

    def blocked(x: np.ndarray, reference: np.ndarray) -> float:
        x = np.asarray(x)
        if len(x) < n:
            raise ValueError(f"{len(x)} samples cannot make one block of {n}; draw at least {n}.")
        return float(np.mean([distance(x[i:i + n], reference) for i in range(0, len(x) - n + 1, n)]))

    return blocked


def flow_report(model: Model, x1: Array, reference: np.ndarray, *, distance: Distance | None,
                euler_steps: Sequence[int] = (1, 2, 4, 8), adaptive: bool = True, with_straightness: bool = True,
                straightness_steps: int = 100, rtol: float = 1e-5, atol: float = 1e-5,
                cond: Any = None) -> dict[str, float]:
    """Numbers for one row of the ReFlow table, all from the same prior draw ``x1`` (B, ...).

    Returns "straightness" (Euler with ``straightness_steps`` steps, ``straightness``) and
    "transport_cost" E||x1 - x0||^2 of the flow's coupling, with x0 from the adaptive solver when
    ``adaptive`` (the Euler endpoint is biased exactly where paths curve, which would flatter a
    curved flow's cost) and from the Euler path otherwise; "euler_<n>" the distance to
    ``reference`` of n-step Euler samples; "adaptive" and "adaptive_nfe" for Tsit5 with
    ``PIDController(rtol, atol)`` (genflow.samplers.ode_sample). Entries that do not apply are left out.
    """
    out: dict[str, float] = {}
    x_ad = None
    if adaptive:
        x_ad, stats = ode_sample(model, x1, cond=cond, solver="tsit5", rtol=rtol, atol=atol)
        out["adaptive_nfe"] = float(stats["nfe"])
    if with_straightness:
        s = straightness(model, x1, grids.uniform(model.process, straightness_steps), cond)
        out["straightness"] = float(s["straightness"])
        out["transport_cost"] = float(s["transport_cost"] if x_ad is None else coupling_cost(x1, x_ad))
    if distance is not None:
        for n in euler_steps:
            x = euler_ode(model, x1, grids.uniform(model.process, n), cond=cond)[0]
            out[f"euler_{n}"] = distance(np.asarray(jax.device_get(x)), reference)
        if x_ad is not None:
            out["adaptive"] = distance(np.asarray(jax.device_get(x_ad)), reference)
    return out


class Stopwatch:
    """Wall time of named stages: ``with watch("2-RF"): ...``; ``watch.seconds[name]`` sums them."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        watch = self

        class _Timer:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                watch.seconds[name] = watch.seconds.get(name, 0.0) + time.perf_counter() - self.t0

        return _Timer()


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.{digits}g}"


def format_table(rows: list[tuple[str, dict[str, float]]], distance_name: str = "distance",
                 reference_floor: float | None = None) -> str:
    """The markdown table of ``flow_report`` rows; a row's ``wall_s`` is its stage wall time."""
    head = ("| model | straightness S | transport cost | " + distance_name + ": 1 Euler | 2 | 4 | 8 | "
            "adaptive (NFE) | wall time (s) |")
    lines = [head, "|" + "---|" * 9]
    for name, r in rows:
        adaptive = "—" if "adaptive" not in r else f"{_fmt(r['adaptive'])} ({int(r['adaptive_nfe'])})"
        lines.append(f"| {name} | {_fmt(r.get('straightness'))} | {_fmt(r.get('transport_cost'))} | "
                     f"{_fmt(r.get('euler_1'))} | {_fmt(r.get('euler_2'))} | {_fmt(r.get('euler_4'))} | "
                     f"{_fmt(r.get('euler_8'))} | {adaptive} | {_fmt(r.get('wall_s'), 3)} |")
    if reference_floor is not None:
        lines.append(f"\n{distance_name} of held-out real data to the same reference (the floor): "
                     f"{reference_floor:.4g}")
    return "\n".join(lines)
