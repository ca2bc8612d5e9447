"""Trained deep linear classifiers, section 6: d -> width -> ... -> width -> 2, identity activations.

Contract: everything is about ONE network; vmap at the call site.

* `LinearNet` -- the parameters as PyTorch's nn.Linear stores them: weights
  H_1 (width, d), ..., H_out (2, width), and biases (empty when off).
* `init(key, d, config)` -- PyTorch's default initialisation by default,
  U(+-1/sqrt(fan_in)) for weights and biases (`config.init`).
* `apply(net, x)` -- the network as written, layer by layer, for one input.
* `affine_map(net)` -- the same function as (W, b), W = H_out ... H_1: the map
  the paper analyses (W1, W2 are its rows) and the one training differentiates.
  Re-associating x H_1^T H_2^T as x (H_2 H_1)^T is exactly the same function but
  never forms the (batch, width) activations (16 -> 1.2 GFLOP per trained net).
* `optimizer(config)` -- the optax transformation, PyTorch's defaults.
* `train(key, net, a, indices, config, loss, fit=...)` -- cross-entropy training on
  the hypercube points `indices` of A (see `jaxfrag.data`), `config.epochs`
  epochs of shuffled minibatches of `config.batch_size` (the last one smaller,
  as PyTorch's DataLoader does); under `config.protocol == "until-fit"` it then
  goes on, an epoch at a time, until `fit(net)` (every training point right)
  or `config.max_epochs` epochs in all. Returns a `TrainResult`: the trained
  net, whether a NaN or inf loss was seen, and the epochs run.
* `fits(net, a, indices)` -- every training point classified correctly.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxfrag import data
from jaxfrag.config import Config

CLASSES = 2


class LinearNet(NamedTuple):
    weights: tuple[jax.Array, ...]  # H_1 (width, d), ..., H_out (CLASSES, width)
    biases: tuple[jax.Array, ...]  # one per layer, or () without biases


class TrainResult(NamedTuple):
    net: LinearNet
    diverged: jax.Array  # a NaN or inf loss was seen
    epochs: jax.Array  # epochs run (int32): config.epochs, or up to config.max_epochs under until-fit


def _initializer(name: str):
    # Weights are stored (out, in) as in PyTorch, hence in_axis=-1.
    if name == "torch":  # kaiming_uniform(a=sqrt(5)) of nn.Linear is exactly U(+-1/sqrt(fan_in))
        return jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform", in_axis=-1, out_axis=-2)
    if name == "glorot":
        return jax.nn.initializers.glorot_uniform(in_axis=-1, out_axis=-2)
    if name == "lecun":
        return jax.nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)
    raise ValueError(f"unknown init {name!r}")


def layer_shapes(d: int, config: Config) -> list[tuple[int, int]]:
    widths = [d] + [config.width] * config.hidden_layers + [CLASSES]
    return [(fan_out, fan_in) for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True)]


def num_parameters(d: int, config: Config) -> int:
    return sum(rows * cols + (rows if config.bias else 0) for rows, cols in layer_shapes(d, config))


def init(key: jax.Array, d: int, config: Config, dtype=None) -> LinearNet:
    dtype = dtype or jnp.zeros(()).dtype
    shapes = layer_shapes(d, config)
    keys = jax.random.split(key, 2 * len(shapes))
    weights = tuple(_initializer(config.init)(k, shape, dtype) for k, shape in zip(keys[::2], shapes, strict=True))
    biases: tuple[jax.Array, ...] = ()
    if config.bias:
        if config.init == "torch":
            biases = tuple(
                jax.random.uniform(k, (rows,), dtype, -1, 1) / jnp.sqrt(jnp.asarray(cols, dtype))
                for k, (rows, cols) in zip(keys[1::2], shapes, strict=True)
            )
        else:
            biases = tuple(jnp.zeros((rows,), dtype) for rows, _ in shapes)
    return LinearNet(weights, biases)


def apply(net: LinearNet, x: jax.Array) -> jax.Array:
    """Logits of one input, layer by layer (identity activations)."""
    for k, h in enumerate(net.weights):
        x = h @ x + (net.biases[k] if net.biases else 0)
    return x


@jax.custom_vjp
def _narrow_product(m: jax.Array, h: jax.Array) -> jax.Array:
    """m @ h for an m with few rows (the 2-row head times a layer)."""
    # One matrix-vector product per row of m, with h^T on the left: in training h arrives as the
    # transpose of the stored (d, width) layer (see `train`), so h^T is the stored array read along
    # its minor axis. `m @ h` made XLA copy the layer into a transposed layout on every step, and a
    # sum of products materialised the product (XLA:CPU does not fuse producers into reductions);
    # both were slower per step, and so was one (d, width) @ (width, 2) dot.
    return jnp.stack([h.T @ m[i] for i in range(m.shape[0])])


def _narrow_product_fwd(m, h):
    return _narrow_product(m, h), (m, h)


def _narrow_product_bwd(residual, g):
    # Hand-written because of XLA:CPU, not maths: autodiff's cotangent for h is a
    # dot (m^T g) that XLA runs as a separate pass over the (width, d) layer. As a
    # sum of CLASSES outer products it is elementwise, so XLA fuses it into the
    # optimiser's update: 1.27x faster training steps at d = 12 (medians, side by side). Tested
    # against jax.grad of m @ h.
    m, h = residual
    grad_h = sum(m[i][:, None] * g[i][None, :] for i in range(m.shape[0]))
    if h.shape[1] <= 32:  # narrow input layer: unrolled, elementwise as well
        grad_m = jnp.stack([sum(h[:, j] * g[i, j] for j in range(h.shape[1])) for i in range(m.shape[0])])
    else:
        grad_m = g @ h.T
    return grad_m, grad_h


_narrow_product.defvjp(_narrow_product_fwd, _narrow_product_bwd)


def affine_map(net: LinearNet) -> tuple[jax.Array, jax.Array]:
    """(W, b) with apply(net, x) == W x + b: W = H_out ... H_1 (CLASSES, d), multiplied from the head down."""
    w = net.weights[-1]
    b = net.biases[-1] if net.biases else jnp.zeros(w.shape[0], w.dtype)
    for k in range(len(net.weights) - 2, -1, -1):
        if net.biases:
            b = b + w @ net.biases[k]
        w = _narrow_product(w, net.weights[k])
    return w, b


def optimizer(config: Config) -> optax.GradientTransformation:
    """config.optimizer at config.lr with PyTorch's default hyperparameters."""
    name = config.optimizer
    if name == "adam":  # betas (0.9, 0.999), eps 1e-8 outside the square root: as torch.optim.Adam
        return optax.adam(config.lr)
    if name == "adamw":
        return optax.adamw(config.lr, weight_decay=1e-2)  # torch.optim.AdamW's default decay
    if name == "sgd":
        return optax.sgd(config.lr)
    if name == "rmsprop":  # torch: alpha 0.99, g / (sqrt(v) + eps)
        return optax.rmsprop(config.lr, decay=0.99, eps=1e-8, eps_in_sqrt=False)
    raise ValueError(f"unknown optimizer {name!r}")


def cross_entropy(net: LinearNet, x: jax.Array, labels: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Mean cross-entropy over the rows of x (weighted mean when `weights` is given)."""
    w, b = affine_map(net)
    losses = optax.softmax_cross_entropy_with_integer_labels(x @ w.T + b, labels)
    if weights is None:
        return jnp.mean(losses)
    return jnp.sum(losses * weights) / jnp.sum(weights)


def batch_plan(key: jax.Array, num: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """One epoch's shuffled minibatches: positions (steps, batch) into the training set and a validity mask."""
    steps = -(-num // batch_size)
    order = jax.random.permutation(key, num)
    order = jnp.concatenate([order, jnp.zeros(steps * batch_size - num, order.dtype)])
    valid = jnp.arange(steps * batch_size) < num
    return order.reshape(steps, batch_size), valid.reshape(steps, batch_size)


def wide_layout(net: LinearNet) -> LinearNet:
    """The layers that have more rows than columns (the first, (width, d)) transposed: width on the minor axis.

    Its own inverse for a given architecture. Training keeps the parameters and Adam's moments in
    this layout: XLA's CPU loops vectorise along the minor axis, and a minor axis of d = 12 fills
    16-lane vector units badly (`benchmarks/bench_linear.py` times training both ways).
    """
    return net._replace(weights=tuple(h.T if h.shape[0] > h.shape[1] else h for h in net.weights))


def _from_wide_layout(wide: LinearNet, like: LinearNet) -> LinearNet:
    weights = tuple(h.T if h.shape != w.shape else h for h, w in zip(wide.weights, like.weights, strict=True))
    return wide._replace(weights=weights)


def fits(net: LinearNet, a: jax.Array, indices: jax.Array) -> jax.Array:
    """True when the linear network classifies every point A z(indices) correctly."""
    w, b = affine_map(net)
    x, labels = data.hypercube_batch(a, indices)
    return jnp.all(jnp.argmax(x @ w.T + b, axis=1) == labels)


def train(
    key: jax.Array,
    net: LinearNet,
    a: jax.Array,
    indices: jax.Array,
    config: Config,
    loss=None,
    wide: bool = True,
    fit=None,
) -> TrainResult:
    """Train on the points A z(indices): (trained net, diverged, epochs run).

    `loss(net, x, labels, weights)` defaults to this module's `cross_entropy` and `fit(net)` (the
    until-fit protocol's stopping test) to this module's `fits`; `jaxfrag.models.relu` passes its
    own, so both experiments train by exactly the same loop. The loop carries the parameters in
    `wide_layout` (`wide=False`: as stored, for the benchmark's side-by-side); the loss sees them in
    the stored layout (transposes XLA folds away). Epoch k shuffles with fold_in(key, k) under both
    protocols, so an until-fit net that ran k epochs saw the batches a fixed k-epoch run sees.
    """
    loss = loss or cross_entropy
    fit = fit or (lambda trained: fits(trained, a, indices))
    opt = optimizer(config)
    batch_size = min(config.batch_size, indices.shape[0])
    stored = net

    def carried_loss(carried, x, labels, weights):
        return loss(_from_wide_layout(carried, stored), x, labels, weights)

    def step(carry, batch):
        carried, opt_state, finite = carry
        positions, valid = batch
        x, labels = data.hypercube_batch(a, indices[positions])
        value, grads = jax.value_and_grad(carried_loss)(carried, x, labels, valid.astype(x.dtype))
        updates, opt_state = opt.update(grads, opt_state, carried)
        return (optax.apply_updates(carried, updates), opt_state, finite & jnp.isfinite(value)), None

    def epoch(carry, epoch_index):
        batches = batch_plan(jax.random.fold_in(key, epoch_index), indices.shape[0], batch_size)
        carry, _ = jax.lax.scan(step, carry, batches)
        return carry, None

    carried = wide_layout(net) if wide else net
    carry = (carried, opt.init(carried), jnp.asarray(True))
    carry, _ = jax.lax.scan(epoch, carry, jnp.arange(config.epochs))
    epochs = jnp.asarray(config.epochs, jnp.int32)
    if config.protocol == "until-fit":
        # Under vmap the loop runs while any trial goes on; a finished trial's state is kept as it
        # was (JAX selects it), so each net's result is its own, whatever trains beside it.
        def going_on(state):
            (carried, _, finite), done = state
            return (done < config.max_epochs) & finite & ~fit(_from_wide_layout(carried, stored))

        def one_more(state):
            carry, done = state
            return epoch(carry, done)[0], done + 1

        carry, epochs = jax.lax.while_loop(going_on, one_more, (carry, epochs))
    carried, _, finite = carry
    return TrainResult(_from_wide_layout(carried, stored), ~finite, epochs)
