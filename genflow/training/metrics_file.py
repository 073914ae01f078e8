"""metrics.jsonl: one strict-JSON row per log interval (no NaN or Infinity: a missing value is null).

A process killed mid-write can leave a torn last line; readers drop it with a warning (the row is
rewritten when the run resumes from a checkpoint before it), instead of failing on it.
"""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Any


def strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (strict JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def dumps(row: dict[str, Any], **kwargs) -> str:
    return json.dumps(strict(row), allow_nan=False, **kwargs)


def read_rows(path: str, *, warn: bool = True) -> list[dict[str, Any]]:
    """The rows of a metrics file; an unreadable line (a torn last write) is dropped, said once on stderr."""
    if not os.path.exists(path):
        return []
    rows, bad = [], []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                bad.append(i)
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad.append(i)
    if bad and warn:
        print(f"genflow: warning: {path} line {bad[0]} is not a complete JSON row (a write cut short by a kill?); "
              f"{len(bad)} such line(s) ignored.", file=sys.stderr)
    return rows


def append_row(path: str, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(dumps(row) + "\n")


def truncate(path: str, last_step: int) -> None:
    """Keep the rows up to ``last_step`` (a resumed run rewrites the later ones identically), dropping
    torn lines; written atomically."""
    if not os.path.exists(path):
        return
    rows = [r for r in read_rows(path) if r.get("step", 0) <= last_step]
    with open(path + ".tmp", "w") as f:
        f.writelines(dumps(r) + "\n" for r in rows)
    os.replace(path + ".tmp", path)
