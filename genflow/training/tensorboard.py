"""A TensorFlow-free TensorBoard scalar writer: event files written by hand.

An event file is a sequence of TFRecords, each ``uint64 length, uint32 masked-crc32c(length),
bytes data, uint32 masked-crc32c(data)``, whose data is an ``Event`` protocol buffer:
wall_time (field 1, double), step (2, int64), file_version (3, string) or summary (5), with
``Summary.value`` (1) = {tag (1, string), simple_value (2, float)}. That is all TensorBoard
needs to plot scalars, so no TensorFlow or protobuf runtime is required.
"""
from __future__ import annotations

import os
import socket
import struct
import time


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord uses; crc32c(b"123456789") == 0xE3069283."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint((number << 3) | wire) + payload


def _bytes_field(number: int, data: bytes) -> bytes:
    return _field(number, 2, _varint(len(data)) + data)


def encode_event(wall_time: float, step: int, *, file_version: str | None = None,
                 scalars: dict[str, float] | None = None) -> bytes:
    msg = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if file_version is not None:
        msg += _bytes_field(3, file_version.encode())
    if scalars:
        values = b"".join(_bytes_field(1, _bytes_field(1, tag.encode()) + _field(2, 5, struct.pack("<f", float(v))))
                          for tag, v in scalars.items())
        msg += _bytes_field(5, values)
    return msg


def frame(data: bytes) -> bytes:
    """One TFRecord."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", _masked(crc32c(header))) + data + struct.pack("<I", _masked(crc32c(data)))


class SummaryWriter:
    """``SummaryWriter(logdir).scalars(step, {"loss": 0.1})``: appends to one event file, flushed per call."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.genflow"
        self.path = os.path.join(logdir, name)
        with open(self.path, "ab") as f:
            f.write(frame(encode_event(time.time(), 0, file_version="brain.Event:2")))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        with open(self.path, "ab") as f:
            f.write(frame(encode_event(time.time(), step, scalars=values)))


def read_scalars(path: str) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in an event file, checking both CRCs of each record."""
    out = []
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        if struct.unpack("<I", data[pos + 8:pos + 12])[0] != _masked(crc32c(header)):
            raise ValueError(f"corrupt record header at byte {pos} of {path}")
        body = data[pos + 12:pos + 12 + length]
        if struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] != _masked(crc32c(body)):
            raise ValueError(f"corrupt record at byte {pos} of {path}")
        out.extend(_scalars_of(body))
        pos += 16 + length
    return out


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        b = buf[i]
        n |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return n, i
        shift += 7


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            n, i = _read_varint(buf, i)
            value, i = buf[i:i + n], i + n
        yield number, value


def _scalars_of(event: bytes):
    fields = list(_fields(event))
    step = next((v for n, v in fields if n == 2), 0)
    for n, summary in fields:
        if n != 5:
            continue
        for _, value in _fields(summary):
            parts = dict(_fields(value))
            yield step, parts[1].decode(), struct.unpack("<f", parts[2])[0]
