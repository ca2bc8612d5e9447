"""Certified lower bounds side by side: IBP, CROWN, alpha-CROWN and branch and bound, against the truth or the attack.

Two suites, each rung jitted and vmapped over every input at once (as the sweep runs them), timed
on a second call after the compiling one:
* `oracle`: the exact 2-D oracle's ReLU nets (tests/exact_relu2d.py; width 12, 2 and 3 classes,
  untargeted and targeted), where the true minimal perturbation is known: certified / exact per
  input (median, p10, share within 1% and 5%), and no certified radius above the exact one.
  Branch and bound bisects up to the exact minimum, the part an attack's norm plays in a run.
* `relu`: the relu experiment's nets at d = 12 (the sweep's keys and default config, width 3000),
  at b1 and b2 of the accurate nets: the bracket attacked / certified per input (median, p90, max,
  shares within 1.01 and 1.05), with the sweep's attack; branch and bound bisects up to its norm.
The MNIST CNN is not here: `jaxfrag.certify` bounds dense ReLU chains only. The maintained PyTorch
verifier, auto_LiRPA, has one release on the package index (0.3), which needs torch < 1.13 and does
not import beside torch 2.13 and numpy 2, so it cannot run beside these.

    python benchmarks/bench_certify.py [--quick] [--relu-nets 48] [--suites oracle,relu] [--bab-budget JSON]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from common import machine, write_result

from jaxfrag import attacks, certify, data, parallel
from jaxfrag.config import Config
from jaxfrag.experiments import linear, relu
from jaxfrag.models import relu as relu_net

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the oracle is the tests' own
from exact_relu2d import problems  # noqa: E402


def timed(program, *arguments) -> tuple[np.ndarray, float, float]:
    """(radii, compile seconds, run seconds): compiled ahead of time, then run once."""
    start = time.perf_counter()
    compiled = program.lower(*arguments).compile()
    compiling = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*arguments))
    return np.asarray(out.radius, float), compiling, time.perf_counter() - start


def radius_program(method: str, targeted: bool, with_upper: bool, budget: certify.Budget = certify.BAB_BUDGET):
    def one(network, x, label, target, upper):
        target = target if targeted else None
        return certify.certified_radius(network, x, label, target, method=method, upper=upper, budget=budget)

    return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, 0 if with_upper else None)))


def oracle_suite(args) -> dict:
    results = {}
    for classes, targeted in ((2, False), (3, False), (3, True)):
        nets, x, labels, targets, exact = problems(
            900 + 10 * classes, args.oracle_seeds, args.oracle_nets, 12, classes, targeted
        )
        targets = labels if targets is None else targets
        reachable = np.isfinite(exact)
        h1, h2, c1, c2 = (
            jnp.asarray(np.stack([getattr(n, f) for n in nets]), jnp.float32) for f in ("h1", "h2", "c1", "c2")
        )
        network = certify.chain((h1, h2), (c1, c2))
        inputs = (network, jnp.asarray(x, jnp.float32), jnp.asarray(labels), jnp.asarray(targets))
        name = f"{classes} classes, {'targeted' if targeted else 'untargeted'}"
        suite = {"inputs": int(reachable.sum())}
        for method in certify.METHODS:
            upper = jnp.asarray(np.where(reachable, exact, 1.0), jnp.float32) if method == "bab" else None
            radius, first, second = timed(radius_program(method, targeted, upper is not None), *inputs, upper)
            ratio = radius[reachable] / exact[reachable]
            suite[method] = {
                "median": float(np.median(ratio)),
                "p10": float(np.percentile(ratio, 10)),
                "share_within_1pct": float(np.mean(ratio >= 0.99)),
                "share_within_5pct": float(np.mean(ratio >= 0.95)),
                "max": float(ratio.max()),
                "seconds_compile": first,
                "seconds_per_input": second / len(radius),
            }
            print(
                f"{name:>24} {method:>5}: certified / exact median {suite[method]['median']:.4f}, within 1% on "
                f"{suite[method]['share_within_1pct']:.1%}, max {suite[method]['max']:.6f}, "
                f"{1e3 * suite[method]['seconds_per_input']:.2f} ms per input",
                flush=True,
            )
        results[name] = suite
    return results


def relu_suite(args) -> dict:
    """The relu experiment's trials at d = 12, at b1 and b2 of the accurate nets."""
    d, config = 12, Config()
    keys = parallel.trial_keys(parallel.cell_key(config.seed, "relu", d), jnp.arange(args.relu_nets))

    def trial(trial_key):
        key_train, key_pair = jax.random.split(trial_key)
        a, indices, net, *_ = linear.train_trial(key_train, d, config, "relu", relu_net)
        accuracy, _ = relu_net.evaluate(net, a, indices)
        z_minus = data.sign_vectors(relu.pair_words(key_pair, d)[None], d, a.dtype)[0]
        xs = jnp.stack([a @ z_minus.at[-1].set(1), a @ z_minus])
        model = functools.partial(relu_net.apply, net)
        labels = jax.vmap(lambda x: jnp.argmax(model(x)))(xs)
        norms = jax.vmap(lambda x, y: attacks.minimal_l2(model, x, y, **attacks.PRESETS[config.attack]).norm)(
            xs, labels
        )
        return accuracy, certify.chain(net.weights, net.biases), xs, labels, norms

    accuracy, network, xs, labels, norms = jax.jit(jax.vmap(trial))(keys)
    accurate = np.asarray(accuracy) == 1
    # One row per input: each net twice.
    network = jax.tree.map(lambda a: jnp.repeat(a[accurate], 2, axis=0), network)
    xs, labels, norms = (jnp.asarray(v)[accurate].reshape(-1, *v.shape[2:]) for v in (xs, labels, norms))
    inputs = (network, xs, labels, labels)
    suite = {"accurate_nets": int(accurate.sum()), "nets": args.relu_nets, "inputs": int(len(xs))}
    rungs = [(method, method, certify.BAB_BUDGET) for method in certify.METHODS]
    rungs += [(f"bab {json.dumps(budget)}", "bab", certify.Budget(**budget)) for budget in args.bab_budget]
    for name, method, budget in rungs:
        upper = norms if method == "bab" else None
        radius, first, second = timed(radius_program(method, False, upper is not None, budget), *inputs, upper)
        bracket = np.asarray(norms, float) / radius
        suite[name] = {
            "median": float(np.median(bracket)),
            "p90": float(np.percentile(bracket, 90)),
            "max": float(bracket.max()),
            "share_within_1.01": float(np.mean(bracket <= 1.01)),
            "share_within_1.05": float(np.mean(bracket <= 1.05)),
            "min": float(bracket.min()),
            "seconds_compile": first,
            "seconds_per_input": second / len(radius),
        }
        print(
            f"relu d=12 {name:>5}: attacked / certified median {suite[name]['median']:.4f}, p90 "
            f"{suite[name]['p90']:.4f}, max {suite[name]['max']:.4f}, min {suite[name]['min']:.6f}, "
            f"{1e3 * suite[name]['seconds_per_input']:.1f} ms per input",
            flush=True,
        )
    return {"relu d=12": suite}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--relu-nets", type=int, default=48, help="relu nets at d = 12 (two inputs each; the sweep's first ones)"
    )
    parser.add_argument("--oracle-nets", type=int, default=40, help="2-D oracle nets per seed")
    parser.add_argument("--oracle-seeds", type=int, default=3)
    parser.add_argument("--suites", default="oracle,relu")
    parser.add_argument(
        "--bab-budget",
        action="append",
        default=[],
        type=json.loads,
        metavar="JSON",
        help="relu: also branch and bound within this certify.Budget, e.g. '{\"rounds\": 200}' (repeatable)",
    )
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.relu_nets, args.oracle_nets, args.oracle_seeds = 4, 8, 1
    info = machine()
    print(f"{info['processor']}, {info['cpu_count']} cores, jax {info['jax']}")
    suites = {"oracle": oracle_suite, "relu": relu_suite}
    results = {}
    for name in args.suites.split(","):
        results.update(suites[name](args))
    body = {"budget": certify.BAB_BUDGET._asdict(), "alpha_steps": certify.ALPHA_STEPS, "suites": results}
    write_result(args.out, "bench_certify", info, body, args.quick)


if __name__ == "__main__":
    main()
