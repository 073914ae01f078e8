"""Shared test fixtures: every process, listed once."""
from genflow.processes import DDPM, EDM, VE, VP, RectifiedFlow, SubVP

ALL_PROCESSES = [VP(), SubVP(), VE(), EDM(), RectifiedFlow(), DDPM(), DDPM(schedule="cosine")]
IDS = ["vp", "subvp", "ve", "edm", "rectified_flow", "ddpm_linear", "ddpm_cosine"]


# -- tiers: the default run checks a covering subset of a grid of cases; GENFLOW_SLOW=1 checks all -----
import itertools  # noqa: E402
import os  # noqa: E402

import pytest  # noqa: E402

SLOW = pytest.mark.slow
SLOW_RUN = os.environ.get("GENFLOW_SLOW", "").lower() in ("1", "true", "yes")  # conftest skips slow checks unless set


def _args(v) -> tuple:
    """A case's arguments: a tuple value is several arguments, anything else one."""
    return v if isinstance(v, tuple) else (v,)


def tiered(values, ids, fast) -> list:
    """``values`` as pytest params named ``ids``; those whose id is not in ``fast`` are marked slow
    (run with GENFLOW_SLOW=1), so the default suite keeps one representative of each kind."""
    fast = set(fast)
    unknown = fast - set(ids)
    assert not unknown, f"fast cases {sorted(unknown)} are not among the ids"
    return [pytest.param(*_args(v), id=i, marks=() if i in fast else SLOW)
            for v, i in zip(values, ids)]


def tiered_product(a, a_ids, b, b_ids, fast) -> list:
    """The grid a x b as params ``(*a_i, *b_j)`` named ``"{a_id}-{b_id}"``; ``fast(i, j)`` says which
    cells the default run checks (the rest are slow)."""
    return [pytest.param(*_args(x), *_args(y), id=f"{xi}-{yi}", marks=() if fast(i, j) else SLOW)
            for (i, (x, xi)), (j, (y, yi)) in itertools.product(enumerate(zip(a, a_ids)), enumerate(zip(b, b_ids)))]
