"""Image preprocessing shared by the TFDS and image-folder sources."""
from __future__ import annotations

import numpy as np


def center_crop_resize(img: np.ndarray, size: int, crop: int | None = None) -> np.ndarray:
    """Center-crop an (H, W, C) uint8 image to a square (``crop`` pixels, default its shorter
    side), then resize to ``size`` x ``size`` with PIL's antialiased bicubic filter."""
    from PIL import Image

    h, w = img.shape[:2]
    c = min(h, w) if crop is None else min(crop, h, w)
    top, left = (h - c) // 2, (w - c) // 2
    img = img[top:top + c, left:left + c]
    if c != size:
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        img = np.asarray(pil.resize((size, size), Image.BICUBIC))
        img = img[..., None] if img.ndim == 2 else img
    return img


def to_unit_range(images: np.ndarray) -> np.ndarray:
    """uint8 images in [0, 255] -> float32 in [-1, 1] (x / 127.5 - 1)."""
    out = images.astype(np.float32)
    np.divide(out, 127.5, out=out)  # in place: the same two roundings as x / 127.5 - 1, no temporaries
    np.subtract(out, 1.0, out=out)
    return out
