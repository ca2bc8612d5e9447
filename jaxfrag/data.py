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
* `mixing_matrix` -- the A of that model alone.
* `hypercube_indices` / `hypercube_batch` -- section 6's training sets: point
  index i in [0, 2^d) stands for z_j = 2 bit_j(i) - 1, and its class is the last
  bit (class 0 is z_d = -1, class 1 is z_d = +1; with W1 the class-0 row this
  gives the signs of the paper's Table 1). All 2^d indices while that is at
  most `max_points`, else `max_points` of them drawn without replacement.
  Points are made from indices on the fly, so no (2^d, d) array is stored.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxfrag import embedding
from jaxfrag.config import MAX_SAMPLED_D


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
    a = mixing_matrix(key_a, d, scale_columns, size)
    return a, embedding.sign_vector(key_z, d, size, a.dtype)


def mixing_matrix(key: jax.Array, d, scale_columns: float = 1.0, size: int | None = None) -> jax.Array:
    """(size, size): Gaussian A with its first d-1 (real) columns times `scale_columns`."""
    size = size or d
    a = embedding.normal_matrix(key, d, size)
    scaled = embedding.real_mask(size, d) & (jnp.arange(size) < size - 1)
    return a * jnp.where(scaled, scale_columns, 1).astype(a.dtype)[None, :]


def num_points(d: int, max_points: int) -> int:
    """How many hypercube points section 6's training set has: 2^d, or max_points if fewer."""
    return min(2**d, max_points)


def hypercube_indices(key: jax.Array, d: int, max_points: int) -> jax.Array:
    """(n,) int32 point indices: all 2^d in order, or max_points drawn uniformly without replacement."""
    if 2**d <= max_points:
        return jnp.arange(2**d, dtype=jnp.int32)
    if d > MAX_SAMPLED_D:
        raise ValueError(f"sampling hypercube points needs d <= {MAX_SAMPLED_D}, got {d}")
    return jax.random.choice(key, 2**d, (max_points,), replace=False).astype(jnp.int32)


def sign_vectors(indices: jax.Array, d: int, dtype=jnp.float32) -> jax.Array:
    """(n, d): z with z_j = 2 bit_j(index) - 1 for each index."""
    bits = (indices[:, None] >> jnp.arange(d, dtype=indices.dtype)[None, :]) & 1
    return (2 * bits - 1).astype(dtype)


def hypercube_batch(a: jax.Array, indices: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x, labels): the points A z of `indices` as rows (n, d), and their classes (last bit, int32)."""
    d = a.shape[0]
    z = sign_vectors(indices, d, a.dtype)
    return z @ a.T, ((indices >> (d - 1)) & 1).astype(jnp.int32)


def all_sign_vectors(d: int) -> np.ndarray:
    """Every z in {+1,-1}^d as the columns of a (d, 2^d) array."""
    bits = (np.arange(2**d)[None, :] >> np.arange(d)[:, None]) & 1
    return (1 - 2 * bits).astype(np.int8)


def hypercube_points(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(X, labels): all 2^d points A z of an unpadded A as columns, and their labels z_d."""
    z = jnp.asarray(all_sign_vectors(a.shape[0]), a.dtype)
    return a @ z, z[-1]
