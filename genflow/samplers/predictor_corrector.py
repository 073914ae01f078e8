"""Predictor–corrector sampling of the reverse SDE (Song et al. 2021, score-SDE)."""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from genflow.models.model import Model
from genflow.samplers._common import Stats, finish, need_key, normal_like, sampler
from genflow.samplers.registry import register

PREDICTORS = ("reverse_diffusion", "euler_maruyama")


def _per_example_norm(x: Array) -> Array:
    return jnp.sqrt(jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=1))


def _predict(model: Model, predictor: str, x: Array, t: Array, s: Array, z: Array, cond: Any) -> Array:
    process = model.process
    score = model.score(x, t, cond)
    if predictor == "euler_maruyama":
        # x_s = x_t - (t - s)[f x - g^2 score] + g sqrt(t - s) z
        g2 = process.g2(t)
        return x - (t - s) * (process.f(t) * x - g2 * score) + jnp.sqrt(g2 * (t - s)) * z
    # Reverse diffusion: the forward step s -> t is x_t = r x_s + G z with r = alpha_t / alpha_s,
    # G^2 = sigma_t^2 - r^2 sigma_s^2; reversed as x_s = x_t - (r - 1) x_t + G^2 score + G z.
    r = process.alpha(t) / process.alpha(s)
    big_g2 = jnp.maximum(process.sigma(t) ** 2 - (r * process.sigma(s)) ** 2, 0.0)
    return (2.0 - r) * x + big_g2 * score + jnp.sqrt(big_g2) * z


def _check(model, x1, ts, **kwargs) -> None:
    predictor = kwargs.get("predictor", "reverse_diffusion")
    if predictor not in PREDICTORS:
        raise ValueError(f"unknown predictor {predictor!r}; choose one of {', '.join(PREDICTORS)}.")


@sampler("predictor_corrector", static_argnames=("predictor", "n_corrector", "denoise"), check=_check)
def predictor_corrector(model: Model, x1: Array, ts: Array, *, key: Array | None = None, cond: Any = None,
                        denoise: bool = False, predictor: str = "reverse_diffusion", snr: float = 0.16,
                        n_corrector: int = 1) -> tuple[Array, Stats]:
    """Predictor–corrector sampler: one reverse-SDE predictor step, then Langevin corrector steps.

    Predictor from t to s < t, on the reverse SDE dx = [f x - g^2 score] dt + g dW_bar:
      ``"euler_maruyama"``:    x_s = x_t - (t - s)(f x_t - g^2 score) + g sqrt(t - s) z;
      ``"reverse_diffusion"``: x_s = (2 - r) x_t + G^2 score + G z, with r = alpha_t / alpha_s and
                               G^2 = sigma_t^2 - r^2 sigma_s^2 (the discretised forward step reversed).
    Corrector at s, ``n_corrector`` times: x <- x + e score(x, s) + sqrt(2 e) z with the step
      e = 2 r^2 (snr ||z|| / ||score||)^2 (r^2 = 1 - beta_i in Alg. 5, 1 for alpha = 1 as in Alg. 4),
      ||score|| the batch mean of per-example norms (as score-SDE's code) and ||z|| = sqrt(D), its
      high-dimensional value: a step size that depends on the z it multiplies inflates the noise
      by (D + 2) / D (twice the variance in 2-D).
    The last predictor step adds no noise (as ``euler_maruyama``); the correctors still run at ts[-1].
    NFE: (1 + n_corrector) per step. Noise: step i splits ``fold_in(key, i)``.
    The reverse SDE is singular at t = 1 for rectified flow (f = -1/(1-t)): use another process.

    Args: x1 (B, ...) prior draw; ts (n+1,) decreasing from t_max to t_min; key a PRNG key;
      snr the corrector's signal-to-noise ratio (score-SDE's default config uses 0.16).
    Returns: (x at ts[-1], or E[x0 | x] there with ``denoise=True`` (1 more NFE), stats).
    Reference: Song et al. 2021 (score-SDE), Algorithms 4 (VE) and 5 (VP), App. G.
    """
    need_key("predictor_corrector", key)
    process = model.process
    n = ts.shape[0] - 1
    noise_norm = math.sqrt(math.prod(x1.shape[1:]))                   # E||z||^2 = D

    def step(x, inputs):
        t, s, i = inputs
        keys = jax.random.split(jax.random.fold_in(key, i), n_corrector + 1)
        z = jnp.where(i < n - 1, 1.0, 0.0) * normal_like(keys[0], 0, x)
        x = _predict(model, predictor, x, t, s, z, cond)
        r2 = (process.alpha(t) / process.alpha(s)) ** 2
        for j in range(n_corrector):
            score = model.score(x, s, cond)
            z = normal_like(keys[j + 1], 0, x)
            e = 2.0 * r2 * (snr * noise_norm / jnp.mean(_per_example_norm(score))) ** 2
            x = x + e * score + jnp.sqrt(2.0 * e) * z
        return x.astype(x1.dtype), 1 + n_corrector

    x, nfe = jax.lax.scan(step, x1, (ts[:-1], ts[1:], jnp.arange(n)))
    return finish(model, x, ts[-1], cond, denoise, jnp.sum(nfe))


register("pc", predictor_corrector, summary="predictor–corrector: reverse-diffusion predictor + Langevin corrector",
         nfe_per_step="2", order="1 (weak)", stochastic=True)
