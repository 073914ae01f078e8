"""TFDS (mock data, no download), image folders, and the deterministic, resumable batch stream."""
import os
import warnings

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from genflow import config as C
from genflow.cli import build
from genflow.config import ConfigError
from genflow.data import IndexedBatches, data_sharding
from genflow.data import folder, tfds_source
from genflow.training import make_mesh


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3)), ("celeb_a", (64, 64, 3))])
def test_tfds_batches_shapes_ranges_and_sharding(name, shape):
    mesh = make_mesh()
    with tfds.testing.mock_data(num_examples=40):
        data = build.build_data(C.Data(name=name, holdout=8), 16, 0, mesh)
        batch = next(data.batches)
        x, y = batch["x0"], batch.get("cond")
    assert x.shape == (16,) + shape and x.dtype == np.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert len(x.sharding.device_set) == jax.device_count()
    assert (y is None) == (name == "celeb_a")
    assert data.heldout.shape == (8,) + shape


def test_missing_tfds_dataset_is_one_sentence(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset 'cifar10' \(split 'train'\) is not prepared in .*tfds build cifar10"):
        build.build_data(C.Data(name="cifar10", data_dir=str(tmp_path)), 16, 0, None)


def test_stream_is_a_function_of_seed_and_position():
    x = np.arange(50, dtype=np.float32).reshape(50, 1, 1, 1)
    fetch = lambda idx: (x[idx], None)
    a = IndexedBatches(fetch, 50, 8, seed=3)
    seen = [next(a)["x0"].ravel() for _ in range(12)]  # 6 batches per epoch: two epochs
    # each epoch is a permutation without repeats, and the epochs differ
    assert len(set(np.concatenate(seen[:6]).tolist())) == 48 and not np.array_equal(seen[0], seen[6])
    b = IndexedBatches(fetch, 50, 8, seed=3, position=7)  # resume mid-stream
    np.testing.assert_array_equal(next(b)["x0"].ravel(), seen[7])
    c = IndexedBatches(fetch, 50, 8, seed=4)
    assert not np.array_equal(next(c)["x0"].ravel(), seen[0])


def test_random_flip_mirrors_about_half_the_images():
    x = np.tile(np.arange(4, dtype=np.float32)[None, None, :, None], (64, 2, 1, 1))
    batches = IndexedBatches(lambda idx: (x[idx], None), 64, 64, seed=0, random_flip=True, prefetch=False)
    out = next(batches)["x0"]
    flipped = np.all(out[:, 0, :, 0] == np.arange(4)[::-1], axis=1)
    kept = np.all(out[:, 0, :, 0] == np.arange(4), axis=1)
    assert np.all(flipped | kept) and 16 < flipped.sum() < 48


def _write_images(root, names, size=(10, 12)):
    for name in names:
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(np.random.default_rng(0).integers(0, 255, size + (3,), dtype=np.uint8)).save(path)


def test_image_folder_labels_corrupt_files_and_errors(tmp_path):
    root = str(tmp_path / "imgs")
    _write_images(root, ["cat/a.png", "cat/b.jpg", "dog/c.png"])
    open(os.path.join(root, "dog", "broken.png"), "wb").write(b"not a png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths, labels, classes = folder.scan_folder(root, labels_from_subfolders=True)
    assert any("dog/broken.png" in str(w.message) for w in caught)
    assert classes == ["cat", "dog"] and labels.tolist() == [0, 0, 1]
    x, y = folder.make_fetch(paths, labels, 8)(np.array([2, 0]))
    assert x.shape == (2, 8, 8, 3) and y.tolist() == [1, 0] and -1 <= x.min() and x.max() <= 1
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ConfigError, match="holds no readable .png/.jpg images"):
        build.build_data(C.Data(name="folder", path=str(tmp_path / "empty")), 2, 0, None)


def test_train_on_mock_mnist_end_to_end(tmp_path):
    from genflow.cli.run import train

    exp = C.Experiment(name="mnist", data=C.Data(name="mnist", holdout=0), net=C.Net(width=32, depth=1),
                       train=C.Train(batch_size=8, steps=2, log_every=1, ckpt_every=2), sample=C.Sample(steps=2, num=4))
    with tfds.testing.mock_data(num_examples=16):
        summary = train(exp, str(tmp_path / "run"), progress=False)
    assert summary["step"] == 2 and os.path.exists(tmp_path / "run" / "samples.png")


def _batches_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def test_more_reader_threads_give_exactly_the_same_batches(tmp_path):
    """data.workers changes speed only: batch i is the same for (seed, i) at any thread count,
    across epochs, on resume mid-stream and after the position is moved."""
    root = str(tmp_path / "imgs")
    _write_images(root, [f"c{i % 3}/{i:02d}.png" for i in range(21)], size=(9, 7))
    paths, labels, _ = folder.scan_folder(root, labels_from_subfolders=True)
    fetch = folder.make_fetch(paths, labels, 6)
    one = IndexedBatches(fetch, len(paths), 4, seed=5, random_flip=True, workers=1)
    want = [next(one) for _ in range(12)]  # 5 batches per epoch: two epochs and a bit
    many = IndexedBatches(fetch, len(paths), 4, seed=5, random_flip=True, workers=3)
    assert all(_batches_equal(next(many), w) for w in want)
    resumed = IndexedBatches(fetch, len(paths), 4, seed=5, random_flip=True, workers=3, position=7)
    assert all(_batches_equal(next(resumed), w) for w in want[7:])
    many.position = 2  # the batches read ahead for position 12 onwards must not be handed out
    assert _batches_equal(next(many), want[2]) and _batches_equal(next(many), want[3])
    with pytest.raises(ValueError, match="data workers must be at least 1"):
        IndexedBatches(fetch, len(paths), 4, workers=0)
    with pytest.raises(ConfigError, match="data.workers must be positive, got 0"):
        build.validate(C.Experiment(data=C.Data(workers=0)))


def _write_tfds():
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    from _tfds_files import write_tfds

    return write_tfds


@pytest.mark.parametrize("name, shape, fmt", [("cifar10", (32, 32), "PNG"), ("celeb_a", (218, 178), "JPEG")])
def test_raw_tfds_records_give_the_batches_tfds_decoding_gives(tmp_path, name, shape, fmt):
    """The training path parses raw ArrayRecord records itself (image and label only); on real
    TFDS files it yields exactly what TFDS's own decoding of every feature yields, before and
    after the CLI's flips and batching."""
    rng = np.random.default_rng(0)
    images = np.repeat(np.repeat(rng.integers(0, 256, (24,) + tuple(s // 8 for s in shape) + (3,), dtype=np.uint8),
                                 8, 1), 8, 2)
    images = np.pad(images, [(0, 0), (0, shape[0] - images.shape[1]), (0, shape[1] - images.shape[2]), (0, 0)])
    _write_tfds()(name, str(tmp_path), images, labels=np.arange(24) % 10, image_format=fmt)
    spec = tfds_source.SPECS[name]
    source = tfds_source.open_source(name, "train", str(tmp_path))
    decoded, raw = tfds_source.make_fetch(source, spec, raw=False), tfds_source.make_fetch(source, spec)
    assert isinstance(source.data_source[0], bytes)  # the raw path parses serialized records itself
    idx = rng.permutation(24)[:10]
    (xd, yd), (xr, yr) = decoded(idx), raw(idx)
    assert xr.shape == (10,) + spec.shape and np.array_equal(xd, xr)
    assert (yd is None and yr is None) or np.array_equal(yd, yr)
    before = IndexedBatches(decoded, 24, 8, seed=1, random_flip=True, workers=1)
    cli = build.build_data(C.Data(name=name, data_dir=str(tmp_path), holdout=0, random_flip=True, workers=2),
                           8, 1, None).batches
    assert all(_batches_equal(next(before), next(cli)) for _ in range(5))
