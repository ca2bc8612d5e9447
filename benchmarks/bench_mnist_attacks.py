"""Benchmark: jaxfrag's attacks on the paper's MNIST CNN against Foolbox 3 (L2 DeepFool, L2 FMN, FGSM).

    pip install -e '.[bench]'                          # foolbox==3.3.4, benchmark-only
    python benchmarks/bench_mnist_attacks.py           # full run (trains one CNN for a minute first)
    python benchmarks/bench_mnist_attacks.py --networks runs/mnist/networks.npz   # network 0 of a run
    python benchmarks/bench_mnist_attacks.py --quick   # a smoke run

In one process, on the same correctly classified test 7s and the same network
(Foolbox runs the JAX function through EagerPy): inputs/s and the L2 norm of
each input's perturbation, untargeted,
* `attacks.minimal_l2` (default lanes, and DeepFool's lane alone) against
  Foolbox's `L2DeepFoolAttack` and `L2FMNAttack`;
* `attacks.fgsm_scan` (256-step eps grid, then bisection) against Foolbox's
  `FGSM` over the same 256 epsilons (its norm: the smallest successful one);
with the ratio of our norm to theirs per input (median, p90, how often theirs is
shorter) where both succeed. Every perturbation of ours is applied to check it.
As in jaxfrag.mnist, the input space is R^784 (Foolbox's bounds are set wide, so
neither side clips to [0, 1]). Results go to benchmarks/results/bench_mnist_attacks-<time>.json.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import machine, median_time, write_result  # noqa: E402

from jaxfrag import attacks, datasets  # noqa: E402
from jaxfrag.models import cnn  # noqa: E402

GRID = 256
EPS_MAX = 1.0


def network(path: str | None, data):
    if path:
        params, _ = cnn.load(Path(path))
        return cnn.select(params, 0)
    trained = cnn.train(jax.random.split(jax.random.key(0), 1), data.x_train[:16384], data.y_train[:16384])
    return cnn.select(trained, 0)


def main(argv=None):
    import foolbox as fb

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--networks", default=None, help="a run's networks.npz (network 0 is attacked)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    count, repeat = (8, 1) if args.quick else (64, 3)
    info = machine()
    print(f"{info['processor']}, {info['cpu_count']} cores, jax {info['jax']}")
    data = datasets.mnist()
    params = network(args.networks, data)
    single = lambda x: cnn.apply(params, x.reshape(28, 28))  # noqa: E731
    batched = lambda xs: cnn.apply(params, xs.reshape(-1, 28, 28))  # noqa: E731
    sevens = np.flatnonzero(data.y_test == 7)
    sevens = sevens[cnn.predict(params, data.x_test[sevens]) == 7][:count]
    inputs = jnp.asarray(data.x_test[sevens].reshape(count, -1) / 255, jnp.float32)
    labels = jnp.full(count, 7)
    fmodel = fb.JAXModel(batched, bounds=(-10.0, 10.0))

    ours = {
        "minimal_l2": attacks.minimal_l2,
        "minimal_l2_one_lane": functools.partial(attacks.minimal_l2, restarts=1),
        "fgsm_scan": functools.partial(attacks.fgsm_scan, eps_max=EPS_MAX, grid=GRID),
    }
    rows = {}
    for name, attack in ours.items():
        # Two inputs at a time, as jaxfrag.mnist runs them: the rescue's 256 starts per input are
        # a batch of CNN evaluations already, and 64 at once would not fit in memory.
        run = jax.jit(lambda xs, ys, attack=attack: jax.lax.map(lambda a: attack(single, *a), (xs, ys), batch_size=2))
        start = time.perf_counter()
        result = jax.block_until_ready(run(inputs, labels))
        compile_s = time.perf_counter() - start
        seconds, _ = median_time(lambda run=run: jax.block_until_ready(run(inputs, labels)), repeat)
        applied = np.asarray(jnp.argmax(batched(inputs + result.delta), axis=1)) != 7
        rows[name] = {
            "seconds": seconds,
            "inputs_per_s": count / seconds,
            "compile_s": compile_s,
            "success": float(np.mean(np.asarray(result.success))),
            "success_applied": float(applied.mean()),
            "norms": np.where(np.asarray(result.success), np.asarray(result.norm), np.nan).tolist(),
        }
    epsilons = list(EPS_MAX * np.arange(1, GRID + 1) / GRID)
    theirs = {
        "foolbox_deepfool": (fb.attacks.L2DeepFoolAttack(), None, ("minimal_l2", "minimal_l2_one_lane")),
        "foolbox_fmn": (fb.attacks.L2FMNAttack(), None, ("minimal_l2", "minimal_l2_one_lane")),
        "foolbox_fgsm": (fb.attacks.FGSM(), epsilons, ("fgsm_scan",)),
    }
    for name, (attack, eps, compare) in theirs.items():
        attack(fmodel, inputs[:2], labels[:2], epsilons=eps)  # warm EagerPy's per-operation caches
        seconds, _ = median_time(lambda a=attack, e=eps: a(fmodel, inputs, labels, epsilons=e), repeat)
        raw, _, success = attack(fmodel, inputs, labels, epsilons=eps)
        if eps is None:
            points = jnp.asarray(raw.raw if hasattr(raw, "raw") else raw)
            ok = np.asarray(success.raw if hasattr(success, "raw") else success)
            norms = np.asarray(jnp.linalg.norm(points - inputs, axis=1))
        else:  # the smallest successful epsilon's point, per input
            ok_grid = np.asarray([np.asarray(s.raw if hasattr(s, "raw") else s) for s in success])  # (eps, inputs)
            ok = ok_grid.any(axis=0)
            first = np.argmax(ok_grid, axis=0)
            points = np.stack(
                [np.asarray(raw[first[i]].raw if hasattr(raw[0], "raw") else raw[first[i]])[i] for i in range(count)]
            )
            norms = np.linalg.norm(points - np.asarray(inputs), axis=1)
        rows[name] = {"seconds": seconds, "inputs_per_s": count / seconds, "success": float(ok.mean())}
        for variant in compare:
            our = np.asarray(rows[variant]["norms"])
            both = ok & np.isfinite(our)
            ratio = our[both] / norms[both]
            rows[name][variant] = {
                "speedup": seconds / rows[variant]["seconds"],
                "norm_ratio_median": float(np.median(ratio)) if both.any() else None,
                "norm_ratio_p90": float(np.quantile(ratio, 0.9)) if both.any() else None,
                "theirs_shorter_fraction": float(np.mean(ratio > 1 + 1e-6)) if both.any() else None,
                "both_succeed": int(both.sum()),
            }
    for name, row in rows.items():
        print(f"{name}: {row['inputs_per_s']:.2f} inputs/s, success {row['success']:.3f}")
        for variant in ours:
            if variant in row:
                v = row[variant]
                print(
                    f"    vs {variant}: ours {v['speedup']:.1f}x faster; norm ours/theirs median "
                    f"{v['norm_ratio_median']}, p90 {v['norm_ratio_p90']}, theirs shorter on "
                    f"{v['theirs_shorter_fraction']} of {v['both_succeed']}"
                )
    write_result(args.out, "bench_mnist_attacks", info, {"inputs": count, "rows": rows}, args.quick)


if __name__ == "__main__":
    main()
