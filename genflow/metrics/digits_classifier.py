"""A small digits classifier trained with genflow, shipped as weights, for the Fréchet digits distance.

FID's Inception weights cannot ship with the package; this network can (about 50k parameters).
Its 128-d penultimate features of 8x8 digits in [-1, 1] define the *Fréchet digits distance*
(FDD): the Fréchet distance between Gaussians fitted to features of generated and of real digits.

Reproduce the shipped weights (a minute on a CPU):

    python -m genflow.metrics.digits_classifier --out genflow/metrics/assets/digits_classifier.npz

Training: scikit-learn's digits, genflow's training split (the held-out 300 are never seen),
Adam through ``genflow.training.make_optimizer``, 3,000 steps of batch 128, cross-entropy, with
light Gaussian pixel noise (std 0.1) as augmentation; seed 0.
"""
from __future__ import annotations

import argparse
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

WEIGHTS = os.path.join(os.path.dirname(__file__), "assets", "digits_classifier.npz")
SIZES = (64, 256, 128, 10)


def init(key: jax.Array) -> dict[str, jax.Array]:
    params = {}
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        key, k = jax.random.split(key)
        params[f"w{i}"] = jax.random.normal(k, (a, b)) * np.sqrt(2.0 / a)
        params[f"b{i}"] = jnp.zeros((b,))
    return params


def features(params: dict, x: jax.Array) -> jax.Array:
    """Penultimate (128-d) features of digits x (N, 8, 8, 1) or (N, 64) in [-1, 1]."""
    h = x.reshape(x.shape[0], -1)
    for i in range(len(SIZES) - 2):
        h = jax.nn.gelu(h @ params[f"w{i}"] + params[f"b{i}"])
    return h


def logits(params: dict, x: jax.Array) -> jax.Array:
    last = len(SIZES) - 2
    return features(params, x) @ params[f"w{last}"] + params[f"b{last}"]


@functools.lru_cache(maxsize=1)
def load(path: str = WEIGHTS) -> dict[str, jax.Array]:
    """The shipped weights (or those at ``path``)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"digits classifier weights not found at {path}; reproduce them with "
                                "`python -m genflow.metrics.digits_classifier --out <path>`.")
    with np.load(path) as f:
        return {k: jnp.asarray(f[k]) for k in f.files}


_features = jax.jit(features)


def digit_features(x: np.ndarray, params: dict | None = None) -> np.ndarray:
    """Features (N, 128) as float64 numpy, in batches of 1,000."""
    params = load() if params is None else params
    x = np.asarray(x, np.float32)
    return np.concatenate([np.asarray(_features(params, x[i:i + 1000]), np.float64)
                           for i in range(0, len(x), 1000)])


def train(steps: int = 3000, batch_size: int = 128, seed: int = 0) -> tuple[dict, float]:
    """Train the classifier; returns (params, held-out accuracy)."""
    import optax

    from genflow.data import load_digits
    from genflow.training import make_optimizer

    x, y, hx, hy = load_digits()
    params = init(jax.random.PRNGKey(seed))
    tx = make_optimizer("adam", 2e-3, warmup_steps=100)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb, key):
        def loss_fn(p):
            noisy = xb + 0.1 * jax.random.normal(key, xb.shape)
            return optax.softmax_cross_entropy_with_integer_labels(logits(p, noisy), yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    for i in range(steps):
        idx = rng.integers(0, len(x), batch_size)
        params, opt_state, _ = step(params, opt_state, x[idx], y[idx], jax.random.PRNGKey(i))
    acc = float(np.mean(np.argmax(np.asarray(logits(params, hx)), 1) == hy))
    return params, acc


def classify(x: np.ndarray, params: dict | None = None) -> np.ndarray:
    """The shipped classifier's predicted digit (N,) for images x (N, 8, 8, 1) in [-1, 1]."""
    params = load() if params is None else params
    return np.argmax(np.asarray(logits(params, jnp.asarray(x, jnp.float32))), axis=1).astype(np.int32)


def frechet_digits_distance(x: np.ndarray, reference: np.ndarray) -> float:
    """FDD between digits x (N, 8, 8, 1) and reference digits, both in [-1, 1].

    Like FID it is biased upwards at small N: compare numbers computed with equal N."""
    from genflow.metrics.frechet import feature_stats, frechet_distance

    return frechet_distance(*feature_stats(digit_features(x)), *feature_stats(digit_features(reference)))


def main():
    ap = argparse.ArgumentParser(description="Train the digits classifier behind the Fréchet digits distance.")
    ap.add_argument("--out", default=WEIGHTS)
    ap.add_argument("--steps", type=int, default=3000)
    args = ap.parse_args()
    params, acc = train(args.steps)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez(args.out, **{k: np.asarray(v, np.float32) for k, v in params.items()})
    print(f"held-out accuracy {acc:.4f}; wrote {args.out}")


if __name__ == "__main__":
    main()

