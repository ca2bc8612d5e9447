"""Gradient-based compression along a path, against gradients known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import enable_x64

from jaxfrag.compression import path_compression

DTYPES = [jnp.float32, jnp.float64]


def quadratic_model(c):
    """f(x) = (||x||^2 / 2, c.x): g = f_0 - f_1 has gradient x - c."""
    return lambda x: jnp.stack([0.5 * x @ x, c @ x])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d,n_alpha", [(3, 2), (12, 10), (40, 100)])
def test_path_compression_matches_closed_form_gradients(d, n_alpha, dtype):
    with enable_x64(dtype == jnp.float64):
        rng = np.random.default_rng(d)
        c, x_from, x_to = (rng.standard_normal(d) for _ in range(3))
        result = path_compression(
            quadratic_model(jnp.asarray(c, dtype)),
            jnp.asarray(x_from, dtype),
            jnp.asarray(x_to, dtype),
            (0, 1),
            n_alpha,
        )
        v = x_to - x_from
        alphas = np.linspace(0, 1, n_alpha)
        grads = np.stack([x_from + a * v - c for a in alphas])  # closed form of grad g
        norms = np.linalg.norm(grads, axis=1)
        cos = grads @ v / (norms * np.linalg.norm(v))
        m = np.cumsum(norms * cos * np.linalg.norm(v) / (n_alpha - 1)) / norms[0]
        rtol = 1e-4 if dtype == jnp.float32 else 1e-12
        np.testing.assert_allclose(result.alphas, alphas, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(result.grad_norm, norms, rtol=rtol)
        np.testing.assert_allclose(result.cos, cos, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(result.length, m, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("n_alpha", [2, 11, 101])
def test_linear_model_length_is_n_over_n_minus_1_times_the_projection(n_alpha):
    # Constant gradient g: cos is constant, and eq. (8)'s M as the paper's Tables 5 and 8 sum it
    # (all n points, each weighted L / (n - 1)) is n / (n - 1) times the projection g.v / ||g||:
    # 2x at n = 2, 1.1x at the paper's n = 11, tending to the projection itself.
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 5))
    x_from, x_to = rng.standard_normal(5), rng.standard_normal(5)
    with enable_x64(True):
        result = path_compression(lambda x: jnp.asarray(w) @ x, jnp.asarray(x_from), jnp.asarray(x_to), (1, 0), n_alpha)
    g = w[1] - w[0]
    v = x_to - x_from
    projection = g @ v / np.linalg.norm(g)
    np.testing.assert_allclose(result.cos, g @ v / (np.linalg.norm(g) * np.linalg.norm(v)), rtol=1e-12)
    np.testing.assert_allclose(result.length, projection * np.arange(1, n_alpha + 1) / (n_alpha - 1), rtol=1e-12)


def test_vmaps_over_pairs():
    rng = np.random.default_rng(1)
    c = jnp.asarray(rng.standard_normal(4), jnp.float32)
    starts, ends = (jnp.asarray(rng.standard_normal((6, 4)), jnp.float32) for _ in range(2))
    model = quadratic_model(c)
    batched = jax.jit(jax.vmap(lambda a, b: path_compression(model, a, b, (0, 1), 7)))(starts, ends)
    for k in range(6):
        one = path_compression(model, starts[k], ends[k], (0, 1), 7)
        np.testing.assert_allclose(batched.length[k], one.length, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "x_to,classes,n_alpha,message",
    [
        (None, (0, 1), 1, "n_alpha must be at least 2"),
        ("same", (0, 1), 5, "x_from equals x_to"),
        (None, (1, 1), 5, "classes must differ"),
    ],
)
def test_bad_inputs_are_rejected(x_to, classes, n_alpha, message):
    x_from = jnp.ones(3)
    x_to = x_from if x_to == "same" else jnp.zeros(3)
    with pytest.raises(ValueError, match=message):
        path_compression(quadratic_model(jnp.ones(3)), x_from, x_to, classes, n_alpha)
