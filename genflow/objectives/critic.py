"""The GAN as a diffusion ODE: critic and generator objectives (seed equations, sections 6 and 7).

Time convention. Section 7 runs ReFlow from the generator (its x_0 = g(z)) to the data (its
x_1 ~ p). In genflow's convention data sits at t = 0, so here

    x0 = real data (t = 0),  x1 = generated sample (t = 1),  x_t = (1 - t) x0 + t x1,

which is rectified flow's path with the generator in the role of the noise; section 7's
(x_0, x_1, t) are genflow's (x1, x0, 1 - t). Since t ~ U[0, 1] either way, every expectation
below is the same number in both conventions. The critic phi follows the WGAN sign (high on
data); the genflow-time velocity of the gradient field is v = -grad phi, and sampling (t from 1
to 0) moves a generated point by +eta grad phi, toward the data.

    ReFlow with a gradient field:
        L_RF(phi) = E || grad phi(x_t) - (x0 - x1) ||^2                  (= E||v(x_t) - (x1 - x0)||^2)
                  = E||grad phi(x_t)||^2 - 2 E[(x0 - x1) . grad phi(x_t)] + E||x0 - x1||^2,
    and (x0 - x1) . grad phi(x_t) = -d/dt phi(x_t), whose mean over t ~ U[0, 1] is phi(x0) - phi(x1):
        L_RF(phi) = 2 [ E phi(x1) - E phi(x0) + 1/2 E_t ||grad phi(x_t)||^2 ] + E||x0 - x1||^2.

So the critic objective (``critic_loss`` with penalty 1) is half the ReFlow loss minus a
constant: the WGAN critic with a zero-centred gradient penalty at random interpolates.
Its penalty weight only rescales the critic: L_lambda(phi / lambda) = L_1(phi) / lambda, so the
minimiser at lambda is the unit one divided by lambda, and the generator's step eta grad phi
depends on eta / lambda alone (on neither, for one step of a scale-invariant optimizer like Adam).

A critic ``phi`` is a function x (B, ...) -> (B,) acting on each example separately (no batch
statistics), so grad of sum_b phi(x_b) is the per-example gradient.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import Array

Potential = Callable[[Array], Array]


def _sum_sq(x: Array) -> Array:
    return jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=1)


def potential_grad(phi: Potential, x: Array) -> Array:
    """grad phi at each example of x (B, ...): the gradient of sum_b phi(x_b)."""
    return jax.grad(lambda y: jnp.sum(phi(y)))(x)


def interpolate(x0: Array, x1: Array, t: Array) -> Array:
    """x_t = (1 - t) x0 + t x1, t (B,): rectified flow's path from the data x0 to the generated x1."""
    te = t.reshape(t.shape + (1,) * (x0.ndim - 1))
    return (1.0 - te) * x0 + te * x1


def _times(key: Array, n: int, t: Array | None, dtype) -> Array:
    return jax.random.uniform(key, (n,), dtype) if t is None else t


def critic_loss(phi: Potential, x0: Array, x1: Array, key: Array, *, penalty: float = 1.0,
                t: Array | None = None) -> tuple[Array, dict[str, Array]]:
    """E phi(x1) - E phi(x0) + (penalty / 2) E_t || grad phi(x_t) ||^2  (seed equations, section 7).

    Args: x0 (B, ...) real data; x1 (B, ...) generated samples (held fixed: pass stop_gradient'ed
      values); key draws t ~ U[0, 1] per example unless ``t`` (B,) is given; penalty is lambda.
    With penalty 1 this is (L_RF(phi) - E||x0 - x1||^2) / 2 in expectation over t (module docstring).
    Returns (loss, {"loss", "gap": E phi(x0) - E phi(x1), "grad_sq": E||grad phi(x_t)||^2}).
    """
    t = _times(key, x0.shape[0], t, x0.dtype)
    g = potential_grad(phi, interpolate(x0, x1, t))
    grad_sq = jnp.mean(_sum_sq(g))
    gap = jnp.mean(phi(x0)) - jnp.mean(phi(x1))
    loss = -gap + 0.5 * penalty * grad_sq
    return loss, {"loss": loss, "gap": gap, "grad_sq": grad_sq}


def wgan_gp_critic_loss(phi: Potential, x0: Array, x1: Array, key: Array, *, penalty: float = 10.0,
                        t: Array | None = None) -> tuple[Array, dict[str, Array]]:
    """WGAN-GP: E phi(x1) - E phi(x0) + penalty E_t (|| grad phi(x_t) || - 1)^2 (Gulrajani et al. 2017, Alg. 1).

    Same sign convention and arguments as ``critic_loss`` (x0 real, x1 generated); lambda = 10 is
    the paper's default. Returns (loss, {"loss", "gap", "grad_sq"}).
    """
    t = _times(key, x0.shape[0], t, x0.dtype)
    g = potential_grad(phi, interpolate(x0, x1, t))
    sq = _sum_sq(g)
    # sqrt at 0 has an infinite derivative; the tiny floor keeps the penalty's gradient finite there.
    norm = jnp.sqrt(sq + jnp.finfo(sq.dtype).tiny)
    gap = jnp.mean(phi(x0)) - jnp.mean(phi(x1))
    loss = -gap + penalty * jnp.mean(jnp.square(norm - 1.0))
    return loss, {"loss": loss, "gap": gap, "grad_sq": jnp.mean(sq)}


def reflow_critic_loss(phi: Potential, x0: Array, x1: Array, key: Array, *,
                       t: Array | None = None) -> tuple[Array, dict[str, Array]]:
    """The ReFlow regression with the gradient-field velocity: E || grad phi(x_t) - (x0 - x1) ||^2.

    In genflow's time the velocity is v = -grad phi and the target x1 - x0, the rectified-flow
    flow-matching loss (summed, not averaged, over data dimensions). Equal in expectation to
    2 critic_loss(penalty=1) + E||x0 - x1||^2. Arguments as ``critic_loss``.
    """
    t = _times(key, x0.shape[0], t, x0.dtype)
    g = potential_grad(phi, interpolate(x0, x1, t))
    loss = jnp.mean(_sum_sq(g - (x0 - x1)))
    gap = jnp.mean(phi(x0)) - jnp.mean(phi(x1))
    return loss, {"loss": loss, "gap": gap, "grad_sq": jnp.mean(_sum_sq(g))}


CRITIC_LOSSES = {"derived": critic_loss, "wgan_gp": wgan_gp_critic_loss, "reflow": reflow_critic_loss}


def critic_targets(phi: Potential, x: Array, eta: float) -> Array:
    """x + eta grad phi(x), held fixed: where one step of size eta along the critic's velocity
    moves the generated samples x (seed equations, section 6). Returned under stop_gradient."""
    return jax.lax.stop_gradient(x + eta * potential_grad(phi, x))


def generator_regression_loss(x: Array, target: Array) -> tuple[Array, dict[str, Array]]:
    """E_z || g_theta(z) - stopgrad[target] ||^2 with target = g_{theta_tau}(z) + eta grad phi(g_{theta_tau}(z))
    (seed equations, section 6): the generator follows its moved samples by regression.

    At theta = theta_tau its gradient is 2 eta times that of -E phi(g_theta(z)): the two generator
    forms agree to first order (exactly, for one plain gradient step). x (B, ...) = g_theta(z).
    """
    loss = jnp.mean(_sum_sq(x - jax.lax.stop_gradient(target)))
    return loss, {"loss": loss}


def generator_potential_loss(phi: Potential, x: Array) -> tuple[Array, dict[str, Array]]:
    """-E_z phi(g_theta(z)): the first-order form of the generator update (and the WGAN generator loss)."""
    loss = -jnp.mean(phi(x))
    return loss, {"loss": loss}
