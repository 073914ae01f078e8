"""The TensorFlow-free event writer, read back by TensorBoard's own EventAccumulator (the reader
`tensorboard --logdir` uses): scalars, images, torn files and resumed runs with no step twice."""
import os

import numpy as np
import pytest

from genflow.training.tensorboard import SummaryWriter, crc32c, read_scalars

EventAccumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator").EventAccumulator


def accumulate(logdir):
    acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


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


def test_tensorboards_reader_sees_the_scalars_and_images(tmp_path):
    w = SummaryWriter(str(tmp_path))
    w.scalars(5, {"loss": 0.5, "grad_norm": 2.0})
    w.scalars(10, {"loss": 0.25})
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    w.image(10, "samples", rgb)
    w.image(11, "grey", np.full((3, 2, 1), 7, np.uint8))
    acc = accumulate(tmp_path)
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(5, 0.5), (10, 0.25)]
    assert [(e.step, e.value) for e in acc.Scalars("grad_norm")] == [(5, 2.0)]
    (img,) = acc.Images("samples")
    assert (img.step, img.height, img.width) == (10, 4, 6)
    from io import BytesIO

    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(BytesIO(img.encoded_image_string))), rgb)  # PNG is lossless
    (grey,) = acc.Images("grey")
    assert (grey.height, grey.width) == (3, 2)
    with pytest.raises(ValueError, match="uint8"):
        w.image(12, "bad", np.zeros((2, 2), np.float32))


def test_a_resumed_writer_leaves_no_step_twice_even_after_a_torn_write(tmp_path):
    """Killed after logging steps 1..7 (the last record torn), resumed from a checkpoint at step 5:
    TensorBoard sees steps 1..5 from the first file, then the resumed run's 6.. once each."""
    first = SummaryWriter(str(tmp_path))
    for step in range(1, 8):
        first.scalars(step, {"loss": float(step)})
    with open(first.path, "ab") as f:  # a write cut short by SIGKILL
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00\x01\x02")
    second = SummaryWriter(str(tmp_path), resume_step=5)
    assert second.path != first.path
    for step in range(6, 10):
        second.scalars(step, {"loss": 100.0 + step})
    assert [s for s, _, _ in read_scalars(first.path)] == [1, 2, 3, 4, 5]   # cut back, torn tail dropped
    values = [(e.step, e.value) for e in accumulate(tmp_path).Scalars("loss")]
    assert values == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0), (6, 106.0), (7, 107.0), (8, 108.0),
                      (9, 109.0)]
    assert len(os.listdir(tmp_path)) == 2
