"""Progress bars that suit where the output goes.

On a terminal, a tqdm bar. Anywhere else (CI, ``nohup``, a cluster job's log file) a carriage-
return bar becomes thousands of lines, so ``LineProgress`` prints one plain line per report
instead: per log interval in the training loop (``set_postfix``), per ``every`` updates otherwise.
"""
from __future__ import annotations

import sys
import time
from typing import Any

from tqdm.auto import tqdm


class LineProgress:
    """tqdm's ``update``/``set_postfix``/``close`` as one line per report: ``desc: n/total (p%), r unit/s, k=v``."""

    def __init__(self, total: int | None, *, initial: int = 0, desc: str = "", unit: str = "it",
                 every: int = 0, file=None):
        self.total, self.n, self.desc, self.unit, self.every = total, initial, desc, unit, every
        self.file = file or sys.stderr
        self._start, self._n0, self._since, self._postfix, self._printed_at = time.perf_counter(), initial, 0, "", None

    def update(self, n: int = 1) -> None:
        self.n += n
        self._since += n
        if self.every and self._since >= self.every:
            self._print()

    def set_postfix(self, **kwargs: Any) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        self._print()

    def _print(self) -> None:
        self._since = 0
        rate = (self.n - self._n0) / max(time.perf_counter() - self._start, 1e-9)
        of = f"/{self.total:,}" + (f" ({100 * self.n / self.total:.0f}%)" if self.total else "") if self.total else ""
        line = f"{self.desc}: {self.n:,}{of}, {rate:.3g} {self.unit}/s" + (f", {self._postfix}" if self._postfix else "")
        print(line, file=self.file, flush=True)
        self._printed_at = self.n

    def close(self) -> None:
        if self._printed_at != self.n and self.n != self._n0:
            self._print()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress_bar(total: int | None, *, initial: int = 0, desc: str = "", unit: str = "it", disable: bool = False,
                 every: int = 1, file=None, **tqdm_kwargs):
    """A tqdm bar on a terminal, a ``LineProgress`` printing every ``every`` updates elsewhere
    (``every=0``: only on ``set_postfix``), nothing with ``disable``."""
    file = file or sys.stderr
    if disable or file.isatty():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=disable, file=file,
                    dynamic_ncols=True, **tqdm_kwargs)
    return LineProgress(total, initial=initial, desc=desc, unit=unit, every=every, file=file)
