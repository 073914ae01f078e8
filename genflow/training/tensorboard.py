"""A TensorFlow-free TensorBoard writer (scalars and images): event files written by hand.

An event file is a sequence of TFRecords, each ``uint64 length, uint32 masked-crc32c(length),
bytes data, uint32 masked-crc32c(data)``, whose data is an ``Event`` protocol buffer:
wall_time (field 1, double), step (2, int64), then one of file_version (3, string), summary (5)
or session_log (7, {status (1): START = 1}). ``Summary.value`` (1) = {tag (1, string),
simple_value (2, float) | image (4, {height 1, width 2, colorspace 3, encoded_image_string 4})}.
That is all TensorBoard needs for scalars and images, so no TensorFlow or protobuf runtime is
required; the tests read the files back with TensorBoard's own ``EventAccumulator``.

Resuming a run at step N first cuts every existing event file in the directory back to steps
<= N (as metrics.jsonl is), so a killed and resumed run never holds a step twice, then writes a
SessionLog START at N + 1, the marker TensorBoard itself uses to drop orphaned later events.
"""
from __future__ import annotations

import os
import socket
import struct
import time
from typing import Any


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


def _png(image) -> tuple[bytes, int, int, int]:
    """(PNG bytes, height, width, channels) of a uint8 image (H, W) or (H, W, C)."""
    import io

    import numpy as np
    from PIL import Image

    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"a TensorBoard image must be uint8 (H, W[, C]), got {a.dtype}")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue(), a.shape[0], a.shape[1], 1 if a.ndim == 2 else a.shape[2]


def encode_event(wall_time: float, step: int, *, file_version: str | None = None,
                 scalars: dict[str, float] | None = None, images: dict[str, Any] | None = None,
                 session_start: bool = False) -> bytes:
    msg = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if file_version is not None:
        msg += _bytes_field(3, file_version.encode())
    values = b""
    for tag, v in (scalars or {}).items():
        values += _bytes_field(1, _bytes_field(1, tag.encode()) + _field(2, 5, struct.pack("<f", float(v))))
    for tag, image in (images or {}).items():
        png, h, w, c = _png(image)
        body = _field(1, 0, _varint(h)) + _field(2, 0, _varint(w)) + _field(3, 0, _varint(c)) + _bytes_field(4, png)
        values += _bytes_field(1, _bytes_field(1, tag.encode()) + _bytes_field(4, body))
    if values:
        msg += _bytes_field(5, values)
    if session_start:
        msg += _bytes_field(7, _field(1, 0, _varint(1)))
    return msg


def frame(data: bytes) -> bytes:
    """One TFRecord."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", _masked(crc32c(header))) + data + struct.pack("<I", _masked(crc32c(data)))


class SummaryWriter:
    """``SummaryWriter(logdir).scalars(step, {"loss": 0.1})``: appends to one event file, flushed per call.

    With ``resume_step=N`` the directory's earlier event files are first cut back to steps <= N."""

    def __init__(self, logdir: str, *, resume_step: int | None = None):
        os.makedirs(logdir, exist_ok=True)
        if resume_step is not None:
            for name in sorted(os.listdir(logdir)):
                if ".tfevents." in name:
                    _cut(os.path.join(logdir, name), resume_step)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.genflow"
        self.path = os.path.join(logdir, name)
        if os.path.exists(self.path):  # a second writer in the same second and process
            self.path += f".{time.time_ns()}"
        self._write(encode_event(time.time(), 0, file_version="brain.Event:2"))
        if resume_step is not None:
            self._write(encode_event(time.time(), resume_step + 1, session_start=True))

    def _write(self, event: bytes) -> None:
        with open(self.path, "ab") as f:
            f.write(frame(event))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._write(encode_event(time.time(), step, scalars=values))

    def image(self, step: int, tag: str, image) -> None:
        """A uint8 image (H, W) or (H, W, C), e.g. ``plotting.grid_array(samples)``, stored as PNG."""
        self._write(encode_event(time.time(), step, images={tag: image}))


def records(path: str, *, strict: bool = True) -> list[bytes]:
    """The Event payloads of an event file, checking both CRCs of each record. A torn or corrupt
    record raises, or with ``strict=False`` ends the list (what a killed writer leaves)."""
    out = []
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        ok = len(header) == 8 and len(data) >= pos + 12
        if ok:
            (length,) = struct.unpack("<Q", header)
            ok = struct.unpack("<I", data[pos + 8:pos + 12])[0] == _masked(crc32c(header)) \
                and len(data) >= pos + 16 + length
        if ok:
            body = data[pos + 12:pos + 12 + length]
            ok = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] == _masked(crc32c(body))
        if not ok:
            if strict:
                raise ValueError(f"corrupt record at byte {pos} of {path}")
            break
        out.append(body)
        pos += 16 + length
    return out


def _step_of(event: bytes) -> int:
    return next((v for n, v in _fields(event) if n == 2), 0)


def _cut(path: str, last_step: int) -> None:
    """Keep the records of ``path`` up to ``last_step`` (and nothing after a torn one); atomic."""
    kept = [r for r in records(path, strict=False) if _step_of(r) <= last_step]
    with open(path + ".tmp", "wb") as f:
        f.write(b"".join(frame(r) for r in kept))
    os.replace(path + ".tmp", path)


def read_scalars(path: str) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in an event file, checking both CRCs of each record."""
    return [s for body in records(path) for s in _scalars_of(body)]


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
            if 2 in parts:
                yield step, parts[1].decode(), struct.unpack("<f", parts[2])[0]
