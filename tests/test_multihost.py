"""Two local processes through jax.distributed train to the same losses as one process."""
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
    return json.load(open(out))


def test_two_processes_equal_one(tmp_path):
    two = _run(2, tmp_path)
    one = _run(1, tmp_path)
    assert two["processes"] == 2 and two["devices"] == 4 and one["devices"] == 2
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
