"""Linear networks built to satisfy the paper's interpolation conditions.

Contract: a network is a `LinearNetwork` NamedTuple of weight matrices
(H_1, ..., H_l), applied to ONE input as f(x) = H_l ... H_1 x (identity
activations, no biases, as in the theorems); vmap `apply` for a batch.

* `gaussian_hidden_layers` -- standard Gaussian hidden layers (the theorems allow
  any full-rank H's) with the QR of their product, which Lemma 3 is about.
  Widths come from `Config.hidden_widths`.
* `condition1_network` -- Theorems 1 and 4, condition (1): f_j(x_i) = 1 if j = i
  else 0 for the d data points. Built from the QR X = Q R of the data as in the
  proof: the output layer is H_l = X^{-1} (H_{l-1} ... H_1)^+, which for l = 2 is
  the proof's H_2 = R^{-1} Q_2^T R_H^{-1} Q_1^T.
* `condition6_network` -- Theorem 6, condition (6): f_{+1}(A z) = z_d and
  f_{-1}(A z) = -z_d for every z in {+1,-1}^d. Then w_{+1}^T H_{l-1}..H_1 is the
  last row of A^{-1}, and the output rows are +/- that row mapped back through
  the pseudo-inverse of the hidden layers. Output 0 is class +1, output 1 is
  class -1.

Hidden widths must be >= d (so the hidden map has full column rank).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxfrag import linalg, padding


class LinearNetwork(NamedTuple):
    layers: tuple[jax.Array, ...]  # H_1 (n_2, d), ..., H_l (k, n_l)


class HiddenLayers(NamedTuple):
    """Standard Gaussian hidden layers H_1..H_{l-1} and the QR of their product."""

    layers: tuple[jax.Array, ...]  # H_1 (n_2, d), ..., H_{l-1} (n_l, n_{l-1})
    qr: linalg.QR  # of H_{l-1} ... H_1 (n_l, d); its R is Lemma 3's R


def apply(network: LinearNetwork, x: jax.Array) -> jax.Array:
    """Logits f(x) of one input x (d,)."""
    for h in network.layers:
        x = h @ x
    return x


def gaussian_hidden_layers(
    key: jax.Array, d, widths: tuple, sizes: tuple[int, ...] | None = None, size: int | None = None
) -> HiddenLayers:
    """Hidden layers of the given widths (each >= d) with iid N(0, 1) weights.

    `sizes` and `size` are the compiled sizes of the layers and of the input when
    the trial is embedded in a larger program (`jaxfrag.padding`); they default
    to the real ones. Each layer keeps the padding block I_p on its first
    p = size - d units, so the product stays [[I_p, 0], [0, H..H], [0, 0]].
    """
    size = size or d
    sizes = sizes or tuple(widths)
    keys = jax.random.split(key, len(widths)) if widths else []
    real_in, size_in = (d,) + tuple(widths)[:-1], (size,) + tuple(sizes)[:-1]
    layers = tuple(
        padding.normal_layer(k, m_out, m_in, size - d, (s_out, s_in))
        for k, m_out, m_in, s_out, s_in in zip(keys, widths, real_in, sizes, size_in, strict=True)
    )
    product = jnp.eye(size, dtype=jnp.result_type(float))
    for h in layers:
        product = h @ product
    return HiddenLayers(layers, linalg.qr(product))


def _output_layer(hidden: HiddenLayers, effective: jax.Array) -> jax.Array:
    """The output weights W_out with W_out H_{l-1}..H_1 = effective (k, d): effective @ (H..H)^+."""
    # (H..H)^+ = R^{-1} Q^T, so effective @ (H..H)^+ = (Q R^{-T} effective^T)^T.
    return linalg.q_matmul(hidden.qr, linalg.solve_upper_transpose(hidden.qr.r, effective.T)).T


def condition1_network(hidden: HiddenLayers, points: linalg.QR) -> LinearNetwork:
    """f(x_i) = e_i for the columns x_i of X = Q R (d, d): the effective map is X^{-1} = R^{-1} Q^T."""
    d = points.r.shape[0]
    inverse = linalg.solve_upper(points.r, linalg.qt_matmul(points, jnp.eye(d, dtype=points.r.dtype)))
    return LinearNetwork(hidden.layers + (_output_layer(hidden, inverse),))


def condition6_network(hidden: HiddenLayers, a: linalg.QR) -> LinearNetwork:
    """f_{+1}(A z) = z_d = -f_{-1}(A z) for every sign vector z, where A = Q R (d, d)."""
    d = a.r.shape[0]
    # Last row of A^{-1} = (A^{-T} e_d)^T, and A^{-T} e_d = Q R^{-T} e_d.
    e_d = jnp.zeros(d, a.r.dtype).at[-1].set(1)
    last_row = linalg.q_matmul(a, linalg.solve_upper_transpose(a.r, e_d))
    return LinearNetwork(hidden.layers + (_output_layer(hidden, jnp.stack([last_row, -last_row])),))
