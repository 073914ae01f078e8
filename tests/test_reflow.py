"""ReFlow: straightness against exact answers, resumable couplings, k-RF and distillation end to end."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genflow.data import GaussianMixture
from genflow.models import MLP, Model, ModelSpec
from genflow.objectives import flow_matching
from genflow.processes import RectifiedFlow
from genflow.reflow import (chunk_noise, coupled, distillation, existing_chunks, generate_couplings, grid_time,
                            load_couplings, make_coupler, one_step_sample, pf_ode_sampler, straightness,
                            train_on_couples)
from genflow.samplers import grids
from genflow.training import make_mesh, make_optimizer, split_net

RF = RectifiedFlow()


def _affine_straight_model(a, b):
    """Exact velocity of the couples x0 = a x1 + b on straight lines: x_t = ((1-t) a + t) x1 + (1-t) b,
    so x1 = (x - (1-t) b) / ((1-t) a + t) and v = x1 - x0 = (1 - a) x1 - b."""
    def net(x, t, cond=None):
        te = t[:, None]
        x1 = (x - (1 - te) * b) / ((1 - te) * a + te)
        return (1 - a) * x1 - b
    return Model(net, RF, "velocity")


def test_straightness_is_zero_for_straight_couplings(x64):
    a, b = jnp.array([0.5, 2.0]), jnp.array([1.0, -3.0])
    x1 = jax.random.normal(jax.random.PRNGKey(0), (256, 2))
    out = straightness(_affine_straight_model(a, b), x1, grids.uniform(RF, 7))
    assert float(out["straightness"]) < 1e-20
    np.testing.assert_allclose(out["x0"], a * x1 + b, rtol=1e-12)     # Euler with 7 steps is exact
    np.testing.assert_allclose(out["transport_cost"], np.mean(np.sum(((1 - a) * x1 - b) ** 2, 1)), rtol=1e-12)


def test_straightness_of_a_gaussian_flow_is_the_closed_form(x64):
    """Data N(m, s^2) under rectified flow: x_t = (1-t) m + r(t) z, r = sqrt((1-t)^2 s^2 + t^2), one z per path,
    so S = int (1 - s - r'(t))^2 dt (per dimension); 0 only for a point mass (s = 0, r = t)."""
    m, s = 0.7, 0.3
    model = GaussianMixture.gaussian(jnp.array([m]), jnp.array([s])).exact_model(RF, "velocity")
    x1 = jax.random.normal(jax.random.PRNGKey(1), (4000, 1))
    out = straightness(model, x1, grids.uniform(RF, 2000))
    t = np.linspace(0, 1, 200_001)
    r_dot = (t - (1 - t) * s**2) / np.sqrt((1 - t) ** 2 * s**2 + t**2)
    exact = np.trapezoid((1 - s - r_dot) ** 2, t) * np.mean(np.asarray(x1) ** 2)
    assert exact > 0.05
    np.testing.assert_allclose(float(out["straightness"]), exact, rtol=2e-3)
    # s = 0: every path runs straight to the point m
    point = GaussianMixture.gaussian(jnp.array([m]), jnp.array([0.0])).exact_model(RF, "velocity")
    assert float(straightness(point, x1, grids.uniform(RF, 50))["straightness"]) < 1e-20


def test_coupled_and_distillation_objectives_are_the_hand_computed_regressions(x64):
    model = Model(lambda x, t, cond=None: 2.0 * x + t[:, None], RF, "velocity")
    x0 = jnp.array([[1.0], [-2.0], [0.5]])
    x1 = jnp.array([[0.3], [0.1], [-1.0]])
    key = jax.random.PRNGKey(3)
    # k = 1: t = 1, x_t = x1, loss = mean (v(x1, 1) - (x1 - x0))^2: regression of x0 on x1 through g = x1 - v
    loss, _ = distillation(1)(model, x0, key, x1=x1)
    np.testing.assert_allclose(loss, np.mean((2 * x1 + 1 - (x1 - x0)) ** 2), rtol=1e-12)
    g = one_step_sample(model, x1)
    np.testing.assert_allclose(g, x1 - (2 * x1 + 1), rtol=1e-12)
    np.testing.assert_allclose(loss, np.mean((g - x0) ** 2), rtol=1e-12)
    # the coupled objective is flow_matching with x1 given
    np.testing.assert_allclose(coupled()(model, x0, key, x1=x1)[0], flow_matching(model, x0, key, x1=x1)[0])
    with pytest.raises(ValueError, match="needs batches"):
        coupled()(model, x0, key)
    # grid times: {1, 2/3, 1/3} for k = 3, each drawn
    t = np.asarray(grid_time(3)(key, 3000, RF))
    assert set(np.round(t, 12)) == {1.0, round(2 / 3, 12), round(1 / 3, 12)}


def _random_flow(seed=0, width=16):
    net = MLP((2,), width=width, depth=1, rngs=nnx.Rngs(seed))
    _, params, _ = split_net(net)
    rng = np.random.default_rng(seed)   # numpy: eager jax ops would each compile
    params = jax.tree.map(lambda p: jnp.asarray(0.3 * rng.standard_normal(p.shape), p.dtype), params)
    return ModelSpec.from_net(net, RF, "velocity"), params


def test_couplings_resume_without_duplicates_or_losses(tmp_path):
    spec, params = _random_flow()
    mesh = make_mesh()   # 8 simulated devices: the chunk is split over them
    couple = make_coupler(spec, (2,), 16, sampler=pf_ode_sampler("euler", 3), mesh=mesh)
    kw = dict(num_couples=75, chunk_size=16, seed=5, meta={"solver": "euler", "source": "test"}, progress=False)
    full = str(tmp_path / "full")
    info = generate_couplings(couple, params, full, **kw)
    assert info["num_couples"] == 80 and existing_chunks(full) == [0, 1, 2, 3, 4]
    part = str(tmp_path / "part")
    generate_couplings(couple, params, part, should_stop=lambda i: i >= 3, **kw)   # killed before chunk 3
    os.remove(os.path.join(part, "chunk_00001.npz"))                               # ... and chunk 1 never landed
    open(os.path.join(part, "chunk_00003.npz.abc.tmp"), "w").write("half")          # a writer's leftover
    with pytest.raises(ValueError, match="lacks chunk 1"):
        load_couplings(part)
    generate_couplings(couple, params, part, **kw)
    assert sorted(os.listdir(part)) == sorted(os.listdir(full))
    (a1, a0, la), (b1, b0, _) = load_couplings(full), load_couplings(part)
    assert la is None                                                               # an unconditional flow
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a0, b0)
    assert a1.shape == (80, 2) and len(np.unique(a1[:, 0])) == 80                  # no couple twice
    np.testing.assert_array_equal(a1[48:64], chunk_noise(RF, 5, 3, 16, (2,)))        # chunk i = f(seed, i)
    assert not np.allclose(a0, a1)
    with pytest.raises(ValueError, match="solver"):
        generate_couplings(couple, params, full, **dict(kw, meta={"solver": "tsit5", "source": "test"}))


def test_train_on_couples_resumes_and_distilled_sampler_runs(tmp_path):
    spec, params = _random_flow()
    x1 = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    x0 = 0.5 * x1 + 1.0
    tx = make_optimizer("adam", 1e-2)
    kw = dict(batch_size=16, seed=0, objective=distillation(1), log_every=1, ckpt_every=100, progress=False)
    full, _ = train_on_couples(spec, params, tx, x0, x1, workdir=str(tmp_path / "a"), steps=5, **kw)
    train_on_couples(spec, params, tx, x0, x1, workdir=str(tmp_path / "b"), steps=3, **kw)
    resumed, _ = train_on_couples(spec, params, tx, x0, x1, workdir=str(tmp_path / "b"), steps=5, **kw)
    for p, q in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(p), np.asarray(q))
    model = spec.model(full.ema)
    g = one_step_sample(model, jnp.asarray(x1[:10]))
    assert g.shape == (10, 2) and np.all(np.isfinite(np.asarray(g)))


def test_train_on_couples_on_fsdp_with_accumulation_equals_one_device(tmp_path):
    """Distillation (k = 1: t = 1, no randomness in the loss) on a data 2 x fsdp 4 placement with the
    gradient accumulated over 2 microbatches gives the one-device run's parameters: ReFlow trains
    through the one step builder, so FSDP and accumulation come with it."""
    from genflow.placement import Placement

    spec, params = _random_flow(width=32)
    x1 = np.random.default_rng(1).standard_normal((64, 2)).astype(np.float32)
    x0 = 0.5 * x1 - 1.0
    tx = make_optimizer("adam", 1e-2)
    kw = dict(batch_size=16, seed=0, steps=3, objective=distillation(1), log_every=3, ckpt_every=100, progress=False)
    one, _ = train_on_couples(spec, params, tx, x0, x1, workdir=str(tmp_path / "one"), **kw)
    placement = Placement.create({"data": 2, "fsdp": 4}, min_shard_bytes=0)
    sharded, _ = train_on_couples(spec, params, tx, x0, x1, workdir=str(tmp_path / "fsdp"), mesh=placement,
                                  microbatches=2, **kw)
    assert max(placement.bytes_per_device(sharded.params).values()) < 0.3 * sum(
        p.nbytes for p in jax.tree.leaves(sharded.params))
    for p, q in zip(jax.tree.leaves(jax.device_get(one.params)), jax.tree.leaves(jax.device_get(sharded.params))):
        # Adam (lr 1e-2) divides by sqrt(v): a gradient entry near zero, reduced in another order over
        # 8 devices and 2 pieces, moves its update by a few 1e-6 (seen: 1.8e-6); 1e-5 is 0.1% of a step
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-5)


@pytest.mark.slow   # ~30 s of CPU: trains a run, two reflows and a distillation through the commands
def test_reflow_and_distill_commands_end_to_end(tmp_path, capsys):
    from genflow import config as C
    from genflow.cli.run import load_run, make_generator, train
    from genflow.cli.reflow import reflow_command, distill_command, run_k

    exp = C.Experiment(name="tiny", data=C.Data(name="moons"), process=C.Process(name="rectified_flow"),
                       net=C.Net(width=16, depth=1), predicts="velocity", objective="flow_matching",
                       train=C.Train(batch_size=16, steps=4, log_every=2, ckpt_every=4),
                       sample=C.Sample(sampler="euler_ode", steps=2, num=16, denoise=False))
    run = str(tmp_path / "run")
    train(exp, run, progress=False)
    kw = dict(num_couples=40, chunk_size=16, steps=3, batch_size=16, solver="euler",
              ode_steps=2, progress=False)
    assert reflow_command(run, **kw) == 0                       # default out: RUN-2rf
    rf2 = run + "-2rf"
    assert run_k(rf2) == 2 and len(existing_chunks(os.path.join(run, "couplings"))) == 3
    assert reflow_command(run, **kw) == 0                       # again: couplings and training resume (nothing left)
    assert distill_command(rf2, k=1, **kw) == 0                 # couplings of the 2-RF, one-step sampler
    d = load_run(rf2 + "-distill1")
    assert d.exp.sample.steps == 1 and d.step == 3
    x = make_generator(d.eval_spec, d.shape, d.exp.sample, 8, d.mesh)(d.params, jax.random.PRNGKey(0))
    assert x.shape == (8, 2) and np.all(np.isfinite(np.asarray(x)))
    out = capsys.readouterr().out
    assert "2-RF" in out and "straightness" in out and "1 Euler step" in out
    assert reflow_command(str(tmp_path / "missing"), **kw) == 2
    assert "does not exist" in capsys.readouterr().err
    assert reflow_command(run, **dict(kw, solver="euler", ode_steps=None)) == 2   # euler needs a step count


def test_at_sample_size_averages_the_distance_over_whole_blocks():
    from genflow.reflow import at_sample_size

    mean_gap = lambda x, ref: float(np.mean(x) - np.mean(ref))
    blocked = at_sample_size(mean_gap, 3)
    x = np.arange(10.0)                       # blocks [0,1,2], [3,4,5], [6,7,8]; 9 is left over
    assert blocked(x, np.zeros(4)) == pytest.approx((1.0 + 4.0 + 7.0) / 3)
    with pytest.raises(ValueError, match="2 samples cannot make one block of 3"):
        blocked(x[:2], np.zeros(4))
