"""Snapshots of the power-function EMAs on disk, and the post-hoc EMA built from them.

Layout: ``RUN/ema_snapshots/step_<step:09d>.npz``, one file per snapshot step, holding

    step        () int64             the training step the EMAs were tracked to
    sigma_rels  (P,) float64         the profiles, in the order of ``train.ema_sigma_rels``
    paths       (L,) str             ``jax.tree_util.keystr`` of each parameter leaf
    p{j}_{i}    the i-th leaf of profile j (float32, the parameter's own shape)

Only parameters: no optimizer state, no step RNG. Each file is written to a temporary name and
renamed, so a run killed mid-write leaves either the whole snapshot or none. The math of the
reconstruction is ``genflow.training.posthoc_ema``; this module only reads and writes arrays.
"""
from __future__ import annotations

import os
import re
import zipfile
from typing import Any

import jax
import numpy as np

from genflow.placement import is_lead, to_host
from genflow.training import posthoc_ema

DIRNAME = "ema_snapshots"
_NAME = re.compile(r"^step_(\d+)\.npz$")


class SnapshotError(ValueError):
    """A snapshot file that cannot be read, or holds another network's parameters (one sentence)."""


def _read(file: str, fn):
    """``fn(npz)`` on the opened ``file``; a damaged file becomes a SnapshotError naming it."""
    try:
        with np.load(file) as z:
            return fn(z)
    except SnapshotError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise SnapshotError(f"{file} cannot be read ({type(e).__name__}: {e})") from None


def _host(x) -> np.ndarray:
    """A replicated array's value on this host (its first addressable shard holds all of it)."""
    if isinstance(x, jax.Array):
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def leaf_paths(tree) -> list[str]:
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """np.savez to ``path`` through a temporary file in the same directory and a rename (atomic)."""
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{os.path.basename(path)}")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def tree_arrays(tree, prefix: str) -> dict[str, np.ndarray]:
    """{prefix + i: leaf i on the host} for a parameter tree."""
    return {f"{prefix}{i}": _host(leaf) for i, leaf in enumerate(jax.tree.leaves(tree))}


def read_tree(npz, prefix: str, like) -> Any:
    """The tree stored under ``prefix`` in ``npz``, in the structure of ``like`` (numpy leaves)."""
    leaves, treedef = jax.tree.flatten(like)
    out = []
    for i, ref in enumerate(leaves):
        a = npz[f"{prefix}{i}"]
        if a.shape != tuple(ref.shape):
            raise ValueError(f"leaf {i} has shape {a.shape}, the network's has {tuple(ref.shape)}")
        out.append(a)
    return jax.tree.unflatten(treedef, out)


def check_paths(npz, like, source: str) -> None:
    """SnapshotError (one sentence) unless ``npz['paths']`` are the leaf paths of ``like``."""
    if list(npz["paths"]) != leaf_paths(like):
        raise SnapshotError(f"{source} holds parameters of another network than this run's config.json describes")


def path(directory: str, step: int) -> str:
    return os.path.join(directory, f"step_{step:09d}.npz")


def save(directory: str, step: int, sigma_rels, profiles: tuple) -> str | None:
    """Write the snapshot of ``profiles`` (one parameter tree per sigma_rel) at ``step``; every
    process gathers them (a profile sharded over processes by FSDP is whole only after that), and
    only the first one writes. Returns the path (None elsewhere)."""
    profiles = tuple(jax.tree.map(to_host, tree) for tree in profiles)
    if not is_lead():
        return None
    os.makedirs(directory, exist_ok=True)
    arrays = {"step": np.int64(step), "sigma_rels": np.asarray(sigma_rels, np.float64),
              "paths": np.asarray(leaf_paths(profiles[0]) if profiles else [], dtype=str)}
    for j, tree in enumerate(profiles):
        arrays.update(tree_arrays(tree, f"p{j}_"))
    out = path(directory, step)
    write_npz(out, arrays)
    return out


def steps(directory: str) -> list[int]:
    """The snapshot steps in ``directory``, ascending ([] if it does not exist)."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(m.group(1)) for f in os.listdir(directory) if (m := _NAME.match(f)))


def truncate(directory: str, step: int) -> None:
    """Remove the snapshots past ``step`` and any unfinished temporary file: a run resumed from the
    checkpoint at ``step`` writes those steps again, identically, and keeps no stale one otherwise."""
    if not os.path.isdir(directory) or jax.process_index() != 0:
        return
    for f in os.listdir(directory):
        m = _NAME.match(f)
        if f.startswith(".tmp-") or (m and int(m.group(1)) > step):
            os.remove(os.path.join(directory, f))


def index(directory: str) -> list[tuple[int, np.ndarray]]:
    """[(step, sigma_rels (P,))] of every snapshot, reading only those two small arrays of each."""
    return [_read(path(directory, s), lambda z: (int(z["step"]), np.asarray(z["sigma_rels"], np.float64)))
            for s in steps(directory)]


def load(directory: str, step: int, like) -> tuple[np.ndarray, tuple]:
    """(sigma_rels (P,), profiles): the snapshot at ``step`` in the structure of ``like``."""
    def read(z):
        check_paths(z, like, path(directory, step))
        sig = np.asarray(z["sigma_rels"], np.float64)
        return sig, tuple(read_tree(z, f"p{j}_", like) for j in range(len(sig)))

    return _read(path(directory, step), read)


def reconstruct(directory: str, sigma_rel: float, like, step: int | None = None) -> tuple[Any, dict]:
    """(weights, info): the power-function EMA of length ``sigma_rel`` at ``step`` (default: the last
    snapshot's), as the least-squares combination of every stored snapshot (EDM2 Sec. 3.2, App. C.3).

    ``weights`` has the structure of ``like`` (float32 numpy leaves), summed in float64 one snapshot
    at a time. ``info``: sigma_rel, gamma, step, ``snapshots`` [(step, sigma_rel, coefficient)],
    ``rel_residual`` (the relative L2 distance of the combined profile from the wanted one)."""
    entries = [(s, float(sig)) for s, sigs in index(directory) for sig in sigs]
    if not entries:
        raise FileNotFoundError(f"{directory} holds no EMA snapshot.")
    t_out = max(s for s, _ in entries) if step is None else int(step)
    if t_out > max(s for s, _ in entries) or t_out < 1:
        raise ValueError(f"step {t_out} lies past the last EMA snapshot (step {max(s for s, _ in entries)}).")
    gamma = float(posthoc_ema.sigma_rel_to_gamma(sigma_rel))
    in_steps = [s for s, _ in entries]
    in_gammas = [float(posthoc_ema.sigma_rel_to_gamma(sig)) for _, sig in entries]
    # Snapshots after the target step cannot contribute: their profiles weigh parameters it has not seen.
    use = [i for i, s in enumerate(in_steps) if s <= t_out]
    x, residual = posthoc_ema.solve_coefficients([in_steps[i] for i in use], [in_gammas[i] for i in use], t_out, gamma)
    coef = dict(zip(use, x))
    leaves, treedef = jax.tree.flatten(like)
    acc = [np.zeros(np.shape(leaf), np.float64) for leaf in leaves]
    k = 0

    def add(z, file):
        nonlocal k
        check_paths(z, like, file)
        for j in range(len(z["sigma_rels"])):
            c = coef.get(k, 0.0)
            k += 1
            if c == 0.0:
                continue
            for i in range(len(acc)):
                acc[i] += c * z[f"p{j}_{i}"].astype(np.float64)

    for s in steps(directory):
        _read(path(directory, s), lambda z: add(z, path(directory, s)))
    weights = jax.tree.unflatten(treedef, [a.astype(leaf.dtype) for a, leaf in zip(acc, leaves)])
    info = {"sigma_rel": float(sigma_rel), "gamma": gamma, "step": t_out, "rel_residual": residual,
            "snapshots": [[in_steps[i], entries[i][1], float(coef.get(i, 0.0))] for i in range(len(entries))]}
    return weights, info
