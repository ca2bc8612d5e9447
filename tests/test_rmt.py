"""Closed-form laws against the engine's samples: fixed seeds, tolerances from standard errors.

Each test compares a Monte Carlo sample with a law derived in jaxfrag.rmt and
fails when the engine computes the wrong quantity (e.g. the wrong diagonal
entry, an unnormalised R, a mis-scaled generator).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import run_cell
from scipy import integrate, stats

from jaxfrag import data, linalg, parallel, rmt
from jaxfrag.config import Config

SAMPLES = 20000


def phi_samples(d: int, scale_columns: float, n: int = SAMPLES, seed: int = 0) -> np.ndarray:
    """phi = R_dd / ||a_d|| computed with the engine's own sampler and QR."""

    def one(key):
        a, _ = data.hypercube_model(key, d, scale_columns)
        return linalg.qr_r(a)[-1, -1] / jnp.linalg.norm(a[:, -1])

    keys = jax.random.split(jax.random.key(seed), n)
    return np.asarray(jax.jit(jax.vmap(one))(keys), np.float64)


# d = 40 is in the law's test below, which tests the whole distribution, the mean included.
@pytest.mark.parametrize("d,scale", [(2, 1.0), (5, 1.0), (12, 1.0), (12, 5.0)])
def test_mean_of_phi_matches_closed_form(d, scale):
    phi = phi_samples(d, scale)
    se = math.sqrt(rmt.phi_variance(d) / len(phi))
    assert abs(phi.mean() - rmt.phi_mean(d)) < 4 * se


@pytest.mark.parametrize("d,scale", [(3, 1.0), (12, 5.0), (40, 1.0)])
def test_law_of_phi_squared_is_beta(d, scale):
    phi = phi_samples(d, scale, seed=1)
    assert stats.kstest(phi**2, rmt.phi_squared_law(d).cdf).pvalue > 0.01


def test_phi_mean_formula_against_integration():
    for d in [2, 3, 7, 30, 200]:
        by_integration = rmt.phi_squared_law(d).expect(np.sqrt)
        assert rmt.phi_mean(d) == pytest.approx(by_integration, rel=1e-7)
    assert rmt.phi_mean(10_000) / rmt.phi_mean_asymptote(10_000) == pytest.approx(1, abs=1e-4)


def _ks_bonferroni(samples: np.ndarray, laws) -> float:
    p_values = [stats.kstest(samples[:, k], law.cdf).pvalue for k, law in enumerate(laws)]
    return min(1.0, min(p_values) * len(p_values))


@pytest.mark.parametrize("rows,cols", [(5, 5), (12, 8), (30, 10)])
def test_bartlett_law_of_r_for_the_engine_qr(rows, cols):
    keys = jax.random.split(jax.random.key(2), 4000)
    r = jax.jit(jax.vmap(lambda k: linalg.qr_r(jax.random.normal(k, (rows, cols)))))(keys)
    i, j = np.triu_indices(cols)
    samples = np.asarray(r, np.float64)[:, i, j]
    laws = [rmt.bartlett_entry_law(rows, a, b) for a, b in zip(i, j, strict=True)]
    assert _ks_bonferroni(samples, laws) > 0.01


@pytest.mark.parametrize("rows,cols", [(5, 5), (30, 10)])
def test_bartlett_sampler_follows_the_law(rows, cols):
    keys = jax.random.split(jax.random.key(3), 4000)
    r = jax.jit(jax.vmap(lambda k: rmt.bartlett_r(k, rows, cols)))(keys)
    i, j = np.triu_indices(cols)
    samples = np.asarray(r, np.float64)[:, i, j]
    laws = [rmt.bartlett_entry_law(rows, a, b) for a, b in zip(i, j, strict=True)]
    assert _ks_bonferroni(samples, laws) > 0.01
    assert np.all(np.asarray(r)[:, np.tril_indices(cols, -1)[0], np.tril_indices(cols, -1)[1]] == 0)


def test_padded_bartlett_draws_equal_unpadded():
    key = jax.random.key(4)
    plain = rmt.bartlett_r(key, 9, 5)
    padded = jax.jit(lambda k, d, m: rmt.bartlett_r(k, m, d, size=8, max_rows=12))(key, 5, 9)
    np.testing.assert_array_equal(np.asarray(padded)[3:, 3:], np.asarray(plain))
    np.testing.assert_array_equal(np.asarray(padded)[:3, :3], np.eye(3))


def test_lemma3_qr_of_product_is_product_of_bartlett_factors():
    """Direct check, outside the experiments: R(H2 H1) ~ R2 R1 (Bonferroni over entries, two-sample KS)."""
    d, width, n = 4, 7, 6000

    def qr_side(key):
        k1, k2 = jax.random.split(key)
        return linalg.qr_r(jax.random.normal(k2, (width, width)) @ jax.random.normal(k1, (width, d)))

    keys = jax.random.split(jax.random.key(5), n)
    qr_r = np.asarray(jax.jit(jax.vmap(qr_side))(keys))
    product = np.asarray(jax.jit(jax.vmap(lambda k: rmt.bartlett_product_r(k, (width, width), d)))(keys))
    i, j = np.triu_indices(d)
    p = stats.ks_2samp(qr_r[:, i, j], product[:, i, j], axis=0).pvalue
    assert min(1.0, p.min() * p.size) > 0.01
    # It can fail: a single Bartlett factor does not have the law of the product.
    single = np.asarray(jax.jit(jax.vmap(lambda k: rmt.bartlett_r(k, width, d)))(keys))
    assert stats.ks_2samp(qr_r[:, i, j], single[:, i, j], axis=0).pvalue.min() < 1e-6


def test_thm1_attack_norm_is_rayleigh_sqrt2_for_any_d():
    assert rmt.thm1_attack_norm_law().mean() == pytest.approx(math.sqrt(math.pi))
    assert integrate.quad(lambda r: r * r * rmt.thm1_attack_norm_law().pdf(r), 0, np.inf)[0] == pytest.approx(4)
    config = Config(trials=2000, seed=11)
    p_values = []
    for d in (6, 20):
        e = run_cell("thm1", d, config).columns["e_norm"].astype(np.float64)
        p_values.append(stats.kstest(e, rmt.thm1_attack_norm_law().cdf).pvalue)
        assert abs(np.mean(e**2) - 4) < 4 * np.std(e**2, ddof=1) / math.sqrt(len(e))
    assert min(p_values) > 0.01


@pytest.mark.parametrize("t", [1, 2])
def test_thm4_attack_second_moment(t):
    config = Config(trials=2000, seed=12, generator_depth=t)
    d = 8
    e2 = run_cell("thm4", d, config).columns["e_norm"].astype(np.float64) ** 2
    se = np.std(e2, ddof=1) / math.sqrt(len(e2))
    assert abs(e2.mean() - rmt.attack_norm_sq_mean(d, t)) < 4 * se


def test_lemma3_check_inside_thm4_compares_the_real_block_and_rejects_a_wrong_law():
    from jaxfrag.experiments import registry, thm4

    config = Config(trials=2000, seed=13)
    d = 6
    experiment = registry()["thm4"]
    size = experiment.size(d, config)
    assert size > d  # padded: a wrong block is there to be picked
    result = run_cell("thm4", d, config)
    found = experiment.cell_stats(result.aux, d, size, config)
    assert found["lemma3_entries"] == d * (d + 1) // 2 and found["lemma3_trials"] == config.trials
    assert found["lemma3_ks_bonferroni_p"] > 0.01

    # The compared entries are the real R: non-constant, and for the first trials equal to the
    # upper triangle of the R of the unpadded network's hidden product (recomputed from the key).
    qr_side, bartlett_side = thm4.lemma3_samples(result.aux, d, size)
    assert qr_side.shape == bartlett_side.shape == (config.trials, d * (d + 1) // 2)
    assert (qr_side.std(axis=0) > 0).all() and (bartlett_side.std(axis=0) > 0).all()
    keys = parallel.trial_keys(parallel.cell_key(config.seed, "thm4", d), jnp.arange(8))
    for trial, key in enumerate(keys):
        hidden = thm4.inputs(key, d, config)[1]
        np.testing.assert_allclose(qr_side[trial], np.asarray(hidden.qr.r)[np.triu_indices(d)], rtol=1e-4, atol=1e-5)
    # The largest two-sample KS distance over the entries, the sup of |F_qr - F_bartlett| per entry in numpy.
    def ks_distance(a, b):
        grid = np.sort(np.concatenate([a, b]))
        cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)  # noqa: E731
        return np.abs(cdf(a) - cdf(b)).max()

    distances = [ks_distance(qr_side[:, k], bartlett_side[:, k]) for k in range(qr_side.shape[1])]
    assert found["lemma3_ks_max"] == pytest.approx(max(distances))
    assert found["lemma3_ks_max"] < 0.1  # the same law: 2000 samples a side leave ~sqrt(2 / 2000) of noise

    # A wrong law is rejected: the Bartlett side with its real entries 15% larger.
    p = size - d
    rows, cols = np.triu_indices(size)
    wrong = dict(result.aux)
    wrong["_lemma3_bartlett"] = result.aux["_lemma3_bartlett"] * np.where((rows >= p) & (cols >= p), 1.15, 1.0)
    wrong_stats = experiment.cell_stats(wrong, d, size, config)
    assert wrong_stats["lemma3_ks_bonferroni_p"] < 1e-3 and wrong_stats["lemma3_ks_max"] > found["lemma3_ks_max"]
