"""Sample distances on cases with known answers."""
import jax
import jax.numpy as jnp
import pytest

from genflow.metrics import energy_distance, mmd_rbf, sliced_wasserstein


def test_point_masses(x64):
    # All mass at a vs all at b: E|X-Y| = |a-b|, the within terms are 0 -> 2|a - b|.
    x, y = jnp.zeros((10, 2)), jnp.tile(jnp.array([[3.0, 4.0]]), (10, 1))
    assert float(energy_distance(x, y)) == pytest.approx(10.0)
    # MMD^2 = 1 + 1 - 2 exp(-25/2)
    assert float(mmd_rbf(x, y)) == pytest.approx(2 - 2 * float(jnp.exp(-12.5)))
    # every projection of a shift by (3, 4) moves by <u, (3,4)>; E<u, v>^2 = |v|^2 / d for uniform u.
    sw = float(sliced_wasserstein(x, y, jax.random.PRNGKey(0), num_projections=20_000))
    assert sw == pytest.approx((25 / 2) ** 0.5, rel=2e-2)


def test_equal_distributions_are_near_zero_and_shifts_are_not(x64):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    a, b = jax.random.normal(k1, (2000, 2)), jax.random.normal(k2, (2000, 2))
    shifted = jax.random.normal(k3, (2000, 2)) + 0.5
    # Unbiased statistics: mean zero under equality, standard deviation O(1/n) here.
    assert abs(float(energy_distance(a, b))) < 0.01 < float(energy_distance(a, shifted))
    assert abs(float(mmd_rbf(a, b))) < 0.005 < float(mmd_rbf(a, shifted))
    # Gaussian shift by (0.5, 0.5): sliced W2 = |shift| / sqrt(d) = 0.5 plus sampling noise.
    assert float(sliced_wasserstein(a, shifted, k3)) == pytest.approx(0.5, abs=0.06)


def test_sliced_needs_equal_sizes():
    with pytest.raises(ValueError, match="needs equal sample sizes"):
        sliced_wasserstein(jnp.zeros((3, 2)), jnp.zeros((4, 2)), jax.random.PRNGKey(0))
