"""The training loop: restore or init, step, log every N steps, checkpoint every M steps."""
from __future__ import annotations

import signal
import sys
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from genflow.placement import is_lead
from genflow.progress import progress_bar
from genflow.training import metrics_file
from genflow.training.checkpoint import Checkpointer
from genflow.training.state import TrainState
from genflow.training.tensorboard import SummaryWriter


class TrainingDiverged(RuntimeError):
    """Every step of a long stretch was non-finite: training stopped, the checkpoints keep the last
    finite state."""


def _finite_or_none(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _finite_mean(values) -> float | None:
    """Mean of the finite values (None where there are none: strict JSON has no NaN)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


class _StopFlag:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps (then it saves and stops);
    ``signum`` is the signal, for the exit status (128 + signum: 130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self):
        self.raised, self.signum = False, None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handler(self, signum, frame):
        self.raised, self.signum = True, signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train_loop(state: Any, train_step: Callable, batches: Iterator, *, steps: int,
               checkpointer: Checkpointer | None = None, meta: dict[str, Any] | None = None,
               metrics_path: str | None = None, log_every: int = 50, ckpt_every: int = 500,
               sample_every: int = 0, on_sample: Callable[[TrainState, int], Any] | None = None,
               tensorboard_dir: str | None = None, writer: SummaryWriter | None = None, progress: bool = True,
               max_skipped: int = 0, pending: list[dict] | None = None,
               snapshot_every: int = 0, on_snapshot: Callable[[TrainState, int], Any] | None = None,
               hooks: Sequence[tuple[int, Callable[[Any, int], Any]]] = (),
               on_log: Callable[[dict], Any] | None = None) -> tuple[Any, int | None]:
    """Run ``train_step`` from ``state.step`` to ``steps``. Returns (state, signal), ``signal`` the
    number of the SIGTERM or SIGINT that stopped the run early, None when it ran to the end.

    Generic over what the state holds: any pytree with a ``step`` counter (a ``TrainState``, the
    GAN's ``GANState``), and ``train_step`` any ``(state, batch) -> (state, metrics)`` whose metrics
    hold ``loss``, ``grad_norm`` and ``skipped`` (a ``genflow.training.stack.Step``, or an
    ahead-of-time compiled one, as the objective comparison passes).

    A logged row's loss and grad_norm are the means of the window's finite steps (None if it has
    none) beside the count of skipped steps. With ``max_skipped`` > 0, that many consecutive
    skipped steps (seen at log time) raise ``TrainingDiverged``: the skipped steps changed
    nothing, so the checkpoints on disk keep the last finite state.

    Metrics stay on device between logs (the only host sync is every ``log_every`` steps).
    ``batches.position`` (batches consumed) is saved with each checkpoint beside ``meta``, and so
    are the metrics of the steps since the last log row (``pending_metrics``): a run resumed from
    that checkpoint with ``pending=meta["pending_metrics"]`` logs exactly the rows an uninterrupted
    run logs, whatever step it stopped at. A stop by signal saves without logging the partial window.
    Each log row goes to ``metrics_path`` (strict JSON lines) and to TensorBoard: ``writer``, or a
    new one in ``tensorboard_dir`` (both cut back to ``state.step`` first, so a resumed run holds
    no step twice). ``on_sample(state, step)`` may return a uint8 image, which goes to TensorBoard
    as "samples". On SIGTERM or Ctrl-C the loop finishes the current step, saves, and returns.
    Progress is a tqdm bar on a terminal and one line per log row elsewhere.
    ``on_snapshot(state, step)`` runs every ``snapshot_every`` steps and at the last one (post-hoc
    EMA snapshots), before that step's checkpoint: a checkpoint at step s implies its snapshot is on
    disk, so a run resumed from it never lacks one. ``hooks``: more such ``(every, fn)`` pairs,
    ``fn(state, step)`` run every ``every`` steps and at the last one at the same point (the
    comparison's Fisher curve). ``on_log(row)`` receives each log row as written.
    """
    start = int(jax.device_get(state.step))
    lead = is_lead()   # in a multi-process run only process 0 writes the logs; every process checkpoints
    metrics_path = metrics_path if lead else None
    writer = writer if lead else None
    if metrics_path:
        metrics_file.truncate(metrics_path, start)
    pending = [dict(m) for m in (pending or [])]
    if writer is None and tensorboard_dir and lead:
        writer = SummaryWriter(tensorboard_dir, resume_step=start)
    bar = progress_bar(steps, initial=start, disable=not progress or not lead, desc="train", unit="step", every=0)
    last_time, last_step = time.perf_counter(), start
    consecutive = 0
    periodic = ([(snapshot_every, on_snapshot)] if on_snapshot is not None and snapshot_every else []) + [
        (every, fn) for every, fn in hooks if every]

    def save(step: int) -> None:
        if checkpointer is not None:
            window = [{"loss": _finite_or_none(m["loss"]), "grad_norm": _finite_or_none(m["grad_norm"]),
                       "skipped": int(m["skipped"])} for m in jax.device_get(pending)]
            checkpointer.save(step, state, dict(meta or {}, data_position=int(batches.position), step=step,
                                                pending_metrics=window))

    def log(step: int) -> None:
        nonlocal pending, last_time, last_step, consecutive
        if not pending:
            return
        host = jax.device_get(pending)
        now = time.perf_counter()
        skipped = [int(m["skipped"]) for m in host]
        host = [{k: (np.nan if v is None else v) for k, v in m.items()} for m in host]
        row = {"step": step,
               "loss": _finite_mean([m["loss"] for m, k in zip(host, skipped) if not k]),
               "grad_norm": _finite_mean([m["grad_norm"] for m, k in zip(host, skipped) if not k]),
               "skipped": int(sum(skipped)),
               "steps_per_s": (step - last_step) / max(now - last_time, 1e-9)}
        for k in skipped:
            consecutive = consecutive + 1 if k else 0
        if row["skipped"]:
            tqdm.write(f"genflow: warning: the loss, gradient or update was not finite at {row['skipped']} of the "
                       f"{len(host)} steps before step {step:,}; those updates were skipped (parameters, EMA and "
                       "checkpoints keep the last finite values). Try a lower optim.lr.", file=sys.stderr)
        if metrics_path:
            metrics_file.append_row(metrics_path, row)
        if writer is not None:
            writer.scalars(step, {k: v for k, v in row.items() if k != "step" and v is not None})
        if on_log is not None:
            on_log(row)
        bar.set_postfix(loss="none finite" if row["loss"] is None else f"{row['loss']:.4g}")
        pending, last_time, last_step = [], now, step
        if max_skipped and consecutive >= max_skipped:
            last = checkpointer.latest_step() if checkpointer is not None else None
            where = f"the last checkpoint (step {last:,}) holds the last finite state" if last is not None \
                else "no checkpoint was written"
            raise TrainingDiverged(f"the last {consecutive} training steps (to step {step:,}) were all non-finite, so "
                                   f"training stopped; {where}. Lower optim.lr or check the data for NaNs "
                                   "(train.max_skipped sets how many to allow).")

    stopped = None
    with _StopFlag() as stop:
        for step in range(start + 1, steps + 1):
            state, metrics = train_step(state, next(batches))
            pending.append(metrics)
            bar.update(1)
            if step % log_every == 0 or step == steps:
                try:
                    log(step)
                except TrainingDiverged:
                    bar.close()
                    if checkpointer is not None:
                        checkpointer.wait()
                    raise
            for every, fn in periodic:
                if step % every == 0 or step == steps:
                    fn(state, step)
            if step % ckpt_every == 0 or step == steps or stop.raised:
                save(step)
            if on_sample is not None and sample_every and step % sample_every == 0 and step != steps:
                image = on_sample(state, step)
                if image is not None and writer is not None:
                    writer.image(step, "samples", image)
            if stop.raised:
                stopped = stop.signum
                break
    bar.close()
    if checkpointer is not None:
        checkpointer.wait()
    return state, stopped
