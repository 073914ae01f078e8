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
