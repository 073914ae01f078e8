"""`genflow import-edm FILE.pkl --workdir RUN`: an EDM snapshot as a genflow run directory.

The run holds config.json (EDM process and preconditioning with the file's sigma_data, the mapped
U-Net, EDM's Heun sampler at 35 NFE) and one checkpoint (step 0) whose params and EMA are the
file's EMA weights, with a fresh optimizer state; ``genflow sample``, ``fid``, ``likelihood``,
``eval`` and the guidance options load it through ``load_run`` like any trained run; the
optimizer state is there for ``genflow train --resume`` (not exercised by the tests: it needs the
training data). Provenance goes to imported.json.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

import jax
import jax.numpy as jnp

from genflow import config as C
from genflow.cli import build
from genflow.config import ConfigError
from genflow.pretrained.edm import ARCH_NAMES, EDMNetwork, assign_params, edm_network
from genflow.pretrained.edm_pickle import EDMPickleError, read_edm_pickle


def _data(network: EDMNetwork, path: str, dataset_kwargs: Any) -> C.Data:
    """The data config: CIFAR-10 (TFDS) for a 32x32 RGB network trained on it, else an image folder
    of the network's size (its path unset: sampling needs no data; fid takes --ref)."""
    h, _, c = network.data_shape
    trained_on = str(dataset_kwargs.get("path", "")) if isinstance(dataset_kwargs, dict) else ""
    cifar = "cifar" in (os.path.basename(path) + os.path.basename(trained_on)).lower()
    if (h, c) == (32, 3) and cifar and network.num_classes in (None, 10):
        return C.Data(name="cifar10", holdout=1000)
    return C.Data(name="folder", image_size=h, channels=c, labels=network.num_classes is not None)


def experiment(network: EDMNetwork, path: str, dataset_kwargs: Any = None) -> C.Experiment:
    """The Experiment of an imported EDM network (EDM's sampler settings and loss where known)."""
    kw = network.unet_kwargs
    if kw["emb_dim"] != 4 * kw["channels"]:
        raise ConfigError(f"the network's embedding is {kw['emb_dim'] // kw['channels']}x its channels "
                          "(channel_mult_emb); genflow's configs build the UNet with 4x, EDM's default, only.")
    p_mean, p_std = network.loss or (-1.2, 1.2)
    name = "edm-" + os.path.splitext(os.path.basename(path))[0]
    return C.Experiment(
        name=name, data=_data(network, path, dataset_kwargs),
        process=C.Process(name="edm", sigma_min=0.002, sigma_max=80.0, rho=7.0),
        net=C.Net(name="unet", channels=kw["channels"], channel_mult=tuple(kw["channel_mult"]),
                  num_res_blocks=kw["num_res_blocks"], attn_resolutions=tuple(kw["attn_resolutions"]),
                  dropout=kw["dropout"], num_classes=kw["num_classes"], time_embedding=kw["time_embedding"],
                  noise_mult=kw["noise_mult"], resample_filter=tuple(kw["resample_filter"]), encoder=kw["encoder"],
                  variant=kw["variant"]),
        predicts="edm", sigma_data=network.sigma_data, objective="dsm", weighting="edm",
        time_sampling="lognormal", p_mean=p_mean, p_std=p_std,
        train=C.Train(dtype="float32"),
        sample=C.Sample(sampler="edm_heun", grid="karras", steps=17, num=64, denoise=True),  # EDM's 35 NFE
    )


def _check_workdir(workdir: str) -> None:
    if os.path.isfile(workdir):
        raise ConfigError(f"--workdir {workdir} is a file, not a directory; pass a new directory path.")
    if os.path.isdir(workdir) and os.listdir(workdir):
        raise ConfigError(f"--workdir {workdir} already exists and is not empty; pass a new directory for the "
                          "imported run.")


def import_edm(path: str, workdir: str) -> dict[str, Any]:
    """Write the run directory of the EDM snapshot at ``path`` into ``workdir`` (new or empty).
    Returns {"workdir", "arch", "num_classes", "params", "left_out"}."""
    from flax import nnx

    from genflow.cli.run import check_writable
    from genflow.training import Checkpointer, init_state

    _check_workdir(workdir)
    try:
        snapshot = read_edm_pickle(path)
        network = edm_network(snapshot)
    except EDMPickleError as e:
        raise ConfigError(str(e)) from None
    exp = experiment(network, path, snapshot.get("dataset_kwargs"))
    build.validate(exp)
    created = not os.path.exists(workdir)
    check_writable(workdir)
    try:
        # Shapes only (nothing initialised or compiled): every leaf is replaced by an imported weight.
        net = nnx.eval_shape(lambda: build.build_net(exp.net, network.data_shape, exp.train.dtype, exp.train.seed))
        _, params, _ = nnx.split(net, nnx.Param, ...)
        try:
            params = jax.tree.map(jnp.asarray, assign_params(params, network))
        except EDMPickleError as e:
            raise ConfigError(str(e)) from None
        state = init_state(params, build.build_optimizer(exp.optim), exp.train.seed)
        checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), keep=exp.train.keep)
        checkpointer.save(0, state, {"experiment": exp.name, "step": 0, "data_position": 0,
                                     "imported_from": os.path.abspath(path)})
        checkpointer.close()
        with open(os.path.join(workdir, "imported.json"), "w") as f:
            json.dump({"source": os.path.abspath(path), "format": "EDM snapshot (NVlabs/edm)", "arch": network.arch,
                       "precond": "EDMPrecond", "sigma_data": network.sigma_data, "num_classes": network.num_classes,
                       "left_out": network.left_out}, f, indent=2)
        with open(os.path.join(workdir, "config.json"), "w") as f:  # last: a run only once complete
            f.write(C.dumps(exp))
    except BaseException:
        if created:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    n_params = sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
    return {"workdir": workdir, "arch": network.arch, "num_classes": network.num_classes, "params": n_params,
            "left_out": network.left_out, "experiment": exp}


def import_edm_command(path: str, workdir: str) -> int:
    out = import_edm(path, workdir)
    kind = f"class-conditional, {out['num_classes']} classes" if out["num_classes"] else "unconditional"
    exp = out["experiment"]
    print(f"imported {path}: EDM {ARCH_NAMES[out['arch']]} ({kind}, {out['params']:,} parameters, sigma_data "
          f"{exp.sigma_data:g}) into {workdir}; sample it with `genflow sample {workdir}` ({exp.sample.sampler}, "
          f"{exp.sample.steps} steps on the {exp.sample.grid} grid, as EDM).", file=sys.stderr)
    for name, why in out["left_out"].items():
        print(f"genflow: left out {name}: {why}.", file=sys.stderr)
    return 0
