"""The data models' samplers against their definitions, entry by entry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfrag import data

DTYPES = [jnp.float32, jnp.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d,size", [(5, 5), (7, 12)])  # unpadded, and embedded in a larger program
@pytest.mark.parametrize("scale", [1.0, 5.0, 0.25])
def test_mixing_matrix_scales_the_first_d_minus_1_columns_only(d, size, scale, dtype):
    # Section 6 multiplies a_1 .. a_{d-1} by 5 and leaves a_d alone; phi is blind to column scaling,
    # so only a direct check catches a scaled a_d. The reference is the unscaled draw from the same key.
    with jax.enable_x64(dtype == jnp.float64):
        key = jax.random.key(d)
        plain = np.asarray(data.mixing_matrix(key, d, 1.0, size), float)
        scaled = np.asarray(data.mixing_matrix(key, d, scale, size), float)
        assert scaled.dtype == np.float64 and data.mixing_matrix(key, d, scale, size).dtype == dtype
    p = size - d
    real = plain[p:, p:]
    np.testing.assert_allclose(scaled[p:, p : size - 1], scale * real[:, :-1], rtol=1e-6)
    np.testing.assert_array_equal(scaled[p:, -1], real[:, -1])  # a_d untouched
    np.testing.assert_array_equal(scaled[:p, :p], np.eye(p))  # padding: the identity, unscaled
    assert not scaled[:p, p:].any() and not scaled[p:, :p].any()
    # The real block is the unpadded draw: a trial sees the same A whatever program runs it.
    with jax.enable_x64(dtype == jnp.float64):
        np.testing.assert_array_equal(real, np.asarray(data.mixing_matrix(key, d, 1.0), float))


def test_hypercube_model_uses_its_scaled_mixing_matrix_and_a_uniform_sign_vector():
    key = jax.random.key(3)
    a, z = data.hypercube_model(key, 6, 5.0)
    key_a, _ = jax.random.split(key)
    np.testing.assert_array_equal(a, data.mixing_matrix(key_a, 6, 5.0))
    assert set(np.asarray(z).tolist()) <= {-1.0, 1.0}
    signs = np.stack([np.asarray(data.hypercube_model(jax.random.key(k), 6)[1]) for k in range(400)])
    # Each sign is +1 with probability 1/2: 4-sigma bound on the 2400 signs' mean.
    assert abs(signs.mean()) < 4 / np.sqrt(signs.size)
