"""Toy 2-D data sets, and a Gaussian mixture with exact quantities at every t.

For mixture data p_0 = sum_k w_k N(mu_k, diag(s_k^2)) and any Gaussian path,
p_t = sum_k w_k N(alpha mu_k, diag(alpha^2 s_k^2 + sigma^2)) in closed form, and so are its
score, its log-density, and the posterior means E[x0 | x_t], E[eps | x_t].
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from genflow._pytree import pytree_dataclass, static_field
from genflow.models.model import Model
from genflow.models.parameterization import Parameterization, as_parameterization
from genflow.processes.base import AbstractProcess, expand_like


def checkerboard(key: Array, n: int) -> Array:
    """4x4 checkerboard on [-2, 2]^2 (8 filled squares), shape (n, 2)."""
    k1, k2, k3 = jax.random.split(key, 3)
    x1 = jax.random.uniform(k1, (n,)) * 4 - 2
    x2 = jax.random.uniform(k2, (n,)) - jax.random.randint(k3, (n,), 0, 2) * 2.0
    x2 = x2 + (jnp.floor(x1) % 2)
    return jnp.stack([x1, x2], axis=1)


def moons(key: Array, n: int, noise: float = 0.05) -> Array:
    """Two interleaving half circles, scaled to about [-2, 2]^2, shape (n, 2)."""
    k1, k2, k3 = jax.random.split(key, 3)
    angle = jax.random.uniform(k1, (n,)) * math.pi
    upper = jax.random.bernoulli(k2, 0.5, (n,))
    x = jnp.where(upper, jnp.cos(angle), 1 - jnp.cos(angle))
    y = jnp.where(upper, jnp.sin(angle), 0.5 - jnp.sin(angle))
    pts = jnp.stack([x - 0.5, y - 0.25], axis=1) * 1.6
    return pts + noise * jax.random.normal(k3, (n, 2))


def swissroll(key: Array, n: int, noise: float = 0.25) -> Array:
    """sklearn-style swiss roll in 2-D, scaled by 1/5 to about [-2.5, 2.5]^2, shape (n, 2)."""
    k1, k2 = jax.random.split(key)
    r = 1.5 * math.pi * (1 + 2 * jax.random.uniform(k1, (n,)))
    pts = jnp.stack([r * jnp.cos(r), r * jnp.sin(r)], axis=1)
    return (pts + noise * jax.random.normal(k2, (n, 2))) / 5.0


@pytree_dataclass
class GaussianMixture:
    """p_0 = sum_k weights_k N(means_k, diag(stds_k^2)); means, stds (K, D), weights (K,)."""

    means: Array
    stds: Array
    weights: Array

    @classmethod
    def eight_gaussians(cls, radius: float = 2.0, std: float = 0.15) -> "GaussianMixture":
        """Eight equal components on a circle (the classic 8-Gaussians toy set)."""
        ang = np.arange(8) * 2 * np.pi / 8
        means = radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)
        return cls(jnp.asarray(means, jnp.float32), jnp.full((8, 2), std, jnp.float32),
                   jnp.full((8,), 1 / 8, jnp.float32))

    @classmethod
    def gaussian(cls, mean, std) -> "GaussianMixture":
        """A single diagonal Gaussian N(mean, diag(std^2)); mean, std of shape (D,)."""
        mean, std = jnp.atleast_1d(jnp.asarray(mean)), jnp.atleast_1d(jnp.asarray(std))
        std = jnp.broadcast_to(std, mean.shape)
        return cls(mean[None], std[None], jnp.ones((1,), mean.dtype))

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, key: Array, n: int) -> Array:
        """n draws from p_0, shape (n, D)."""
        kc, kn = jax.random.split(key)
        comp = jax.random.choice(kc, self.weights.shape[0], (n,), p=self.weights)
        eps = jax.random.normal(kn, (n, self.dim), self.means.dtype)
        return self.means[comp] + self.stds[comp] * eps

    # -- exact quantities of p_t -----------------------------------------------------------------
    @property
    def num_components(self) -> int:
        return self.weights.shape[0]

    def _moments(self, process: AbstractProcess, t: Array, x: Array, cond: Array | None = None):
        te = expand_like(jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1]), x)[:, None]  # (B,1,1)
        a, s = process.alpha(te), process.sigma(te)
        var = a**2 * self.stds[None] ** 2 + s**2                                       # (B,K,D)
        diff = x[:, None, :] - a * self.means[None]                                     # (B,K,D)
        logn = -0.5 * jnp.sum(diff**2 / var + jnp.log(2 * math.pi * var), axis=-1)      # (B,K)
        logits = jnp.log(self.weights)[None] + logn
        if cond is not None:  # label c: component c only; label K (the null label): the whole mixture
            k = self.num_components
            c = jnp.broadcast_to(jnp.asarray(cond, jnp.int32), x.shape[:1])[:, None]
            keep = (jnp.arange(k)[None] == c) | (c == k)
            logits = jnp.where(keep, logits, -jnp.inf)
        return a, s, var, diff, logits

    def log_prob(self, x: Array, process: AbstractProcess, t: Array, cond: Array | None = None) -> Array:
        """log p_t(x) (or log p_t(x | c) for labels ``cond`` (B,), c = component), shape (B,)."""
        a, s, var, diff, logits = self._moments(process, t, x, cond)
        if cond is None:
            return jax.nn.logsumexp(logits, axis=1)
        # p(x | c) = N_c(x): renormalise the kept weights (all of them for the null label)
        kept = jnp.where(jnp.isfinite(logits), jnp.log(self.weights)[None], -jnp.inf)
        return jax.nn.logsumexp(logits, axis=1) - jax.nn.logsumexp(kept, axis=1)

    def sample_component(self, key: Array, n: int, c: int) -> Array:
        """n draws from component c alone, shape (n, D): p_0(x | c) of the conditional mixture."""
        eps = jax.random.normal(key, (n, self.dim), self.means.dtype)
        return self.means[c] + self.stds[c] * eps

    def posterior_means(self, x: Array, process: AbstractProcess, t: Array,
                        cond: Array | None = None) -> tuple[Array, Array]:
        """(E[x0 | x_t = x], E[eps | x_t = x]), each (B, D); regular for every t with sigma > 0 or alpha > 0.
        With labels ``cond`` (B,): the posterior means of p(x0 | c), c a component (K: all of them)."""
        a, s, var, diff, logits = self._moments(process, t, x, cond)
        r = jax.nn.softmax(logits, axis=1)[..., None]                                   # (B,K,1)
        e_x0 = jnp.sum(r * (self.means[None] + a * self.stds[None] ** 2 * diff / var), axis=1)
        e_eps = jnp.sum(r * (s * diff / var), axis=1)
        return e_x0, e_eps

    def score(self, x: Array, process: AbstractProcess, t: Array, cond: Array | None = None) -> Array:
        """grad_x log p_t(x) = -sum_k r_k (x - alpha mu_k) / var_k, shape (B, D) (of p_t(x | c) with ``cond``)."""
        _, _, var, diff, logits = self._moments(process, t, x, cond)
        r = jax.nn.softmax(logits, axis=1)[..., None]
        return -jnp.sum(r * diff / var, axis=1)

    def exact_model(self, process: AbstractProcess, predicts: "str | Parameterization" = "eps", *,
                    conditional: bool = False) -> Model:
        """A ``Model`` whose "network" is this mixture's exact posterior mean in ``predicts`` space.

        ``conditional=True``: a class-conditional model whose label c is component c and whose null
        label K is the whole mixture, exactly what label dropout trains a network towards."""
        param = as_parameterization(predicts)
        return Model(ExactNet(self, process, param, self.num_components if conditional else None), process, param)


@pytree_dataclass
class ExactNet:
    """net(x, t, cond) = exact p E[x0|x] + q E[eps|x] for the output map of ``parameterization``.

    It takes x_t and t themselves (``raw_inputs``), not a parameterization's scaled input."""

    mixture: GaussianMixture
    process: AbstractProcess
    parameterization: Parameterization = Parameterization("eps")
    num_classes: int | None = static_field(default=None)
    raw_inputs = True

    @property
    def null_label(self) -> int | None:
        return self.num_classes

    def __call__(self, x: Array, t: Array, cond=None) -> Array:
        e_x0, e_eps = self.mixture.posterior_means(x, self.process, t, cond if self.num_classes else None)
        p, q = self.parameterization.output(self.process, expand_like(t, x))
        return p * e_x0 + q * e_eps


TOY_SETS = {"checkerboard": checkerboard, "moons": moons, "swissroll": swissroll,
            "8gaussians": lambda key, n: GaussianMixture.eight_gaussians().sample(key, n)}
