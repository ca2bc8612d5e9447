"""The data models' samplers against their definitions, entry by entry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

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


def numpy_bits(indices: np.ndarray, d: int) -> np.ndarray:
    """(n, d) bits of uint64 indices, in numpy."""
    return ((indices[:, None] >> np.arange(d, dtype=np.uint64)[None, :]) & np.uint64(1)).astype(np.int64)


@pytest.mark.parametrize("d,n", [(6, 32), (8, 40), (8, 255), (11, 2000)])  # n up to N - 1
def test_sampled_training_sets_are_uniform_subsets_without_a_permutation(d, n):
    # sample_distinct never permutes all 2^d: it draws iid and keeps first occurrences. At these d a
    # draw repeats often (n / 2^d up to 0.996), so a slip in the de-duplication shows at once.
    draws, counts = 300, np.zeros(2**d)
    sample = jax.jit(jax.vmap(lambda key: data.hypercube_indices(key, d, n)))
    words = np.asarray(sample(jax.random.split(jax.random.key(d), draws)))
    assert words.shape == (draws, n, data.WORDS) and words.dtype == np.uint32
    for sample_words in words:
        indices = data.words_to_int(sample_words)
        assert len(np.unique(indices)) == n and indices.max() < 2**d, "a duplicate or an index out of range"
        counts[indices.astype(np.int64)] += 1
    # Each point is in a sample with probability n / 2^d: chi-square goodness of fit, unless n = N - 1,
    # where each point is out of exactly one in 2^d samples on average.
    assert stats.chisquare(counts).pvalue > 1e-3
    np.testing.assert_array_equal(data.words_to_int(data.hypercube_indices(jax.random.key(0), 5, 32)), np.arange(32))


@pytest.mark.parametrize("held_out", [False, True])
@pytest.mark.parametrize("d,n", [(6, 64), (6, 63), (6, 40), (8, 255)])  # the whole cube, a sample, at the edges
def test_a_training_set_holds_its_pair_or_not_and_is_otherwise_uniform(d, n, held_out):
    # The pair's points are in every set (or in none); the other points are a uniform subset of the
    # other 2^d - 2: each is in a set with the same probability (chi-square), and no duplicates.
    draws, counts = 300, np.zeros(2**d)
    pair_ints = np.array([2**d - 3, 5], np.uint64)
    pair = jnp.asarray(np.stack([pair_ints & 0xFFFFFFFF, pair_ints >> 32], axis=1).astype(np.uint32))
    sample = jax.jit(jax.vmap(lambda key: data.training_indices(key, d, n, pair, held_out)))
    keys = jax.random.split(jax.random.key(d + n), draws)
    words = np.asarray(sample(keys))
    size = min(n, 2**d - 2 * held_out)
    assert words.shape == (draws, size, data.WORDS) == (draws, data.training_size(d, n, held_out), data.WORDS)
    for sample_words in words:
        indices = data.words_to_int(sample_words)
        assert len(np.unique(indices)) == size and indices.max() < 2**d, "a duplicate or an index out of range"
        assert np.isin(pair_ints, indices).tolist() == [not held_out] * 2
        counts[indices.astype(np.int64)] += 1
    others = np.delete(counts, pair_ints.astype(np.int64))
    if size - 2 * (not held_out) < 2**d - 2:  # else every other point is in every set
        assert stats.chisquare(others).pvalue > 1e-3
    else:
        assert np.all(others == draws)
    # For one key, the two choices share every point but the pair's slots: the comparison is paired.
    held = data.words_to_int(np.asarray(jax.vmap(lambda key: data.training_indices(key, d, n, pair, True))(keys)))
    kept = data.words_to_int(np.asarray(jax.vmap(lambda key: data.training_indices(key, d, n, pair, False))(keys)))
    for with_pair, without in zip(kept, held, strict=True):
        assert len(np.setdiff1d(with_pair, without)) == 2 and len(np.setdiff1d(without, with_pair)) <= 2
    np.testing.assert_array_equal(  # with the whole cube trained on, the pair changes nothing
        data.words_to_int(np.asarray(data.training_indices(jax.random.key(0), 5, 32, pair % 32, False))),
        np.arange(32),
    )


def test_a_sample_is_in_uniformly_random_order():
    # The first n distinct of an iid stream: every position of the sample is uniform too, so the
    # training order carries no trace of the index order. Position 0 over 2000 samples, chi-square.
    d, n = 6, 48
    words = jax.jit(jax.vmap(lambda key: data.sample_distinct(key, d, n)))(jax.random.split(jax.random.key(1), 2000))
    firsts = data.words_to_int(np.asarray(words)[:, 0]).astype(np.int64)
    assert stats.chisquare(np.bincount(firsts, minlength=2**d)).pvalue > 1e-3


@pytest.mark.parametrize("d", [31, 33, 40, 64])
def test_indices_beyond_32_bits_use_every_bit_and_no_more(d):
    # The high word carries bits 32..d-1: each bit is 1 half of the time (4 sigma), none above d-1,
    # and sign_vectors and the labels read the same bits as numpy does from the uint64 index.
    n = 4096
    words = data.hypercube_indices(jax.random.key(d), d, n)
    indices = data.words_to_int(words)
    bits = numpy_bits(indices, 64)
    assert not bits[:, d:].any()
    assert np.all(np.abs(bits[:, :d].mean(0) - 0.5) < 4 * 0.5 / np.sqrt(n))
    assert len(np.unique(indices)) == n  # collisions among 4096 of 2^31 or more: expected < 0.004
    a = jnp.asarray(np.random.default_rng(d).normal(size=(d, d)), jnp.float32)
    x, labels = data.hypercube_batch(a, words)
    z = 2 * bits[:, :d] - 1
    np.testing.assert_allclose(np.asarray(x), z @ np.asarray(a, float).T, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(labels), bits[:, d - 1])


def test_buffer_holds_enough_draws_and_a_short_buffer_repeats_the_first_draw(monkeypatch):
    # draws_needed: Janson's tail bound for the draws T until the n-th distinct point, checked here by
    # its own terms: P(T > m) <= exp(-p mu (lam - 1 - ln lam)) <= e^-72 at lam = m / mu, never m < n.
    for d, n in [(17, 65536), (18, 65536), (30, 65536), (64, 65536), (8, 255), (3, 1)]:
        m, total = data.draws_needed(d, n), 2.0**d
        mu = sum(total / (total - k) for k in range(n))
        lam, p = m / mu, (total - n + 1) / total
        assert m >= n and lam > 1 and p * mu * (lam - 1 - np.log(lam)) >= 72
        assert p * mu * ((m - 2) / mu - 1 - np.log((m - 2) / mu)) < 72 or m == n  # and not much more
    assert data.draws_needed(64, 65536) < 1.05 * 65536  # no repeats to expect at d = 64: a margin only
    with pytest.raises(ValueError, match="distinct"):
        data.draws_needed(4, 17)
    # The documented fallback, forced with a buffer of exactly n draws from 2^6: the set is completed
    # with copies of the first draw, and count_distinct says how many distinct points there are.
    monkeypatch.setattr(data, "draws_needed", lambda d, n: n)
    d, n = 6, 48
    for k in range(20):
        key = jax.random.key(k)
        words = np.asarray(data.sample_distinct(key, d, n))
        raw = np.asarray(jax.random.bits(key, (n, data.WORDS), jnp.uint32)) & data.word_masks(d)
        indices, stream = data.words_to_int(words), data.words_to_int(raw)
        distinct = len(np.unique(stream))
        _, first_positions = np.unique(stream, return_index=True)
        want = list(stream[np.sort(first_positions)]) + [stream[0]] * (n - distinct)
        np.testing.assert_array_equal(indices, want)
        assert int(data.count_distinct(jnp.asarray(words))) == distinct < n
