"""The one table of samplers: the source for config validation, CLI help and the README's table.

Every entry is a function with the one signature (``genflow.samplers._common``)

    fn(model, x1, ts, *, key=None, cond=None, denoise=False, **options) -> (x, stats)

and a record of what it is: network evaluations per step, order, whether it draws noise, and
which ``sample.*`` config fields set which of its options. ``genflow.samplers`` registers the
built-ins on import; a user's sampler is one ``register(...)`` call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class SamplerInfo:
    """One registered sampler."""

    name: str
    fn: Callable
    summary: str                    # one line for tables and --help
    nfe_per_step: str               # e.g. "1", "2 (1 on a step to sigma = 0)", "adaptive"
    order: str                      # convergence order in the step size ("1", "2", "adaptive (5)")
    stochastic: bool                # draws noise (needs key)
    config: dict[str, str] = field(default_factory=dict)  # sample.<field> -> keyword option
    ddpm_only: bool = False         # runs DDPM's discrete chain only
    fixed_grid: bool = True         # steps exactly on ts (False: adaptive between ts[0] and ts[-1])
    # (model, ts, *, key, cond, **options) -> Recurrence: the sampler's steps for the parallel-in-time
    # driver (genflow.samplers.parallel); None for samplers it does not cover.
    recurrence: Callable | None = None

    def options(self, sample_cfg) -> dict:
        """The keyword options a ``config.Sample`` sets for this sampler (a field left None keeps the
        sampler's own default)."""
        return {kw: getattr(sample_cfg, f) for f, kw in self.config.items() if getattr(sample_cfg, f) is not None}


SAMPLERS: dict[str, SamplerInfo] = {}


def register(name: str, fn: Callable, *, summary: str, nfe_per_step: str, order: str, stochastic: bool,
             config: dict[str, str] | None = None, ddpm_only: bool = False, fixed_grid: bool = True,
             recurrence: Callable | None = None) -> Callable:
    """Add ``fn`` to the table under ``name`` (an existing name is replaced). Returns ``fn``."""
    SAMPLERS[name] = SamplerInfo(name, fn, summary, nfe_per_step, order, stochastic, dict(config or {}),
                                 ddpm_only, fixed_grid, recurrence)
    return fn


def get(name: str) -> SamplerInfo:
    """The registered sampler ``name``, or one sentence listing the names there are."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}.")
    return SAMPLERS[name]


def names() -> tuple[str, ...]:
    return tuple(SAMPLERS)


def markdown_table() -> str:
    """The README's sampler table, generated from the registry (tests/test_readme.py compares)."""
    rows = ["| `sample.sampler` | what it is | NFE per step | order | noise |", "|---|---|---|---|---|"]
    for info in SAMPLERS.values():
        rows.append(f"| `{info.name}` | {info.summary} | {info.nfe_per_step} | {info.order} | "
                    f"{'yes' if info.stochastic else 'no'} |")
    return "\n".join(rows)
