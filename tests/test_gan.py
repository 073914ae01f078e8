"""The GAN as a diffusion ODE: critic and generator losses against hand-computed values, the
ReFlow identity, and the jitted sharded step on the training stack (8 devices = 1, FSDP = data
parallel, non-finite updates skipped per player, resume = uninterrupted)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from genflow.data import put_global
from genflow.gan import Critic, GANConfig, build_gan, generator, init_gan_state, make_gan_step, train_gan
from genflow.models import MLP, Model
from genflow.objectives import flow_matching
from genflow.placement import Placement
from genflow.objectives.critic import (critic_loss, critic_targets, generator_potential_loss,
                                       generator_regression_loss, potential_grad, reflow_critic_loss,
                                       wgan_gp_critic_loss)
from genflow.processes import RectifiedFlow
from genflow.training import make_mesh, split_net

# numpy float64: module-level jnp arrays would be float32, made before the x64 fixture runs
X0 = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])     # real (t = 0)
X1 = np.array([[-1.0, 0.0], [2.0, 2.0], [0.5, -0.5]])    # generated (t = 1)
T = np.array([0.25, 0.5, 1.0])
KEY = jax.random.PRNGKey(0)


def test_critic_losses_with_a_linear_critic(x64):
    w = jnp.array([1.2, -1.6])                               # |w| = 2
    phi = lambda x: x @ w + 0.3
    gap = float(np.mean(X0 @ w) - np.mean(X1 @ w))
    loss, m = critic_loss(phi, X0, X1, KEY, penalty=0.7)
    np.testing.assert_allclose(loss, -gap + 0.35 * 4.0, rtol=1e-12)
    np.testing.assert_allclose(m["gap"], gap, rtol=1e-12)
    loss, _ = wgan_gp_critic_loss(phi, X0, X1, KEY, penalty=10.0)
    np.testing.assert_allclose(loss, -gap + 10.0 * (2.0 - 1.0) ** 2, rtol=1e-12)
    loss, _ = reflow_critic_loss(phi, X0, X1, KEY)
    np.testing.assert_allclose(loss, np.mean(np.sum((w - (X0 - X1)) ** 2, 1)), rtol=1e-12)


def test_critic_losses_with_a_quadratic_critic(x64):
    a = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    phi = lambda x: 0.5 * jnp.einsum("bi,ij,bj->b", x, a, x)
    xt = (1 - T[:, None]) * X0 + T[:, None] * X1
    g = np.asarray(xt @ a)                                   # grad phi = A x (A symmetric)
    gap = float(np.mean(phi(X0)) - np.mean(phi(X1)))
    loss, m = critic_loss(phi, X0, X1, KEY, penalty=2.0, t=T)
    np.testing.assert_allclose(loss, -gap + np.mean(np.sum(g**2, 1)), rtol=1e-12)
    norms = np.linalg.norm(g, axis=1)
    np.testing.assert_allclose(wgan_gp_critic_loss(phi, X0, X1, KEY, penalty=3.0, t=T)[0],
                               -gap + 3.0 * np.mean((norms - 1) ** 2), rtol=1e-12)
    np.testing.assert_allclose(reflow_critic_loss(phi, X0, X1, KEY, t=T)[0],
                               np.mean(np.sum((g - (X0 - X1)) ** 2, 1)), rtol=1e-12)


def test_derived_critic_loss_at_penalty_lambda_is_the_unit_penalty_loss_of_lambda_phi_over_lambda(x64):
    # L_lambda(phi / lambda) = L_1(phi) / lambda for every phi, so the minimiser at penalty lambda is
    # the unit-penalty one divided by lambda: lambda only rescales the critic (and eta / lambda is
    # the one knob the regression generator sees). WGAN-GP's (|grad phi| - 1)^2 has no such scaling.
    phi = _random_critic(4)
    for lam in (0.1, 3.0):
        scaled = lambda x, lam=lam: phi(x) / lam
        np.testing.assert_allclose(critic_loss(scaled, X0, X1, KEY, penalty=lam, t=T)[0],
                                   critic_loss(phi, X0, X1, KEY, penalty=1.0, t=T)[0] / lam, rtol=1e-12)
        assert not np.isclose(wgan_gp_critic_loss(scaled, X0, X1, KEY, penalty=lam, t=T)[0],
                              wgan_gp_critic_loss(phi, X0, X1, KEY, penalty=1.0, t=T)[0] / lam, rtol=1e-3)


def _random_critic(seed, width=16):
    graphdef, params, rest = split_net(Critic((2,), width=width, depth=2, rngs=nnx.Rngs(seed)))
    return lambda x: nnx.merge(graphdef, params, rest)(x)


def test_reflow_loss_with_a_gradient_field_is_twice_the_critic_loss_plus_a_constant(x64):
    """Integrated over t exactly (Gauss-Legendre), common pairs: L_RF = 2 L_critic(lambda=1) + E||x0 - x1||^2."""
    x0 = jax.random.normal(jax.random.PRNGKey(1), (64, 2)) + 2.0
    x1 = jax.random.normal(jax.random.PRNGKey(2), (64, 2))
    nodes, weights = np.polynomial.legendre.leggauss(40)
    ts, ws = (nodes + 1) / 2, weights / 2                    # on [0, 1]
    for seed in range(3):
        phi = _random_critic(seed)
        at_t = lambda loss: jax.jit(jax.vmap(lambda t: loss(phi, x0, x1, KEY, t=jnp.full((64,), t))[0]))(ts)
        rf = float(ws @ at_t(reflow_critic_loss))
        cr = float(ws @ at_t(critic_loss))
        const = np.mean(np.sum((x0 - x1) ** 2, 1))
        np.testing.assert_allclose(rf, 2 * cr + const, rtol=1e-10)


def test_reflow_critic_loss_is_flow_matching_with_velocity_minus_grad_phi(x64):
    phi = _random_critic(0)
    velocity = lambda x, t, cond=None: -potential_grad(phi, x)     # genflow time: v = -grad phi
    model = Model(velocity, RectifiedFlow(), "velocity")
    fm, _ = flow_matching(model, X0, KEY, x1=X1, time_sampler=lambda k, n, p: T)
    np.testing.assert_allclose(reflow_critic_loss(phi, X0, X1, KEY, t=T)[0], 2 * fm, rtol=1e-12)  # D = 2: mean vs sum


def test_generator_forms_agree_to_first_order(x64):
    w, eta = jnp.array([0.5, -2.0]), 0.1
    phi = lambda x: x @ w
    target = critic_targets(phi, X1, eta)
    np.testing.assert_allclose(target, X1 + eta * w, rtol=1e-12)
    loss, _ = generator_regression_loss(X1, target)
    np.testing.assert_allclose(loss, eta**2 * float(w @ w), rtol=1e-12)
    g_reg = jax.grad(lambda x: generator_regression_loss(x, target)[0])(X1)
    g_pot = jax.grad(lambda x: generator_potential_loss(phi, x)[0])(X1)
    np.testing.assert_allclose(g_reg, -2 * eta * jnp.broadcast_to(w, X1.shape) / 3, rtol=1e-12)
    np.testing.assert_allclose(g_reg, 2 * eta * g_pot, rtol=1e-12)
    np.testing.assert_allclose(generator_potential_loss(phi, X1)[0], -np.mean(X1 @ w), rtol=1e-12)


def _tiny_parts(seed=0):
    gen = split_net(MLP((2,), width=8, depth=1, rngs=nnx.Rngs(seed)))
    critic = split_net(Critic((2,), width=8, depth=1, rngs=nnx.Rngs(seed + 1)))
    return gen, critic


def test_regression_step_with_sgd_equals_the_potential_step_scaled_by_two_eta():
    (gd, gp, gr), (cd, cp, cr) = _tiny_parts()
    eta, lr = 0.3, 0.05
    real = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (16, 2)) + 1.0)
    params = []
    for form, glr in (("regression", lr), ("potential", 2 * eta * lr)):
        gtx, ctx = optax.sgd(glr), optax.sgd(0.0)             # critic frozen: both see the same phi
        state = init_gan_state(gp, cp, gtx, ctx, seed=0)   # copies: the step donates its state
        step = make_gan_step(gd, gr, cd, cr, gtx, ctx, (2,), generator_form=form, eta=eta, ema_decay=0.0)
        state, m = step(state, {"x0": real})
        params.append(jax.device_get(state.gen.params))
    for a, b in zip(jax.tree.leaves(params[0]), jax.tree.leaves(params[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.slow  # the sharded GAN step is checked against data parallelism by test_gan_step_on_fsdp_equals_data_parallel
def test_gan_step_on_eight_devices_equals_one_and_compiles_once():
    cfg = GANConfig(n_critic=2, batch_size=8, gen_width=16, gen_depth=1, critic_width=16, critic_depth=1,
                    critic_objective="wgan_gp", generator_form="potential", penalty=10.0, seed=7)
    reals = [np.asarray(jax.random.normal(jax.random.PRNGKey(i), (16, 2))) for i in range(2)]
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = make_mesh(devices)
        state, step, _ = build_gan(cfg, (2,), mesh)
        losses = []
        for x in reals:
            state, m = step(state, {"x0": put_global(x, NamedSharding(mesh, P("data")))})
            losses.append(float(m["loss"]))
        assert step._cache_size() == 1
        results.append((losses, jax.device_get(state.gen.ema)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_gan_step_on_fsdp_equals_data_parallel():
    """Both players' parameters, EMA and Adam moments sharded 4 ways (data 2 x fsdp 4) give the
    data-parallel run's losses and states over 3 steps (float32 tolerance, as tests/test_fsdp.py)."""
    cfg = GANConfig(n_critic=2, batch_size=8, gen_width=32, gen_depth=1, critic_width=32, critic_depth=2,
                    eta=0.2, inner_steps=2, seed=3)
    reals = [np.asarray(jax.random.normal(jax.random.PRNGKey(10 + i), (16, 2))) * 0.5 + 1.0 for i in range(3)]
    runs = {}
    for name, placement in (("data 8", Placement.create({"data": 8, "fsdp": 1})),
                            ("data 2 x fsdp 4", Placement.create({"data": 2, "fsdp": 4}, min_shard_bytes=0))):
        state, step, _ = build_gan(cfg, (2,), placement)
        losses = []
        for x in reals:
            state, m = step(state, {"x0": put_global(x, placement.batch())})
            losses.append((float(m["loss"]), float(m["gen_loss"])))
        share = max(placement.bytes_per_device(state).values()) / sum(x.nbytes for x in jax.tree.leaves(state))
        runs[name] = (losses, jax.device_get(state), share)
    (ref_losses, ref, ref_share), (losses, fsdp, share) = runs["data 8"], runs["data 2 x fsdp 4"]
    assert ref_share == 1.0 and share < 0.4        # replicated vs about a quarter of the state per device
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
               for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(fsdp)))
    print(f"GAN step, FSDP 2x4 vs data parallel 8, 3 steps: max |state difference| {diff:.2e}, "
          f"{share:.3f} of the state per device")
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(fsdp)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-5, atol=1e-6)


def test_gan_step_skips_each_players_non_finite_update_through_the_shared_guard():
    """A NaN in the real batch drops the critic's updates (the generator still trains, against the
    kept critic); a NaN learning rate drops the generator's (params, moments and EMA kept, the
    critic still trains). Step counters advance either way."""
    (gd, gp, gr), (cd, cp, cr) = _tiny_parts()
    real = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (16, 2)))
    poisoned = real.copy()
    poisoned[2:4, 1] = np.nan                    # rows 2 and 3: one in each critic update's slice
    cases = {"critic": (optax.adam(1e-2), poisoned), "generator": (optax.sgd(float("nan")), real)}
    for bad, (gtx, x) in cases.items():
        ctx = optax.adam(1e-2)
        state = init_gan_state(gp, cp, gtx, ctx, seed=0)
        before = jax.device_get(state)           # host copies: the step donates its state
        step = make_gan_step(gd, gr, cd, cr, gtx, ctx, (2,), n_critic=2, ema_decay=0.5)
        state, m = step(state, {"x0": x})
        after = jax.device_get(state)
        assert int(m["skipped"]) == 1 and int(after.step) == 1
        assert (int(m["critic_skipped"]), int(m["gen_skipped"])) == ((2, 0) if bad == "critic" else (0, 1))
        assert int(after.critic.step) == 2 and int(after.gen.step) == 1
        kept, moved = (after.critic, after.gen) if bad == "critic" else (after.gen, after.critic)
        old_kept, old_moved = (before.critic, before.gen) if bad == "critic" else (before.gen, before.critic)
        for field in ("params", "opt_state", "ema"):
            for a, b in zip(jax.tree.leaves(getattr(old_kept, field)), jax.tree.leaves(getattr(kept, field))):
                np.testing.assert_array_equal(a, b)
        assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(old_moved.params),
                                                            jax.tree.leaves(moved.params)))
        assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves((after.gen.params, after.gen.ema,
                                                                     after.critic.params)))


@pytest.mark.parametrize("source", ["sampler", "training set"])
def test_gan_training_resumes_to_the_uninterrupted_state(tmp_path, source):
    cfg = GANConfig(batch_size=16, gen_width=16, gen_depth=1, critic_width=16, critic_depth=1, steps=4, eta=0.2,
                    inner_steps=2)
    if source == "sampler":   # fresh draws per batch
        sample = lambda key, n: jax.random.normal(key, (n, 2)) * 0.5 + 1.0
    else:                     # 40 examples, 2 batches an epoch: the 4 steps cross an epoch's reshuffle
        sample = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    kw = dict(log_every=1, ckpt_every=100, progress=False)
    full, g = train_gan(cfg, sample, (2,), str(tmp_path / "full"), **kw)
    train_gan(cfg, sample, (2,), str(tmp_path / "part"), steps=2, **kw)
    resumed, _ = train_gan(cfg, sample, (2,), str(tmp_path / "part"), **kw)
    assert int(resumed.step) == 4
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = g(full.gen.ema, jnp.zeros((5, 2)))
    assert x.shape == (5, 2)


def test_gan_training_set_that_does_not_fit_is_one_clear_error_and_writes_nothing(tmp_path):
    cfg = GANConfig(batch_size=4, gen_width=8, gen_depth=1, critic_width=8, critic_depth=1, steps=1)
    with pytest.raises(ValueError, match=r"shape \(3,\), but data_shape is \(2,\)"):
        train_gan(cfg, np.zeros((10, 3), np.float32), (2,), str(tmp_path / "run"), progress=False)
    with pytest.raises(ValueError, match="3 training examples cannot fill a real batch of 4"):
        train_gan(cfg, np.zeros((3, 2), np.float32), (2,), str(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists()   # nothing was written


def test_generator_is_the_one_step_flow_of_its_velocity_network():
    from genflow.reflow import one_step_sample

    (gd, gp, gr), _ = _tiny_parts()
    gp = jax.tree.map(lambda p: p + 0.1, gp)                 # the output layer starts at zero
    z = jax.random.normal(jax.random.PRNGKey(3), (6, 2))
    expected = one_step_sample(Model(nnx.merge(gd, gp, gr), RectifiedFlow(), "velocity"), z)
    np.testing.assert_allclose(generator(gd, gr)(gp, z), expected, rtol=1e-6)
    assert not np.allclose(expected, z)
