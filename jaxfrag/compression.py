"""Feature compression measured from gradients, for any differentiable model f(x) -> logits.

Contract:
* `margin_gradient(f, i, j)` -- the function x -> grad (f_i - f_j)(x), with one
  evaluation of f per point (i, j may be traced); the attacks use it too.
* `path_compression(f, x_from, x_to, classes, n_alpha)` -- along the straight
  path x_alpha = x_from + alpha (x_to - x_from), alpha = 0, 1/(n-1), ..., 1, with
  g = f_i - f_j for classes = (i, j), returns per alpha:
  - `cos`: the cosine between grad g(x_alpha) and x_to - x_from (signed);
  - `grad_norm`: ||grad g(x_alpha)||;
  - `length`: the running sum of eq. (8)'s signed length as the paper's Tables
    5 and 8 compute it, M = sum_alpha ||grad g(x_alpha)|| cos_alpha L / (n - 1)
    / ||grad g(x_from)||, L = ||x_to - x_from||; its last entry is M.
  It is vmapped over alpha inside; vmap it over pairs (x_from, x_to) outside.
  Bad input (n_alpha < 2, x_from == x_to, i == j) raises ValueError when the
  values are concrete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class PathCompression(NamedTuple):
    alphas: jax.Array  # (n,)
    cos: jax.Array  # (n,) cos(grad g(x_alpha), x_to - x_from)
    grad_norm: jax.Array  # (n,) ||grad g(x_alpha)||
    length: jax.Array  # (n,) running sum of eq. (8)'s M; length[-1] is M


def _check(x_from, x_to, classes, n_alpha: int) -> None:
    if n_alpha < 2:
        raise ValueError(f"n_alpha must be at least 2 (the path's two ends), got {n_alpha}")
    i, j = classes
    try:
        if int(i) == int(j):
            raise ValueError(f"classes must differ: g = f_i - f_j is zero for i = j = {int(i)}")
        if np.array_equal(np.asarray(x_from), np.asarray(x_to)):
            raise ValueError("x_from equals x_to: the path has no direction")
    except (
        jax.errors.TracerIntegerConversionError,
        jax.errors.TracerArrayConversionError,
        jax.errors.ConcretizationTypeError,
    ):
        pass  # traced (under jit/vmap): checked by the caller's concrete call, if any


def margin_gradient(f: Callable[[jax.Array], jax.Array], i, j) -> Callable[[jax.Array], jax.Array]:
    """x -> grad of g = f_i - f_j at x."""

    def margin(x):
        logits = f(x)
        return logits[i] - logits[j]

    return jax.grad(margin)


def path_compression(
    f: Callable[[jax.Array], jax.Array], x_from: jax.Array, x_to: jax.Array, classes: tuple, n_alpha: int
) -> PathCompression:
    _check(x_from, x_to, classes, n_alpha)
    i, j = classes
    direction = x_to - x_from
    length = jnp.linalg.norm(direction)
    alphas = jnp.linspace(0, 1, n_alpha, dtype=x_from.dtype)
    grad_g = margin_gradient(f, i, j)
    grads = jax.vmap(lambda alpha: grad_g(x_from + alpha * direction))(alphas)
    norms = jnp.linalg.norm(grads, axis=1)
    cos = grads @ direction / (norms * length)
    steps = norms * cos * length / (n_alpha - 1) / norms[0]
    return PathCompression(alphas, cos, norms, jnp.cumsum(steps))
