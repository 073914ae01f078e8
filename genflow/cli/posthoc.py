"""``genflow ema``: post-hoc EMA weights of a run, written as ``RUN/ema/sigma_rel=S/``.

``weights.npz`` (the parameters, leaves as in ``genflow.training.ema_snapshots``) and ``meta.json``
(sigma_rel, gamma, step, the coefficient of every snapshot, the profile fit error). The weights are
the least-squares combination of the run's snapshots (``ema_snapshots.reconstruct``); ``genflow
sample/fid --ema sigma_rel=S`` read them, and reconstruct them first when they are missing or were
made before the newest snapshot.
"""
from __future__ import annotations

import json
import os
import sys
import zipfile
from typing import Any

import numpy as np

from genflow.cli import build
from genflow.config import ConfigError
from genflow.training import ema_snapshots

DIRNAME = "ema"


def parse_ema(text: str) -> float:
    """``"sigma_rel=0.07"`` -> 0.07, checked; anything else is one sentence."""
    key, _, value = str(text).partition("=")
    try:
        sigma_rel = float(value) if key.strip() == "sigma_rel" else None
    except ValueError:
        sigma_rel = None
    if sigma_rel is None:
        raise ConfigError(f"--ema takes sigma_rel=S, the relative EMA length, e.g. --ema sigma_rel=0.07; got {text!r}.")
    build.check_sigma_rel("--ema sigma_rel", sigma_rel)
    return sigma_rel


def dir_name(sigma_rel: float) -> str:
    """``sigma_rel=0.070``: three decimals, more where they are needed to tell the value apart."""
    digits = next((d for d in range(3, 12) if float(f"{sigma_rel:.{d}f}") == sigma_rel), 12)
    return f"sigma_rel={sigma_rel:.{digits}f}"


def weights_dir(workdir: str, sigma_rel: float) -> str:
    return os.path.join(workdir, DIRNAME, dir_name(sigma_rel))


def _snapshot_dir(workdir: str) -> str:
    directory = os.path.join(workdir, ema_snapshots.DIRNAME)
    if not ema_snapshots.steps(directory):
        raise ConfigError(f"{workdir} has no EMA snapshots ({directory}), so no post-hoc EMA can be built from it; "
                          "train with power-function EMAs on (train.ema_sigma_rels, default 0.05,0.1) to use --ema.")
    return directory


def reconstruct(workdir: str, sigma_rel: float, like) -> tuple[Any, dict]:
    """(weights, info) from the run's snapshots, errors as one sentence; writes nothing."""
    directory = _snapshot_dir(workdir)
    try:
        return ema_snapshots.reconstruct(directory, sigma_rel, like)
    except ema_snapshots.SnapshotError as e:
        raise ConfigError(f"EMA snapshot {e}; remove that file (the others still make a post-hoc EMA) and run "
                          "the command again.") from None


def write(workdir: str, weights, info: dict) -> str:
    """Write ``weights`` and ``info`` to ``RUN/ema/sigma_rel=S/``; meta.json last, so a directory
    whose meta.json exists holds complete weights. Returns the directory."""
    out = weights_dir(workdir, info["sigma_rel"])
    os.makedirs(out, exist_ok=True)
    meta = os.path.join(out, "meta.json")
    if os.path.exists(meta):
        os.remove(meta)
    arrays = {"paths": np.asarray(ema_snapshots.leaf_paths(weights), dtype=str),
              **ema_snapshots.tree_arrays(weights, "w")}
    ema_snapshots.write_npz(os.path.join(out, "weights.npz"), arrays)
    tmp = meta + f".tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(info, f, indent=2)
    os.replace(tmp, meta)
    return out


def _read_written(workdir: str, sigma_rel: float, like) -> tuple[Any, dict] | None:
    """The written weights if they were made from exactly the snapshots on disk now, else None."""
    out = weights_dir(workdir, sigma_rel)
    meta = os.path.join(out, "meta.json")
    if not os.path.exists(meta):
        return None
    try:
        info = json.load(open(meta))
        snapshot_steps = ema_snapshots.steps(os.path.join(workdir, ema_snapshots.DIRNAME))
        if sorted({int(s) for s, _, _ in info["snapshots"]}) != snapshot_steps:
            return None
        with np.load(os.path.join(out, "weights.npz")) as z:
            ema_snapshots.check_paths(z, like, out)
            return ema_snapshots.read_tree(z, "w", like), info
    except (ValueError, KeyError, OSError, zipfile.BadZipFile, EOFError, TypeError):
        return None   # unreadable or stale: reconstruct again


def weights(workdir: str, sigma_rel: float, like, *, announce: bool = True) -> tuple[Any, dict]:
    """The post-hoc EMA of length ``sigma_rel``: read from ``RUN/ema/sigma_rel=S`` when it is up to
    date with the snapshots, otherwise reconstructed and written there (said on stderr)."""
    found = _read_written(workdir, sigma_rel, like)
    if found is not None:
        return found
    w, info = reconstruct(workdir, sigma_rel, like)
    out = write(workdir, w, info)
    if announce:
        print(f"genflow: built the post-hoc EMA sigma_rel={sigma_rel:g} at step {info['step']:,} from "
              f"{len({s for s, _, _ in info['snapshots']})} snapshots (profile fit error "
              f"{info['rel_residual']:.2%}); wrote {out}", file=sys.stderr)
    return w, info


def ema_command(workdir: str, sigma_rels: list[float]) -> list[str]:
    """Reconstruct and write the post-hoc EMA of each ``sigma_rel``; the table of what was written."""
    from genflow.cli.run import read_config
    from genflow.models import train_and_eval_specs

    for s in sigma_rels:
        build.check_sigma_rel("--sigma-rel", s)
    exp = read_config(workdir)
    build.validate(exp)
    _snapshot_dir(workdir)
    net = build.build_net_for_weights(exp.net, build.data_shape(exp.data), exp.train.dtype, exp.train.seed)
    _, _, like = train_and_eval_specs(net, build.build_process(exp.process), build.build_parameterization(exp))
    rows = []
    for s in sigma_rels:
        w, info = reconstruct(workdir, s, like)
        out = write(workdir, w, info)
        rows.append((f"{s:g}", f"{info['gamma']:.3f}", f"{info['step']:,}", str(len(info["snapshots"])),
                     f"{info['rel_residual']:.2e}", out))
    head = ("sigma_rel", "gamma", "step", "EMAs combined", "profile fit error (rel. L2)", "written to")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    return [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows]
