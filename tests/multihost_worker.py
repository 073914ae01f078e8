"""One process of a two-process CPU run (launched by test_multihost.py).

argv: process_id, num_processes, port, out_path. Each process has 2 CPU devices; the mesh
spans all 4. Every process reads only its slice of each global batch. Then the trained model's
ReFlow couplings are generated over the whole mesh into ``<out_path>.couplings/`` (process 0
writes, every process reads them back), and each process reports what it read. Last, the same
training with the parameters FSDP-sharded over every device of every process, checkpointed (each
process writes its own shards) and restored.
"""
import json
import os
import sys

pid, nproc, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
if nproc > 1:
    jax.distributed.initialize(f"localhost:{port}", num_processes=nproc, process_id=pid)

import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from genflow.data import ArrayBatches, data_sharding, load_digits  # noqa: E402
from genflow.models import MLP, ModelSpec  # noqa: E402
from genflow.objectives import denoising_score_matching  # noqa: E402
from genflow.processes import VP  # noqa: E402
from genflow.training import init_state, make_mesh, make_optimizer, make_train_step, split_net  # noqa: E402

mesh = make_mesh()
x, y, _, _ = load_digits()
batches = ArrayBatches(x, 32, labels=y, seed=0, sharding=data_sharding(mesh))
net = MLP((8, 8, 1), width=64, depth=2, rngs=nnx.Rngs(0))
spec = ModelSpec.from_net(net, VP(), "eps")
graphdef, params, rest = split_net(net)
tx = make_optimizer("adam", 1e-3)
state = jax.device_put(init_state(params, tx, 0), NamedSharding(mesh, P()))
step = make_train_step(spec, denoising_score_matching, tx, ema_decay=0.9, mesh=mesh)
losses = []
for _ in range(5):
    state, m = step(state, next(batches))
    losses.append(float(m["loss"]))
from genflow.reflow import generate_couplings, load_couplings, make_coupler, pf_ode_sampler  # noqa: E402

couple = make_coupler(spec, (8, 8, 1), 8, sampler=pf_ode_sampler("euler", 4), mesh=mesh)
directory = out + ".couplings"
generate_couplings(couple, state.ema, directory, num_couples=24, chunk_size=8, seed=3, meta={}, progress=False)
x1, x0, _ = load_couplings(directory, 24)
from genflow.placement import Placement, to_host  # noqa: E402
from genflow.training import Checkpointer  # noqa: E402

fsdp = Placement.create({"data": 1, "fsdp": -1}, min_shard_bytes=0)
batches = ArrayBatches(x, 32, labels=y, seed=0, sharding=fsdp.batch())
_, params, _ = split_net(MLP((8, 8, 1), width=64, depth=2, rngs=nnx.Rngs(0)))
state = fsdp.init(lambda p: init_state(p, tx, 0), params)
step = make_train_step(spec, denoising_score_matching, tx, ema_decay=0.9, mesh=fsdp)
fsdp_losses = []
for _ in range(5):
    state, m = step(state, next(batches))
    fsdp_losses.append(float(m["loss"]))
local = sum(s.data.nbytes for leaf in jax.tree.leaves(state) for s in leaf.addressable_shards)
total = sum(leaf.nbytes for leaf in jax.tree.leaves(state))
ckpt = Checkpointer(out + ".ckpt")
ckpt.save(5, state, {})
ckpt.wait()
restored, _ = ckpt.restore(state)
same = all(np.array_equal(to_host(a), to_host(b)) for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)))
ckpt.close()
json.dump({"losses": losses, "devices": jax.device_count(), "processes": jax.process_count(),
           "x0": np.asarray(x0).reshape(len(x0), -1)[:, :4].tolist(), "num_couples": len(x0),
           "fsdp_losses": fsdp_losses, "local_share": local / total, "restored_equal": same},
          open(f"{out}.{pid}", "w"))
