"""Test set-up: 8 simulated CPU devices, and enough host threads for their collectives.

Both must be set before jax is first imported: on 2-core machines JAX hangs in its first
8-device collective unless NPROC is at least the device count.
"""
import os

os.environ.setdefault("NPROC", "16")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA cache for the whole suite (both xdist workers and the CLI subprocesses the
# tests start): the same train step, sampler or UNet compiled by twenty tests is compiled once.
# Keys hold the program, jax version and devices, so a warm cache cannot change a result.
import tempfile  # noqa: E402

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "genflow-test-xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Run a test in float64 (exact-answer checks), restoring float32 afterwards."""
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", False)


def pytest_collection_modifyitems(config, items):
    """Checks marked slow (minutes each) run only when asked for: GENFLOW_SLOW=1."""
    from tests.helpers import SLOW_RUN

    if not SLOW_RUN:
        skip = pytest.mark.skip(reason="slow check; run it with GENFLOW_SLOW=1")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
