"""TensorFlow-free TFDS data sets through ``tfds.data_source`` (random access, no TensorFlow).

A data set must be prepared once where there is internet (``tfds build NAME``, which needs
TensorFlow there); training then reads its ArrayRecord files with no TensorFlow installed.

``make_fetch`` reads records raw and parses only the image and the label itself: TFDS's own
decoding turns every feature of a record into numpy (CelebA has 51 besides the image) under the
GIL, 30% (CIFAR-10) to 40% (CelebA) of the time per image (benchmarks/data_rate.py). The image
is decoded with PIL, as TFDS does without OpenCV, so the pixels are TFDS's (with OpenCV
installed TFDS would decode JPEGs with it instead; genflow's batches do not depend on that).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from genflow.data.images import center_crop_resize, to_unit_range


@dataclass(frozen=True)
class TFDSSpec:
    shape: tuple[int, int, int]         # (H, W, C) after preprocessing
    num_classes: int | None
    crop: int | None = None             # center crop before resizing (CelebA: 140, as in DDPM/NCSN++)


SPECS = {
    "mnist": TFDSSpec((28, 28, 1), 10),
    "fashion_mnist": TFDSSpec((28, 28, 1), 10),
    "cifar10": TFDSSpec((32, 32, 3), 10),
    "celeb_a": TFDSSpec((64, 64, 3), None, crop=140),
}


class DatasetNotPrepared(ValueError):
    """The data set is not on disk and cannot be downloaded here."""


def open_source(name: str, split: str = "train", data_dir: str | None = None):
    """``tfds.data_source(name, split)``, or one sentence on how to prepare it."""
    import tensorflow_datasets as tfds

    where = data_dir or "~/tensorflow_datasets"
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # tfds raises AssertionError, KeyError or DatasetNotFoundError here
        raise DatasetNotPrepared(
            f"dataset {name!r} (split {split!r}) is not prepared in {where}; run `pip install tensorflow "
            f"tensorflow-datasets && tfds build {name}` where there is internet and copy the folder there, or use "
            f"--set data.name=digits, which ships with genflow ({type(e).__name__})."
        ) from None


def make_fetch(source, spec: TFDSSpec, raw: bool = True):
    """fetch(indices) -> (images float32 (B, H, W, C) in [-1, 1], labels int32 or None).

    With ``raw`` the records are read from the ArrayRecord source under ``source`` (its
    ``data_source``) and parsed here; a source without one (``tfds.testing.mock_data``'s gives
    decoded dicts there) and ``raw=False`` read TFDS's decoded records. Both give the same batches."""
    if raw:
        source = getattr(source, "data_source", source)

    def fetch(idx: np.ndarray):
        images = np.empty((len(idx),) + spec.shape, np.uint8)
        labels = None if spec.num_classes is None else np.empty(len(idx), np.int32)
        for k, i in enumerate(idx):
            image, label = _image_and_label(source[int(i)], labels is not None)
            images[k] = center_crop_resize(image, spec.shape[0], spec.crop)
            if labels is not None:
                labels[k] = label
        return to_unit_range(images), labels

    return fetch


def _image_and_label(record, want_label: bool) -> tuple[np.ndarray, int | None]:
    """(image uint8 (H, W, C), label or None) of one record: a decoded dict, or the bytes of the
    tf.train.Example TFDS writes (the image encoded under "image", the class under "label")."""
    if isinstance(record, dict):
        image, label = np.asarray(record["image"]), (record["label"] if want_label else None)
    else:
        from PIL import Image
        from tensorflow_datasets.proto import tf_example_pb2

        feature = tf_example_pb2.Example.FromString(record).features.feature
        with Image.open(io.BytesIO(feature["image"].bytes_list.value[0])) as im:
            image = np.asarray(im, dtype=np.uint8)
        label = feature["label"].int64_list.value[0] if want_label else None
    return (image[..., None] if image.ndim == 2 else image), label
