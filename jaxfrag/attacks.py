"""Adversarial perturbations of one input, each checked by applying it.

Contract: functions take a model `f(x) -> logits` for ONE input, the input x
and its label, and return plain arrays; vmap them over trials.

* `linear_min_perturbation` -- the exact smallest L2 perturbation that changes
  the argmax of an AFFINE model: the label's decision region is the polyhedron
  {f_label >= f_j for all j}, and the distance from an interior point to the
  boundary of a polyhedron is the smallest distance to one of its facet
  hyperplanes, (f_label - f_j) / ||grad f_label - grad f_j||. Gradients come from
  the model itself (jax.jacfwd), so this is computed from the network and not
  from a formula for its weights.
* `changes_label` -- does adding a perturbation change the argmax?
* `is_minimal` -- the verification used for exact minimal perturbations: scaled
  by (1 + s) it changes the label, scaled by (1 - s) it does not, with s = 1e-4
  or the input's floating-point resolution if coarser (`resolvable_step`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Model = Callable[[jax.Array], jax.Array]


class MinimalPerturbation(NamedTuple):
    norm: jax.Array  # (), its L2 norm (the model's robustness at x)
    delta: jax.Array  # (d,), the perturbation that reaches the nearest decision boundary
    target: jax.Array  # int32 (), the class on the other side of that boundary


def linear_min_perturbation(
    model: Model, x: jax.Array, label: int | jax.Array, classes: jax.Array | None = None
) -> MinimalPerturbation:
    """Exact minimal L2 perturbation of an affine model at x.

    `classes` (bool, one per logit) restricts the competing classes; logits
    outside it do not exist for the classifier (padding, see `jaxfrag.embedding`).
    """
    logits = model(x)
    jacobian = jax.jacfwd(model)(x)  # (k, d)
    margins = logits[label] - logits
    directions = jacobian[label] - jacobian  # gradient of f_label - f_j
    norms = jnp.linalg.norm(directions, axis=1)
    distances = margins / jnp.where(norms > 0, norms, 1)
    excluded = (jnp.arange(logits.shape[0]) == label) | (norms == 0)
    if classes is not None:
        excluded = excluded | ~classes
    distances = jnp.where(excluded, jnp.inf, distances)
    target = jnp.argmin(distances)
    delta = -margins[target] * directions[target] / norms[target] ** 2
    return MinimalPerturbation(distances[target], delta, target.astype(jnp.int32))


def predict(model: Model, x: jax.Array, classes: jax.Array | None = None) -> jax.Array:
    """The argmax class, over `classes` only when given."""
    logits = model(x)
    if classes is not None:
        logits = jnp.where(classes, logits, -jnp.inf)
    return jnp.argmax(logits)


def changes_label(
    model: Model, x: jax.Array, delta: jax.Array, label: int | jax.Array, classes: jax.Array | None = None
) -> jax.Array:
    """True when argmax f(x + delta) is not `label`."""
    return predict(model, x + delta, classes) != label


def resolvable_step(x: jax.Array, delta: jax.Array, rel: float = 1e-4) -> jax.Array:
    """max(rel, 32 eps ||x|| / ||delta||): the smallest relative change of delta that x + delta resolves.

    In float32 a perturbation 1e-4 of a tiny delta can vanish when added to a
    large x (thm4's networks have robustness ~1e-4 ||x||); below this step the
    check would test rounding, not the attack. In float64 it is 1e-4 throughout.
    """
    eps = jnp.finfo(x.dtype).eps
    return jnp.maximum(rel, 32 * eps * jnp.linalg.norm(x) / jnp.linalg.norm(delta))


def is_minimal(
    model: Model,
    x: jax.Array,
    delta: jax.Array,
    label: int | jax.Array,
    classes: jax.Array | None = None,
    rel: float = 1e-4,
) -> jax.Array:
    """True when (1 + s) delta changes the label and (1 - s) delta does not, s = resolvable_step."""
    step = resolvable_step(x, delta, rel)
    return changes_label(model, x, (1 + step) * delta, label, classes) & ~changes_label(
        model, x, (1 - step) * delta, label, classes
    )
