"""Write a TFDS data set's ArrayRecord files without TensorFlow, for benchmarks.

``tfds build`` needs TensorFlow to encode images; here images are encoded with PIL and each
record is the tf.train.Example proto TFDS itself writes (the proto module ships with TFDS), so
``tfds.data_source(name, data_dir=...)`` reads these files through exactly the path it reads a
real prepared data set: ArrayRecord read, proto parse, image decode.
"""
from __future__ import annotations

import io
import os

import numpy as np


def write_tfds(name: str, data_dir: str, images: np.ndarray, labels: np.ndarray | None = None,
               image_format: str = "PNG", split: str = "train") -> str:
    """Write ``images`` (N, H, W, C) uint8 as split ``split`` of TFDS data set ``name`` under
    ``data_dir``; every other feature of the data set is zero. Returns the version folder."""
    import tensorflow_datasets as tfds
    from array_record.python.array_record_module import ArrayRecordWriter
    from PIL import Image
    from tensorflow_datasets.core import splits as splits_lib
    from tensorflow_datasets.core import utils
    from tensorflow_datasets.proto import tf_example_pb2

    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    path = str(builder.data_path)
    os.makedirs(path, exist_ok=True)
    flat = utils.flatten_nest_dict(builder.info.features.get_serialized_info())
    writer = ArrayRecordWriter(os.path.join(path, f"{name}-{split}.array_record-00000-of-00001"), "group_size:1")
    total = 0
    for i, img in enumerate(images):
        example = tf_example_pb2.Example()
        for key, info in flat.items():
            feature = example.features.feature[key]
            if key == "image":
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format=image_format)
                feature.bytes_list.value.append(buf.getvalue())
            elif key == "label" and labels is not None:
                feature.int64_list.value.append(int(labels[i]))
            elif np.dtype(info.np_dtype).kind in "SUO":
                feature.bytes_list.value.append(f"{split}_{i}".encode())
            elif np.dtype(info.np_dtype).kind == "f":
                feature.float_list.value.append(0.0)
            else:
                feature.int64_list.value.append(0)
        record = example.SerializeToString()
        total += len(record)
        writer.write(record)
    writer.close()
    builder.info.set_splits(splits_lib.SplitDict([splits_lib.SplitInfo(
        name=split, shard_lengths=[len(images)], num_bytes=total, filename_template=None)]))
    builder.info.write_to_directory(path)
    return path
