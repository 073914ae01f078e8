"""Post-hoc EMA (EDM2, Sec. 3): the tracked power EMA is its closed form, a stored profile comes back
exactly, an intermediate length is reconstructed within the Cauchy-Schwarz bound, and the CLI runs
train -> ema -> sample on the embedded digits."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genflow.training import ema_snapshots, posthoc_ema as P

SIGMAS = (0.05, 0.10)


def test_gamma_and_sigma_rel_are_inverse_and_match_edm2():
    """EDM2 quotes gamma = 16.97 for sigma_rel = 0.05 and 6.94 for 0.10 (Sec. 3.1)."""
    gammas = P.sigma_rel_to_gamma(np.array([0.05, 0.10]))
    np.testing.assert_allclose(gammas, [16.97, 6.94], atol=5e-3)
    s = np.array([0.005, 0.05, 0.075, 0.1, 0.2, 0.28])
    np.testing.assert_allclose(P.gamma_to_sigma_rel(P.sigma_rel_to_gamma(s)), s, rtol=1e-12)
    with pytest.raises(ValueError, match="sigma_rel must lie in"):
        P.sigma_rel_to_gamma(0.29)


def test_profile_inner_products_equal_quadrature():
    """<p_a, p_b> in closed form (eq. 151) against a midpoint rule on 2e6 points."""
    s = (np.arange(2_000_000) + 0.5) / 2_000_000 * 1000.0
    ds = 1000.0 / 2_000_000

    def p(t, g):
        return np.where(s <= t, (g + 1) * s ** g / t ** (g + 1), 0.0)

    for (ta, sa), (tb, sb) in [((400, 0.05), (1000, 0.1)), ((1000, 0.05), (700, 0.1)), ((600, 0.1), (600, 0.1))]:
        ga, gb = P.sigma_rel_to_gamma(sa), P.sigma_rel_to_gamma(sb)
        np.testing.assert_allclose(P.profile_dot(ta, ga, tb, gb), np.sum(p(ta, ga) * p(tb, gb)) * ds, rtol=1e-5)


def trajectory(t, dim=24):
    """A deterministic stand-in for an optimiser's path: theta_t (dim,) = drift to an optimum as
    1/sqrt(t), plus oscillations of several frequencies (the "noise" an EMA averages out)."""
    k = jnp.arange(dim, dtype=jnp.float32)
    t = jnp.asarray(t, jnp.float32)
    return (jnp.cos(k) + (1.0 + 0.1 * k) / jnp.sqrt(t) + 0.3 * jnp.sin(t * (0.05 + 0.37 * k) + k)
            + 0.1 * jnp.sin(t * 0.002 * (k + 1)))


def track(steps, sigmas, snapshot_every=0):
    """Run P.update over theta_1..theta_steps; (final profiles, {step: profiles} every snapshot_every)."""
    gammas = tuple(float(g) for g in P.sigma_rel_to_gamma(np.asarray(sigmas)))

    @jax.jit
    def run(profiles, t0):
        def body(prof, i):
            t = t0 + i + 1
            prof = P.update(prof, {"w": trajectory(t)}, t, gammas)
            return prof, None
        return jax.lax.scan(body, profiles, jnp.arange(snapshot_every or steps))[0]

    profiles = tuple({"w": jnp.zeros(24, jnp.float32)} for _ in sigmas)
    snaps, done = {}, 0
    chunk = snapshot_every or steps
    while done < steps:
        profiles = run(profiles, jnp.int32(done))
        done += chunk
        snaps[done] = jax.device_get(profiles)
    return jax.device_get(profiles), snaps


def test_tracked_power_ema_equals_its_closed_form_weights():
    """After T = 4000 steps, each float32 EMA equals sum_tau w_tau theta_tau with the closed-form
    weights in float64. Tolerance 2e-5 (|theta| <= 2.5): each float32 update rounds to ~6e-8 |theta|,
    and the power profile keeps an error made at step tau with weight (tau/T)^(gamma+1), so the
    accumulated rounding is at most ~T/(gamma+2) * 6e-8 * 2.5 ~ 2e-5 for gamma = 6.9 (far less in
    practice, as the roundings are not all of one sign)."""
    T, sigmas = 4000, (0.05, 0.075, 0.10, 0.2)
    got, _ = track(T, sigmas)
    theta = np.stack([np.asarray(trajectory(t), np.float64) for t in range(1, T + 1)])
    for prof, s in zip(got, sigmas):
        w = P.profile_weights(T, float(P.sigma_rel_to_gamma(s)))
        assert abs(w.sum() - 1.0) < 1e-12
        err = np.max(np.abs(prof["w"] - w @ theta))
        print(f"sigma_rel={s}: closed-form equality max abs error {err:.2e}")
        assert err < 2e-5


def test_the_update_weight_keeps_float32_precision_late_in_training():
    """1 - beta_t at t = 1 .. 1e7 in float32 against float64: within 1e-5 relative. Forming
    (1 - 1/t) in float32 first would be off by 1.2% at t = 1e6 and 19% at 1e7 (sigma_rel 0.05)."""
    gamma = float(P.sigma_rel_to_gamma(0.05))
    for t in (1, 2, 1_000, 123_457, 1_000_000, 10_000_000):
        (got,) = P.update(({"w": jnp.zeros(())},), {"w": jnp.ones(())}, jnp.int32(t), (gamma,))
        with np.errstate(divide="ignore"):   # log1p(-1) = -inf at t = 1: the weight is exactly 1
            want = -np.expm1((gamma + 1) * np.log1p(-1.0 / t))
        assert abs(float(got["w"]) / want - 1) < 1e-5, (t, float(got["w"]), want)


def test_the_train_step_tracks_the_power_emas_of_its_own_params():
    """Through make_train_step: state.phema after 12 steps is sum_t w_t theta_t over the params the
    steps produced (step t weighs theta_t; the first step's params start the average)."""
    from genflow.models import MLP, ModelSpec
    from genflow.objectives import denoising_score_matching
    from genflow.processes import VP
    from genflow.training import init_state, make_optimizer, make_train_step, split_net

    net = MLP((2,), width=16, depth=1, rngs=nnx.Rngs(0))
    spec = ModelSpec.from_net(net, VP(), "eps")
    _, params, _ = split_net(net)
    tx = make_optimizer("adam", 1e-2)
    state = init_state(params, tx, seed=0, ema_sigma_rels=SIGMAS)
    step = make_train_step(spec, denoising_score_matching, tx, ema_decay=0.9, ema_sigma_rels=SIGMAS)
    history = []
    for i in range(12):
        state, _ = step(state, {"x0": np.asarray(jax.random.normal(jax.random.PRNGKey(i), (32, 2)))})
        history.append([np.asarray(x, np.float64) for x in jax.tree.leaves(jax.device_get(state.params))])
    for prof, s in zip(state.phema, SIGMAS):
        w = P.profile_weights(12, float(P.sigma_rel_to_gamma(s)))
        for k, leaf in enumerate(jax.tree.leaves(jax.device_get(prof))):
            expect = sum(wt * h[k] for wt, h in zip(w, history))
            np.testing.assert_allclose(leaf, expect, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="power-function EMAs but the step was built for"):
        make_train_step(spec, denoising_score_matching, tx, ema_decay=0.9)(state, {"x0": np.zeros((32, 2))})


def _snapshot_run(tmp_path, steps=4000, every=500):
    """Snapshots of the 0.05 and 0.10 EMAs every ``every`` steps, written by ema_snapshots.save."""
    _, snaps = track(steps, SIGMAS, snapshot_every=every)
    directory = str(tmp_path / "ema_snapshots")
    for t, profiles in snaps.items():
        ema_snapshots.save(directory, t, SIGMAS, profiles)
    return directory, snaps


def test_reconstructing_a_stored_profile_returns_it_exactly(tmp_path):
    """The target is one of the basis profiles, so least squares puts all weight on it: the result
    equals the stored float32 EMA to float32 rounding (at most 1 ulp; measured 0)."""
    directory, snaps = _snapshot_run(tmp_path)
    like = {"w": np.zeros(24, np.float32)}
    for sigma, j, step in [(0.05, 0, None), (0.10, 1, None), (0.10, 1, 2000)]:
        w, info = ema_snapshots.reconstruct(directory, sigma, like, step=step)
        stored = snaps[step or 4000][j]["w"]
        err = np.max(np.abs(w["w"] - stored))
        print(f"exact reconstruction sigma_rel={sigma} step={info['step']}: max abs error {err:.1e}, "
              f"profile fit {info['rel_residual']:.1e}")
        assert w["w"].dtype == np.float32
        np.testing.assert_array_max_ulp(w["w"], stored, maxulp=1)
        assert info["rel_residual"] < 1e-6


def test_an_intermediate_sigma_rel_matches_the_directly_tracked_ema(tmp_path):
    """sigma_rel = 0.075 from snapshots of 0.05 and 0.10 every 500 of 4000 steps, against the 0.075 EMA
    tracked directly. The tolerance is exact, not tuned: both are integrals of the piecewise-constant
    trajectory against a profile (the tracked EMA exactly so), so coordinate k differs by at most
    ||sum_i x_i p_i - p_out||_L2 * ||theta_k||_L2(0, T) (Cauchy-Schwarz), plus float32 rounding (2e-5)."""
    directory, _ = _snapshot_run(tmp_path)
    (direct,), _ = track(4000, (0.075,))
    w, info = ema_snapshots.reconstruct(directory, 0.075, {"w": np.zeros(24, np.float32)})
    theta = np.stack([np.asarray(trajectory(t), np.float64) for t in range(1, 4001)])
    p_norm = np.sqrt(P.profile_dot(4000, info["gamma"], 4000, info["gamma"]))
    bound = info["rel_residual"] * p_norm * np.sqrt((theta ** 2).sum(0)) + 2e-5
    err = np.abs(w["w"] - direct["w"])
    _, (short, long) = ema_snapshots.load(directory, 4000, {"w": np.zeros(24, np.float32)})
    naive = np.abs(0.5 * (short["w"] + long["w"]) - direct["w"])   # averaging the two final EMAs instead
    print(f"intermediate sigma_rel=0.075: max abs error {err.max():.2e} (bound {bound.min():.2e}..{bound.max():.2e}, "
          f"profile fit {info['rel_residual']:.2%}); the mean of the final 0.05 and 0.10 EMAs is off by "
          f"{naive.max():.2e}, the two differ by {np.abs(short['w'] - long['w']).max():.2e}")
    assert np.all(err <= bound)
    assert info["rel_residual"] < 0.02       # 16 snapshots span the 0.075 profile to 1.3% in L2
    assert err.max() < 0.25 * naive.max()    # the snapshots' history matters: measured 5x better than the mean


def test_snapshot_files_are_small_and_truncate_on_resume(tmp_path):
    """A snapshot holds only the profiles' parameters; truncate drops the steps past a resume point."""
    directory, _ = _snapshot_run(tmp_path, steps=2000, every=500)
    with np.load(ema_snapshots.path(directory, 500)) as z:
        assert sorted(z.files) == ["p0_0", "p1_0", "paths", "sigma_rels", "step"]
        np.testing.assert_array_equal(z["sigma_rels"], SIGMAS)
    open(os.path.join(directory, ".tmp-1-step_000000999.npz"), "w").close()
    ema_snapshots.truncate(directory, 1000)
    assert ema_snapshots.steps(directory) == [500, 1000] and len(os.listdir(directory)) == 2
    with pytest.raises(ValueError, match="another network"):
        ema_snapshots.load(directory, 500, {"v": np.zeros(24, np.float32)})


def test_cli_train_ema_sample_on_the_digits(tmp_path, capsys):
    """`genflow train` (the embedded digits, 30 steps), `genflow ema --sigma-rel`, `genflow sample
    --ema sigma_rel=S` (written, and built on the fly when not yet written); bad input is one sentence."""
    from genflow.cli.main import main

    small = ["--set", "net.width=32", "--set", "net.depth=1", "--set", "train.steps=30", "--set", "train.batch_size=32",
             "--set", "train.ckpt_every=10", "--set", "train.ema_snapshot_every=5", "--set", "sample.steps=5",
             "--set", "sample.num=8", "--set", "data.holdout=16", "--no-progress"]
    run = str(tmp_path / "run")
    assert main(["train", "--workdir", run, *small]) == 0
    assert ema_snapshots.steps(os.path.join(run, "ema_snapshots")) == list(range(5, 31, 5))
    capsys.readouterr()
    assert main(["ema", run, "--sigma-rel", "0.07", "--sigma-rel", "0.1"]) == 0
    table = capsys.readouterr().out
    assert "| 0.07 " in table and "sigma_rel=0.070" in table
    meta = json.load(open(os.path.join(run, "ema", "sigma_rel=0.070", "meta.json")))
    assert meta["step"] == 30 and len(meta["snapshots"]) == 12 and abs(sum(c for _, _, c in meta["snapshots"]) - 1) < 1e-9
    out = str(tmp_path / "s.npz")
    assert main(["sample", run, "--ema", "sigma_rel=0.07", "--num", "8", "--out", out, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "post-hoc EMA sigma_rel=0.07" in err and "built" not in err     # read, not rebuilt
    x = np.load(out)["samples"]
    assert x.shape == (8, 8, 8, 1) and np.all(np.isfinite(x))
    # The stored 0.10 profile comes back as the training run's own tracked EMA (its last checkpoint).
    from genflow.cli.run import load_run

    phema = load_run(run, "sigma_rel=0.1").params
    from genflow.training import Checkpointer

    ckpt = Checkpointer(os.path.join(run, "checkpoints"))
    _, tracked = ckpt.restore_weights((phema, phema), field="phema")
    ckpt.close()
    for a, b in zip(jax.tree.leaves(phema), jax.tree.leaves(tracked[1])):
        np.testing.assert_array_max_ulp(np.asarray(a), np.asarray(b), maxulp=1)
    assert main(["sample", run, "--ema", "sigma_rel=0.08", "--num", "8", "--out", out, "--no-progress"]) == 0
    assert "built the post-hoc EMA sigma_rel=0.08 at step 30 from 6 snapshots" in capsys.readouterr().err
    assert os.path.exists(os.path.join(run, "ema", "sigma_rel=0.080", "weights.npz"))
    for argv, message in [(["sample", run, "--ema", "0.07", "--out", out], "--ema takes sigma_rel=S"),
                          (["sample", run, "--ema", "sigma_rel=0.3", "--out", out], "between 0 and 0.2887"),
                          (["ema", run, "--sigma-rel", "0"], "--sigma-rel takes EMA lengths sigma_rel between 0")]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    # Written weights made from other snapshots than those on disk now are rebuilt, not trusted.
    os.remove(ema_snapshots.path(os.path.join(run, "ema_snapshots"), 5))
    assert main(["sample", run, "--ema", "sigma_rel=0.07", "--num", "8", "--out", out, "--no-progress"]) == 0
    assert "built the post-hoc EMA sigma_rel=0.07 at step 30 from 5 snapshots" in capsys.readouterr().err
    damaged = ema_snapshots.path(os.path.join(run, "ema_snapshots"), 15)
    with open(damaged, "r+b") as f:
        f.truncate(200)
    assert main(["ema", run, "--sigma-rel", "0.09"]) == 2
    err = capsys.readouterr().err
    assert f"EMA snapshot {damaged} cannot be read" in err and err.count("\n") == 1, err
    # A run that tracked no power EMA (train.ema_sigma_rels=(), as runs before them) has no snapshots.
    from genflow import config as C
    from genflow.cli.run import snapshot_every

    bare_exp = C.with_overrides(C.Experiment(), ["train.ema_sigma_rels="])
    assert bare_exp.train.ema_sigma_rels == () and snapshot_every(bare_exp.train) == 0
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text(C.dumps(bare_exp))
    for argv in (["ema", str(bare), "--sigma-rel", "0.07"], ["sample", str(bare), "--ema", "sigma_rel=0.07"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "has no EMA snapshots" in err and err.count("\n") == 1, err


@pytest.mark.slow  # an older run layout; resuming with the profiles is checked by the kill/resume tests
def test_a_run_from_before_post_hoc_ema_still_resumes(tmp_path, capsys):
    """A config.json without train.ema_sigma_rels (and checkpoints without power EMAs) is a run that
    tracked none: it resumes as before, and `genflow ema` says it has no snapshots."""
    from genflow import config as C
    from genflow.cli.main import main
    from genflow.cli.run import read_config, train

    exp = C.Experiment(name="old", data=C.Data(name="moons"), process=C.Process(name="rectified_flow"),
                       net=C.Net(width=16, depth=1), predicts="velocity", objective="flow_matching",
                       train=C.Train(batch_size=16, steps=4, log_every=2, ckpt_every=2, ema_sigma_rels=()),
                       sample=C.Sample(sampler="euler_ode", steps=2, num=8))
    run = str(tmp_path / "old")
    train(exp, run, progress=False)
    cfg = json.load(open(os.path.join(run, "config.json")))
    del cfg["train"]["ema_sigma_rels"], cfg["train"]["ema_snapshot_every"]
    json.dump(cfg, open(os.path.join(run, "config.json"), "w"))
    assert read_config(run).train.ema_sigma_rels == ()
    assert main(["train", "--workdir", run, "--resume", "--set", "train.steps=6", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["ema", run, "--sigma-rel", "0.07"]) == 2
    assert "has no EMA snapshots" in capsys.readouterr().err
