"""benchmarks/gpu_suite.sh: its time guards, its imports on a machine without tensorflow-datasets,
and (slow) the whole suite in --smoke mode on CPU."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = os.path.join(ROOT, "benchmarks", "gpu_suite.sh")
SECTIONS = 5


def _no_tfds(tmp_path) -> str:
    """A PYTHONPATH entry whose sitecustomize makes `import tensorflow_datasets` fail, as on the GPU machine."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['tensorflow_datasets'] = None\n")
    return str(tmp_path)


def _run_suite(tmp_path, *args, **env):
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=_no_tfds(tmp_path), **env)
    env.pop("XLA_FLAGS", None)  # one CPU device, as a one-GPU machine has
    return subprocess.run(["bash", SUITE, *args], env=env, capture_output=True, text=True, timeout=600)


def test_a_section_that_runs_out_of_time_is_stopped_and_the_suite_goes_on(tmp_path):
    out = _run_suite(tmp_path, "--smoke", GPU_SUITE_TIMEOUT="1")
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.count("stopped at its 1 s limit") == 2 * SECTIONS  # the notice and the summary row
    assert "| section | seconds | status |" in out.stdout


def test_the_benchmarks_import_without_tensorflow_datasets(tmp_path):
    code = ("import sys; sys.path.insert(0, 'benchmarks')\n"
            "import train_throughput, sampling_throughput, data_rate\n"
            "from genflow.models.dit import DiT\n"
            "try:\n    import tensorflow_datasets\nexcept ImportError:\n    print('no tfds')\n")
    env = dict(os.environ, PYTHONPATH=_no_tfds(tmp_path) + os.pathsep + ROOT)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "no tfds", out.stderr


def test_unknown_arguments_are_refused(tmp_path):
    out = _run_suite(tmp_path, "--fast")
    assert out.returncode == 2 and "usage: bash benchmarks/gpu_suite.sh [--smoke]" in out.stderr


@pytest.mark.slow
def test_the_whole_suite_runs_in_smoke_mode_on_cpu(tmp_path):
    """About 80 s on 2 cores: every section finishes and prints its table."""
    out = _run_suite(tmp_path, "--smoke")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("| done |") == SECTIONS
    for row in ("| DDPM++ U-Net | bfloat16 | 8 |", "| DDPM++ U-Net | float32 | 8 |", "| DiT (tiny) | bfloat16 | 8 |",
                "| bfloat16 | 4 | 6 |", "| folder (32x32 PNG) |"):
        assert row in out.stdout, row
