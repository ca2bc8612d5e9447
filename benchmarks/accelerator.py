"""One prepared run of the engine at accelerator sizes, with each figure's share of the hardware's ceiling.

    python benchmarks/accelerator.py            # on a GPU or TPU: at most ~8 minutes, one JSON
    python benchmarks/accelerator.py --quick    # tiny sizes: a smoke run on any CPU (the tests run it)

In one process, on every local device (the engine's own sharding and its backend-aware choices):
* ceiling: the float32 matmul FLOP/s (default precision, what the engine's matmuls get) and the
  streaming bandwidth (y = a x + y) that the device reaches in this run;
* thm6 over d = 7..64, 10 000 trials per d: trials/s (whole cells: QR, attack, exact optimum);
* batched QR stacks (`linalg.qr_r`, the backend's choice of method) at d = 12 and 64;
* 10 000 linear networks at d = 12, the Table 2 protocol (d -> 3000 -> 2, all 4096 points, Adam,
  20 epochs of batches of 64), trained and measured: networks/s and the time for all of them;
* 1 000 ReLU networks at d = 12 (the same protocol, Table 3-4's metrics);
* the minimal-L2 attack (`attacks.minimal_l2`, every perturbation applied) on a batch of inputs of
  a ReLU network d = 12 -> 64 -> 10.
Each figure's roofline fraction is its useful FLOP/s over the matmul ceiling and its memory
traffic over the bandwidth ceiling; the counts are ours and stated per workload in `work`
(a lower bound on what the hardware did). Results: benchmarks/results/accelerator-<time>.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jaxfrag import parallel  # noqa: E402

parallel.configure_cpu_devices()

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import machine, median_time, write_result  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

from jaxfrag import attacks, linalg  # noqa: E402
from jaxfrag.cli import compilation_cache_dir, use_compilation_cache  # noqa: E402
from jaxfrag.config import Config  # noqa: E402
from jaxfrag.experiments import registry  # noqa: E402
from jaxfrag.models import linear as linear_net  # noqa: E402

FULL = {
    "matmul_n": 8192,
    "stream_floats": 1 << 28,
    "thm6_dims": list(range(7, 65)),
    "thm6_trials": 10_000,
    "qr_stacks": {12: 1 << 20, 64: 1 << 16},
    "linear_networks": 10_000,
    "relu_networks": 1_000,
    "attack_inputs": 10_000,
    "training": {},  # the Table 2 protocol: Config's defaults
}
QUICK = {
    "matmul_n": 512,
    "stream_floats": 1 << 22,
    "thm6_dims": [7, 10],  # one compiled bucket
    "thm6_trials": 32,
    "qr_stacks": {12: 256, 64: 64},
    "linear_networks": 16,
    "relu_networks": 16,
    "attack_inputs": 32,
    # The notebooks' test sweeps train these (width 32, 3 epochs, 16 networks at d = 12): with the
    # shared compilation cache the test suite compiles the two training programs once.
    "training": {"width": 32, "epochs": 3},
}


def _sharded(fn, mesh):
    spec = PartitionSpec(parallel.AXIS)
    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False))


def ceilings(sizes: dict, mesh, repeat: int) -> dict:
    """What every device together reaches: float32 matmul FLOP/s and streaming bytes/s."""
    devices = mesh.devices.size
    n = sizes["matmul_n"]
    a = jax.device_put(jnp.ones((devices * n, n), jnp.float32), NamedSharding(mesh, PartitionSpec(parallel.AXIS)))
    matmul = _sharded(lambda a: a @ a[:n].T, mesh)  # each device: (n, n) @ (n, n)
    jax.block_until_ready(matmul(a))
    _, best = median_time(lambda: jax.block_until_ready(matmul(a)), repeat)
    floats = sizes["stream_floats"] // devices * devices
    x = jax.device_put(jnp.ones(floats, jnp.float32), NamedSharding(mesh, PartitionSpec(parallel.AXIS)))
    stream = _sharded(lambda x: x * 1.0001 + x[::-1], mesh)  # reads x twice (cached), writes once
    jax.block_until_ready(stream(x))
    _, best_stream = median_time(lambda: jax.block_until_ready(stream(x)), repeat)
    return {"flops_per_s": 2 * devices * n**3 / best, "bytes_per_s": 2 * 4 * floats / best_stream}


def roofline(flops: float, bytes_moved: float, seconds: float, ceiling: dict) -> dict:
    return {
        "flops_fraction": flops / seconds / ceiling["flops_per_s"],
        "bandwidth_fraction": bytes_moved / seconds / ceiling["bytes_per_s"],
    }


def thm6_cells(sizes: dict, mesh, ceiling: dict, budget_s: float) -> dict:
    """Whole thm6 cells: QR, the constructed attack, and the exact optimum (enumeration or sphere decoding).

    Cells run in order of d until `budget_s` has passed (compiling included); the d not reached are
    listed, so that a one-shot run on a lent device always ends in time and says what it left out."""
    config = Config(trials=sizes["thm6_trials"])
    runner = parallel.CellRunner(config, mesh, compile_workers=4)
    experiment = registry()["thm6"]
    for d in sizes["thm6_dims"]:
        runner.prefetch(experiment, d)
    run_s = compile_s = flops = 0.0
    per_d, skipped, started = [], [], time.perf_counter()
    for d in sizes["thm6_dims"]:
        if time.perf_counter() - started > budget_s:
            skipped.append(d)
            continue
        result = runner.run_cell(experiment, d)
        run_s, compile_s = run_s + result.run_s, compile_s + result.compile_s
        # Useful work: R of A (4/3 d^3), then 2 d^2 per point enumerated, or ~2 d per sphere-decoder node.
        brute = d <= config.brute_force_max_d
        searched = 2 ** (d - 1) * 2 * d * d if brute else 2 * d * result.columns["decoder_nodes"].astype(float)
        cell_flops = float(np.sum(4 / 3 * d**3 + searched))
        flops += cell_flops
        per_d.append(
            {"d": d, "trials_per_s": config.trials / result.run_s, "opt_exact": bool(result.columns["opt_exact"].all())}
        )
    runner.close()
    trials = config.trials * len(per_d)
    return {
        "trials": trials,
        "run_s": run_s,
        "compile_s": compile_s,
        "rate": trials / run_s,
        "unit": "trials/s",
        "work": "4/3 d^3 (QR) + 2 d^2 per enumerated point or 2 d per decoder node; bytes not counted",
        **roofline(flops, 0.0, run_s, ceiling),
        "per_d": per_d,
        "skipped_d": skipped,
    }


def qr_stacks(sizes: dict, mesh, ceiling: dict, repeat: int) -> dict:
    return {f"d{d}": qr_stack(d, count, mesh, ceiling, repeat) for d, count in sizes["qr_stacks"].items()}


def qr_stack(d: int, count: int, mesh, ceiling: dict, repeat: int) -> dict:
    group = linalg.stack_group(d, d)
    count = max(count, group * mesh.devices.size) // (group * mesh.devices.size) * group * mesh.devices.size
    stack = jax.device_put(
        jax.random.normal(jax.random.key(d), (count, d, d)), NamedSharding(mesh, PartitionSpec(parallel.AXIS))
    )
    fn = _sharded(lambda s: jax.lax.map(linalg.qr_r, s, batch_size=group), mesh)
    tic = time.perf_counter()
    jax.block_until_ready(fn(stack))
    compile_s = time.perf_counter() - tic
    median, _ = median_time(lambda: jax.block_until_ready(fn(stack)), repeat)
    return {
        "matrices": count,
        "method": linalg.default_method(),
        "run_s": median,
        "compile_s": compile_s,
        "rate": count / median,
        "unit": "matrices/s",
        "work": "4/3 d^3 flops; reads and writes d^2 floats",
        **roofline(count * 4 / 3 * d**3, count * 8 * d * d, median, ceiling),
    }


def trained_cell(name: str, networks: int, sizes: dict, mesh, ceiling: dict) -> dict:
    """A whole linear or relu cell at d = 12: training all networks, then every metric (attacks applied)."""
    d = 12
    config = Config(trials=networks)._replace(**sizes["training"])
    runner = parallel.CellRunner(config, mesh)
    result = runner.run_cell(registry()[name], d)
    runner.close()
    points = min(2**d, config.max_points)
    steps = config.epochs * -(-points // config.batch_size)
    params = linear_net.num_parameters(d, config)
    hidden = config.width * config.hidden_layers
    # Per step: Adam's update (~15 flops, 28 bytes per parameter) plus the gradient: for the linear
    # net the re-associated product (12 W d flops); for ReLU the batch's forward and backward (6 B W (d + 2)).
    gradient = 12 * hidden * d if name == "linear" else 6 * config.batch_size * hidden * (d + 2)
    flops = networks * steps * (15 * params + gradient)
    return {
        "networks": networks,
        "run_s": result.run_s,
        "compile_s": result.compile_s,
        "rate": networks / result.run_s,
        "unit": "networks/s",
        "steps_per_network": steps,
        "train_acc_1_fraction": float(np.mean(result.columns["train_acc"] == 1)),
        "work": "per step: 15 flops and 28 bytes per parameter (Adam) plus the gradient's matmul flops",
        **roofline(flops, networks * steps * 28 * params, result.run_s, ceiling),
    }


def attack_batch(sizes: dict, mesh, ceiling: dict) -> dict:
    d, hidden, classes = 12, 64, 10
    rng = np.random.default_rng(0)
    w1 = jnp.asarray(rng.standard_normal((hidden, d)) / np.sqrt(d), jnp.float32)
    w2 = jnp.asarray(rng.standard_normal((classes, hidden)) / np.sqrt(hidden), jnp.float32)

    def model(x):
        return w2 @ jax.nn.relu(w1 @ x)

    inputs = sizes["attack_inputs"] // mesh.devices.size * mesh.devices.size
    xs = jax.device_put(
        jnp.asarray(rng.standard_normal((inputs, d)), jnp.float32), NamedSharding(mesh, PartitionSpec(parallel.AXIS))
    )

    def one(x):
        result = attacks.minimal_l2(model, x, jnp.argmax(model(x)))
        return result.norm, result.success, result.steps

    fn = _sharded(jax.vmap(one), mesh)
    tic = time.perf_counter()
    jax.block_until_ready(fn(xs))
    compile_s = time.perf_counter() - tic
    tic = time.perf_counter()
    norms, verified, steps = jax.block_until_ready(fn(xs))
    run_s = time.perf_counter() - tic
    # Each step is at least one forward and one backward pass per class linearised: ~6 (h d + c h) flops.
    flops = float(np.sum(steps)) * 6 * (hidden * d + classes * hidden)
    return {
        "inputs": inputs,
        "run_s": run_s,
        "compile_s": compile_s,
        "rate": inputs / run_s,
        "unit": "inputs/s",
        "verified_fraction": float(np.mean(verified)),
        "median_norm": float(np.median(norms)),
        "work": "6 (h d + c h) flops per attack step; bytes not counted",
        **roofline(flops, 0.0, run_s, ceiling),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run on a CPU")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument(
        "--thm6-budget-s", type=float, default=180.0, help="thm6 stops taking new d after this many seconds"
    )
    args = parser.parse_args(argv)
    sizes, repeat = (QUICK, 2) if args.quick else (FULL, 3)
    cache = compilation_cache_dir(None)  # $JAXFRAG_CACHE_DIR or ~/.cache/jaxfrag/xla, as the sweep's
    if cache:
        use_compilation_cache(cache)
    mesh = parallel.make_mesh(jax.local_devices())
    info = machine()
    started = time.perf_counter()
    print(f"{jax.default_backend()}: {len(mesh.devices.flat)} x {mesh.devices.flat[0].device_kind}", flush=True)
    ceiling = ceilings(sizes, mesh, repeat)
    print(
        f"ceiling: {ceiling['flops_per_s'] / 1e12:.2f} TFLOP/s float32 matmul, {ceiling['bytes_per_s'] / 1e9:.0f} GB/s"
    )
    figures = {"thm6": thm6_cells(sizes, mesh, ceiling, args.thm6_budget_s)}
    print("thm6 done", flush=True)
    for key, value in qr_stacks(sizes, mesh, ceiling, repeat).items():
        figures[f"qr_{key}"] = value
    figures["linear_d12"] = trained_cell("linear", sizes["linear_networks"], sizes, mesh, ceiling)
    print("linear done", flush=True)
    figures["relu_d12"] = trained_cell("relu", sizes["relu_networks"], sizes, mesh, ceiling)
    figures["minimal_l2"] = attack_batch(sizes, mesh, ceiling)
    print(f"\n{'workload':<12} {'size':>9} {'run s':>8} {'compile s':>9} {'rate':>23} {'FLOP %':>7} {'BW %':>6}")
    for name, row in figures.items():
        size = next(row[k] for k in ("trials", "matrices", "networks", "inputs") if k in row)
        print(
            f"{name:<12} {size:>9} {row['run_s']:>8.2f} {row['compile_s']:>9.1f} "
            f"{row['rate']:>12.1f} {row['unit']:<10} "
            f"{100 * row['flops_fraction']:>7.2f} {100 * row['bandwidth_fraction']:>6.2f}"
        )
    body = {
        "backend": jax.default_backend(),
        "device_kind": mesh.devices.flat[0].device_kind,
        "devices": len(mesh.devices.flat),
        "ceiling": ceiling,
        "figures": figures,
        "wall_s": time.perf_counter() - started,
    }
    write_result(args.out, "accelerator", info, body, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
