"""ReLU classifiers of section 6's "Nonlinear networks" (Theorem 7): d -> width -> ... -> width -> 2.

Contract: everything is about ONE network; vmap at the call site. The
parameters are `linear_net.LinearNet` (PyTorch's nn.Linear layout and
initialisation) and training is `linear_net.train` with this module's loss, so
the ReLU and the linear experiments differ in the activation only.

* `apply(net, x)` -- logits of one input, ReLU after every hidden layer: the
  `f(x) -> logits` that `jaxfrag.attacks` and `jaxfrag.compression` take.
* `batch_logits(net, x)` -- the same for the rows of x (n, d) -> (n, 2).
* `cross_entropy(net, x, labels, weights)` -- the training loss.
* `evaluate(net, a, indices)` -- accuracy and mean cross-entropy on the
  hypercube points `indices` of A, in blocks of points so that the
  (points, width) activations are never all in memory at once.
* `fits(net, a, indices)` -- every one of those points classified correctly
  (the until-fit protocol's stopping test).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxfrag import data
from jaxfrag.models.linear import LinearNet

# Points per block in `evaluate`: 8 trials x 1024 points x width 3000 in float32 is 98 MB.
EVAL_BLOCK = 1024


def batch_logits(net: LinearNet, x: jax.Array) -> jax.Array:
    """Logits (n, 2) of the rows of x (n, d)."""
    last = len(net.weights) - 1
    for k, h in enumerate(net.weights):
        x = x @ h.T + (net.biases[k] if net.biases else 0)
        if k < last:
            x = jax.nn.relu(x)
    return x


def apply(net: LinearNet, x: jax.Array) -> jax.Array:
    """Logits (2,) of one input (d,)."""
    return batch_logits(net, x[None])[0]


def cross_entropy(net: LinearNet, x: jax.Array, labels: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Mean cross-entropy over the rows of x (weighted mean when `weights` is given)."""
    losses = optax.softmax_cross_entropy_with_integer_labels(batch_logits(net, x), labels)
    if weights is None:
        return jnp.mean(losses)
    return jnp.sum(losses * weights) / jnp.sum(weights)


def evaluate(net: LinearNet, a: jax.Array, indices: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(accuracy, mean cross-entropy) on the points A z(indices)."""

    def block(index):
        x, label = data.hypercube_batch(a, index[None])
        logits = batch_logits(net, x)[0]
        return jnp.argmax(logits) == label[0], optax.softmax_cross_entropy_with_integer_labels(logits, label[0])

    correct, losses = jax.lax.map(block, indices, batch_size=min(EVAL_BLOCK, indices.shape[0]))
    return jnp.mean(correct), jnp.mean(losses)


def fits(net: LinearNet, a: jax.Array, indices: jax.Array) -> jax.Array:
    """True when the network classifies every point A z(indices) correctly."""
    return evaluate(net, a, indices)[0] == 1
