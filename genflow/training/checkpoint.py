"""Atomic checkpoints of the whole training state with orbax.

orbax writes each step into a temporary directory and renames it when complete, so a run
killed mid-save leaves the previous checkpoint intact; an unfinished one is never restored.
Beside the state go the data position and the config, in the same step directory.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from genflow.training.state import TrainState


class Checkpointer:
    """Save/restore ``TrainState`` + a JSON ``meta`` dict under ``directory/<step>/``."""

    def __init__(self, directory: str, keep: int = 2):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, meta: dict[str, Any]) -> None:
        """Start an (asynchronous) save; the device-to-host copy completes before this returns,
        so the caller may donate ``state`` to the next step right away."""
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)), force=True)

    def restore(self, like: TrainState, step: int | None = None) -> tuple[TrainState, dict[str, Any]]:
        """Restore into the structure, shapes and shardings of ``like``."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 meta=ocp.args.JsonRestore()))
        return out.state, out.meta

    def restore_weights(self, like_params, step: int | None = None, field: str = "ema") -> tuple[int, Any]:
        """(step, weights): only the ``field`` ("ema" or "params") of a saved TrainState, restored into
        the structure of ``like_params``; the optimizer state is not read (orbax partial restore)."""
        step = self.latest_step() if step is None else step
        one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = {field: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one), like_params)}
        self.manager.wait_until_finished()
        # A manager of its own: one that saved "state" with the standard handler will not restore
        # it with the partial PyTree handler.
        with ocp.CheckpointManager(self.directory) as reader:
            out = reader.restore(step, args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(item=abstract,
                                             restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                                             partial_restore=True), meta=ocp.args.JsonRestore()))
        return int(out.meta.get("step", step)), out.state[field]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
