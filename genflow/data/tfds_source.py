"""TensorFlow-free TFDS data sets through ``tfds.data_source`` (random access, no TensorFlow).

A data set must be prepared once where there is internet (``tfds build NAME``, which needs
TensorFlow there); training then reads its ArrayRecord files with no TensorFlow installed.
"""
from __future__ import annotations

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


def make_fetch(source, spec: TFDSSpec):
    """fetch(indices) -> (images float32 (B, H, W, C) in [-1, 1], labels int32 or None)."""

    def fetch(idx: np.ndarray):
        records = [source[int(i)] for i in idx]
        imgs = np.stack([center_crop_resize(np.asarray(r["image"]), spec.shape[0], spec.crop) for r in records])
        labels = None
        if spec.num_classes is not None:
            labels = np.asarray([r["label"] for r in records], np.int32)
        return to_unit_range(imgs), labels

    return fetch
