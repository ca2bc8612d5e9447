"""The paper's data models, one trial at a time.

Contract: every sampler takes a `jax.random` key first and returns the data of
ONE trial of dimension d; data points are the COLUMNS of the returned matrix.
`size` (default d) is the compiled size the trial is embedded in (see
`jaxfrag.padding`); the draws do not depend on it.

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
  gives the signs of the paper's Table 1). An index is two uint32 words, low
  bits first (`WORDS`), so d reaches 64 without 64-bit integers on device. All
  2^d indices while that is at most `max_points`, else `max_points` distinct
  ones drawn uniformly (`sample_distinct`: no permutation of all 2^d).
  Points are made from indices on the fly, so no (2^d, d) array is stored.
* `training_indices` -- such a training set around a given pair of points: a
  uniform subset among those that hold both (the relu experiment's b1, b2 as
  training points, the paper's) or among those that hold neither (held out).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxfrag import padding

WORDS = 2  # uint32 words per hypercube point index, low bits first
MAX_D = 32 * WORDS
# sample_distinct draws enough points that fewer than n distinct ones has probability below
# exp(-DRAW_EXPONENT), about 5e-32 (`draws_needed`).
DRAW_EXPONENT = 72.0


def gaussian_points(key: jax.Array, d, size: int | None = None) -> jax.Array:
    """(size, size): column i is the data point of class i."""
    return padding.normal_matrix(key, d, size or d, pad_value=padding.BIG)


def generative_points(key: jax.Array, d, generator_depth: int, size: int | None = None) -> jax.Array:
    """(size, size): columns G_t ... G_1 v_i of the linear generative model."""
    size = size or d
    key_v, *key_g = jax.random.split(key, generator_depth + 1)
    x = padding.normal_matrix(key_v, d, size, pad_value=padding.BIG)
    real = padding.real_mask(size, d)
    scale = jnp.where(real[:, None] & real[None, :], 1 / jnp.sqrt(jnp.asarray(d, x.dtype)), 1)
    for k in key_g:
        x = (padding.normal_matrix(k, d, size) * scale) @ x
    return x


def hypercube_model(
    key: jax.Array, d, scale_columns: float = 1.0, size: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """(A, z): A Gaussian with columns 1..d-1 times `scale_columns`; z a uniform sign vector."""
    size = size or d
    key_a, key_z = jax.random.split(key)
    a = mixing_matrix(key_a, d, scale_columns, size)
    return a, padding.sign_vector(key_z, d, size, a.dtype)


def mixing_matrix(key: jax.Array, d, scale_columns: float = 1.0, size: int | None = None) -> jax.Array:
    """(size, size): Gaussian A with its first d-1 (real) columns times `scale_columns`."""
    size = size or d
    a = padding.normal_matrix(key, d, size)
    scaled = padding.real_mask(size, d) & (jnp.arange(size) < size - 1)
    return a * jnp.where(scaled, scale_columns, 1).astype(a.dtype)[None, :]


def num_points(d: int, max_points: int) -> int:
    """How many hypercube points section 6's training set has: 2^d, or max_points if fewer."""
    return min(2**d, max_points)


def index_words(indices: jax.Array) -> jax.Array:
    """(n, WORDS) uint32 index words of non-negative int32 indices (the high word 0)."""
    low = indices.astype(jnp.uint32)
    return jnp.stack([low] + [jnp.zeros_like(low)] * (WORDS - 1), axis=-1)


def words_to_int(words) -> np.ndarray:
    """Index words (..., WORDS) as numpy uint64 integers (host side, for result columns)."""
    words = np.asarray(words, np.uint64)
    return sum(words[..., k] << np.uint64(32 * k) for k in range(WORDS))


def word_masks(d: int) -> np.ndarray:
    """Per word, the bits that a d-bit index uses."""
    bits = np.clip(d - 32 * np.arange(WORDS), 0, 32)
    return np.array([(1 << int(b)) - 1 for b in bits], dtype=np.uint64).astype(np.uint32)


def draws_needed(d: int, n: int) -> int:
    """Uniform d-bit draws that hold n distinct points except with probability < exp(-DRAW_EXPONENT).

    The draws until the n-th distinct point are a sum T of independent geometric variables with
    success probabilities (N - k) / N, k < n (N = 2^d): mean mu = sum N / (N - k), and by Janson's
    bound (Stat. Probab. Lett. 135, 2018, Thm 2.1) P(T > lam mu) <= exp(-p mu (lam - 1 - ln lam))
    with p = (N - n + 1) / N. The buffer is lam mu draws for the lam that makes that e^-72.
    """
    total = 2.0**d
    if n > total:
        raise ValueError(f"cannot draw {n} distinct points from 2^{d}")
    mu = float(np.sum(1 / (1 - np.arange(n) / total)))
    rate = (total - n + 1) / total * mu
    low, high = 1.0, 2.0
    while rate * (high - 1 - np.log(high)) < DRAW_EXPONENT:
        high *= 2
    for _ in range(60):  # bisect lam - 1 - ln lam = DRAW_EXPONENT / rate (increasing for lam > 1)
        middle = (low + high) / 2
        low, high = (middle, high) if rate * (middle - 1 - np.log(middle)) < DRAW_EXPONENT else (low, middle)
    return max(n, math.ceil(high * mu))


def sample_distinct(key: jax.Array, d: int, n: int) -> jax.Array:
    """(n, WORDS) uint32: n distinct d-bit indices, a uniform random n-subset of [0, 2^d) in random order.

    The first n distinct values of a stream of iid uniform draws are a uniform n-subset; a static
    buffer of `draws_needed(d, n)` draws holds them except with probability < 1e-31, and should it
    not, the set is completed with repeats of the first draw (`count_distinct` then reports fewer).
    Cost: one sort of the buffer, instead of a permutation of all 2^d (which stopped d at 24).
    """
    m = draws_needed(d, n)
    words = jax.random.bits(key, (m, WORDS), jnp.uint32) & jnp.asarray(word_masks(d))
    # Sorted by value, then draw order: a value's first draw comes first among its repeats.
    repeat, sorted_order = _sorted_repeats(words, jnp.arange(m, dtype=jnp.int32))
    first = jnp.zeros(m, bool).at[sorted_order].set(jnp.concatenate([jnp.array([True]), ~repeat]))
    return words[jnp.nonzero(first, size=n, fill_value=0)[0]]


def _sorted_repeats(words: jax.Array, *ties: jax.Array):
    """Sort the (n, WORDS) indices by value (then by `ties`): (whether each sorted index after the
    first equals the one before it, (n - 1,) bool; the `ties` arrays in that sorted order)."""
    ordered = jax.lax.sort((*words.T[::-1], *ties), num_keys=WORDS + len(ties))
    repeat = jnp.all(jnp.stack([w[1:] == w[:-1] for w in ordered[:WORDS]]), axis=0)
    return (repeat, *ordered[WORDS:])


def count_distinct(words: jax.Array) -> jax.Array:
    """How many distinct indices the (n, WORDS) words hold (int32)."""
    (repeat,) = _sorted_repeats(words)
    return (words.shape[0] - jnp.sum(repeat)).astype(jnp.int32)


def hypercube_indices(key: jax.Array, d: int, max_points: int) -> jax.Array:
    """(n, WORDS) uint32 point indices: all 2^d in order, or max_points distinct ones drawn uniformly."""
    if 2**d <= max_points:
        return index_words(jnp.arange(2**d, dtype=jnp.int32))
    if d > MAX_D:
        raise ValueError(f"hypercube points need d <= {MAX_D}, got {d}")
    return sample_distinct(key, d, max_points)


def training_size(d: int, max_points: int, held_out: bool) -> int:
    """How many points `training_indices` returns: 2^d, or 2^d - 2 with the pair held out, at most max_points."""
    return min(2**d - (2 if held_out else 0), max_points)


def contains(indices: jax.Array, words: jax.Array) -> jax.Array:
    """(k,) bool: whether each of the (k, WORDS) indices `words` is among the (n, WORDS) `indices`."""
    return jnp.any(jnp.all(indices[None, :, :] == words[:, None, :], axis=-1), axis=1)


def training_indices(key: jax.Array, d: int, max_points: int, pair: jax.Array, held_out: bool) -> jax.Array:
    """(training_size, WORDS) uint32: a training set that holds both of the two distinct indices `pair`
    ((2, WORDS)), or, `held_out`, neither.

    Holding the pair: all 2^d while 2^d <= max_points (`hypercube_indices`' set), else the pair and
    the first max_points - 2 other points of a uniform sample of max_points + 2, so a uniform
    max_points-subset among those that hold the pair. Held out: the first training_size points of
    all 2^d, or of such a sample, that are not the pair, a uniform subset of the other 2^d - 2. The
    first k distinct draws of an iid stream with two values struck out are the first k distinct
    draws of a stream over the other values, hence uniform; and for one key the two sets share all
    but the pair's two slots, so the two choices are paired.
    """
    size = training_size(d, max_points, held_out)
    if not held_out and 2**d <= max_points:
        return hypercube_indices(key, d, max_points)
    if held_out and 2**d - 2 <= max_points:  # held out of the whole cube
        pool = index_words(jnp.arange(2**d, dtype=jnp.int32))
    else:
        pool = sample_distinct(key, d, min(max_points + 2, 2**d))
    others = ~contains(pair, pool)
    if held_out:
        return pool[jnp.nonzero(others, size=size)[0]]
    return jnp.concatenate([pool[jnp.nonzero(others, size=size - 2)[0]], pair])


def sign_vectors(words: jax.Array, d: int, dtype=jnp.float32) -> jax.Array:
    """(n, d): z with z_j = 2 bit_j(index) - 1 for each index given as (n, WORDS) words."""
    j = np.arange(d)
    bits = (words[:, j // 32] >> jnp.asarray(j % 32, jnp.uint32)) & 1
    return (2 * bits.astype(jnp.int32) - 1).astype(dtype)


def last_bit(words: jax.Array, d: int) -> jax.Array:
    """(n,) int32: bit d-1 of each index, the class of its point."""
    return ((words[:, (d - 1) // 32] >> ((d - 1) % 32)) & 1).astype(jnp.int32)


def hypercube_batch(a: jax.Array, indices: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x, labels): the points A z of `indices` (n, WORDS) as rows (n, d), and their classes (last bit, int32)."""
    d = a.shape[0]
    z = sign_vectors(indices, d, a.dtype)
    return z @ a.T, last_bit(indices, d)


def all_sign_vectors(d: int) -> np.ndarray:
    """Every z in {+1,-1}^d as the columns of a (d, 2^d) array."""
    bits = (np.arange(2**d)[None, :] >> np.arange(d)[:, None]) & 1
    return (1 - 2 * bits).astype(np.int8)


def hypercube_points(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(X, labels): all 2^d points A z of an unpadded A as columns, and their labels z_d."""
    z = jnp.asarray(all_sign_vectors(a.shape[0]), a.dtype)
    return a @ z, z[-1]
