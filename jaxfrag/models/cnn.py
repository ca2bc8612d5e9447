"""The paper's MNIST network (section 6, Tables 5-6) in Flax, trained K at a time.

The network is PyTorch's classic MNIST example, which the paper describes:
conv 1->32 3x3, ReLU, conv 32->64 3x3, ReLU, max-pool 2, dropout 0.25, flatten
(9216, in PyTorch's channel-major order so a PyTorch state_dict maps one to one),
dense 128, ReLU, dropout 0.5, dense 10, log-softmax; negative log-likelihood,
Adadelta (lr 1.0, decayed by 0.7 per epoch as the example's StepLR does), batch
64, 2 epochs, PyTorch's default initialisation U(+-1/sqrt(fan_in)).

Contract: everything is about ONE network; vmap over networks outside.
* `CNN` -- the Flax module. It takes pixels in [0, 1], (28, 28) or (n, 28, 28),
  and normalises inside with MNIST's mean and std, so that every distance (L, Q,
  M) is in pixel units. It returns the scores z before the log-softmax: the
  PyTorch net outputs log_softmax(z), and every difference f_i - f_j, the only
  thing the paper's analysis and the attacks use, is the same for both.
* `init(key, config)` -- one network's parameters.
* `apply(params, x)` -- the `f(x) -> logits` that `jaxfrag.attacks` and
  `jaxfrag.compression` take (eval mode: no dropout).
* `train(keys, images, labels, config, progress)` -- trains len(keys) networks
  at once, vmapped, each with its own initialisation, data order and dropout,
  all from its key; returns stacked parameters.
* `accuracy(params, images, labels)` -- test accuracy of one network.
* `certify_chain(params)` -- one network as a `jaxfrag.certify` chain (the same logits).
* `save(path, params, config)` / `load(path)` -- parameters on disk (.npz,
  written atomically) and back as (params, config, f) with f(x) -> logits of
  network k via `network(params, k)`.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxfrag import certify, store
from jaxfrag.xla_options import runtime_bound

# MNIST's training-set pixel mean and std (the PyTorch example's Normalize((0.1307,), (0.3081,))).
MEAN, STD = 0.1307, 0.3081
CLASSES = 10
IMAGE = (28, 28)


class CNNConfig(NamedTuple):
    """Training choices; the paper gives only the architecture, Adadelta, NLL and 2 epochs."""

    epochs: int = 2
    batch_size: int = 64
    lr: float = 1.0  # Adadelta's learning rate, as in PyTorch's example
    lr_decay: float = 0.7  # per epoch (the example's StepLR(step_size=1, gamma=0.7))
    rho: float = 0.9  # Adadelta's defaults, in PyTorch and optax alike
    eps: float = 1e-6
    dropout1: float = 0.25
    dropout2: float = 0.5


def _torch_bias(fan_in: int):
    # PyTorch's Conv2d/Linear bias default: U(+-1/sqrt(fan_in)).
    def init(key, shape, dtype=jnp.float32):
        bound = 1 / math.sqrt(fan_in)
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# kaiming_uniform(a=sqrt(5)), PyTorch's weight default, is exactly U(+-1/sqrt(fan_in)).
_TORCH_KERNEL = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


class PatchConv(nn.Module):
    """A VALID, stride-1 convolution computed as a matmul on image patches (NHWC, HWIO kernel).

    The same parameters and function as nn.Conv(padding="VALID"). Written by hand
    because XLA's CPU convolution is slow to differentiate, and slower still when
    vmapped over networks (a grouped convolution): on 2 cores a training step of
    this network ran 1.6x faster alone and 2.5x faster vmapped over 4 networks as
    a matmul on patches (measured side by side, batch 64).
    """

    features: int
    size: int = 3

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        fan_in = self.size * self.size * channels
        kernel = self.param("kernel", _TORCH_KERNEL, (self.size, self.size, channels, self.features))
        bias = self.param("bias", _torch_bias(fan_in), (self.features,))
        h, w = x.shape[1] - self.size + 1, x.shape[2] - self.size + 1
        patches = jnp.concatenate(
            [x[:, i : i + h, j : j + w, :] for i in range(self.size) for j in range(self.size)], axis=-1
        )
        return patches @ kernel.reshape(fan_in, self.features) + bias


POOL_TIES = ("first", "split")


def max_pool_2x2(x: jax.Array, ties: str = "first") -> jax.Array:
    """2x2 max-pool (NHWC, even H and W) with an explicit rule for the gradient at ties.

    MNIST's background is exactly 0, so a window often holds equal maxima, and
    where the gradient goes is a convention: "first" gives it all to the first
    maximum in row-major window order (PyTorch's max_pool2d, the paper's
    framework); "split" shares it equally (jnp.max's rule). The value is the same.
    """
    n, h, w, c = x.shape
    windows = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, h // 2, w // 2, c, 4)
    if ties == "split":
        return windows.max(axis=-1)
    if ties != "first":
        raise ValueError(f"pool_ties must be one of {POOL_TIES}, got {ties!r}")
    first = jax.lax.stop_gradient(jax.nn.one_hot(jnp.argmax(windows, axis=-1), 4, dtype=x.dtype))
    return jnp.sum(windows * first, axis=-1)


class CNN(nn.Module):
    dropout1: float = 0.25
    dropout2: float = 0.5
    pool_ties: str = "first"

    @nn.compact
    def __call__(self, x, train: bool = False):
        single = x.ndim == 2
        x = (x.reshape((-1, *IMAGE, 1)) - MEAN) / STD
        x = nn.relu(PatchConv(32, name="Conv_0")(x))
        x = nn.relu(PatchConv(64, name="Conv_1")(x))
        x = max_pool_2x2(x, self.pool_ties)
        x = nn.Dropout(self.dropout1, deterministic=not train)(x)
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # PyTorch's (C, H, W) flatten
        x = nn.relu(nn.Dense(128, kernel_init=_TORCH_KERNEL, bias_init=_torch_bias(9216))(x))
        x = nn.Dropout(self.dropout2, deterministic=not train)(x)
        x = nn.Dense(CLASSES, kernel_init=_TORCH_KERNEL, bias_init=_torch_bias(128))(x)
        return x[0] if single else x


DEFAULT = CNNConfig()


def module(config: CNNConfig = DEFAULT) -> CNN:
    return CNN(config.dropout1, config.dropout2)


def init(key: jax.Array, config: CNNConfig = DEFAULT):
    return module(config).init(key, jnp.zeros(IMAGE))["params"]


def apply(params, x: jax.Array, pool_ties: str = "first") -> jax.Array:
    """Scores z (10,) of one image (28, 28), or (n, 10) of (n, 28, 28); pixels in [0, 1]."""
    return CNN(pool_ties=pool_ties).apply({"params": params}, x)


def select(params, k: int):
    """Network k's parameters out of stacked ones."""
    return jax.tree.map(lambda leaf: leaf[k], params)


def network(params, k: int | None = None, pool_ties: str = "first") -> Callable[[jax.Array], jax.Array]:
    """f(x) -> logits of one network (or of network k of stacked parameters)."""
    one = params if k is None else select(params, k)
    return lambda x: apply(one, x, pool_ties)


def certify_chain(params) -> certify.Chain:
    """One network as a `jaxfrag.certify` chain with the same logits (eval mode) on pixels: MNIST's
    normalisation folded into the first convolution, and PyTorch's (C, H, W) flatten into the
    first dense layer's columns (the chain's vectors are (H, W, C), row-major)."""
    first, second = params["Conv_0"], params["Conv_1"]
    kernel = first["kernel"] / STD
    bias = first["bias"] - MEAN * kernel.sum((0, 1, 2))
    pooled = (12, 12, 64)
    channel_major = np.arange(math.prod(pooled)).reshape(64, 12, 12).transpose(1, 2, 0).reshape(-1)
    return (
        certify.Conv(kernel, bias, (*IMAGE, 1)),
        certify.Relu(),
        certify.Conv(second["kernel"], second["bias"], (26, 26, 32)),
        certify.Relu(),
        certify.MaxPool((24, 24, 64)),
        certify.Dense(params["Dense_0"]["kernel"][channel_major].T, params["Dense_0"]["bias"]),
        certify.Relu(),
        certify.Dense(params["Dense_1"]["kernel"].T, params["Dense_1"]["bias"]),
    )


def num_parameters(params) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def optimizer(config: CNNConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    schedule = optax.exponential_decay(config.lr, steps_per_epoch, config.lr_decay, staircase=True)
    return optax.adadelta(schedule, rho=config.rho, eps=config.eps)


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    step: jax.Array


def _nll(params, x, y, dropout_key, config: CNNConfig):
    z = module(config).apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})
    return optax.softmax_cross_entropy_with_integer_labels(z, y).mean()  # NLL of log_softmax(z)


def _images(batch: jax.Array) -> jax.Array:
    return batch.astype(jnp.float32) / 255.0


def train_steps(config: CNNConfig, steps_per_epoch: int):
    """A jitted function running a block of minibatches for K networks at once.

    (states, keys, images, labels, orders) -> states, where orders (K, steps, batch)
    indexes the training set: network k's batch at each step.
    """
    tx = optimizer(config, steps_per_epoch)

    def one_network(state: TrainState, key, images, labels, order):
        def step(state, batch_index):
            dropout_key = jax.random.fold_in(jax.random.fold_in(key, 1), state.step)
            x, y = _images(images[batch_index]), labels[batch_index]
            grads = jax.grad(_nll)(state.params, x, y, dropout_key, config)
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            return TrainState(optax.apply_updates(state.params, updates), opt_state, state.step + 1), None

        return jax.lax.scan(step, state, order)[0]

    return jax.jit(
        jax.vmap(one_network, in_axes=(0, 0, None, None, 0)), donate_argnums=0, compiler_options=runtime_bound()
    )


def _epoch_order(key, epoch: int, n: int) -> jax.Array:
    return jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, 2), epoch), n)


def train(
    keys: jax.Array,
    images: np.ndarray,
    labels: np.ndarray,
    config: CNNConfig = DEFAULT,
    progress: Callable[[int], None] | None = None,
    block: int = 50,
):
    """Train len(keys) networks on uint8 images (n, 28, 28); returns the stacked parameters.

    Network k's initialisation, shuffling and dropout come from keys[k] only.
    Each epoch is ceil(n / batch) minibatches, the last one smaller, as
    PyTorch's DataLoader cuts them; `progress(images_done)` is called per block.
    """
    n = len(labels)
    steps_per_epoch = math.ceil(n / config.batch_size)
    full = n // config.batch_size
    tx = optimizer(config, steps_per_epoch)
    params = jax.vmap(lambda key: init(jax.random.fold_in(key, 0), config))(keys)
    states = TrainState(params, jax.vmap(tx.init)(params), jnp.zeros(len(keys), jnp.int32))
    run = train_steps(config, steps_per_epoch)
    images, labels = jnp.asarray(images), jnp.asarray(labels)
    for epoch in range(config.epochs):
        orders = jax.vmap(_epoch_order, in_axes=(0, None, None))(keys, epoch, n)
        batches = orders[:, : full * config.batch_size].reshape(len(keys), full, config.batch_size)
        for start in range(0, full, block):
            states = run(states, keys, images, labels, batches[:, start : start + block])
            if progress:
                jax.block_until_ready(states.step)  # count images when they are done, not dispatched
                progress(len(keys) * config.batch_size * min(block, full - start))
        if n % config.batch_size:  # the DataLoader's last, smaller batch
            states = run(states, keys, images, labels, orders[:, None, full * config.batch_size :])
            if progress:
                progress(len(keys) * (n % config.batch_size))
    return states.params


@functools.partial(jax.jit, compiler_options=runtime_bound())
def _predict(params, images):
    return jnp.argmax(apply(params, _images(images)), axis=-1)


def predict(params, images: np.ndarray, block: int = 1000) -> np.ndarray:
    """Predicted classes of one network on uint8 images, in blocks."""
    return np.concatenate([np.asarray(_predict(params, images[i : i + block])) for i in range(0, len(images), block)])


def accuracy(params, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predict(params, images) == np.asarray(labels)))


def save(path: Path, params, config: CNNConfig) -> None:
    """Stacked parameters and the training config in one .npz, written atomically."""

    flat = {
        "/".join(str(p.key) for p in keypath): np.asarray(leaf) for keypath, leaf in jax.tree.leaves_with_path(params)
    }
    flat["config"] = np.asarray(json.dumps(config._asdict()))
    with store.atomic_path(Path(path)) as temp:
        with open(temp, "wb") as handle:
            np.savez(handle, **flat)


def load(path: Path):
    """(stacked params, CNNConfig) saved by `save`; `network(params, k)` gives f(x) -> logits."""
    with np.load(Path(path), allow_pickle=False) as archive:
        config = CNNConfig(**json.loads(str(archive["config"])))
        params: dict = {}
        for name in archive.files:
            if name == "config":
                continue
            node = params
            *parents, leaf = name.split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = jnp.asarray(archive[name])
    return params, config
