"""The GAN's critic network phi: x -> R (seed equations, sections 6-7; ``genflow.gan``)."""
from __future__ import annotations

import math

import jax
from flax import nnx
from jax import Array


class Critic(nnx.Module):
    """phi: x (B, ...) -> (B,), an MLP with smooth (SiLU) activations so grad phi is smooth too
    (the gradient penalty differentiates through grad phi). No normalisation over the batch."""

    def __init__(self, data_shape: tuple[int, ...], *, width: int = 128, depth: int = 3, rngs: nnx.Rngs):
        d = math.prod(data_shape)
        self.layers = nnx.List([nnx.Linear(d if i == 0 else width, width, rngs=rngs) for i in range(depth)])
        self.out = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        h = x.reshape(x.shape[0], -1)
        for layer in self.layers:
            h = jax.nn.silu(layer(h))
        return self.out(h)[:, 0]
