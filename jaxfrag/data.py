"""The paper's data models, one trial at a time.

Contract: every sampler takes a `jax.random` key first and returns the data of
ONE trial of dimension d; data points are the COLUMNS of the returned matrix.
`size` (default d) is the compiled size the trial is embedded in (see
`jaxfrag.embedding`); the draws do not depend on it.

* `gaussian_points` -- Theorem 1: d points in R^d with iid N(0, 1) entries,
  point i has class i. Padded points sit at distance ~2^20, out of the way.
* `generative_points` -- Theorem 4: x_i = G_t ... G_1 v_i, G entries N(0, 1/d),
  v_i entries N(0, 1).
* `hypercube_model` -- Theorem 6: x = A z, z in {+1,-1}^d, label = last bit of z.
  Returns the mixing matrix A (first d-1 columns optionally scaled, as in
  section 6) and the sign vector z of the trial's data point.
* `hypercube_points` -- every point A z of that model (2^d columns, small d).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxfrag import embedding


def gaussian_points(key: jax.Array, d, size: int | None = None) -> jax.Array:
    """(size, size): column i is the data point of class i."""
    return embedding.normal_matrix(key, d, size or d, pad_value=embedding.BIG)


def generative_points(key: jax.Array, d, generator_depth: int, size: int | None = None) -> jax.Array:
    """(size, size): columns G_t ... G_1 v_i of the linear generative model."""
    size = size or d
    key_v, *key_g = jax.random.split(key, generator_depth + 1)
    x = embedding.normal_matrix(key_v, d, size, pad_value=embedding.BIG)
    real = embedding.real_mask(size, d)
    scale = jnp.where(real[:, None] & real[None, :], 1 / jnp.sqrt(jnp.asarray(d, x.dtype)), 1)
    for k in key_g:
        x = (embedding.normal_matrix(k, d, size) * scale) @ x
    return x


def hypercube_model(
    key: jax.Array, d, scale_columns: float = 1.0, size: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """(A, z): A Gaussian with columns 1..d-1 times `scale_columns`; z a uniform sign vector."""
    size = size or d
    key_a, key_z = jax.random.split(key)
    a = embedding.normal_matrix(key_a, d, size)
    scaled = embedding.real_mask(size, d) & (jnp.arange(size) < size - 1)
    a = a * jnp.where(scaled, scale_columns, 1).astype(a.dtype)[None, :]
    return a, embedding.sign_vector(key_z, d, size, a.dtype)


def all_sign_vectors(d: int) -> np.ndarray:
    """Every z in {+1,-1}^d as the columns of a (d, 2^d) array."""
    bits = (np.arange(2**d)[None, :] >> np.arange(d)[:, None]) & 1
    return (1 - 2 * bits).astype(np.int8)


def hypercube_points(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(X, labels): all 2^d points A z of an unpadded A as columns, and their labels z_d."""
    z = jnp.asarray(all_sign_vectors(a.shape[0]), a.dtype)
    return a @ z, z[-1]
