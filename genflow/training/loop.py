"""The training loop: restore or init, step, log every N steps, checkpoint every M steps."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any, Callable, Iterator

import jax
import numpy as np
from tqdm.auto import tqdm

from genflow.training.checkpoint import Checkpointer
from genflow.training.state import TrainState
from genflow.training.tensorboard import SummaryWriter


def _truncate_metrics(path: str, last_step: int) -> None:
    """Drop logged rows past ``last_step``: a resumed run rewrites them identically."""
    if not os.path.exists(path):
        return
    rows = [line for line in open(path) if line.strip() and json.loads(line).get("step", 0) <= last_step]
    with open(path + ".tmp", "w") as f:
        f.writelines(rows)
    os.replace(path + ".tmp", path)


class _StopFlag:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps (then it saves and stops)."""

    def __init__(self):
        self.raised = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handler(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train_loop(state: TrainState, train_step: Callable, batches: Iterator, *, steps: int,
               checkpointer: Checkpointer | None = None, meta: dict[str, Any] | None = None,
               metrics_path: str | None = None, log_every: int = 50, ckpt_every: int = 500,
               sample_every: int = 0, on_sample: Callable[[TrainState, int], None] | None = None,
               tensorboard_dir: str | None = None, progress: bool = True) -> tuple[TrainState, bool]:
    """Run ``train_step`` from ``state.step`` to ``steps``. Returns (state, stopped_by_signal).

    Metrics stay on device between logs (the only host sync is every ``log_every`` steps).
    ``batches.position`` (batches consumed) is saved with each checkpoint beside ``meta``.
    Each log row goes to ``metrics_path`` (JSON lines) and, if given, to TensorBoard event files
    in ``tensorboard_dir``. On SIGTERM or Ctrl-C the loop finishes the current step, saves, and returns.
    """
    start = int(jax.device_get(state.step))
    if metrics_path:
        _truncate_metrics(metrics_path, start)
    pending: list[dict] = []
    writer = SummaryWriter(tensorboard_dir) if tensorboard_dir else None
    bar = tqdm(total=steps, initial=start, disable=not progress, dynamic_ncols=True, desc="train",
               file=sys.stderr)
    last_time, last_step = time.perf_counter(), start

    def save(step: int) -> None:
        if checkpointer is not None:
            checkpointer.save(step, state, dict(meta or {}, data_position=int(batches.position), step=step))

    def log(step: int) -> None:
        nonlocal pending, last_time, last_step
        if not pending:
            return
        host = jax.device_get(pending)
        now = time.perf_counter()
        row = {"step": step,
               "loss": float(np.mean([m["loss"] for m in host])),
               "grad_norm": float(np.mean([m["grad_norm"] for m in host])),
               "skipped": int(sum(int(m["skipped"]) for m in host)),
               "steps_per_s": (step - last_step) / max(now - last_time, 1e-9)}
        if row["skipped"]:
            tqdm.write(f"genflow: warning: loss was not finite at {row['skipped']} of the {len(host)} steps "
                       f"before step {step:,}; those updates were skipped, no checkpoint was touched. "
                       "Try a lower optim.lr.", file=sys.stderr)
        if metrics_path:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        if writer is not None:
            writer.scalars(step, {k: v for k, v in row.items() if k != "step"})
        bar.set_postfix(loss=f"{row['loss']:.4g}")
        pending, last_time, last_step = [], now, step

    stopped = False
    with _StopFlag() as stop:
        for step in range(start + 1, steps + 1):
            state, metrics = train_step(state, next(batches))
            pending.append(metrics)
            bar.update(1)
            if step % log_every == 0 or step == steps or stop.raised:
                log(step)
            if step % ckpt_every == 0 or step == steps or stop.raised:
                save(step)
            if on_sample is not None and sample_every and step % sample_every == 0 and step != steps:
                on_sample(state, step)
            if stop.raised:
                stopped = True
                break
    bar.close()
    if checkpointer is not None:
        checkpointer.wait()
    return state, stopped
