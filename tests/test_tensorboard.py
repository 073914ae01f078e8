"""The TensorFlow-free event writer: CRC-32C test vector and a write/read round trip."""
import struct

import pytest

from genflow.training.tensorboard import SummaryWriter, crc32c, read_scalars


def test_crc32c_check_value():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C catalogue check value
    assert crc32c(b"") == 0


def test_round_trip_and_corruption_is_detected(tmp_path):
    w = SummaryWriter(str(tmp_path))
    w.scalars(3, {"loss": 0.5, "grad_norm": 2.0})
    w.scalars(10, {"loss": 0.25})
    assert read_scalars(w.path) == [(3, "loss", 0.5), (3, "grad_norm", 2.0), (10, "loss", 0.25)]
    data = bytearray(open(w.path, "rb").read())
    data[-6] ^= 1
    open(w.path, "wb").write(bytes(data))
    with pytest.raises(ValueError, match="corrupt record"):
        read_scalars(w.path)
