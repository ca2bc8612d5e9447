"""Attack your own model and measure its feature compression, end to end.

A small PyTorch classifier is trained on two Gaussian classes in 64 dimensions, exported to ONNX,
loaded into JAX by jaxfrag's interpreter, attacked (minimal L2, verified by applying it), certified
(alpha-CROWN's lower bound on the same minimal perturbation, read from the same ONNX file) and
measured along the path between two inputs of different classes (|cos θ_α| and eq. (8)'s M). It needs the
`export` extra (torch and onnxscript): `pip install -e '.[export]'`.

    python docs/examples/own_model.py [--out FOLDER]
"""

import argparse
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxfrag import attacks, certify, compression
from jaxfrag.models import onnx_bounds, onnx_graph

D = 64


def train_torch_model() -> torch.nn.Module:
    """A 64 -> 32 -> 2 ReLU net fitted to two Gaussian blobs 2 apart along the first axis."""
    torch.manual_seed(0)
    centre = torch.zeros(D)
    centre[0] = 1.0
    x = torch.cat([torch.randn(512, D) + centre, torch.randn(512, D) - centre])
    y = torch.cat([torch.zeros(512, dtype=torch.long), torch.ones(512, dtype=torch.long)])
    net = torch.nn.Sequential(torch.nn.Linear(D, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(200):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimiser.step()
    return net.eval()


def main(out: Path) -> dict:
    net = train_torch_model()
    path = out / "net.onnx"
    # The export carries a batch axis of 1; jaxfrag's f takes one input without it.
    torch.onnx.export(net, (torch.zeros(1, D),), str(path), dynamo=True, external_data=False)

    f, params = onnx_graph.load_onnx(path)
    model = jax.jit(lambda x: f(params, x))  # any f(x) -> logits is what jaxfrag's attacks take

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(D) + 3 * np.eye(D)[0], jnp.float32)  # a class-0 input
    x_other = jnp.asarray(rng.standard_normal(D) - 3 * np.eye(D)[0], jnp.float32)  # a class-1 input
    label, other = int(jnp.argmax(model(x))), int(jnp.argmax(model(x_other)))
    with torch.no_grad():  # the interpreter computes what PyTorch computes
        torch_logits = net(torch.from_numpy(np.array(x))[None])[0].numpy()
    np.testing.assert_allclose(np.asarray(model(x)), torch_logits, rtol=1e-4, atol=1e-4)

    attack = attacks.minimal_l2(model, x, label)  # success is checked by applying delta
    assert bool(attack.success) and int(jnp.argmax(model(x + attack.delta))) != label

    # A certified lower bound on the minimal perturbation: no ||delta|| <= radius changes the class,
    # so the true minimum lies in [radius, the attack's norm].
    network = onnx_bounds.graph_network(path)
    radius = certify.certified_radius(network, x, label, method="alpha").radius
    assert float(radius) <= float(attack.norm)

    path_measure = compression.path_compression(model, x, x_other, classes=(label, other), n_alpha=11)
    found = {
        "label": label,
        "attack_norm": float(attack.norm),
        "certified_radius": float(radius),
        "distance_to_other": float(jnp.linalg.norm(x_other - x)),
        "mean_abs_cos": float(jnp.mean(jnp.abs(path_measure.cos))),
        "M": float(path_measure.length[-1]),
    }
    print(
        f"class {label}: the minimal L2 attack moves x by {found['attack_norm']:.3f} "
        f"({found['attack_norm'] / (0.5 * found['distance_to_other']):.3f} of half the distance to the other input), "
        f"and no perturbation shorter than {found['certified_radius']:.3f} does (certified); "
        f"mean |cos θ_α| on the path {found['mean_abs_cos']:.3f}, M = {found['M']:.3f}"
    )
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for net.onnx (default: a temporary one)")
    args = parser.parse_args()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        main(args.out)
    else:
        with tempfile.TemporaryDirectory() as folder:
            main(Path(folder))
