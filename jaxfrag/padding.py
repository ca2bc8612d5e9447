"""Run a trial of dimension d inside a program compiled for a larger size D >= d.

Why: XLA compiles one program per array shape, and on a CPU compiling takes
seconds per program -- more than running all trials of a small d. So a sweep
compiles one program per bucket of dimensions (`bucket`) and runs each d of the
bucket inside it, with d a runtime value.

Contract (p = D - d padded coordinates; the module is named for what it does to a trial: pads it):
* A real d x d matrix sits in the LAST d rows and columns, so "the last column"
  (a_d, x_d, R_dd) keeps its index: square matrices are blockdiag(c I_p, M);
  hidden layers are [[I_p, 0], [0, H], [0, 0]]; vectors are (0_p, v).
  Block-diagonal embedding commutes with QR, inverses and products, so the real
  block of every result is the unpadded result (to floating-point rounding).
* Random draws are indexed by the real shape only: real entry (i, j) of an
  (rows, cols) block is number i * cols + j of one `jax.random` draw, which is
  the number an unpadded program draws there (JAX's counter-based threefry
  gives every element from its index alone). A trial sees the same inputs
  whatever D is, and the tests check the outputs against an unpadded run.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Scale of padded points and padded search columns: far from every real one,
# and a power of two, so the arithmetic on them is exact in float32.
BIG = 2.0**20


def bucket(d: int, multiple: int) -> int:
    """A compiled size for dimension d: d rounded up to a multiple of `multiple`.

    Each compiled program costs seconds on a CPU (more than running all 500
    trials of a small d), while padding costs at most (D / d)^3 more arithmetic
    in the dense parts and nothing in the sphere decoder's search, which skips
    padded levels. The experiments choose their grids with that trade in mind.
    """
    return multiple * math.ceil(d / multiple)


def real_mask(size: int, d) -> jax.Array:
    """True on the last d of `size` coordinates."""
    return jnp.arange(size) >= size - d


def placed(flat: jax.Array, rows, cols, row_offset, col_offset, shape) -> tuple[jax.Array, jax.Array]:
    """Put flat[i * cols + j] at (row_offset + i, col_offset + j); also return where it went."""
    i = jnp.arange(shape[0])[:, None] - row_offset
    j = jnp.arange(shape[1])[None, :] - col_offset
    inside = (i >= 0) & (i < rows) & (j >= 0) & (j < cols)
    return flat[jnp.where(inside, i * cols + j, 0)], inside


def normal_matrix(key: jax.Array, d, size: int, pad_value: float = 1.0, dtype=None) -> jax.Array:
    """blockdiag(pad_value I_p, G) (size, size), G a d x d standard Gaussian block."""
    dtype = dtype or jnp.result_type(float)
    flat = jax.random.normal(key, (size * size,), dtype)
    p = size - d
    values, inside = placed(flat, d, d, p, p, (size, size))
    return jnp.where(inside, values, pad_value * jnp.eye(size, dtype=dtype))


def normal_layer(key: jax.Array, rows, cols, pad, shape: tuple[int, int], dtype=None) -> jax.Array:
    """[[I_pad, 0], [0, H], [0, 0]] of `shape`, H a rows x cols standard Gaussian block."""
    dtype = dtype or jnp.result_type(float)
    flat = jax.random.normal(key, (shape[0] * shape[1],), dtype)
    values, inside = placed(flat, rows, cols, pad, pad, shape)
    identity = jnp.eye(*shape, dtype=dtype) * (jnp.arange(shape[0]) < pad)[:, None]
    return jnp.where(inside, values, identity)


def sign_vector(key: jax.Array, d, size: int, dtype=None) -> jax.Array:
    """(0_p, z) with z uniform in {+1,-1}^d."""
    dtype = dtype or jnp.result_type(float)
    signs = jax.random.rademacher(key, (size,), dtype)
    p = size - d
    index = jnp.arange(size) - p
    return jnp.where(index >= 0, signs[jnp.maximum(index, 0)], 0)
