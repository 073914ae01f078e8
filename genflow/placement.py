"""Placement: the one object that owns the device mesh and every sharding built on it.

A ``Placement`` is built once per run from the config's ``train.mesh`` (``{"data": -1, "fsdp": 1}``
by default: every device a data-parallel replica) and the devices. Everything that places an
array asks it:

* ``batch()``: a batch is split over ("data", "fsdp") along its leading axis: FSDP's devices
  take different examples too, they only share the parameters.
* ``shardings(tree)``: parameters, EMAs and optimizer moments by one shape rule: a tensor of at
  least ``min_shard_bytes`` has its largest dimension divisible by the ``fsdp`` axis size sharded
  over ``fsdp``, everything else is replicated (big_vision's "fsdp" rule). Optimizer moments have
  their parameter's shape, so they land with it; step counters and keys are replicated.
* ``init(fn)``: ``jax.jit(fn, out_shardings=shardings(eval_shape(fn)))()``: a state created
  already sharded, never whole on one device.

XLA's partitioner then gathers a sharded parameter where a layer needs it and reduce-scatters its
gradient (ZeRO-3 / FSDP); with ``fsdp = 1`` the rule replicates everything and the program is
the data-parallel one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp")
BATCH = P(AXES)


def mesh_shape(spec: Mapping[str, int] | None, num_devices: int) -> tuple[int, int]:
    """(data, fsdp) sizes from ``{"data": d, "fsdp": f}`` where one entry may be -1 (the rest).

    One sentence when the shape does not multiply to the device count."""
    spec = dict(spec or {"data": -1, "fsdp": 1})
    unknown = set(spec) - set(AXES)
    if unknown:
        raise ValueError(f"train.mesh has unknown axes {sorted(unknown)}; its axes are data and fsdp, "
                         "e.g. {'data': -1, 'fsdp': 8}.")
    sizes = [int(spec.get(a, 1)) for a in AXES]
    if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"train.mesh {spec} needs positive sizes, at most one of them -1 (all the rest).")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if num_devices % known:
            raise ValueError(f"train.mesh {spec}: {known} does not divide the {num_devices} devices.")
        sizes = [num_devices // known if s == -1 else s for s in sizes]
    if math.prod(sizes) != num_devices:
        raise ValueError(f"train.mesh {spec} is {sizes[0]} x {sizes[1]} = {math.prod(sizes)} devices, but there are "
                         f"{num_devices}; make the product the device count (or use -1 for one axis).")
    return sizes[0], sizes[1]


@dataclass(frozen=True)
class Placement:
    """The mesh (axes data x fsdp) and the shardings of every array placed on it."""

    mesh: Mesh
    min_shard_bytes: int = 1 << 18     # 256 KiB: below this, sharding costs more in collectives than it saves

    @classmethod
    def create(cls, shape: Mapping[str, int] | None = None, devices=None, min_shard_bytes: int = 1 << 18
               ) -> "Placement":
        """A placement over ``devices`` (default: every process's) in the given mesh shape."""
        devices = jax.devices() if devices is None else list(devices)
        data, fsdp = mesh_shape(shape, len(devices))
        return cls(Mesh(np.asarray(devices).reshape(data, fsdp), AXES), min_shard_bytes)

    # -- sizes ----------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.mesh.size

    @property
    def fsdp(self) -> int:
        return self.mesh.shape["fsdp"]

    @property
    def data(self) -> int:
        return self.mesh.shape["data"]

    def __repr__(self):
        return f"Placement(data={self.data}, fsdp={self.fsdp})"

    # -- shardings ------------------------------------------------------------------------------
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def batch(self) -> NamedSharding:
        """Leading (example) axis split over every device."""
        return NamedSharding(self.mesh, BATCH)

    def spec(self, shape: tuple[int, ...], dtype) -> P:
        """The parameter rule: shard the largest dimension divisible by the fsdp size over ``fsdp``
        for a tensor of at least ``min_shard_bytes``; replicate the rest."""
        if self.fsdp == 1 or not shape or jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            return P()
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        if nbytes < self.min_shard_bytes:
            return P()
        dims = sorted(range(len(shape)), key=lambda d: (-shape[d], d))
        for d in dims:
            if shape[d] % self.fsdp == 0:
                return P(*[("fsdp" if i == d else None) for i in range(len(shape))])
        return P()

    def sharding(self, x) -> NamedSharding:
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            return self.replicated()
        return NamedSharding(self.mesh, self.spec(tuple(x.shape), x.dtype))

    def shardings(self, tree: Any) -> Any:
        """The rule's sharding for every array leaf of ``tree`` (arrays or ShapeDtypeStructs)."""
        return jax.tree.map(self.sharding, tree)

    # -- placing ----------------------------------------------------------------------------------
    def put(self, tree: Any) -> Any:
        """``tree`` moved onto the mesh by the rule (for a state that already exists, e.g. restored)."""
        return jax.device_put(tree, self.shardings(tree))

    def init(self, fn: Callable[..., Any], *args) -> Any:
        """``fn(*args)`` placed by the rule, as fresh buffers (never the arguments' own: states are donated).

        With FSDP, or over several processes, it is one jitted program whose outputs are born
        sharded, so no device ever holds the whole state. A replicated state on one process is
        computed op by op and then placed: XLA compiles one program with an output per leaf as a
        fusion per output (12 s for a U-Net's optimizer state, EMA and power EMAs on a CPU), while
        the ops compile once per distinct leaf shape (well under a second). Same values either way.
        """
        if self.fsdp == 1 and jax.process_count() == 1:
            out = fn(*args)
            return jax.device_put(out, self.shardings(out), may_alias=False)
        return jax.jit(fn, out_shardings=self.shardings(jax.eval_shape(fn, *args)))(*args)

    def bytes_per_device(self, tree: Any) -> dict[Any, int]:
        """Bytes of ``tree``'s arrays held by each device (from the arrays' addressable shards)."""
        out: dict[Any, int] = {}
        for leaf in jax.tree.leaves(tree):
            for shard in getattr(leaf, "addressable_shards", ()):
                out[shard.device] = out.get(shard.device, 0) + shard.data.nbytes
        return out


def as_placement(mesh: "Mesh | Placement | None") -> "Placement | None":
    """A ``Placement`` from what callers pass as ``mesh=``: a Placement itself, a (data, fsdp) mesh,
    a mesh of any other shape (its devices as data-parallel replicas), or None (one device: None)."""
    if mesh is None or isinstance(mesh, Placement):
        return mesh
    if tuple(mesh.axis_names) == AXES:
        return Placement(mesh)
    return Placement(Mesh(np.asarray(mesh.devices).reshape(-1, 1), AXES))


# -- processes ------------------------------------------------------------------------------------
def is_lead() -> bool:
    """Whether this process writes the run's shared files (metrics, TensorBoard, figures, config):
    process 0. Checkpoints are written by every process (each its own shards)."""
    return jax.process_index() == 0


def to_host(x) -> np.ndarray:
    """The whole of a (possibly multi-process) array as a host array on every process; a
    collective where the array spans processes, so every process must call it."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def initialize_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """``jax.distributed.initialize`` for a multi-process run (each process calls it first, before
    any other JAX call). With no coordinator JAX finds the cluster itself (TPU pods, SLURM, ...).
    On CPU the collectives go through gloo."""
    if jax.config.jax_platforms in ("cpu",) or (jax.config.jax_platforms or "").startswith("cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator is None:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)
