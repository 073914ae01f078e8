"""Figures people would rather look at than read: sample grids and loss curves (PNG)."""
from __future__ import annotations

import math

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grid_array(images: np.ndarray, ncols: int | None = None) -> np.ndarray:
    """Images (N, H, W, C) in [-1, 1] tiled into one uint8 canvas (rows, cols, C), 1-pixel white gaps."""
    x = np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    n, h, w, c = x.shape
    ncols = ncols or int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    pad = 1
    canvas = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncols)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = x[i]
    return canvas


def image_grid(images: np.ndarray, path: str, ncols: int | None = None, scale: int = 4) -> None:
    """Save images (N, H, W, C) in [-1, 1] as one PNG grid, each pixel ``scale`` x ``scale``."""
    from PIL import Image

    canvas = grid_array(images, ncols)
    img = Image.fromarray(canvas[..., 0] if canvas.shape[-1] == 1 else canvas)
    img = img.resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    img.save(path)


def scatter_2d(points: np.ndarray, path: str, reference: np.ndarray | None = None, title: str = "") -> None:
    """Scatter plot of 2-D samples (N, 2), with reference data in grey behind them."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 4))
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=2, c="0.75", label="data")
    ax.scatter(points[:, 0], points[:, 1], s=2, c="C0", label="samples")
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="upper right", markerscale=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_samples(x: np.ndarray, path: str, reference: np.ndarray | None = None) -> None:
    """Images (N, H, W, C) as a grid; flat 2-D data (N, 2) as a scatter plot."""
    if x.ndim == 4:
        image_grid(x, path)
    else:
        scatter_2d(x, path, reference)


def loss_curve(metrics_path: str, path: str) -> None:
    """Plot the ``loss`` column of a metrics.jsonl against ``step`` (log scale where positive)."""
    from genflow.training.metrics_file import read_rows

    rows = [r for r in read_rows(metrics_path, warn=False) if r.get("loss") is not None]
    if not rows:
        return
    plt = _plt()
    steps, loss = [r["step"] for r in rows], [r["loss"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, loss, lw=1)
    if min(loss) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
