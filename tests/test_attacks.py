"""Exact minimal perturbations of affine models, checked by applying them."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest

from jaxfrag import attacks


def affine(weights, bias, x):
    return weights @ x + bias


def numpy_min_perturbation(w, b, x, label, classes=None):
    logits = w @ x + b
    best = np.inf
    for j in range(len(logits)):
        if j == label or (classes is not None and not classes[j]):
            continue
        best = min(best, (logits[label] - logits[j]) / np.linalg.norm(w[label] - w[j]))
    return best


@pytest.mark.parametrize("classes,dim", [(2, 3), (5, 8), (10, 40)])
def test_linear_min_perturbation_is_exact_and_minimal(classes, dim):
    rng = np.random.default_rng(classes)
    for _ in range(20):
        w = rng.standard_normal((classes, dim)).astype(np.float32)
        b = rng.standard_normal(classes).astype(np.float32)
        x = rng.standard_normal(dim).astype(np.float32)
        model = functools.partial(affine, jnp.asarray(w), jnp.asarray(b))
        label = int(np.argmax(w @ x + b))
        result = attacks.linear_min_perturbation(model, jnp.asarray(x), label)
        assert float(result.norm) == pytest.approx(numpy_min_perturbation(w, b, x, label), rel=1e-4)
        assert float(jnp.linalg.norm(result.delta)) == pytest.approx(float(result.norm), rel=1e-4)
        assert bool(attacks.is_minimal(model, jnp.asarray(x), result.delta, label))
        # Applying it lands on the boundary with the reported target class.
        logits = model(jnp.asarray(x) + 1.001 * result.delta)
        assert int(jnp.argmax(logits)) == int(result.target)


def test_masked_classes_do_not_compete():
    rng = np.random.default_rng(7)
    w, b, x = rng.standard_normal((6, 4)), rng.standard_normal(6), rng.standard_normal(4)
    label = int(np.argmax(w @ x + b))
    mask = np.ones(6, bool)
    others = [j for j in range(6) if j != label]
    mask[others[:2]] = False
    model = functools.partial(affine, jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32))
    result = attacks.linear_min_perturbation(model, jnp.asarray(x, jnp.float32), label, jnp.asarray(mask))
    assert float(result.norm) == pytest.approx(numpy_min_perturbation(w, b, x, label, mask), rel=1e-4)
    assert bool(mask[int(result.target)])


def test_is_minimal_rejects_a_too_large_perturbation():
    w = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
    model = functools.partial(affine, w, jnp.zeros(2))
    x = jnp.asarray([2.0, 1.0])
    exact = attacks.linear_min_perturbation(model, x, 0)
    assert float(exact.norm) == pytest.approx(1 / np.sqrt(2))
    assert bool(attacks.is_minimal(model, x, exact.delta, 0))
    assert not bool(attacks.is_minimal(model, x, 1.1 * exact.delta, 0))
    assert not bool(attacks.is_minimal(model, x, 0.9 * exact.delta, 0))
