"""Two local processes through jax.distributed train to the same losses as one process (data
parallel and FSDP), generate the same ReFlow couplings, which every process then reads back
whole, and a two-process `genflow train` writes its logs once."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "multihost_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run(nproc, tmp_path):
    out, port = str(tmp_path / f"out{nproc}.json"), str(_free_port())
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, WORKER, str(i), str(nproc), port, out], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(nproc)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    return [json.load(open(f"{out}.{i}")) for i in range(nproc)]


def test_two_processes_equal_one(tmp_path):
    two = _run(2, tmp_path)
    one, = _run(1, tmp_path)
    assert two[0]["processes"] == 2 and two[0]["devices"] == 4 and one["devices"] == 2
    np.testing.assert_allclose(two[0]["losses"], one["losses"], rtol=1e-5)
    for proc in two:   # each process read all 3 chunks, and they are the single-process couplings
        assert proc["num_couples"] == 24
        np.testing.assert_allclose(proc["x0"], one["x0"], rtol=1e-4, atol=1e-5)
    # FSDP over both processes' 4 devices trains as data parallelism on one process, each process
    # holding half of the state (its 2 devices' quarters), and its checkpoint restores whole
    for proc in two:
        np.testing.assert_allclose(proc["fsdp_losses"], one["losses"], rtol=1e-5)
        assert abs(proc["local_share"] - 0.5) < 0.02 and proc["restored_equal"]
    assert one["restored_equal"]


def _cli(args, nproc, port, extra_env=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2", **(extra_env or {}))
    code = "import sys; from genflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
    dist = lambda i: ["--coordinator", f"localhost:{port}", "--num-processes", str(nproc), "--process-id", str(i)]
    procs = [subprocess.Popen([sys.executable, "-c", code, *args, *(dist(i) if nproc > 1 else [])], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(nproc)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]


@pytest.mark.slow  # two-process training is checked by test_two_processes_equal_one; this adds the CLI's log writing
def test_a_two_process_cli_run_writes_its_logs_once_and_equals_one_process(tmp_path):
    common = ["train", "--no-progress", "--set", "train.steps=4", "--set", "train.log_every=2", "--set",
              "train.ckpt_every=2", "--set", "train.mesh=1,-1", "--set", "train.batch_size=32", "--set",
              "sample.steps=4", "--set", "sample.num=16", "--set", "net.width=64"]
    two, one = str(tmp_path / "two"), str(tmp_path / "one")
    _cli(common + ["--workdir", two], 2, _free_port())
    _cli(common + ["--workdir", one], 1, _free_port())
    rows = lambda d: [json.loads(line) for line in open(os.path.join(d, "metrics.jsonl"))]  # noqa: E731
    assert [r["step"] for r in rows(two)] == [2, 4]                  # one writer: no row twice
    np.testing.assert_allclose([r["loss"] for r in rows(two)], [r["loss"] for r in rows(one)], rtol=1e-5)
    assert len(os.listdir(os.path.join(two, "tensorboard"))) == 1
    for name in ("config.json", "samples.png", "loss.png"):
        assert os.path.exists(os.path.join(two, name))
    # every process wrote its own shards of the FSDP state into the checkpoint
    written = [d for _, dirs, _ in os.walk(os.path.join(two, "checkpoints")) for d in dirs]
    assert any("process_1" in d for d in written), written
