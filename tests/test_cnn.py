"""The paper's MNIST CNN in Flax: its function, initialisation, optimiser and training."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from jaxfrag import datasets
from jaxfrag.models import cnn


def numpy_forward(params, x):
    """The network from its definition in float64 numpy: convolutions as sums over windows."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    h = ((np.asarray(x, np.float64) - 0.1307) / 0.3081)[..., None]
    for name in ("Conv_0", "Conv_1"):
        windows = sliding_window_view(h, (3, 3), axis=(1, 2))  # (n, H-2, W-2, c, 3, 3)
        h = np.maximum(np.einsum("nyxcij,ijco->nyxo", windows, p[name]["kernel"]) + p[name]["bias"], 0)
    n = h.shape[0]
    h = h.reshape(n, 12, 2, 12, 2, 64).max(axis=(2, 4))
    h = h.transpose(0, 3, 1, 2).reshape(n, -1)  # PyTorch flattens (C, H, W)
    h = np.maximum(h @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0)
    return h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]


@pytest.fixture(scope="module")
def params():
    return cnn.init(jax.random.key(3))


@pytest.mark.parametrize("seed", [0, 1])
def test_forward_pass_matches_an_independent_numpy_network(params, seed):
    x = np.random.default_rng(seed).random((5, 28, 28)).astype(np.float32)
    x[:, :4] = 0  # MNIST-like empty rows
    want = numpy_forward(params, x)
    got = np.asarray(cnn.apply(params, jnp.asarray(x)), np.float64)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())
    np.testing.assert_allclose(np.asarray(cnn.apply(params, jnp.asarray(x[2]))), got[2], rtol=0, atol=1e-5)
    for ties in cnn.POOL_TIES:  # the tie rule changes gradients only
        np.testing.assert_array_equal(np.asarray(cnn.apply(params, jnp.asarray(x), ties)), got.astype(np.float32))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_certify_chain_has_the_networks_logits(params, seed):
    # Normalisation folded into conv 1, PyTorch's flatten into dense 1: the same function on pixels.
    from jaxfrag import certify

    x = np.random.default_rng(seed).random((5, 28, 28)).astype(np.float32)
    x[:, :4] = 0
    network = cnn.certify_chain(params)
    certify.check(network)
    got = np.stack([np.asarray(certify.apply(network, jnp.asarray(image.reshape(-1))), np.float64) for image in x])
    want = numpy_forward(params, x)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())


def test_parameter_count_and_pytorch_initialisation(params):
    fan_ins = {"Conv_0": 9, "Conv_1": 9 * 32, "Dense_0": 9216, "Dense_1": 128}
    outs = {"Conv_0": 32, "Conv_1": 64, "Dense_0": 128, "Dense_1": 10}
    assert cnn.num_parameters(params) == sum(fan_ins[k] * outs[k] + outs[k] for k in fan_ins) == 1199882
    for name, fan_in in fan_ins.items():
        bound = 1 / math.sqrt(fan_in)
        for leaf in ("kernel", "bias"):
            values = np.asarray(params[name][leaf], np.float64).ravel()
            assert np.abs(values).max() <= bound
        # U(-b, b) has variance b^2 / 3; the sample variance's SE is about b^2 sqrt(4/45 / n).
        values = np.asarray(params[name]["kernel"], np.float64).ravel()
        assert abs(values.var() - bound**2 / 3) < 5 * bound**2 * math.sqrt(4 / 45 / len(values))


def test_max_pool_gives_a_tie_to_the_first_maximum_or_shares_it():
    window = jnp.zeros((1, 2, 2, 1)).at[0, 1, 1, 0].set(-1.0)  # three equal maxima, one smaller
    for ties, want in (("first", [1, 0, 0, 0]), ("split", [1 / 3, 1 / 3, 1 / 3, 0])):
        value, grad = jax.value_and_grad(lambda w, ties=ties: cnn.max_pool_2x2(w, ties).sum())(window)
        assert float(value) == 0.0
        np.testing.assert_allclose(np.asarray(grad).ravel(), want, atol=1e-7)
    with pytest.raises(ValueError, match="pool_ties"):
        cnn.max_pool_2x2(window, "last")


def test_adadelta_with_its_per_epoch_decay_follows_pytorch():
    # torch.optim.Adadelta (lr, rho, eps) with StepLR(step_size=1, gamma) stepped once per epoch.
    config = cnn.CNNConfig(lr=1.0, lr_decay=0.7)
    steps_per_epoch = 3
    tx = cnn.optimizer(config, steps_per_epoch)
    w = jnp.asarray([1.0, -2.0, 0.5])
    state = tx.init(w)
    w_np, square, accumulated = np.array([1.0, -2.0, 0.5]), np.zeros(3), np.zeros(3)
    for step in range(8):
        grad = 2 * w_np + np.array([0.3, 0.0, -1.0])
        lr = config.lr * config.lr_decay ** (step // steps_per_epoch)
        square = config.rho * square + (1 - config.rho) * grad**2
        delta = np.sqrt(accumulated + config.eps) / np.sqrt(square + config.eps) * grad
        accumulated = config.rho * accumulated + (1 - config.rho) * delta**2
        w_np = w_np - lr * delta
        updates, state = tx.update(jnp.asarray(grad, jnp.float32), state, w)
        w = w + updates
        np.testing.assert_allclose(np.asarray(w), w_np, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def mnist():
    return datasets.mnist()


def test_a_short_training_run_learns_and_each_network_is_its_own(mnist, tmp_path):
    n = 4096
    config = cnn.CNNConfig(epochs=1)
    keys = jax.random.split(jax.random.key(0), 2)
    seen = []
    pair = cnn.train(keys, mnist.x_train[:n], mnist.y_train[:n], config, seen.append)
    assert sum(seen) == 2 * n  # the progress callback counts every image of every network
    test_x, test_y = mnist.x_test[:2000], mnist.y_test[:2000]
    accuracies = [cnn.accuracy(cnn.select(pair, k), test_x, test_y) for k in range(2)]
    untrained = cnn.accuracy(cnn.init(jax.random.key(9)), test_x, test_y)
    assert min(accuracies) > 0.85 > 0.3 > untrained  # 64 Adadelta steps on 4096 images; chance is 0.1
    assert not np.allclose(np.asarray(pair["Dense_1"]["kernel"][0]), np.asarray(pair["Dense_1"]["kernel"][1]))
    # Saved and loaded back as f(x) -> logits.
    path = tmp_path / "networks.npz"
    cnn.save(path, pair, config)
    loaded, loaded_config = cnn.load(path)
    assert loaded_config == config and [p.name for p in tmp_path.iterdir()] == ["networks.npz"]
    x = jnp.asarray(test_x[:3] / 255, jnp.float32)
    np.testing.assert_array_equal(np.asarray(cnn.network(loaded, 1)(x)), np.asarray(cnn.network(pair, 1)(x)))


def test_a_network_is_the_same_beside_any_companion(mnist):
    # Network 0 beside two different companions (the same compiled program): its own key decides
    # its initialisation, data order and dropout, so it is the same network bit for bit. A few
    # minibatches suffice: any mixing between networks would show after the first.
    n = 512
    config = cnn.CNNConfig(epochs=1)
    key = jax.random.key(0)
    pairs = [
        cnn.train(jnp.stack([key, jax.random.key(companion)]), mnist.x_train[:n], mnist.y_train[:n], config)
        for companion in (1, 5)
    ]
    for ours, theirs in zip(*(jax.tree.leaves(cnn.select(pair, 0)) for pair in pairs), strict=True):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    companions = [np.asarray(pair["Dense_1"]["kernel"][1]) for pair in pairs]
    assert not np.array_equal(*companions)
