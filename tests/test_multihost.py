"""Two local processes through jax.distributed train to the same losses as one process, and
generate the same ReFlow couplings, which every process then reads back whole."""
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
