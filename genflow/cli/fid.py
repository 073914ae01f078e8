"""``genflow fid`` and ``genflow fid-stats``: FID of a run's samples, and reference statistics of a
TFDS data set, through pytorch-fid's Inception (``genflow.metrics.inception``)."""
from __future__ import annotations

import sys

import numpy as np

from genflow.config import ConfigError
from genflow.metrics.fid import load_stats, save_stats
from genflow.metrics.frechet import feature_stats, frechet_distance


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Samples in [-1, 1] -> uint8 [0, 255], rounded as when they are saved to PNG and read back."""
    return np.clip(np.rint((np.asarray(x, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _as_rgb(x: np.ndarray) -> np.ndarray:
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def fid_stats_command(dataset: str, out: str, num: int | None = None, data_dir: str | None = None,
                      weights: str | None = None, *, split: str = "train", batch_size: int = 200,
                      progress: bool = True) -> str:
    """Reference statistics of a TFDS data set: its images as genflow trains on them (the same
    center crop and resize, uint8), through Inception, into a pytorch-fid ``.npz`` at ``out``.

    Args: dataset: a name in ``genflow.data.tfds_source.SPECS``; num: the first ``num`` examples
    of ``split`` (default all); data_dir: TFDS data_dir; weights: the Inception ``.pth`` (default:
    the cache, see ``genflow.metrics.inception.find_fid_weights``)."""
    from genflow.progress import progress_bar

    from genflow.data.images import center_crop_resize
    from genflow.data.tfds_source import SPECS, DatasetNotPrepared, open_source
    from genflow.metrics.inception import InceptionFeatures, load_fid_inception

    if dataset not in SPECS:
        raise ConfigError(f"dataset {dataset!r} has no FID recipe; choose one of {', '.join(SPECS)}.")
    if not str(out).endswith(".npz"):
        raise ConfigError(f"--out {out!r} must end in .npz (pytorch-fid's statistics format).")
    if num is not None and num < 2:
        raise ConfigError(f"--num must be at least 2 to estimate a covariance, got {num}.")
    spec = SPECS[dataset]
    try:
        source = open_source(dataset, split, data_dir)
    except DatasetNotPrepared as e:
        raise ConfigError(str(e)) from None
    total = len(source) if num is None else min(num, len(source))
    extractor = InceptionFeatures(load_fid_inception(weights))
    feats = np.empty((total, 2048), np.float64)
    with progress_bar(total, desc=f"{dataset} features", unit="img", disable=not progress,
                      every=max(batch_size, total // 20)) as bar:
        for start in range(0, total, batch_size):
            idx = range(start, min(start + batch_size, total))
            imgs = np.stack([center_crop_resize(np.asarray(source[i]["image"]), spec.shape[0], spec.crop) for i in idx])
            feats[start:start + len(imgs)] = _features_padded(extractor, _as_rgb(imgs), batch_size)
            bar.update(len(imgs))
    mu, sigma = feature_stats(feats)
    save_stats(out, mu, sigma)
    print(f"wrote FID statistics of {total:,} {dataset} {split} images to {out}", file=sys.stderr)
    return out


def _features_padded(extractor, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Features of at most ``batch_size`` images, padding to ``batch_size`` so one program serves all."""
    m = len(images)
    if m < batch_size:
        images = np.concatenate([images, np.repeat(images[-1:], batch_size - m, 0)])
    return extractor.batch(images)[:m]


def fid_command(run_dir: str, ref_stats: str, num: int = 50_000, batch_size: int = 250, seed: int = 0,
                weights: str | None = None, *, overrides: list[str] = (), progress: bool = True,
                ema: str | None = None) -> float:
    """FID of ``num`` samples from a run's EMA weights (its configured sampler) against reference
    statistics. Samples in [-1, 1] are rounded to uint8 as a PNG would store them, grey is
    repeated to RGB, then they go through pytorch-fid's preprocessing and network.

    Args: run_dir: a ``genflow train`` run; ref_stats: a pytorch-fid ``.npz``; batch_size: samples
    per sampler call and per Inception pass; seed: sampler noise (chunk i uses fold_in(seed, i));
    overrides: ``sample.*`` settings over the run's own (``guidance=1.5``, ``steps=35``, ...); ema:
    ``"sigma_rel=S"`` for the run's post-hoc EMA of that length (``genflow ema``). A
    class-conditional run is sampled with every class in turn (a uniform class mix).
    Returns: the FID (also printed)."""
    import jax
    from genflow.progress import progress_bar

    from genflow.cli.run import load_run, make_generator
    from genflow.metrics.inception import InceptionFeatures, load_fid_inception

    if num < 2:
        raise ConfigError(f"--num must be at least 2 to estimate a covariance, got {num}.")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {batch_size}.")
    mu_ref, sigma_ref = load_stats(ref_stats)       # fail before anything is built or compiled
    extractor = InceptionFeatures(load_fid_inception(weights))
    run = load_run(run_dir, ema)
    from genflow import config as C
    from genflow.cli import build

    exp = C.with_overrides(run.exp, [f"sample.{o}" for o in overrides])
    build.validate(exp)
    shape = run.shape
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise ConfigError(f"{run_dir} generates data of shape {shape}, not images (H, W, 1 or 3); FID needs images.")
    if mu_ref.shape != (2048,):
        raise ConfigError(f"{ref_stats} holds statistics of {mu_ref.shape[0]}-d features, not Inception pool3's 2048; "
                          "write it with `genflow fid-stats`.")
    chunk = min(batch_size, num)
    generate = make_generator(run.eval_spec, shape, exp.sample, chunk, run.mesh)
    num_classes = run.exp.net.num_classes   # a conditional run: every class in turn, so the mix is uniform
    key = jax.random.PRNGKey(seed)
    feats = np.empty((num, 2048), np.float64)
    with progress_bar(num, desc="FID: sampling + features", unit="img", disable=not progress,
                      every=max(chunk, num // 20)) as bar:
        for i, start in enumerate(range(0, num, chunk)):
            labels = None if num_classes is None else (np.arange(start, start + chunk) % num_classes).astype(np.int32)
            x = np.asarray(generate(run.params, jax.random.fold_in(key, i), labels))
            if not np.all(np.isfinite(x)):
                raise ConfigError(f"the sampler returned non-finite values for {run_dir} (chunk {i}); check the run "
                                  "with `genflow sample` or try more sampler steps.")
            m = min(chunk, num - start)
            feats[start:start + m] = _features_padded(extractor, _as_rgb(_to_uint8(x)), chunk)[:m]
            bar.update(m)
    value = frechet_distance(*feature_stats(feats), mu_ref, sigma_ref)
    print(f"FID {value:.3f} ({num:,} samples of {run_dir} vs {ref_stats})")
    return value
