"""What a network's input and output mean: one object, with an input map and an output map.

Every quantity a loss or sampler needs is linear in (x0, eps) given x_t = alpha x0 + sigma eps:

    quantity    as p x0 + q eps            note
    eps         (0, 1)
    x0          (1, 0)
    score       (0, -1/sigma)               grad log p(x_t | x0) = -eps / sigma
    v           (-sigma, alpha)             Salimans & Ho (2022) v-prediction
    velocity    (alpha_dot, sigma_dot)      PF-ODE velocity f x - g^2 score / 2
    edm         (sigma / (s_d R), -alpha s_d / R),  R = sqrt(sigma^2 + alpha^2 s_d^2)

A ``Parameterization`` says three things about a network ``F``:

* **output map** ``(p, q)``: F is trained to output p x0 + q eps (the targets above);
* **input map** ``c_in``: F sees ``c_in(t) x_t`` instead of x_t (1 for all but ``edm``);
* **noise label** ``c_noise``: F sees ``c_noise(t)`` as its time input (t itself by default).

EDM's preconditioned denoiser (Karras et al. 2022, Table 1) for any process, through the
noise level s = sigma / alpha and the scaled variable y = x_t / alpha (where y = x0 + s eps):

    D(y; s) = c_skip y + c_out F(c_in y; c_noise),
    c_skip = s_d^2 / (s^2 + s_d^2),  c_out = s s_d / sqrt(s^2 + s_d^2),  c_in = 1 / sqrt(s^2 + s_d^2),
    c_noise = ln(s) / 4.

F's regression target (x0 - c_skip y) / c_out is p x0 + q eps with the ``edm`` row above, each
coefficient multiplied through by alpha so that it stays finite where alpha = 0 (rectified flow
at t = 1): c_in y = x_t / R, and F has unit variance for data of std s_d at every noise level.
The 2x2 conversion of ``Model`` has determinant alpha q - sigma p = -R / s_d, never 0: EDM's
parameterization is regular on the whole of [0, 1] for every process. EDM's loss weighting
lambda(s) = (s^2 + s_d^2) / (s s_d)^2 on the x0 error is exactly weight 1 on F's error.
``sigma_data`` belongs here, not to a process: the EDM recipe (this parameterization, the
``edm`` weighting and log-normal noise levels) applies to any Gaussian path.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import Array

from genflow._pytree import pytree_dataclass, static_field
from genflow.processes.base import AbstractProcess, float_dtype

PREDICTIONS = ("eps", "x0", "score", "v", "velocity", "edm")
QUANTITIES = ("eps", "x0", "score", "v", "velocity")   # what a Model can be asked for
NOISE_LABELS = ("t", "log_sigma")
# ln(s) is infinite where alpha = 0 or sigma = 0; EDM's own noise range is [0.002, 80], so
# labels are clipped far outside it (|ln s| <= 20, s in [2e-9, 5e8]).
_LOG_S_CLIP = 20.0


def coefficients(process: AbstractProcess, name: str, t: Array, sigma_data: float = 0.5) -> tuple[Array, Array]:
    """(p, q) with quantity ``name`` = p x0 + q eps at time t (shape of t)."""
    t = jnp.asarray(t)
    one = jnp.ones_like(t, dtype=float_dtype(t))
    zero = jnp.zeros_like(one)
    if name == "eps":
        return zero, one
    if name == "x0":
        return one, zero
    if name == "score":
        return zero, -1.0 / process.sigma(t)
    if name == "v":
        return -process.sigma(t), process.alpha(t)
    if name == "velocity":
        return process.alpha_dot(t), process.sigma_dot(t)
    if name == "edm":
        a, s = process.alpha(t), process.sigma(t)
        r = jnp.sqrt(s**2 + (a * sigma_data) ** 2)
        return s / (sigma_data * r), -a * sigma_data / r
    raise ValueError(f"unknown prediction {name!r}; choose one of {', '.join(PREDICTIONS)}.")


@pytree_dataclass
class Parameterization:
    """What a network predicts (``predicts``), how its input is scaled and what time label it sees.

    ``Parameterization("eps")`` is a plain eps-network (c_in = 1, label t); ``edm(sigma_data)`` is
    EDM's preconditioning. ``sigma_data`` is a leaf (a new value does not recompile); ``predicts``
    and ``noise_label`` are static. See the module docstring for the maps.
    """

    predicts: str = static_field(default="eps")
    sigma_data: float = 0.5
    noise_label: str = static_field(default="t")

    def __post_init__(self):
        if self.predicts not in PREDICTIONS:
            raise ValueError(f"unknown prediction {self.predicts!r}; choose one of {', '.join(PREDICTIONS)}.")
        if self.noise_label not in NOISE_LABELS:
            raise ValueError(f"unknown noise label {self.noise_label!r}; choose one of {', '.join(NOISE_LABELS)}.")

    def output(self, process: AbstractProcess, t: Array) -> tuple[Array, Array]:
        """(p, q): the network is trained to output p x0 + q eps at time t."""
        return coefficients(process, self.predicts, t, self.sigma_data)

    def c_in(self, process: AbstractProcess, t: Array) -> Array:
        """Scale of the network's input: it sees c_in(t) x_t (shape of t)."""
        if self.predicts != "edm":
            return jnp.ones_like(jnp.asarray(t, dtype=float_dtype(t)))
        a, s = process.alpha(t), process.sigma(t)
        return 1.0 / jnp.sqrt(s**2 + (a * self.sigma_data) ** 2)

    def c_noise(self, process: AbstractProcess, t: Array) -> Array:
        """The time label the network sees: t, or EDM's ln(s) / 4 with s = sigma / alpha."""
        if self.noise_label == "t":
            return t
        log_s = -0.5 * process.log_snr(t)
        return jnp.clip(log_s, -_LOG_S_CLIP, _LOG_S_CLIP) / 4.0


def edm(sigma_data: float = 0.5, noise_label: str = "log_sigma") -> Parameterization:
    """EDM's preconditioned denoiser (Karras et al. 2022, Table 1) for any process."""
    return Parameterization("edm", sigma_data, noise_label)


def as_parameterization(p: "str | Parameterization") -> Parameterization:
    """A ``Parameterization`` from itself or from a prediction name (``"edm"`` with s_d = 0.5)."""
    if isinstance(p, Parameterization):
        return p
    if p == "edm":
        return edm()
    return Parameterization(p)
