"""Benchmark: section 6's protocol trained by the engine against one PyTorch network at a time.

    pip install -e '.[bench]'                    # torch==2.13.0 (CPU), benchmark-only
    python benchmarks/bench_linear.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_linear.py --quick    # a smoke run

In one process, with the same hyperparameters (d = 12: all 4096 points, d -> 3000
-> 2 without biases, Adam lr 1e-3, 20 epochs of shuffled batches of 64, PyTorch's
default initialisation, cross-entropy):
* the engine: a cell of the linear experiment (training plus every metric),
  vmapped and sharded over all devices -- networks/s;
* PyTorch as the paper did it: one network at a time, the forward as written,
  torch.optim.Adam, `torch.set_flush_denormal(True)` (subnormals make some runs
  10-100x slower), its default threads -- networks/s; the two run in turn for 5
  rounds and the ratio is the median of the rounds' ratios (a shared machine's
  load then hits both sides alike);
* the same for the ReLU networks (d -> 3000 -> 2 with a ReLU; the same training loop);
* the floors that bound the engine: the optimiser update alone (optax.adam over
  the 42 k parameters in the layout training carries, the same vmapped groups and
  devices, no gradient), and the memory-traffic bound of a step (28 bytes per
  parameter) at the bandwidth of main memory and at that of the caches, measured
  on a working set the size of one trial group's parameters and moments: the
  engine's step over the latter is its distance from the roofline;
* `linear.train` alone carrying the parameters in the wide layout against the stored one, side by
  side on one device, for both networks;
* the engine's networks/s at d = 7..17 (the work grows as 2^d up to 65536 points).
Results go to benchmarks/results/bench_linear-<time>.json with the machine's description.
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
import optax  # noqa: E402
from common import machine, median_time, write_result  # noqa: E402
from jax.sharding import PartitionSpec  # noqa: E402

from jaxfrag.config import Config  # noqa: E402
from jaxfrag.experiments import TRIAL_GROUP, map_trials, registry  # noqa: E402
from jaxfrag.models import linear as linear_net  # noqa: E402


def engine_rate(d: int, config: Config, repeat: int) -> dict:
    """Networks/s of a whole linear cell (compiled once; the timed runs reuse the program)."""
    runner = parallel.CellRunner(config)
    experiment = registry()["linear"]
    first = runner.run_cell(experiment, d)
    times = [first.run_s] + [runner.run_cell(experiment, d).run_s for _ in range(repeat - 1)]
    median = float(np.median(times))
    return {
        "d": d,
        "networks": config.trials,
        "compile_s": round(first.compile_s, 2),
        "run_s_median": round(median, 3),
        "networks_per_s": round(config.trials / median, 3),
        "steps_per_network": config.epochs * -(-min(2**d, config.max_points) // config.batch_size),
        "success_fraction": float(np.mean(first.columns["train_acc"] == 1)),
    }


def torch_network(d: int, config: Config, seed: int, relu: bool = False) -> float:
    """Seconds to train one network as the paper did (PyTorch, one at a time); returns the time."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    a = torch.randn(d, d, generator=generator)
    a[:, :-1] *= 5
    bits = (torch.arange(2**d)[:, None] >> torch.arange(d)[None, :]) & 1
    x, y = (2 * bits - 1).float() @ a.T, bits[:, -1]
    layers = [torch.nn.Linear(d, config.width, bias=False), torch.nn.Linear(config.width, 2, bias=False)]
    net = torch.nn.Sequential(layers[0], torch.nn.ReLU(), layers[1]) if relu else torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(config.epochs):
        order = torch.randperm(2**d, generator=generator)
        for i in range(0, 2**d, config.batch_size):
            batch = order[i : i + config.batch_size]
            opt.zero_grad()
            loss_fn(net(x[batch]), y[batch]).backward()
            opt.step()
    return time.perf_counter() - start


def side_by_side(d: int, config: Config, rounds: int, name: str = "linear") -> dict:
    """The engine's cell and PyTorch's networks in turn, round after round (the machine's load then
    hits both alike): per round the engine's networks/s over PyTorch's; medians over the rounds."""
    import torch

    torch.set_flush_denormal(True)
    relu = name == "relu"
    runner = parallel.CellRunner(config)
    experiment = registry()[name]
    first = runner.run_cell(experiment, d)  # compiles
    torch_network(d, config._replace(epochs=1), seed=99, relu=relu)  # warm-up
    engine_s, torch_s = [], []
    for round_index in range(rounds):
        engine_s.append(runner.run_cell(experiment, d).run_s)
        torch_s.append(torch_network(d, config, round_index, relu))
    ratios = [config.trials / e * t for e, t in zip(engine_s, torch_s, strict=True)]
    return {
        "d": d,
        "networks_per_cell": config.trials,
        "rounds": rounds,
        "compile_s": round(first.compile_s, 2),
        "engine_networks_per_s": config.trials / float(np.median(engine_s)),
        "torch_networks_per_s": 1 / float(np.median(torch_s)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "ratio_median": float(np.median(ratios)),
        "ratio_min": float(np.min(ratios)),
        "ratio_max": float(np.max(ratios)),
        "steps_per_network": config.epochs * -(-min(2**d, config.max_points) // config.batch_size),
        "success_fraction": float(np.mean(first.columns["train_acc"] == 1)),
    }


def optimizer_floor(d: int, config: Config, repeat: int) -> dict:
    """Networks/s if a training step cost only optax.adam's update (no forward, no gradient)."""
    mesh = parallel.make_mesh()
    sharding = jax.sharding.NamedSharding(mesh, PartitionSpec(parallel.AXIS))
    steps = 256
    networks = 8 * TRIAL_GROUP * mesh.devices.size
    opt = linear_net.optimizer(config)

    def one(key):
        net = linear_net.wide_layout(linear_net.init(key, d, config))  # the layout training carries
        state = opt.init(net)

        def step(carry, i):
            net, state = carry
            grads = jax.tree.map(lambda p: 1e-3 * p + i, net)  # a cheap stand-in gradient
            updates, state = opt.update(grads, state, net)
            return (optax.apply_updates(net, updates), state), None

        (net, _), _ = jax.lax.scan(step, (net, state), jnp.arange(steps, dtype=jnp.float32))
        return sum(jnp.sum(w) for w in net.weights)

    fn = jax.jit(
        jax.shard_map(
            lambda keys: map_trials(one, keys),
            mesh=mesh,
            in_specs=PartitionSpec(parallel.AXIS),
            out_specs=PartitionSpec(parallel.AXIS),
            check_vma=False,
        )
    )
    keys = jax.device_put(jax.random.split(jax.random.key(0), networks), sharding)
    jax.block_until_ready(fn(keys))
    median, _ = median_time(lambda: jax.block_until_ready(fn(keys)), repeat)
    per_step = median / (networks * steps)
    params = linear_net.num_parameters(d, config)
    # The update reads parameters, gradient and both moments and writes three of them: 7 x 4 bytes.
    bandwidth = memory_bandwidth(repeat)
    # A trial group's parameters and moments per device (3 x 4 bytes each) stay in the caches between
    # steps: the bandwidth that bounds the step is the caches', measured on a working set that size.
    group_bytes = TRIAL_GROUP * 12 * params
    cache_bandwidth = memory_bandwidth(repeat, floats=group_bytes * mesh.devices.size // 12)
    return {
        "parameters": params,
        "update_seconds_per_network_step": per_step,
        "bytes_per_network_step": 28 * params,
        "memory_bandwidth_gb_s": round(bandwidth / 1e9, 2),
        "traffic_bound_seconds_per_network_step": 28 * params / bandwidth,
        "group_working_set_mb": round(group_bytes / 1e6, 2),
        "cache_bandwidth_gb_s": round(cache_bandwidth / 1e9, 2),
        "cache_traffic_bound_seconds_per_network_step": 28 * params / cache_bandwidth,
    }


def layout_side_by_side(d: int, config: Config, repeat: int, hlo: str | None = None) -> dict:
    """Seconds per network-step of `linear_net.train` alone (jit of a vmapped trial group, one device),
    carrying the parameters in the wide layout (the engine's) and as stored (PyTorch's (3000, d)).
    The four programs run in turn, round after round, so that the machine's load hits them alike;
    the ratios are medians of per-round ratios."""
    from jaxfrag import data
    from jaxfrag.models import relu as relu_net

    config = config._replace(epochs=1)
    steps = -(-min(2**d, config.max_points) // config.batch_size)
    keys = jax.device_put(jax.random.split(jax.random.key(0), TRIAL_GROUP), jax.devices()[0])
    programs = {}
    for network, loss in (("linear", None), ("relu", relu_net.cross_entropy)):
        for wide in (True, False):

            def one(key, wide=wide, loss=loss):
                key_a, key_init, key_train = jax.random.split(key, 3)
                a = data.mixing_matrix(key_a, d, 5.0)
                net = linear_net.init(key_init, d, config)
                points = data.index_words(jnp.arange(2**d))
                trained = linear_net.train(key_train, net, a, points, config, loss, wide=wide).net
                return sum(jnp.sum(w) for w in trained.weights)

            options = parallel.compiler_options(parallel.make_mesh(jax.devices()[:1]))
            program = jax.jit(jax.vmap(one)).lower(keys).compile(compiler_options=options)
            jax.block_until_ready(program(keys))
            programs[(network, "wide" if wide else "stored")] = program
            if hlo and network == "linear" and wide:  # the engine's training program, as XLA optimised it
                Path(hlo).write_text(program.as_text())
    times = {name: [] for name in programs}
    for _ in range(repeat):
        for name, program in programs.items():
            tic = time.perf_counter()
            jax.block_until_ready(program(keys))
            times[name].append((time.perf_counter() - tic) / (TRIAL_GROUP * steps))
    out = {f"{n}_{kind}_seconds_per_network_step": float(np.median(t)) for (n, kind), t in times.items()}
    for network in ("linear", "relu"):
        ratios = np.divide(times[(network, "stored")], times[(network, "wide")])
        out[f"{network}_stored_over_wide"] = float(np.median(ratios))
    return out


def memory_bandwidth(repeat: int, floats: int | None = None) -> float:
    """Bytes/s of a streaming update (read 2 arrays, write 1) in XLA over all devices (default 256 MB arrays)."""
    mesh = parallel.make_mesh()
    sharding = jax.sharding.NamedSharding(mesh, PartitionSpec(parallel.AXIS))
    n = (floats or 1 << 26) // mesh.devices.size * mesh.devices.size
    x = jax.device_put(jnp.ones(n, jnp.float32), sharding)
    y = jax.device_put(jnp.ones(n, jnp.float32), sharding)
    f = jax.jit(lambda x, y: x * 1.0001 + y)
    jax.block_until_ready(f(x, y))
    _, best = median_time(lambda: jax.block_until_ready(f(x, y)), max(repeat, 20 if floats else 1))
    return 3 * 4 * n / best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--hlo", default=None, help="write the optimised HLO of the training program here")
    args = parser.parse_args(argv)
    config = Config(seed=1, trials=64)
    if args.quick:
        config, rounds, dims, sweep_trials, repeat = config._replace(trials=16, epochs=2), 1, [7, 8], 16, 2
    else:
        rounds, dims, sweep_trials, repeat = 5, list(range(7, 18)), 16, 3
    info = machine()
    print(f"{info['processor']}, {info['cpu_count']} cores, jax {info['jax']} on {len(info['devices'])} devices")

    results = {}
    for name in ("linear", "relu"):
        row = results[name] = side_by_side(12, config, rounds, name)
        print(
            f"{name} d=12: engine {row['engine_networks_per_s']:.2f} networks/s ({row['networks_per_cell']} per cell), "
            f"PyTorch {row['torch_networks_per_s']:.3f} one at a time on {row['torch_threads']} threads: "
            f"{row['ratio_median']:.1f}x (median of {rounds} interleaved rounds; {row['ratio_min']:.1f}-"
            f"{row['ratio_max']:.1f}x)",
            flush=True,
        )
    engine = {
        "networks_per_s": results["linear"]["engine_networks_per_s"],
        "steps_per_network": results["linear"]["steps_per_network"],
    }
    floor = optimizer_floor(12, config, repeat)
    steps = engine["steps_per_network"]
    devices = len(jax.devices())
    engine_step = 1 / engine["networks_per_s"] / steps * devices  # seconds per network-step per device
    floor.update(
        engine_seconds_per_network_step_per_device=engine_step,
        update_share_of_engine_step=floor["update_seconds_per_network_step"] * devices / engine_step,
        optimizer_only_networks_per_s=1 / (floor["update_seconds_per_network_step"] * steps),
        traffic_bound_networks_per_s=1 / (floor["traffic_bound_seconds_per_network_step"] * steps),
        engine_step_over_cache_traffic_bound=engine_step / floor["cache_traffic_bound_seconds_per_network_step"],
    )
    print(
        f"floors: the Adam update alone allows {floor['optimizer_only_networks_per_s']:.1f} networks/s "
        f"({floor['update_share_of_engine_step']:.0%} of the engine's step); streaming its "
        f"{floor['bytes_per_network_step'] / 1e6:.2f} MB per step at {floor['memory_bandwidth_gb_s']} GB/s "
        f"allows {floor['traffic_bound_networks_per_s']:.1f} networks/s",
        flush=True,
    )
    print(
        f"roofline: a step per device costs {engine_step * 1e6:.1f} us; its {floor['bytes_per_network_step'] / 1e6:.2f}"
        f" MB at the caches' {floor['cache_bandwidth_gb_s']} GB/s (a group's {floor['group_working_set_mb']} MB working"
        f" set) take {floor['cache_traffic_bound_seconds_per_network_step'] * 1e6:.1f} us: "
        f"{floor['engine_step_over_cache_traffic_bound']:.1f}x the floor",
        flush=True,
    )
    layout = layout_side_by_side(12, config, 3 if args.quick else 9, args.hlo)
    for network in ("linear", "relu"):
        wide_us, stored_us = (layout[f"{network}_{kind}_seconds_per_network_step"] * 1e6 for kind in ("wide", "stored"))
        print(
            f"layout, {network}, one device: {wide_us:.1f} us per network-step wide, {stored_us:.1f} us as stored "
            f"({layout[network + '_stored_over_wide']:.2f}x)",
            flush=True,
        )
    per_d = []
    for d in dims:
        row = engine_rate(d, config._replace(trials=sweep_trials), 1)
        per_d.append(row)
        print(f"engine  d={d:>2}: {row['networks_per_s']:8.2f} networks/s ({row['steps_per_network']} steps each)")
    body = {
        "protocol": {k: v for k, v in config._asdict().items() if k != "trials"},
        "d12": results["linear"],
        "relu_d12": results["relu"],
        "floors_d12": floor,
        "layout_d12": layout,
        "engine_per_d": per_d,
    }
    write_result(args.out, "bench_linear", info, body, args.quick)


if __name__ == "__main__":
    main()
