"""Dense linear algebra for ONE small matrix, written in plain JAX ops.

Contract: every function takes a single (unbatched) matrix and is meant to be
`jax.vmap`-ed over trials. QR factors are sign-normalised so that R has a
non-negative diagonal (the convention of Bartlett's decomposition and of the
paper), which makes Q and R unique for a full-rank input. Q is never formed:
`qr` keeps the Householder vectors and `q_matmul` / `qt_matmul` apply them.

Why hand-written rather than `jnp.linalg.qr` / `solve_triangular`: on CPU those
lower to jaxlib's LAPACK FFI kernels, and in jaxlib 0.10.x a batched LAPACK
kernel fans its batch out onto the intra-op thread pool and blocks waiting for
it. With the trial axis sharded over several CPU devices (how this engine uses
both cores) every pool thread can end up blocked that way and the process
deadlocks (reproduced here with a sharded batched `qr`; upstream compiled the
parallel path out in 0.11). Plain HLO ops never block, and vectorising a
Householder sweep across the trial axis is also faster than one LAPACK call per
matrix at the small d this engine works at. Loops are `lax.fori_loop`, so the
compiled program does not grow with d.

On a GPU or TPU, `qr` and `qr_r` use the backend's own batched factorisation
instead (geqrf through `jnp.linalg.qr(mode="raw")`: cuSOLVER / cuBLAS batched
QR on NVIDIA), whose Householder vectors are converted to this module's form,
so the rest of the module works on either. `method="householder"` or
`"geqrf"` chooses explicitly.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


class QR(NamedTuple):
    """A = Q R for an (m, n) matrix, m >= n, with Q = (H_0 ... H_{n-1})[:, :n] diag(signs)."""

    r: jax.Array  # (n, n) upper triangular, diagonal >= 0
    reflectors: jax.Array  # (m, n), unit vectors v_k, H_k = I - 2 v_k v_k^T (zero: H_k = I)
    signs: jax.Array  # (n,) +-1


def _reflector(a: jax.Array, k, rows: jax.Array) -> jax.Array:
    """Unit Householder vector that zeroes column k of `a` below the diagonal (zero if nothing to do)."""
    col = lax.dynamic_index_in_dim(a, k, axis=1, keepdims=False)
    x = jnp.where(rows >= k, col, 0)
    alpha = jnp.sqrt(jnp.sum(x * x))
    x_k = lax.dynamic_index_in_dim(col, k, keepdims=False)
    sign = jnp.where(x_k >= 0, 1, -1).astype(a.dtype)
    v = x + jnp.where(rows == k, sign * alpha, 0)
    norm = jnp.sqrt(jnp.sum(v * v))
    # A zero column needs no reflection; guard the division instead of branching.
    return v / jnp.where(norm > 0, norm, 1)


def _reflect(v: jax.Array, b: jax.Array) -> jax.Array:
    """(I - 2 v v^T) b for b (m,) or (m, k)."""
    return b - 2 * jnp.outer(v, v @ b).reshape(b.shape)


def _finish(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    n = a.shape[1]
    r = jnp.triu(a[:n])
    signs = jnp.where(jnp.diagonal(r) < 0, -1, 1).astype(a.dtype)
    return r * signs[:, None], signs


def _check_tall(a: jax.Array, name: str) -> None:
    if a.shape[0] < a.shape[1]:
        raise ValueError(f"{name} needs a tall or square matrix, got {a.shape}")


def default_method() -> str:
    """ "householder" on a CPU (see the module docstring), the backend's "geqrf" on an accelerator."""
    return "householder" if jax.default_backend() == "cpu" else "geqrf"


def _geqrf(a: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(R, reflectors, signs) from the backend's QR: LAPACK-style H_k = I - tau_k v_k v_k^T, v_k[k] = 1."""
    m, n = a.shape
    transposed, taus = jnp.linalg.qr(a, mode="raw")  # geqrf's output, transposed
    packed = transposed.T
    rows = jnp.arange(m)[:, None]
    v = jnp.where(rows > jnp.arange(n)[None, :], packed, 0) + (rows == jnp.arange(n)[None, :])
    # tau = 2 / |v|^2 for a reflection (0 for none), so v sqrt(tau / 2) is the unit vector with H = I - 2 u u^T.
    reflectors = v * jnp.sqrt(taus / 2)[None, :]
    r, signs = _finish(packed)
    return r, reflectors, signs


def qr(a: jax.Array, method: str | None = None) -> QR:
    """Householder QR of an (m, n) matrix, m >= n."""
    _check_tall(a, "qr")
    if (method or default_method()) == "geqrf":
        return QR(*_geqrf(a))
    rows = jnp.arange(a.shape[0])

    def step(k, carry):
        a, vectors = carry
        v = _reflector(a, k, rows)
        return _reflect(v, a), lax.dynamic_update_index_in_dim(vectors, v, k, axis=1)

    a, vectors = lax.fori_loop(0, a.shape[1], step, (a, jnp.zeros_like(a)))
    r, signs = _finish(a)
    return QR(r, vectors, signs)


def qr_r(a: jax.Array, method: str | None = None) -> jax.Array:
    """Only R (n, n) of the QR of an (m, n) matrix, m >= n, diagonal >= 0."""
    _check_tall(a, "qr_r")
    if (method or default_method()) == "geqrf":
        return _finish(jnp.linalg.qr(a, mode="raw")[0].T)[0]
    rows = jnp.arange(a.shape[0])
    a = lax.fori_loop(0, a.shape[1], lambda k, a: _reflect(_reflector(a, k, rows), a), a)
    return _finish(a)[0]


def qr_r_stack(stack: jax.Array) -> jax.Array:
    """R of every matrix of a stack (N, m, n): `qr_r` vmapped over cache-sized groups.

    A Householder sweep vmapped over a whole stack streams every matrix through
    memory once per column; in groups of ~256 KB the group stays in cache (at
    d = 64 that ran 4.9x faster than one vmap over 4096 matrices). N must be a
    multiple of the group size, `stack_group(m, n)`.
    """
    return lax.map(qr_r, stack, batch_size=stack_group(*stack.shape[1:]))


def stack_group(m: int, n: int) -> int:
    """Matrices per vmapped group: on a CPU a power of two with about 64 K entries in the group, else 1024."""
    if jax.default_backend() != "cpu":
        return 1024
    group = 1 << max(0, (65536 // (m * n)).bit_length() - 1)
    return min(1024, max(4, group))


def q_matmul(f: QR, b: jax.Array) -> jax.Array:
    """Q b for the thin Q (m, n); b is (n,) or (n, k)."""
    m, n = f.reflectors.shape
    y = jnp.zeros((m,) + b.shape[1:], b.dtype).at[:n].set(f.signs.reshape((n,) + (1,) * (b.ndim - 1)) * b)

    def step(i, y):
        return _reflect(lax.dynamic_index_in_dim(f.reflectors, n - 1 - i, axis=1, keepdims=False), y)

    return lax.fori_loop(0, n, step, y)


def qt_matmul(f: QR, c: jax.Array) -> jax.Array:
    """Q^T c for the thin Q (m, n); c is (m,) or (m, k)."""
    n = f.reflectors.shape[1]
    c = lax.fori_loop(
        0, n, lambda k, c: _reflect(lax.dynamic_index_in_dim(f.reflectors, k, axis=1, keepdims=False), c), c
    )
    return f.signs.reshape((n,) + (1,) * (c.ndim - 1)) * c[:n]


def sorted_qr_r(a: jax.Array, num_sorted: int) -> tuple[jax.Array, jax.Array]:
    """R of A P, where P orders the first `num_sorted` columns "smallest residual first".

    This is the sorted QR decomposition (SQRD) of Wübben et al. used before sphere
    decoding: at step k the remaining column with the smallest norm orthogonal to
    the columns already chosen goes to position k, which leaves the largest
    diagonal entries at the bottom of R, where a depth-first search starts, so the
    search prunes early. Columns from `num_sorted` on keep their places; ties go
    to the lower index.

    Returns (R with diagonal >= 0, perm) with A[:, perm] = Q R.
    """
    _check_tall(a, "sorted_qr_r")
    rows = jnp.arange(a.shape[0])
    cols = jnp.arange(a.shape[1])

    def step(k, carry):
        a, perm = carry
        residual_norms = jnp.sum(jnp.where(rows[:, None] >= k, a * a, 0), axis=0)
        candidates = (cols >= k) & (cols < num_sorted)
        pick = jnp.argmin(jnp.where(candidates, residual_norms, jnp.inf))
        pick = jnp.where(k < num_sorted, pick, k)
        swap = jnp.where(cols == k, pick, jnp.where(cols == pick, k, cols))
        a, perm = a[:, swap], perm[swap]
        return _reflect(_reflector(a, k, rows), a), perm

    a, perm = lax.fori_loop(0, a.shape[1], step, (a, cols))
    return _finish(a)[0], perm


def solve_upper(r: jax.Array, b: jax.Array) -> jax.Array:
    """Solve R X = B for upper-triangular R (n, n); B is (n,) or (n, k). Back substitution."""
    n = r.shape[0]
    b2 = b.reshape(n, -1)

    def row(step, x):
        i = n - 1 - step
        r_i = lax.dynamic_index_in_dim(r, i, axis=0, keepdims=False)
        b_i = lax.dynamic_index_in_dim(b2, i, axis=0, keepdims=False)
        x_i = (b_i - r_i @ x) / r_i[i]  # rows j <= i of x are still zero
        return lax.dynamic_update_index_in_dim(x, x_i, i, axis=0)

    return lax.fori_loop(0, n, row, jnp.zeros_like(b2)).reshape(b.shape)


def solve_upper_transpose(r: jax.Array, b: jax.Array) -> jax.Array:
    """Solve R^T X = B for upper-triangular R (n, n); B is (n,) or (n, k). Forward substitution."""
    n = r.shape[0]
    b2 = b.reshape(n, -1)

    def row(i, x):
        r_col = lax.dynamic_index_in_dim(r, i, axis=1, keepdims=False)  # row i of R^T
        b_i = lax.dynamic_index_in_dim(b2, i, axis=0, keepdims=False)
        x_i = (b_i - r_col @ x) / r_col[i]  # rows j >= i of x are still zero
        return lax.dynamic_update_index_in_dim(x, x_i, i, axis=0)

    return lax.fori_loop(0, n, row, jnp.zeros_like(b2)).reshape(b.shape)
