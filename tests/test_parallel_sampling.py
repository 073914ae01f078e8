"""Parallel-in-time sampling (genflow.samplers.parallel) gives the sequential sampler's answer.

The model is the exact posterior mean of a 2-D Gaussian mixture (no training noise), so "the
answer" is the sequential sampler's output on the same grid with the same noise; every check is
against it, and the accuracy one also against the sampler's own discretisation error.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from genflow.data.toy2d import GaussianMixture
from genflow.processes import DDPM, VP
from genflow.samplers import SAMPLERS, grids, parallel

N = 60
MIX = GaussianMixture.eight_gaussians()
KEY = jax.random.PRNGKey(2)
# (sampler, process, grid, options): every sampler the driver covers, with its noise where it has any
CASES = {
    "euler_ode": (VP(), lambda p: grids.uniform(p, N), {}),
    "ddim_eta1": (VP(), lambda p: grids.uniform(p, N), {"eta": 1.0}),
    "dpm_solver_pp_2m": (VP(), lambda p: grids.log_snr(p, N), {}),
    "euler_maruyama": (VP(), lambda p: grids.uniform(p, N), {}),
    "ancestral": (DDPM(), lambda p: p.time_of_step(jnp.round(jnp.linspace(p.num_steps, 0, N + 1)).astype(int)), {}),
}
METHODS = [("picard", "isotropic"), ("newton", "isotropic"), ("newton", "full")]
# every sampler once, each method and Jacobian at least once (all 15 with GENFLOW_SLOW=1; Newton with
# the full Jacobian is also checked on euler_ode and 2M in the discretisation-error test below)
FAST = {("euler_ode", "newton", "full"), ("ddim_eta1", "picard", "isotropic"), ("dpm_solver_pp_2m", "picard", "isotropic"),
        ("euler_maruyama", "newton", "isotropic"), ("ancestral", "newton", "isotropic")}
MATRIX = [pytest.param(case, method, jacobian, marks=() if (case, method, jacobian) in FAST else pytest.mark.slow)
          for case in CASES for method, jacobian in METHODS]


def setup(case, dtype=jnp.float32):
    process, grid, options = CASES[case]
    model = MIX.exact_model(process, "eps")
    x1 = process.prior(jax.random.PRNGKey(1), (8, 2)).astype(dtype)
    ts = grid(process).astype(dtype)
    name = case.replace("_eta1", "")
    ref, _ = SAMPLERS[name].fn(model, x1, ts, key=KEY, **options)
    return name, model, x1, ts, options, ref


@pytest.mark.parametrize("case,method,jacobian", MATRIX)
def test_parallel_equals_sequential_in_fewer_rounds(case, method, jacobian):
    name, model, x1, ts, options, ref = setup(case)
    x, stats = parallel.sample(model, x1, ts, sampler=name, method=method, jacobian=jacobian, key=KEY, tol=1e-4,
                               **options)
    err = float(jnp.max(jnp.abs(x - ref)))
    print(f"{case} {method}/{jacobian}: {int(stats['rounds'])} rounds, {int(stats['nfe'])} NFE, err {err:.1e}")
    # Picard on a stochastic sampler lags more (its step depends on x mostly through the network)
    stochastic = SAMPLERS[name].stochastic and options.get("eta", 1.0) > 0
    bound = N // 4 if method == "newton" else (0.7 * N if stochastic else N // 2)
    assert bool(stats["converged"]) and int(stats["rounds"]) <= bound
    # every accepted step moved by at most tol * sigma <= 1e-4: N tol bounds the drift (amplification ~1)
    assert err < N * 1e-4


@pytest.mark.parametrize("case", ["euler_ode", "dpm_solver_pp_2m"])
def test_parallel_error_is_below_the_samplers_own_discretisation_error(case):
    name, model, x1, ts, options, ref = setup(case)
    process = CASES[case][0]
    fine = grids.uniform(process, 8 * N) if case == "euler_ode" else grids.log_snr(process, 8 * N)
    finer, _ = SAMPLERS[name].fn(model, x1, fine)
    discretisation = float(jnp.max(jnp.abs(ref - finer)))
    for method in ("picard", "newton"):
        x, stats = parallel.sample(model, x1, ts, sampler=name, method=method, jacobian="full", tol=1e-3)
        err = float(jnp.max(jnp.abs(x - ref)))
        assert err < 0.1 * discretisation, (method, err, discretisation)
        assert int(stats["rounds"]) <= N // 3


@pytest.mark.parametrize("case", ["ddim_eta1", pytest.param("dpm_solver_pp_2m", marks=pytest.mark.slow),
                                  pytest.param("ancestral", marks=pytest.mark.slow)])
def test_tol_zero_is_the_sequential_answer_to_rounding(case, x64):
    name, model, x1, ts, options, ref = setup(case, jnp.float64)
    for method in ("picard", "newton"):
        x, stats = parallel.sample(model, x1, ts, sampler=name, method=method, key=KEY, tol=0.0, **options)
        assert bool(stats["converged"]) and int(stats["rounds"]) <= N
        np.testing.assert_allclose(np.asarray(x), np.asarray(ref), rtol=0, atol=1e-12)


def test_tol_zero_in_float32_matches_to_float32_rounding():
    name, model, x1, ts, options, ref = setup("euler_ode")
    x, stats = parallel.sample(model, x1, ts, sampler=name, method="newton", jacobian="full", tol=0.0)
    # the window's batched network call and the sequential one round differently: a few ulps of |x| ~ 2
    np.testing.assert_allclose(np.asarray(x), np.asarray(ref), rtol=0, atol=16 * np.finfo(np.float32).eps * 2)


def test_picard_with_window_n_and_n_rounds_is_exactly_sequential(x64):
    name, model, x1, ts, options, ref = setup("ddim_eta1", jnp.float64)
    # tol = 0 accepts a step early only where its update is exactly 0; at most N rounds
    x, stats = parallel.sample(model, x1, ts, sampler=name, key=KEY, window=N, tol=0.0, max_rounds=N, **options)
    assert bool(stats["converged"]) and int(stats["rounds"]) <= N
    np.testing.assert_allclose(np.asarray(x), np.asarray(ref), rtol=0, atol=1e-12)
    # and a window of one step is the sequential sampler itself, one network call per round
    x, stats = parallel.sample(model, x1, ts, sampler=name, key=KEY, window=1, tol=0.0, **options)
    assert int(stats["rounds"]) == N and int(stats["nfe"]) == N
    np.testing.assert_allclose(np.asarray(x), np.asarray(ref), rtol=0, atol=1e-12)


def test_a_sliding_window_and_a_round_limit():
    name, model, x1, ts, options, ref = setup("dpm_solver_pp_2m")
    x, stats = parallel.sample(model, x1, ts, sampler=name, window=15, tol=1e-4)
    assert bool(stats["converged"]) and float(jnp.max(jnp.abs(x - ref))) < 1e-3
    assert int(stats["nfe"]) <= int(stats["rounds"]) * 15
    _, stats = parallel.sample(model, x1, ts, sampler=name, tol=0.0, max_rounds=2)
    assert int(stats["rounds"]) == 2 and not bool(stats["converged"])   # said, not hidden


def test_denoise_and_labels_go_through():
    process = VP()
    model = MIX.exact_model(process, "eps", conditional=True)
    x1 = process.prior(jax.random.PRNGKey(1), (8, 2))
    labels = jnp.arange(8) % 9                                         # 8 = the null label
    ts = grids.uniform(process, N)
    ref, ref_stats = SAMPLERS["ddim"].fn(model, x1, ts, cond=labels, denoise=True)
    x, stats = parallel.sample(model, x1, ts, sampler="ddim", cond=labels, denoise=True, tol=1e-5, method="newton",
                               jacobian="full")
    assert float(jnp.max(jnp.abs(x - ref))) < 1e-3
    assert int(stats["nfe"]) > int(ref_stats["nfe"])                   # the rounds' calls, and denoise's one


def test_the_window_sharded_over_8_devices_equals_unsharded():
    assert jax.device_count() == 8
    name, model, x1, ts, options, ref = setup("ddim_eta1")
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
    kwargs = dict(sampler=name, method="newton", key=KEY, window=20, tol=1e-4, **options)
    x, stats = parallel.sample(model, x1, ts, **kwargs)
    xs, stats_s = parallel.sample(model, x1, ts, sharding=sharding, **kwargs)
    assert int(stats["rounds"]) == int(stats_s["rounds"])
    np.testing.assert_allclose(np.asarray(xs), np.asarray(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    (dict(sampler="edm_heun"), "'edm_heun' is not one of them"),
    (dict(sampler="tsit5"), "is not one of them"),
    (dict(method="jacobi"), "unknown parallel method 'jacobi'"),
    (dict(jacobian="dense"), "unknown Jacobian 'dense'"),
    (dict(window=0), "window must be a positive number of steps"),
    (dict(tol=-1.0), "tol must be a finite number >= 0"),
    (dict(max_rounds=0), "max_rounds must be a positive integer"),
    (dict(sampler="ancestral"), "ancestral sampling runs DDPM's discrete chain"),
    (dict(sampler="euler_maruyama"), "euler_maruyama draws noise"),
])
def test_bad_input_is_one_sentence(kwargs, message):
    process = VP()
    model = MIX.exact_model(process, "eps")
    x1 = process.prior(jax.random.PRNGKey(1), (8, 2))
    with pytest.raises((ValueError, TypeError), match=message):
        parallel.sample(model, x1, grids.uniform(process, 10), **kwargs)


def test_cli_parallel_sample_equals_the_sequential_sample_of_a_trained_digits_run(capsys, tmp_path):
    from genflow import config as C
    from genflow.cli.main import main
    from genflow.cli.run import train

    # a digits MLP trained briefly (the README's 4,000-step run is benchmarks/parallel_sampling.py --run)
    digits = C.with_overrides(C.Experiment(), ["train.steps=30", "train.log_every=10", "train.ckpt_every=30",
                                               "train.batch_size=32", "net.width=64", "net.depth=2",
                                               "sample.num=16", "sample.steps=8"])
    workdir = str(tmp_path / "run")
    train(digits, workdir, progress=False)
    seq, par = str(tmp_path / "seq.npy"), str(tmp_path / "par.npy")
    common = ["sample", workdir, "--num", "16", "--sampler", "ddim", "--steps", "40", "--set", "eta=1.0"]
    assert main(common + ["--out", seq]) == 0
    for method in ("picard", "newton"):
        assert main(common + ["--out", par, "--parallel", method, "--window", "20", "--tol", "1e-5"]) == 0
        err = capsys.readouterr().err
        assert f"solved by {method} iteration in" in err and "for 40 steps (window 20" in err, err
        # pixels in [-1, 1]: 1e-3 is an eighth of one 8-bit level (2 / 255)
        np.testing.assert_allclose(np.load(par), np.load(seq), rtol=0, atol=1e-3)
    code = main(common + ["--out", par, "--parallel", "picard", "--sampler", "edm_heun"])
    assert code == 2 and "edm_heun is not one of them" in capsys.readouterr().err
