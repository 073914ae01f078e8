"""The GAN as a diffusion ODE: training a generator with a critic, one jitted sharded step.

The generator is a one-step flow: a velocity network v and g(z) = z - v(z, 1) (one Euler step
of the PF-ODE from t = 1 to 0, ``genflow.reflow.one_step_sample``), z ~ N(0, I). It is exactly
the parameterisation of a one-step distilled rectified flow, so the GAN and ReFlow + distillation
compare like for like. The critic phi: x -> R (``Critic``) estimates the velocity that moves the
generated samples toward the data (seed equations, sections 6-7; ``genflow.objectives.critic``).

One train step (``make_gan_step``) = ``n_critic`` critic updates, each on a fresh generated batch
and its own slice of the real batch, then one generator update in one of two forms:

    "regression": targets y = g(z) + eta grad phi(g(z)) held fixed, then ``inner_steps``
                  optimizer steps on E || g_theta(z) - y ||^2 (section 6);
    "potential":  one optimizer step on -E phi(g_theta(z)) (its first-order form; WGAN's).

With ``inner_steps = 1`` and a scale-invariant optimizer (Adam) the two forms take the same step
up to Adam's epsilon, since their gradients differ by the factor 2 eta; they differ when the
regression takes several steps toward its fixed targets or with plain SGD.
The critic objective is "derived" (zero-centred penalty, lambda/2 E||grad phi||^2), "wgan_gp"
((||grad phi|| - 1)^2, lambda = 10) or "reflow" (the regression E||grad phi(x_t) - (x0 - x1)||^2).

State, step and loop are the training stack's (``genflow.training.stack``): ``GANState`` holds two
``TrainState``s (generator with EMA; critic) and the step counter the loop reads (generator
updates; ``critic.step`` counts critic updates, ``n_critic`` per step). Each player's update goes
through the shared ``apply_gradients`` + ``advance`` (its own non-finite guard), the step through
``make_step`` (shardings from a ``genflow.placement.Placement``: data parallel or FSDP), and the
run through ``genflow.training.train_loop`` (checkpoints, resume, signals, metrics rows), which logs
the critic loss as ``loss`` and the generator's gradient norm as ``grad_norm``. The critic network
is ``genflow.models.Critic``.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import Array
from jax.sharding import Mesh

from genflow._pytree import pytree_dataclass
from genflow.data.pipeline import ArrayBatches, SampledBatches
from genflow.models.critic import Critic  # noqa: F401  (its old import path, genflow.gan.Critic)
from genflow.models.parameterization import Parameterization
from genflow.models.spec import ModelSpec
from genflow.objectives.critic import (CRITIC_LOSSES, critic_targets, generator_potential_loss,
                                       generator_regression_loss)
from genflow.placement import Placement, as_placement
from genflow.processes import RectifiedFlow
from genflow.training import Checkpointer, init_state, train_loop
from genflow.training.stack import Update, advance, apply_gradients, make_step
from genflow.training.state import TrainState

GENERATOR_FORMS = ("regression", "potential")


@pytree_dataclass
class GANState:
    """step (); gen: the generator's TrainState (params, optimizer, EMA, key); critic: the critic's
    (its ``ema`` is unused, kept so both are plain TrainStates)."""

    step: Array
    gen: TrainState
    critic: TrainState


def init_gan_state(gen_params, critic_params, gen_tx, critic_tx, seed: int) -> GANState:
    """A fresh state on copies of the given parameters (the step donates its state)."""
    gen = init_state(jax.tree.map(jnp.copy, gen_params), gen_tx, seed)
    critic = init_state(jax.tree.map(jnp.copy, critic_params), critic_tx, seed + 1)
    return GANState(step=jnp.zeros((), jnp.int32), gen=gen, critic=critic)


def generator(gen_graphdef: nnx.GraphDef, gen_rest: nnx.State) -> Callable[[nnx.State, Array], Array]:
    """``g(params, z) = z - v(z, 1)``: the one-step flow of the velocity network ``gen_graphdef``,
    the same map as ``genflow.reflow.one_step_sample`` (written out: a 1-step scan inside the
    step's gradients doubles its compile time)."""
    process = RectifiedFlow()
    spec = ModelSpec(gen_graphdef, gen_rest, process, Parameterization("velocity"))

    def g(params, z):
        model = spec.model(params)
        t1 = jnp.full(z.shape[:1], process.t_max, z.dtype)
        return z - (process.t_max - process.t_min) * model.velocity(z, t1)

    return g


def _scan(f, carry, xs, length: int):
    """``lax.scan(f, carry, xs, length)``, called directly when length is 1 (a smaller program)."""
    if length > 1:
        return jax.lax.scan(f, carry, xs, length=length)
    carry, y = f(carry, jax.tree.map(lambda a: a[0], xs))
    return carry, jax.tree.map(lambda a: a[None], y)


def make_gan_step(gen_graphdef: nnx.GraphDef, gen_rest: nnx.State, critic_graphdef: nnx.GraphDef,
                  critic_rest: nnx.State, gen_tx: optax.GradientTransformation,
                  critic_tx: optax.GradientTransformation, data_shape: tuple[int, ...], *,
                  critic_objective: str = "derived", generator_form: str = "regression", penalty: float = 1.0,
                  eta: float = 0.1, inner_steps: int = 1, n_critic: int = 1, ema_decay: float = 0.999,
                  mesh: "Mesh | Placement | None" = None):
    """``step(state, {"x0": x_real}) -> (state, metrics)``, jitted with the state donated.

    Built on the training stack (``genflow.training.stack``), like ``make_train_step``: each
    critic update is ``apply_gradients`` + ``advance`` on the critic's ``TrainState`` (guarded on
    its own: a non-finite critic update keeps the old critic, and the generator then trains
    against that one), the generator update is one guarded ``advance`` of the generator's state
    (the regression form's ``inner_steps`` optimizer steps count as one update, kept or dropped
    whole) with its EMA. ``metrics['skipped']`` is 1 when any of the step's updates was dropped;
    ``critic_skipped`` counts the critic's, ``gen_skipped`` is the generator's.

    x_real (n_critic * B, ...) holds one real batch of B per critic update. ``mesh`` (a
    ``Placement``, or a plain mesh: data parallel) places both players' states by the placement's
    rule (replicated, or FSDP-sharded) and splits the real batch over every device; the generated
    batches are drawn inside the step and split the same way.
    """
    if critic_objective not in CRITIC_LOSSES:
        raise ValueError(f"unknown critic objective {critic_objective!r}; choose one of {', '.join(CRITIC_LOSSES)}.")
    if generator_form not in GENERATOR_FORMS:
        raise ValueError(f"unknown generator form {generator_form!r}; choose one of {', '.join(GENERATOR_FORMS)}.")
    if n_critic < 1 or inner_steps < 1:
        raise ValueError(f"n_critic and inner_steps must be at least 1, got {n_critic} and {inner_steps}.")
    data_shape = tuple(data_shape)
    placement = as_placement(mesh)
    g = generator(gen_graphdef, gen_rest)
    loss_kwargs = {} if critic_objective == "reflow" else {"penalty": penalty}
    critic_fn = CRITIC_LOSSES[critic_objective]

    def phi_of(params):
        net = nnx.merge(critic_graphdef, params, critic_rest)
        return lambda x: net(x)

    def noise(key, b):
        z = jax.random.normal(key, (b,) + data_shape)
        return z if placement is None else jax.lax.with_sharding_constraint(z, placement.batch())

    def critic_update(carry, inputs):
        gen_params, critic = carry
        real, key = inputs
        kz, kt = jax.random.split(key)
        fake = jax.lax.stop_gradient(g(gen_params, noise(kz, real.shape[0])))
        (loss, m), grads = jax.value_and_grad(lambda p: critic_fn(phi_of(p), real, fake, kt, **loss_kwargs),
                                              has_aux=True)(critic.params)
        update = apply_gradients(critic_tx, critic.params, critic.opt_state, grads, loss)
        return (gen_params, advance(critic, update, ema_decay=None)), (loss, m["gap"], update.grad_norm, update.ok)

    def generator_update(params, opt_state, phi, z) -> tuple[Update, Array]:
        if generator_form == "potential":
            loss, grads = jax.value_and_grad(lambda p: generator_potential_loss(phi, g(p, z))[0])(params)
            return apply_gradients(gen_tx, params, opt_state, grads, loss), loss
        target = critic_targets(phi, g(params, z), eta)

        def inner(carry, _):
            p, o = carry
            loss, grads = jax.value_and_grad(lambda q: generator_regression_loss(g(q, z), target)[0])(p)
            update = apply_gradients(gen_tx, p, o, grads, loss)
            return (update.params, update.opt_state), (loss, update.grad_norm, update.ok)

        (params, opt_state), (losses, norms, oks) = _scan(inner, (params, opt_state), jnp.arange(inner_steps),
                                                          inner_steps)
        # the inner steps regress toward one fixed target: one update, kept only if all were finite
        return Update(params, opt_state, jnp.all(oks), norms[0]), losses[0]

    def step(state: GANState, batch):
        real_all = batch["x0"]
        b = real_all.shape[0] // n_critic
        # (n_critic * B) -> (B, n_critic) keeps each device's rows local; then one slice per update.
        reals = jnp.moveaxis(real_all.reshape((b, n_critic) + data_shape), 1, 0)
        key = jax.random.fold_in(state.gen.key, state.step)
        k_critic, k_gen = jax.random.split(key)
        (_, critic), (c_losses, gaps, c_norms, c_oks) = _scan(
            critic_update, (state.gen.params, state.critic), (reals, jax.random.split(k_critic, n_critic)), n_critic)
        update, g_loss = generator_update(state.gen.params, state.gen.opt_state, phi_of(critic.params),
                                          noise(k_gen, b))
        gen = advance(state.gen, update, ema_decay=ema_decay)
        critic_skipped = jnp.sum(~c_oks).astype(jnp.int32)
        metrics = {"loss": jnp.mean(c_losses), "grad_norm": update.grad_norm,
                   "skipped": ((critic_skipped > 0) | ~update.ok).astype(jnp.int32),
                   "critic_skipped": critic_skipped, "gen_skipped": (~update.ok).astype(jnp.int32),
                   "gen_loss": g_loss, "gap": gaps[-1], "critic_grad_norm": jnp.mean(c_norms)}
        return GANState(step=state.step + 1, gen=gen, critic=critic), metrics

    return make_step(step, placement)


@dataclass(frozen=True)
class GANConfig:
    """Settings of one GAN run (library-level: plain values, no experiment file needed)."""

    critic_objective: str = "derived"   # derived | wgan_gp | reflow
    generator_form: str = "regression"  # regression | potential
    penalty: float = 1.0                # lambda
    eta: float = 0.1                    # step along grad phi (regression form)
    inner_steps: int = 1
    n_critic: int = 1
    batch_size: int = 256               # B per critic update; the real batch is n_critic * B
    steps: int = 2000                   # generator updates
    gen_lr: float = 1e-3
    critic_lr: float = 1e-3
    b1: float = 0.5
    b2: float = 0.9
    ema_decay: float = 0.995
    gen_width: int = 128
    gen_depth: int = 3
    critic_width: int = 128
    critic_depth: int = 3
    seed: int = 0


def build_gan(cfg: GANConfig, data_shape: tuple[int, ...], mesh: "Mesh | Placement | None" = None):
    """(state, step_fn, g): networks, optimizers (Adam), a fresh initial state, and the jitted step.

    With a ``mesh`` (a ``Placement``, or a plain mesh: data parallel) the state is created already
    placed by its rule (``Placement.init``). The networks and the compiled step are cached per
    (cfg, data_shape, placement), so a resumed or repeated run in one process compiles once; the
    state is always a fresh copy.
    """
    placement = as_placement(mesh)
    gen_params, critic_params, gen_tx, critic_tx, step_fn, g = _build(cfg, tuple(data_shape), placement)
    init = lambda gp, cp: init_gan_state(gp, cp, gen_tx, critic_tx, cfg.seed)  # noqa: E731
    state = init(gen_params, critic_params) if placement is None else placement.init(init, gen_params, critic_params)
    return state, step_fn, g


@functools.lru_cache(maxsize=8)
def _build(cfg: GANConfig, data_shape: tuple[int, ...], placement: Placement | None):
    from genflow.models import MLP
    from genflow.training import split_net

    gen_net = MLP(data_shape, width=cfg.gen_width, depth=cfg.gen_depth, rngs=nnx.Rngs(cfg.seed))
    critic_net = Critic(data_shape, width=cfg.critic_width, depth=cfg.critic_depth, rngs=nnx.Rngs(cfg.seed + 100))
    gen_graphdef, gen_params, gen_rest = split_net(gen_net)
    critic_graphdef, critic_params, critic_rest = split_net(critic_net)
    gen_tx = optax.adam(cfg.gen_lr, b1=cfg.b1, b2=cfg.b2)
    critic_tx = optax.adam(cfg.critic_lr, b1=cfg.b1, b2=cfg.b2)
    step_fn = make_gan_step(gen_graphdef, gen_rest, critic_graphdef, critic_rest, gen_tx, critic_tx, data_shape,
                            critic_objective=cfg.critic_objective, generator_form=cfg.generator_form,
                            penalty=cfg.penalty, eta=cfg.eta, inner_steps=cfg.inner_steps, n_critic=cfg.n_critic,
                            ema_decay=cfg.ema_decay, mesh=placement)
    return gen_params, critic_params, gen_tx, critic_tx, step_fn, generator(gen_graphdef, gen_rest)


def train_gan(cfg: GANConfig, data: Callable[[Array, int], Array] | np.ndarray, data_shape: tuple[int, ...],
              workdir: str, *, mesh: "Mesh | Placement | None" = None, log_every: int = 100, ckpt_every: int = 1000,
              sample_every: int = 0, on_sample: Callable[[GANState, int], None] | None = None,
              progress: bool = True, steps: int | None = None):
    """Train (or resume, from ``workdir/checkpoints``) a GAN on real data ``data``: either fresh
    draws ``data(key, n)`` (toy sets) or a training set, an array (N, *data_shape) read in
    epoch-shuffled batches (``genflow.data.ArrayBatches``). Both streams are pure functions of
    (cfg.seed, position), so a resumed run sees the batches an uninterrupted one would.

    Returns (state, g) with g(params, z) the generator; sample with ``g(state.gen.ema, z)``.
    """
    placement = as_placement(mesh)
    batch = cfg.batch_size * cfg.n_critic
    if placement is not None and batch % placement.size:
        raise ValueError(f"batch size {batch} does not split over {placement.size} devices; "
                         f"use a multiple of {placement.size}.")
    if not callable(data):
        data = np.asarray(data)
        if data.shape[1:] != tuple(data_shape):
            raise ValueError(f"training examples have shape {data.shape[1:]}, but data_shape is {tuple(data_shape)}; "
                             "pass the shape of one example.")
        if len(data) < batch:
            raise ValueError(f"{len(data)} training examples cannot fill a real batch of {batch} "
                             "(batch_size x n_critic); lower batch_size or n_critic.")
    state, step_fn, g = build_gan(cfg, data_shape, placement)
    os.makedirs(workdir, exist_ok=True)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    position, pending = 0, None
    if checkpointer.latest_step() is not None:
        state, meta = checkpointer.restore(state)
        position, pending = int(meta["data_position"]), meta.get("pending_metrics")
    sharding = placement.batch() if placement is not None else None
    if callable(data):
        batches = SampledBatches(data, batch, seed=cfg.seed, position=position, sharding=sharding)
    else:
        batches = ArrayBatches(data, batch, seed=cfg.seed, position=position, sharding=sharding)
    state, _ = train_loop(state, step_fn, batches, steps=steps or cfg.steps, checkpointer=checkpointer,
                          meta={"gan": cfg.critic_objective}, metrics_path=os.path.join(workdir, "metrics.jsonl"),
                          log_every=log_every, ckpt_every=ckpt_every, sample_every=sample_every, on_sample=on_sample,
                          progress=progress, pending=pending)
    checkpointer.close()
    return state, g


def gan_samples(g: Callable, params, key: Array, n: int, data_shape: tuple[int, ...]) -> np.ndarray:
    """n samples g(params, z), z ~ N(0, I), as a host array."""
    return np.asarray(jax.jit(g)(params, jax.random.normal(key, (n,) + tuple(data_shape))))
