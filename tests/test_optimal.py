"""The optimal classifier's robustness: sphere decoder against brute force and an independent numpy search."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfrag import data, optimal, padding


def numpy_nearest_opposite(a: np.ndarray, z: np.ndarray) -> float:
    """Half the distance from A z to the nearest point A z' with z'_d = -z_d, over all 2^d points."""
    signs = data.all_sign_vectors(a.shape[0]).astype(np.float64)
    opposite = a @ signs[:, signs[-1] != z[-1]]
    return 0.5 * float(np.min(np.linalg.norm(opposite - (a @ z)[:, None], axis=0)))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _problems(d, n, scale, key):
    a, z = jax.vmap(lambda k: data.hypercube_model(k, d, scale))(jax.random.split(key, n))
    c, b = jax.vmap(optimal.opposite_class_problem)(a, z)
    return a, z, c, b


def problems(d: int, n: int, scale: float = 1.0, seed: int = 0):
    return _problems(d, n, scale, jax.random.key(seed))


@functools.partial(jax.jit, static_argnames=("lanes",))
def _decode(c, b, skip, lanes):
    problem, perm = jax.vmap(optimal.search_problem)(c, b)
    found = optimal.sphere_decode(problem, skip=skip, lanes=lanes)
    n = c.shape[-1]
    bits = jax.vmap(lambda p, s: jnp.zeros(n, s.dtype).at[p[:n]].set(s))(perm, found.bits)
    return jax.vmap(optimal.binary_distance)(c, b, bits), found, bits


def decoded_distance(c, b, lanes=64, skip=0):
    distance, found, bits = _decode(c, b, skip, lanes)
    return np.asarray(distance), found, bits


_brute = jax.jit(jax.vmap(optimal.closest_binary_bruteforce))


@pytest.mark.parametrize("d,scale", [(2, 1.0), (3, 1.0), (6, 1.0), (9, 1.0), (12, 1.0), (14, 1.0), (10, 5.0)])
def test_sphere_decoder_agrees_with_brute_force(d, scale):
    _, _, c, b = problems(d, 300, scale)
    decoded, found, _ = decoded_distance(c, b)
    brute_bits = _brute(c, b)
    brute = np.asarray(jax.vmap(optimal.binary_distance)(c, b, brute_bits))
    assert np.asarray(found.exact).all()
    np.testing.assert_allclose(decoded, brute, rtol=1e-6)


@pytest.mark.parametrize("d", [3, 7, 10])
def test_optimum_against_independent_numpy_search(d):
    a, z, c, b = problems(d, 60, seed=1)
    decoded, _, _ = decoded_distance(c, b)
    reference = [
        numpy_nearest_opposite(np.asarray(ai, np.float64), np.asarray(zi, np.float64))
        for ai, zi in zip(a, z, strict=True)
    ]
    np.testing.assert_allclose(decoded, reference, rtol=1e-5)
    # The optimum is not always the last-bit flip ||a_d|| (the paper's shortcut):
    last_bit = np.linalg.norm(np.asarray(a)[:, :, -1], axis=1)
    assert np.mean(np.isclose(decoded, last_bit, rtol=1e-6)) < 0.9
    assert np.all(decoded <= last_bit * (1 + 1e-6))


def test_result_does_not_depend_on_lanes_or_batch():
    _, _, c, b = problems(20, 200, seed=2)
    results = [decoded_distance(c, b, lanes=lanes) for lanes in (1, 7, 64, 200)]
    for _, found, bits in results[1:]:
        np.testing.assert_array_equal(found.nodes, results[0][1].nodes)
        np.testing.assert_array_equal(bits, results[0][2])
    # Splitting the batch changes nothing either.
    first, found_first, _ = decoded_distance(c[:50], b[:50])
    np.testing.assert_array_equal(found_first.nodes, results[0][1].nodes[:50])
    np.testing.assert_array_equal(first, results[0][0][:50])


def test_padded_columns_are_skipped_exactly():
    d, size = 9, 16
    a, z, c, b = problems(d, 100, seed=3)
    plain, found, _ = decoded_distance(c, b)
    p = size - d

    def pad(ai, zi):
        a_full = jnp.eye(size).at[p:, p:].set(ai)
        z_full = jnp.zeros(size).at[p:].set(zi)
        return optimal.opposite_class_problem(a_full, z_full, padding.real_mask(size, d))

    c_full, b_full = jax.jit(jax.vmap(pad))(a, z)
    padded, found_padded, bits = decoded_distance(c_full, b_full, skip=p)
    np.testing.assert_allclose(padded, plain, rtol=1e-6)
    np.testing.assert_array_equal(found_padded.nodes, found.nodes)
    assert not np.asarray(bits)[:, :p].any()


def test_node_cap_marks_search_inexact():
    _, _, c, b = problems(30, 20, seed=4)
    problem, _ = jax.jit(jax.vmap(optimal.search_problem))(c, b)
    decode = jax.jit(optimal.sphere_decode, static_argnames=("lanes", "max_nodes"))
    capped = decode(problem, lanes=8, max_nodes=5)
    full = decode(problem, lanes=8)
    assert np.asarray(full.exact).all()
    assert not np.asarray(capped.exact)[np.asarray(full.nodes) > 5].any()


def test_half_min_distance_matches_numpy():
    rng = np.random.default_rng(5)
    points = rng.standard_normal((6, 9))
    expected = 0.5 * min(np.linalg.norm(points[:, j] - points[:, 8]) for j in range(8))
    assert float(optimal.half_min_distance(jnp.asarray(points), 8)) == pytest.approx(expected, rel=1e-6)
    valid = jnp.arange(9) >= 4
    expected_valid = 0.5 * min(np.linalg.norm(points[:, j] - points[:, 8]) for j in range(4, 8))
    assert float(optimal.half_min_distance(jnp.asarray(points), 8, valid)) == pytest.approx(expected_valid, rel=1e-6)
