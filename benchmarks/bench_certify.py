"""Certified lower bounds side by side: IBP, CROWN, alpha-CROWN and branch and bound, against the truth or the attack.

The suites, each rung jitted and vmapped over every input at once (as the sweep runs them), timed
on a second call after the compiling one:
* `oracle`: the exact 2-D oracle's ReLU nets (tests/exact_relu2d.py; width 12, 2 and 3 classes,
  untargeted and targeted), where the true minimal perturbation is known: certified / exact per
  input (median, p10, share within 1% and 5%), and no certified radius above the exact one.
  Branch and bound bisects up to the exact minimum, the part an attack's norm plays in a run.
* `relu`: the relu experiment's nets at d = 12 (--relu-d; the sweep's keys and default config, width 3000),
  at b1 and b2 of the accurate nets (--relu-every-net: of every net, each group's statistics apart):
  the bracket attacked / certified per input (median, p90, max, shares within 1.01 and 1.05), with
  the sweep's attack; branch and bound bisects up to its norm.
  Which end is loose: the same brackets against the shorter of that attack and the strong preset's
  (8 more ALMA lanes, verified by applying it), and the hidden ReLUs CROWN leaves unstable at
  branch and bound's radius and at the attack's.
* `cnn`: the paper's MNIST CNN (`models.cnn`, one net trained as `jaxfrag mnist` trains them, or
  network 0 of a run's networks.npz) at correctly classified test 7s, untargeted and targeted to
  1 (the Q of Tables 5-6), against `jaxfrag.mnist`'s attack (the strong preset), one input at a
  time (bounded memory): the same bracket statistics. The bisection is on [0, the attack's norm]
  to 2^-12 of it; branch and bound runs on the first --cnn-bab-inputs within `CNN_BUDGET`,
  bisecting between alpha-CROWN's radius and twice it (or the attack's norm, if shorter). The ReLUs
  CROWN leaves unstable per layer at alpha-CROWN's radius, at half the attack's norm (where a bracket
  of 2 would certify) and at the attack's: conv 1's are exact, its bounds over the ball being so.
* `onnx`: EfficientNet-Lite0 (the cached export) through `models.onnx_bounds`, at one demo pair
  (--onnx-pair): the attack's norm (DeepFool's lane from the image, verified by applying it), IBP's
  certified radius, whether CROWN on IBP's hidden bounds certifies 1, 2 and 4 times it and its time
  per radius, and an upper estimate of the time CROWN's own hidden bounds would take (one backward
  pass per hidden neuron, each timed as a whole network's).
The maintained PyTorch verifier, auto_LiRPA, has one release on the package index (0.3), which
needs torch < 1.13 and does not import beside torch 2.13 and numpy 2, so it cannot run beside these.

    python benchmarks/bench_certify.py [--quick] [--relu-nets 48] [--relu-d 12] [--relu-every-net]
        [--suites oracle,relu,cnn,onnx]
        [--bab-budget JSON]
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
import scipy.stats
from common import machine, write_result

from jaxfrag import attacks, certify, data, datasets, parallel
from jaxfrag.config import Config
from jaxfrag.experiments import linear, relu
from jaxfrag.models import cnn
from jaxfrag.models import relu as relu_net

# The CNN's 58624 ReLUs make each branch-and-bound domain a full pass through both convolutions:
# a budget that keeps an input to minutes on 2 cores.
CNN_BUDGET = certify.Budget(domains=64, batch=8, rounds=8, steps=10, bisections=3)
CNN_BISECTIONS = 12

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
    """The relu experiment's trials at d = --relu-d (12), at b1 and b2 of the accurate nets."""
    d, config = args.relu_d, Config()
    keys = parallel.trial_keys(parallel.cell_key(config.seed, "relu", d), jnp.arange(args.relu_nets))

    def trial(trial_key):
        key_train, key_pair = jax.random.split(trial_key)
        pair = relu.pair_indices(relu.pair_words(key_pair, d), d)  # as the sweep: z+, z-
        a, indices, net, *_ = linear.train_trial(key_train, d, config, "relu", relu_net, pair)
        accuracy, _ = relu_net.evaluate(net, a, indices)
        xs = jnp.stack([a @ z for z in data.sign_vectors(pair, d, a.dtype)])
        model = functools.partial(relu_net.apply, net)
        labels = jax.vmap(lambda x: jnp.argmax(model(x)))(xs)
        norms = jax.vmap(lambda x, y: attacks.minimal_l2(model, x, y, **attacks.PRESETS[config.attack]).norm)(
            xs, labels
        )
        return accuracy, certify.chain(net.weights, net.biases), xs, labels, norms

    accuracy, network, xs, labels, norms = jax.jit(jax.vmap(trial))(keys)
    accurate = np.asarray(accuracy) == 1
    kept = np.ones_like(accurate) if args.relu_every_net else accurate
    # One row per input: each net twice.
    network = jax.tree.map(lambda a: jnp.repeat(a[kept], 2, axis=0), network)
    xs, labels, norms = (jnp.asarray(v)[kept].reshape(-1, *v.shape[2:]) for v in (xs, labels, norms))
    fitted = np.repeat(accurate[kept], 2)
    inputs = (network, xs, labels, labels)
    suite = {"accurate_nets": int(accurate.sum()), "nets": args.relu_nets, "inputs": int(len(xs))}
    # Which end of a wide bracket is loose: the shorter of the sweep's attack and the strong preset's
    # (8 more ALMA lanes), each verified by applying it, is a tighter upper end.
    strong = jax.jit(
        jax.vmap(
            lambda n, x, y: attacks.minimal_l2(functools.partial(certify.apply, n), x, y, **attacks.PRESETS["strong"])
        )
    )(network, xs, labels)
    landed = jax.vmap(lambda n, x, d: jnp.argmax(certify.apply(n, x + d)))(network, xs, strong.delta)
    shortest = jnp.where(np.asarray(landed) != np.asarray(labels), jnp.minimum(norms, strong.norm), norms)
    suite["strong_attack_over_attack"] = {
        "median": float(np.median(shortest / norms)),
        "min": float(np.min(shortest / norms)),
        "share_shorter_by_1pct": float(np.mean(shortest < 0.99 * norms)),
    }
    rungs = [(method, method, certify.BAB_BUDGET) for method in certify.METHODS]
    rungs += [(f"bab {json.dumps(budget)}", "bab", certify.Budget(**budget)) for budget in args.bab_budget]
    radii = {}
    for name, method, budget in rungs:
        upper = norms if method == "bab" else None
        radius, first, second = timed(radius_program(method, False, upper is not None, budget), *inputs, upper)
        suite[name] = {
            **bracket_statistics(norms, radius),
            "against_the_shorter_attack": bracket_statistics(shortest, radius),
            "seconds_compile": first,
            "seconds_per_input": second / len(radius),
        }
        print(
            f"relu d={d} {name:>5}: attacked / certified median {suite[name]['median']:.4f}, p90 "
            f"{suite[name]['p90']:.4f}, max {suite[name]['max']:.4f}, min {suite[name]['min']:.6f} "
            f"(against the shorter of two attacks: p90 {suite[name]['against_the_shorter_attack']['p90']:.4f}), "
            f"{1e3 * suite[name]['seconds_per_input']:.1f} ms per input",
            flush=True,
        )
        radii[name] = radius
    print(f"relu d={d}: the strong attack over the sweep's {suite['strong_attack_over_attack']}")
    # Why the rest of the bracket stays: the hidden ReLUs CROWN leaves unstable at both of its ends.
    unstable = jax.jit(jax.vmap(lambda n, x, eps: certify.unstable_neurons(n, x, eps)[0]))
    width = network[0].bias.shape[1]
    counts = {}
    for end, eps in (("certified", radii["bab"]), ("attacked", norms)):
        counts[end] = np.asarray(unstable(network, xs, jnp.asarray(eps, xs.dtype)))
        for group, members in (("", fitted), ("not_fitted_", ~fitted)):
            if members.any():
                key = f"{group}unstable_relus_at_{end}"
                suite[key] = {"median": float(np.median(counts[end][members])), "max": int(counts[end][members].max())}
                print(f"relu d={d}: {key} (of {width}): {suite[key]}")
    if args.relu_every_net:
        every_net_breakdown(suite, d, np.repeat(np.asarray(accuracy, float), 2), fitted, norms, radii, counts)
    return {f"relu d={d}": suite}


def every_net_breakdown(suite, d, accuracy, fitted, norms, radii, counts) -> None:
    """Each input's numbers into `suite`, for the nets that did not fit as for the others, each
    group's bracket statistics, and where branch and bound leaves a bracket wider than 1.05: on
    which nets, and how many ReLUs CROWN leaves unstable at the attack's radius there."""
    norms = np.asarray(norms, float)
    suite["training_accuracy"] = accuracy.tolist()
    suite["attack_norm_per_input"] = norms.tolist()
    for end, per_input in counts.items():
        suite[f"unstable_relus_at_{end}_per_input"] = per_input.tolist()
    for name, radius in radii.items():
        radius = np.asarray(radius, float)
        suite[name]["bracket_per_input"] = (norms / radius).tolist()
        for group, members in (("fitted", fitted), ("not_fitted", ~fitted)):
            if members.any():
                suite[name][group] = bracket_statistics(norms[members], radius[members])
                print(f"relu d={d} {name:>5} {group}: {suite[name][group]}")
    bracket, crossed = norms / np.asarray(radii["bab"], float), counts["attacked"]
    wide = bracket > 1.05
    summary = {
        "inputs": int(wide.sum()),
        "others_unstable_relus_at_attacked_median": float(np.median(crossed[~wide])),
        "spearman_bracket_unstable": float(scipy.stats.spearmanr(bracket, crossed).statistic),
    }
    if wide.any():
        summary.update(
            training_accuracy_range=[float(accuracy[wide].min()), float(accuracy[wide].max())],
            unstable_relus_at_attacked_median=float(np.median(crossed[wide])),
            unstable_relus_at_attacked_range=[int(crossed[wide].min()), int(crossed[wide].max())],
        )
    suite["wider_than_1.05"] = summary
    print(f"relu d={d}: bab brackets wider than 1.05: {summary}")


def bracket_statistics(norms, radius) -> dict:
    bracket = np.asarray(norms, float) / radius
    return {
        "median": float(np.median(bracket)),
        "p90": float(np.percentile(bracket, 90)),
        "max": float(bracket.max()),
        "min": float(bracket.min()),
        "share_within_1.01": float(np.mean(bracket <= 1.01)),
        "share_within_1.05": float(np.mean(bracket <= 1.05)),
        "share_within_2": float(np.mean(bracket <= 2)),
    }


def cnn_suite(args) -> dict:
    """The MNIST CNN at correctly classified test 7s, untargeted and targeted to 1."""
    from jaxfrag.experiments import mnist as mnist_experiment

    mnist = datasets.mnist()
    if args.networks:
        params = cnn.select(cnn.load(Path(args.networks))[0], 0)
    else:
        keys = jax.random.split(jax.random.key(0), 1)
        images = 4096 if args.quick else len(mnist.y_train)  # quick: a smoke run, not a result
        params = cnn.select(cnn.train(keys, mnist.x_train[:images], mnist.y_train[:images]), 0)
    network = cnn.certify_chain(params)
    model = functools.partial(certify.apply, network)
    source, target = mnist_experiment.SOURCE, mnist_experiment.TARGET
    sevens = np.flatnonzero(mnist.y_test == source)
    sevens = sevens[cnn.predict(params, mnist.x_test[sevens]) == source][: args.cnn_inputs]
    xs = jnp.asarray(mnist.x_test[sevens].reshape(len(sevens), -1) / 255, jnp.float32)
    results = {}
    for goal, aim in (("untargeted", None), (f"targeted to {target}", target)):
        attack = jax.jit(
            lambda xs, aim=aim: jax.lax.map(
                lambda x: attacks.minimal_l2(model, x, source, aim, **attacks.PRESETS["strong"]), xs
            )
        )
        found = jax.block_until_ready(attack(xs))
        landed = np.asarray(jax.vmap(lambda x: jnp.argmax(model(x)))(xs + found.delta))
        verified = landed == target if aim is not None else landed != source  # applied, not trusted
        norms = jnp.where(jnp.asarray(verified), found.norm, jnp.nan)
        suite = {"inputs": len(sevens), "attack_verified": float(verified.mean())}
        radii = {}
        for method in certify.METHODS:
            count = args.cnn_bab_inputs if method == "bab" else len(sevens)
            uppers = norms[:count]
            if method == "bab":  # within 2x of alpha-CROWN: the whole bracket's middle is far beyond reach
                uppers = jnp.minimum(uppers, 2 * jnp.asarray(radii["alpha"][:count], jnp.float32))

            def one(x, upper, method=method, aim=aim):
                return certify.certified_radius(
                    network, x, source, aim, method=method, upper=upper, bisections=CNN_BISECTIONS, budget=CNN_BUDGET
                )

            program = jax.jit(lambda xs, uppers, one=one: jax.lax.map(lambda a: one(*a), (xs, uppers)))
            radius, first, second = timed(program, xs[:count], uppers)
            radii[method] = radius
            suite[method] = {
                **bracket_statistics(norms[:count], radius),
                "inputs": count,
                "certified_over_attacked": (radius / np.asarray(norms[:count], float)).tolist(),
                "seconds_compile": first,
                "seconds_per_input": second / count,
            }
            print(
                f"cnn {goal:>14} {method:>5}: attacked / certified median {suite[method]['median']:.3f}, p90 "
                f"{suite[method]['p90']:.3f} over {count} inputs, {suite[method]['seconds_per_input']:.1f} s per input",
                flush=True,
            )
        # Why the bracket is what it is: the ReLUs CROWN leaves unstable at both ends of it, and at half
        # the attack's norm, where a bracket of 2 would have to certify. Conv 1's count is exact there
        # (the first layer's bounds over the ball are), so it is the network's, not the relaxation's.
        unstable = jax.jit(jax.vmap(lambda x, eps: jnp.stack(certify.unstable_neurons(network, x, eps))))
        ends = (
            ("certified", jnp.asarray(radii["alpha"], jnp.float32)),
            ("half_attacked", norms / 2),
            ("attacked", norms),
        )
        for end, eps in ends:
            counts = np.asarray(unstable(xs, eps))
            suite[f"unstable_relus_at_{end}"] = np.median(counts, axis=0).tolist()
        relus = [k for k, layer in enumerate(network) if isinstance(layer, certify.Relu)]
        suite["relus_per_layer"] = [int(certify.apply(network[:k], xs[0]).size) for k in relus]
        print(
            f"cnn {goal:>14}: median unstable ReLUs per layer at alpha's radius "
            f"{suite['unstable_relus_at_certified']}, at half the attack's {suite['unstable_relus_at_half_attacked']}, "
            f"at the attack's {suite['unstable_relus_at_attacked']}"
        )
        results[f"cnn, {goal}"] = suite
    return results


def onnx_suite(args) -> dict:
    """EfficientNet-Lite0 through `models.onnx_bounds` at one demo pair: what each rung certifies and costs."""
    from jaxfrag.models import export, imagenet, onnx_bounds

    spec = export.MODELS["efficientnet-lite0"]
    preprocessing = imagenet.Preprocessing(spec.size, spec.mean, spec.std)
    path = export.model_path(spec.name)
    # Intervals only for the hidden bounds: CROWN's need a backward pass per neuron (counted below).
    network = onnx_bounds.graph_network(path, preprocessing=preprocessing, hidden="ibp")
    photos = imagenet.demo_photographs()
    source_name, target_name = args.onnx_pair.split(":")
    x, other = (jnp.asarray(imagenet.prepare(photos[n], spec.size).reshape(-1)) for n in (source_name, target_name))
    label, target = int(jnp.argmax(network.apply(x))), int(jnp.argmax(network.apply(other)))
    nonlinear = [s for s in network.plan.steps if s.node.op in onnx_bounds.NONLINEAR]
    neurons = sum(int(np.prod(network.plan.shapes[s.node.inputs[0]])) for s in nonlinear)
    suite = {"pair": args.onnx_pair, "label": label, "target": target, "nonlinear_steps": len(nonlinear)}
    suite["hidden_neurons"] = neurons
    for goal, aim in (("untargeted", None), ("targeted", target)):
        start = time.perf_counter()
        found = jax.jit(
            lambda x, aim=aim: attacks.minimal_l2(network.apply, x, label, aim, restarts=1, rescue_starts=0)
        )(x)
        landed = int(jnp.argmax(network.apply(x + found.delta)))
        verified = landed == target if aim is not None else landed != label  # applied, not trusted
        attack_seconds = time.perf_counter() - start
        radius, first, second = timed(
            jax.jit(lambda x, aim=aim: certify.certified_radius(network, x, label, aim, method="ibp")), x
        )
        rows, _ = certify.specification(1000, label, aim)
        crown = jax.jit(lambda x, eps, rows=rows: certify.margin_bounds(network, x, eps, rows, "crown")[0])
        jax.block_until_ready(crown(x, radius[()]))  # compiled
        at = {}
        for multiple in (1, 2, 4):
            start = time.perf_counter()
            values = np.asarray(jax.block_until_ready(crown(x, multiple * radius[()])))
            holds = bool(values.min() > 0) if aim is None else bool(values.max() > 0)
            at[f"{multiple}x"] = {"certified": holds, "seconds": time.perf_counter() - start}
        per_row = at["1x"]["seconds"] / rows.shape[0]
        suite[goal] = {
            "attack_norm": float(found.norm) if verified else None,
            "attack_seconds": attack_seconds,
            "ibp_radius": float(radius),
            "ibp_seconds_per_input": second,
            "bracket_attack_over_ibp": float(found.norm) / float(radius) if verified and radius > 0 else None,
            "crown_with_interval_hidden_bounds_at_ibp_radius": at,
            "crown_seconds_per_margin_row": per_row,
            # One backward pass per hidden neuron, each at most a whole network deep: an upper estimate, not a run.
            "crown_hidden_bounds_hours_per_radius_at_most": neurons * per_row / 3600,
        }
        print(
            f"lite0 {goal:>10}: attack {suite[goal]['attack_norm']}, IBP radius {float(radius):.3g} "
            f"({second:.1f} s), CROWN with interval hidden bounds certifies at 1x/2x/4x of it: "
            f"{[at[k]['certified'] for k in at]} ({at['1x']['seconds']:.0f} s per radius); CROWN's hidden bounds: "
            f"{neurons} neurons, at most {per_row * neurons / 3600:.0f} h per radius",
            flush=True,
        )
    return {"efficientnet-lite0": suite}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--relu-nets", type=int, default=48, help="relu nets at d = 12 (two inputs each; the sweep's first ones)"
    )
    parser.add_argument("--relu-d", type=int, default=12, help="relu: the dimension d")
    parser.add_argument(
        "--relu-every-net",
        action="store_true",
        help="relu: the nets that did not fit too, with each input's numbers and the two groups' statistics",
    )
    parser.add_argument("--oracle-nets", type=int, default=40, help="2-D oracle nets per seed")
    parser.add_argument("--oracle-seeds", type=int, default=3)
    parser.add_argument("--suites", default="oracle,relu,cnn,onnx")
    parser.add_argument("--onnx-pair", default="camera:chelsea", help="onnx: demo photographs source:target")
    parser.add_argument("--cnn-inputs", type=int, default=8, help="cnn: correctly classified test 7s")
    parser.add_argument("--cnn-bab-inputs", type=int, default=4, help="cnn: the first this many get branch and bound")
    parser.add_argument("--networks", default=None, help="cnn: a run's networks.npz (network 0; else one is trained)")
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
        args.relu_nets, args.oracle_nets, args.oracle_seeds, args.cnn_inputs, args.cnn_bab_inputs = 4, 8, 1, 2, 1
    info = machine()
    print(f"{info['processor']}, {info['cpu_count']} cores, jax {info['jax']}")
    suites = {"oracle": oracle_suite, "relu": relu_suite, "cnn": cnn_suite, "onnx": onnx_suite}
    results = {}
    for name in args.suites.split(","):
        results.update(suites[name](args))
    body = {
        "budget": certify.BAB_BUDGET._asdict(),
        "cnn_budget": CNN_BUDGET._asdict(),
        "alpha_steps": certify.ALPHA_STEPS,
        "suites": results,
    }
    write_result(args.out, "bench_certify", info, body, args.quick)


if __name__ == "__main__":
    main()
