"""Test set-up: 8 simulated CPU devices, and enough host threads for their collectives.

Both must be set before jax is first imported: on 2-core machines JAX hangs in its first
8-device collective unless NPROC is at least the device count.
"""
import os

os.environ.setdefault("NPROC", "16")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        skip = pytest.mark.skip(reason="slow check; skipped when CI=true")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
