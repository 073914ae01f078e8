"""A folder of PNG/JPEG images (a user's own data), with optional class labels from subfolders."""
from __future__ import annotations

import os
import warnings

import numpy as np

from genflow.data.images import center_crop_resize, to_unit_range

EXTENSIONS = (".png", ".jpg", ".jpeg")


def scan_folder(root: str, labels_from_subfolders: bool = False) -> tuple[list[str], np.ndarray | None, list[str]]:
    """(paths, labels or None, class names) of the readable images under ``root``.

    Files that fail to open are skipped with one warning naming them; an empty folder is an error.
    """
    from PIL import Image

    if not os.path.isdir(root):
        raise ValueError(f"image folder {root} does not exist; pass a directory of .png/.jpg files.")
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files
                   if f.lower().endswith(EXTENSIONS))
    good, bad = [], []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.verify()
            good.append(p)
        except Exception:
            bad.append(os.path.relpath(p, root))
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s) in {root}: {', '.join(bad[:10])}"
                      + (" ..." if len(bad) > 10 else ""), stacklevel=2)
    if not good:
        raise ValueError(f"image folder {root} holds no readable .png/.jpg images; point data.path at one that does.")
    if not labels_from_subfolders:
        return good, None, []
    classes = sorted({os.path.relpath(p, root).split(os.sep)[0] for p in good if os.sep in os.path.relpath(p, root)})
    if not classes:
        raise ValueError(f"labels from subfolders were asked for, but {root} has no subfolders; "
                         "put each class in its own subfolder or turn labels off.")
    index = {c: i for i, c in enumerate(classes)}
    kept = [p for p in good if os.sep in os.path.relpath(p, root)]
    return kept, np.asarray([index[os.path.relpath(p, root).split(os.sep)[0]] for p in kept], np.int32), classes


def make_fetch(paths: list[str], labels: np.ndarray | None, size: int, channels: int = 3):
    """fetch(indices) -> (images float32 (B, size, size, channels) in [-1, 1], labels or None)."""
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"

    def fetch(idx: np.ndarray):
        imgs = []
        for i in idx:
            with Image.open(paths[int(i)]) as im:
                arr = np.asarray(im.convert(mode))
            imgs.append(center_crop_resize(arr[..., None] if arr.ndim == 2 else arr, size))
        return to_unit_range(np.stack(imgs)), (None if labels is None else labels[idx])

    return fetch
