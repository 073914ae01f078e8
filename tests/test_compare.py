"""The objective-comparison harness: end to end on a tiny setting, its gradient-variance
estimator against an exact answer, and its errors for bad experiments."""
import json
import os
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.cli.compare import compare_command
from genflow.compare import Result, format_table, gradient_variance

TINY = """
from genflow.config import Comparison, Data, Experiment, Net, Optim, Process, Sample, Train

config = Experiment(
    name="tiny", data=Data(name="gmm", holdout=64), process=Process(name="vp"),
    net=Net(name="mlp", width=16, depth=1, emb_dim=8), predicts="eps", weighting="{weighting}",
    optim=Optim(lr=1e-3, warmup_steps=0), train=Train(batch_size=16, steps=3, seed=0),
    sample=Sample(sampler="euler_ode", steps=4, denoise=False))
comparison = Comparison(objectives={objectives}, ism_trace="rademacher", probe="rademacher",
                        num_samples=32, fisher_samples=64, nll_samples={nll}, grad_batches=3)
"""


def write_experiment(tmp_path, objectives=("ism",), weighting="sigma2", nll=0, name="tiny.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(TINY.format(objectives=tuple(objectives), weighting=weighting, nll=nll)))
    return str(path)


def test_harness_runs_end_to_end_and_writes_table_and_plot(tmp_path, capsys):
    """One objective (implicit SM: jvps inside the train step) on mixture data: every column but
    the NLL (a diffrax solve, left out of the fast setting), the reference row, the files."""
    out = tmp_path / "out"
    assert compare_command(write_experiment(tmp_path), str(out), 2, 0) == 0
    printed = capsys.readouterr().out
    for name in ("ism", "exact score (reference)"):
        assert f"| {name} |" in printed
    assert "Fisher div." in printed and "XLA peak MiB" in printed and "NLL" not in printed
    assert (out / "comparison.md").read_text().count("\n| ") == 3  # header + 2 rows
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG"
    rows = {r["name"]: r for r in json.loads((out / "comparison.json").read_text())}
    r = rows["ism"]
    assert len(r["loss_curve"]) == 2 and r["fisher"] > 0 and np.isfinite(r["energy"])
    # the loop's rows are the loss curve, its hook (every step here, and at the last) the Fisher curve
    assert [st for st, _ in r["loss_curve"]] == [1, 2] and [st for st, _ in r["fisher_curve"]] == [1, 2]
    assert r["grad_var_init"] > 0 and r["grad_var_trained"] > 0 and r["ms_per_step"] > 0
    assert 0 < r["temp_mib"] < r["peak_mib"] and r["arg_mib"] > 0  # XLA's memory analysis exists on CPU
    assert rows["exact score (reference)"]["fisher"] == 0.0


@pytest.mark.slow
def test_harness_is_reproducible_and_objectives_do_not_interact(tmp_path, capsys):
    """Same seed, same numbers; and an objective's numbers do not depend on which others are
    compared beside it (the "trained" gradient point is the first objective's in both runs)."""
    both = write_experiment(tmp_path, objectives=("exact", "dsm"), weighting="likelihood", name="a.py")
    alone = write_experiment(tmp_path, objectives=("exact",), weighting="likelihood", name="b.py")
    rows = []
    for i, path in enumerate([both, alone]):
        assert compare_command(path, str(tmp_path / f"out{i}"), 2, 5) == 0
        rows.append(json.loads((tmp_path / f"out{i}" / "comparison.json").read_text())[0])
    assert rows[0]["name"] == rows[1]["name"] == "exact"
    for key in ("final_loss", "fisher", "energy", "grad_var_init", "grad_var_trained", "loss_curve"):
        assert rows[0][key] == rows[1][key], key


def test_gradient_variance_is_exact_on_a_quadratic():
    """loss = ||p - x||^2 / 2 has gradient p - x: tr Cov over minibatches is the summed sample
    variance of x (1/(K-1)), and ||E g||^2 = ||p - mean x||^2."""
    params = {"a": jnp.array([0.5, -1.0]), "b": jnp.array(2.0)}
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(7, 3)).astype(np.float32)
    loss = lambda p, x, key: 0.5 * (jnp.sum((p["a"] - x[:2]) ** 2) + (p["b"] - x[2]) ** 2)
    var, sq = gradient_variance(loss, params, jnp.asarray(xs), jax.random.split(jax.random.PRNGKey(0), 7))
    assert float(var) == pytest.approx(np.sum(np.var(xs, axis=0, ddof=1)), rel=1e-5)
    p = np.array([0.5, -1.0, 2.0])
    assert float(sq) == pytest.approx(np.sum((p - xs.mean(0)) ** 2), rel=1e-5)


def test_table_leaves_out_columns_nobody_measured():
    table = format_table([Result("dsm", final_loss=0.5, energy=0.1), Result("ism", final_loss=-1.0)])
    assert "Fisher" not in table and "NLL" not in table
    assert "| ism | -1 | – |" in table


@pytest.mark.parametrize("change, message", [
    (dict(objectives=("dsm", "sm")), "comparison objective 'sm' is not one of"),
    (dict(weighting="flat"), "weighting 'flat' is not one of"),
])
def test_bad_experiments_stop_with_one_sentence(tmp_path, capsys, change, message):
    kw = dict(objectives=("dsm",), weighting="sigma2") | change
    assert compare_command(write_experiment(tmp_path, **kw), str(tmp_path / "o"), 1, 0) == 2
    err = capsys.readouterr().err
    assert err.startswith("genflow: error: ") and message in err
    assert not os.path.exists(tmp_path / "o")


def test_exact_needs_a_known_score(tmp_path, capsys):
    path = tmp_path / "digits.py"
    path.write_text("from genflow.config import Comparison, Experiment\n"
                    "config = Experiment()\ncomparison = Comparison(objectives=('dsm', 'exact'))\n")
    assert compare_command(str(path), str(tmp_path / "o"), 1, 0) == 2
    assert "objective 'exact' needs data whose score is known" in capsys.readouterr().err


def test_experiment_configs_load_and_still_train():
    """Both comparison configs parse, and their ``config`` is an ordinary Experiment for `genflow train`."""
    from genflow.cli.compare import load_comparison
    from genflow.config import Experiment

    root = os.path.join(os.path.dirname(__file__), "..", "experiments")
    for name in ("compare_2d.py", "compare_digits.py"):
        exp, cmp = load_comparison(os.path.join(root, name))
        assert isinstance(exp, Experiment) and exp.objective == "dsm" and cmp.objectives


def test_error_message_names_what_diffrax_reports_not_its_traceback_decoration():
    import diffrax

    from genflow.compare import error_message

    try:   # a stiff ODE with too few steps: diffrax raises equinox's runtime error
        sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, a: -1e6 * y), diffrax.Tsit5(), 0.0, 1.0, 0.1,
                                  jnp.ones(2), max_steps=4,
                                  stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8))
        jax.block_until_ready(sol.ys)
    except Exception as e:
        message = error_message(e)
    assert message.startswith("The maximum number of solver steps was reached"), message
    assert error_message(ValueError("bad shape\nmore")) == "bad shape"
