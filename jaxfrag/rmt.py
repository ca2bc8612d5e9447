"""Random-matrix laws behind the paper's theorems: samplers and closed forms.

Contract: samplers take a `jax.random` key first and produce ONE matrix (vmap
them); closed forms are plain numpy/scipy functions of d and return floats or
`scipy.stats` frozen distributions. Each law is derived in its docstring.

* Bartlett: for an (m, n) matrix of iid N(0, 1) entries, m >= n, the R of its
  QR (positive diagonal) has independent entries, R_jj ~ chi_{m-j+1}
  (1-indexed) and R_ij ~ N(0, 1) above the diagonal.
* phi = R_dd / ||a_d|| for a d x d Gaussian A: R_dd = |<a_d, u>| with u the unit
  normal of span(a_1..a_{d-1}), which is independent of a_d. So phi is the
  |cosine| between a fixed direction and a uniformly random one:
  phi^2 ~ Beta(1/2, (d-1)/2), E[phi] = Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2)),
  E[phi^2] = 1/d, and E[phi] ~ sqrt(2 / (pi d)) as d grows.
  Theorem 7's rho (relu experiment) is |cos(grad(f1 - f2), x1 - x2)|; were the
  gradient's direction uniformly random, rho would have exactly this law:
  mean E[phi], median sqrt of the Beta(1/2, (d-1)/2) median (`random_cos_median`).
* Theorem 1's attack e = Q (0,..,0, R_{d-1,d-1} - R_{d-1,d}, -R_dd) has
  ||e||^2 = (R_{d-1,d-1} - R_{d-1,d})^2 + R_dd^2 with R_{d-1,d-1} ~ chi_2,
  R_{d-1,d} ~ N(0,1), R_dd ~ chi_1 independent (Bartlett with m = n = d). Given
  R_{d-1,d-1}^2 = lam this is a noncentral chi^2_2(lam) with moment generating
  function exp(lam s / (1 - 2s)) / (1 - 2s); averaging over lam ~ chi^2_2 (mean 2)
  gives 1 / (1 - 4s). So ||e||^2 ~ Exponential(mean 4) and ||e|| ~ Rayleigh(scale
  sqrt 2) for every d >= 2: E||e|| = sqrt(pi), E||e||^2 = 4.
* Theorem 4 data X = G_t..G_1 V (G_i entries N(0, 1/d)): by Lemma 3's argument,
  R(X) has the law of d^(-t/2) R_t..R_1 R_V with independent square Bartlett
  factors. The bottom-right 2x2 block of a product of upper-triangular matrices
  is the product of their 2x2 blocks, and a second-moment recursion over those
  blocks gives E||e||^2 = 2^(t+2) d^(-t): the attack shrinks like d^(-t/2).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

from jaxfrag import padding


def bartlett_r(key: jax.Array, num_rows, d, size: int | None = None, max_rows: int | None = None) -> jax.Array:
    """Sample the R factor (d, d) of a (num_rows, d) standard Gaussian matrix, num_rows >= d.

    Diagonal: R_jj^2 is drawn as a sum of num_rows - j squared normals (an exact
    chi-square sampler for integer degrees of freedom, and far cheaper to compile
    than a gamma sampler). `size` and `max_rows` (static upper bounds of d and
    num_rows) embed the result as blockdiag(I, R) in a compiled program, with the
    same draws as an unpadded call (see `jaxfrag.padding`).
    """
    size = size or d
    max_rows = max_rows or num_rows
    dtype = jnp.result_type(float)
    key_diag, key_off = jax.random.split(key)
    p = size - d
    off, inside = padding.placed(jax.random.normal(key_off, (size * size,), dtype), d, d, p, p, (size, size))
    off = jnp.where(inside, jnp.triu(off, k=1), 0)
    draws, real = padding.placed(
        jax.random.normal(key_diag, (size * max_rows,), dtype), d, num_rows, p, 0, (size, max_rows)
    )
    dof = num_rows - (jnp.arange(size) - p)  # per real row j: num_rows - j
    chi2 = jnp.sum(jnp.where(real & (jnp.arange(max_rows)[None, :] < dof[:, None]), draws * draws, 0), axis=1)
    diag = jnp.where(padding.real_mask(size, d), jnp.sqrt(chi2), 1)
    return off + jnp.diag(diag)


def bartlett_product_r(
    key: jax.Array, row_counts: tuple, d, size: int | None = None, max_rows: tuple[int, ...] | None = None
) -> jax.Array:
    """Lemma 3's R_{l-1} ... R_1 with R_i ~ Bartlett(row_counts[i-1] rows, d columns), independent."""
    max_rows = max_rows or tuple(row_counts)
    keys = jax.random.split(key, len(row_counts))
    product = None
    for k, rows, bound in zip(keys, row_counts, max_rows, strict=True):
        factor = bartlett_r(k, rows, d, size, bound)
        product = factor if product is None else factor @ product
    return product


def bartlett_entry_law(num_rows: int, i: int, j: int):
    """Law of R_ij (0-indexed, i <= j) for an (num_rows, d) Gaussian matrix."""
    if i == j:
        return stats.chi(num_rows - i)
    return stats.norm()


def phi_mean(d: int | np.ndarray) -> np.ndarray:
    """Exact E[phi] = Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2))."""
    d = np.asarray(d, dtype=float)
    return np.exp(special.gammaln(d / 2) - special.gammaln((d + 1) / 2)) / math.sqrt(math.pi)


def phi_mean_asymptote(d: int | np.ndarray) -> np.ndarray:
    """Large-d form of E[phi]: sqrt(2 / (pi d))."""
    return np.sqrt(2 / (np.pi * np.asarray(d, dtype=float)))


def phi_variance(d: int | np.ndarray) -> np.ndarray:
    """Var[phi] = E[phi^2] - E[phi]^2 = 1/d - E[phi]^2."""
    return 1 / np.asarray(d, dtype=float) - phi_mean(d) ** 2


def phi_squared_law(d: int):
    """phi^2 ~ Beta(1/2, (d-1)/2)."""
    return stats.beta(0.5, (d - 1) / 2)


def random_cos_median(d: int) -> float:
    """Median of |cos| between a fixed and a uniformly random direction in R^d (the law of phi)."""
    return float(math.sqrt(phi_squared_law(d).median()))


def thm1_attack_norm_law():
    """Law of ||e|| for Theorem 1's constructed attack: Rayleigh(scale sqrt 2), any d >= 2."""
    return stats.rayleigh(scale=math.sqrt(2))


def attack_norm_sq_mean(d: int | np.ndarray, generator_depth: int = 0) -> np.ndarray:
    """E||e||^2 = 2^(t+2) d^(-t) for Theorem 4's data with t generators (t = 0: Theorem 1)."""
    d = np.asarray(d, dtype=float)
    return 2.0 ** (generator_depth + 2) * d ** (-float(generator_depth))


def min_distance_asymptote(d: int | np.ndarray) -> np.ndarray:
    """Theorems 1 and 4: the optimal robustness (half the smallest distance) tends to sqrt(2d)/2."""
    return np.sqrt(np.asarray(d, dtype=float) / 2)
