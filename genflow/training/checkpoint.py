"""Atomic checkpoints of the whole training state with orbax.

orbax writes each step into a temporary directory and renames it when complete, so a run
killed mid-save leaves the previous checkpoint intact; an unfinished one is never restored.
Beside the state go the data position and the config, in the same step directory.

Integrity: the meta also holds a CRC-32 of every saved array (``checksums``, per field of the
state), computed from the values being saved. A restore checks them; a latest checkpoint that
does not match (flipped bytes) or cannot be read (truncated files) is passed over with a warning
naming it and the step restored instead, the newest intact one. A checksum is of the whole array
where this process holds all of it, so a checkpoint restored onto another mesh (8-way FSDP onto
one device) is still checked; in a multi-process run each process checks the part of every array
it holds itself (its first addressable shard, tagged with that shard's index, and checked where
the restored array's first shard is the same slice).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import zlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from genflow.training.state import TrainState


class CorruptCheckpoint(ValueError):
    """No checkpoint in a directory restores with matching checksums."""


def _local(x) -> tuple[np.ndarray, str]:
    """(the values this process checks, "" for the whole array or "@index" for one shard)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        shard = x.addressable_shards[0]
        return np.asarray(shard.data), "@" + ",".join(f"{s.start}:{s.stop}" for s in shard.index)
    return np.asarray(x), ""


def checksums(tree) -> dict[str, str]:
    """{path: CRC-32 of the array's bytes} for every leaf of ``tree`` (hex strings, JSON-safe)."""
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)                 # typed PRNG keys: their raw data
        a, where = _local(leaf)
        a = np.ascontiguousarray(a)
        out[jax.tree_util.keystr(path)] = f"{zlib.crc32(memoryview(a).cast('B')):08x}{where}"
    return out


def _fields(state) -> dict[str, Any]:
    """A state's top-level fields (a pytree dataclass: TrainState, GANState), or {"": state}."""
    if dataclasses.is_dataclass(state):
        return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    return {"": state}


def state_checksums(state) -> dict[str, dict[str, str]]:
    """Checksums per top-level field of a state."""
    return {name: checksums(value) for name, value in _fields(state).items()}


def _mismatch(expected: dict[str, str] | None, tree) -> str | None:
    """The first leaf whose checksum differs from ``expected`` (None: all match, or none stored)."""
    if not expected:
        return None
    got = checksums(tree)
    for k, v in expected.items():
        have = got.get(k)
        if have is not None and "@" in v + have and v.partition("@")[2] != have.partition("@")[2]:
            continue                                         # another process's slice: not ours to check
        if have != v:
            return k
    return None


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
        meta = dict(meta, checksums=state_checksums(state))
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)), force=True)

    def _candidates(self, step: int | None) -> list[int]:
        return [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)

    def _first_intact(self, step: int | None, read):
        """``read(step) -> (result, problem or None)`` on the newest step that reads and checks;
        warns about each newer one passed over. With no step intact: the newest one's exception
        (a structure mismatch, usually) or ``CorruptCheckpoint``."""
        passed = []
        for s in self._candidates(step):
            try:
                result, problem = read(s)
            except Exception as e:  # noqa: BLE001 - orbax raises many types for unreadable files
                passed.append((s, f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120] if str(e).strip() else ''}", e))
                continue
            if problem is not None:
                passed.append((s, f"{problem} does not match its checksum", None))
                continue
            for bad, why, _ in passed:
                print(f"genflow: warning: checkpoint step {bad} in {self.directory} is corrupt or unreadable ({why}); "
                      f"restored step {s} instead, the newest intact one.", file=sys.stderr)
            return result
        if not passed:
            raise FileNotFoundError(f"{self.directory} holds no checkpoint.")
        first_exc = passed[0][2]
        if first_exc is not None and all(exc is not None for _, _, exc in passed):
            raise first_exc
        raise CorruptCheckpoint(f"no checkpoint in {self.directory} is intact (step {passed[0][0]}: {passed[0][1]}); "
                                "the run cannot be resumed from it.")

    def restore(self, like: TrainState, step: int | None = None) -> tuple[TrainState, dict[str, Any]]:
        """Restore into the structure, shapes and shardings of ``like``: the latest intact step
        (or ``step``), its checksums verified."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)

        def read(s):
            out = self.manager.restore(s, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                  meta=ocp.args.JsonRestore()))
            fields = _fields(out.state)
            saved = out.meta.get("checksums") or {}
            problem = next((f"{name}{bad}" for name, leaves in saved.items()
                            if (bad := _mismatch(leaves, fields.get(name))) is not None), None)
            return (out.state, out.meta), problem

        return self._first_intact(step, read)

    def restore_weights(self, like_params, step: int | None = None, field: str = "ema") -> tuple[int, Any]:
        """(step, weights): only the ``field`` ("ema" or "params") of a saved TrainState, restored into
        the structure of ``like_params``; the optimizer state is not read (orbax partial restore)."""
        one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = {field: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one), like_params)}
        self.manager.wait_until_finished()

        def read(s):
            # A manager of its own: one that saved "state" with the standard handler will not
            # restore it with the partial PyTree handler.
            with ocp.CheckpointManager(self.directory) as reader:
                out = reader.restore(s, args=ocp.args.Composite(
                    state=ocp.args.PyTreeRestore(item=abstract,
                                                 restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                                                 partial_restore=True), meta=ocp.args.JsonRestore()))
            weights = out.state[field]
            bad = _mismatch((out.meta.get("checksums") or {}).get(field), weights)
            return (int(out.meta.get("step", s)), weights), (None if bad is None else f"{field}{bad}")

        return self._first_intact(step, read)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
