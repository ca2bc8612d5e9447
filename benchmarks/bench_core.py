"""Benchmark: the engine's thm6 computation and batched QR against the numpy a researcher would use.

    python benchmarks/bench_core.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_core.py --quick    # a smoke run

Both sides run in this one process, alternately, and the medians of repeated
timings are compared. Results go to benchmarks/results/bench_core-<time>.json
with the machine's description.

* thm6: trials per second for the whole per-trial computation (sample, QR,
  network, exact robustness checked by applying it, the attack, the exact
  nearest opposite point) -- the engine sharded over all devices against a
  per-trial numpy loop of the same computation (benchmarks/numpy_thm6.py).
* QR: matrices per second for d in {8, 12, 16, 32, 64}: the engine's R-only
  Householder QR (`linalg.qr_r_stack`: vmapped in cache-sized groups, sharded
  over the devices; also one plain vmap over the stack) and full QR, against
  numpy's stacked np.linalg.qr (complete and mode="r") and jnp.linalg.qr on
  one device (LAPACK), with the fraction of the measured matmul ceiling.
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
import numpy_thm6  # noqa: E402
from common import machine, median_time, write_result  # noqa: E402
from jax.sharding import PartitionSpec  # noqa: E402

from jaxfrag import linalg  # noqa: E402
from jaxfrag.config import Config  # noqa: E402
from jaxfrag.experiments import registry  # noqa: E402


def bench_thm6(dims, engine_trials, numpy_seconds, repeat):
    experiment = registry()["thm6"]
    rows = []
    for d in dims:
        config = Config(trials=engine_trials, seed=1)
        runner = parallel.CellRunner(config)
        first = runner.run_cell(experiment, d)  # compiles
        engine_times = [runner.run_cell(experiment, d).run_s for _ in range(repeat)]
        engine_rate = engine_trials / float(np.median(engine_times))
        rng = np.random.default_rng(d)
        numpy_results, start = [], time.perf_counter()
        while time.perf_counter() - start < numpy_seconds or len(numpy_results) < 5:
            numpy_results.append(numpy_thm6.trial(rng, d))
        numpy_rate = len(numpy_results) / (time.perf_counter() - start)
        engine_gap = first.columns["gap"]
        numpy_gap = np.array([r["gap"] for r in numpy_results])
        z = (engine_gap.mean() - numpy_gap.mean()) / np.hypot(
            engine_gap.std() / np.sqrt(len(engine_gap)), numpy_gap.std() / np.sqrt(len(numpy_gap))
        )
        row = {
            "d": d,
            "engine_trials_per_s": engine_rate,
            "engine_compile_s": first.compile_s,
            "numpy_trials_per_s": numpy_rate,
            "numpy_trials_timed": len(numpy_results),
            "ratio": engine_rate / numpy_rate,
            "mean_gap_engine": float(engine_gap.mean()),
            "mean_gap_numpy": float(numpy_gap.mean()),
            "mean_gap_z": float(z),
            "decoder_nodes_per_trial": float(first.columns["decoder_nodes"].mean()),
        }
        rows.append(row)
        print(
            f"thm6 d={d:3d}: engine {engine_rate:10.0f} trials/s (compile {first.compile_s:.1f} s) | "
            f"numpy loop {numpy_rate:8.1f} trials/s | ratio {row['ratio']:7.1f}x | mean gap z {z:+.1f}",
            flush=True,
        )
    sweep_engine = sum(engine_trials / r["engine_trials_per_s"] for r in rows)
    sweep_numpy = sum(engine_trials / r["numpy_trials_per_s"] for r in rows)
    compile_total = sum(r["engine_compile_s"] for r in rows)
    summary = {
        "trials_per_d": engine_trials,
        "engine_s": sweep_engine,
        "engine_s_with_compile": sweep_engine + compile_total,
        "numpy_s_estimated": sweep_numpy,
        "ratio": sweep_numpy / sweep_engine,
        "ratio_with_compile": sweep_numpy / (sweep_engine + compile_total),
    }
    print(
        f"thm6 over these d at {engine_trials} trials each: engine {sweep_engine:.1f} s "
        f"({sweep_engine + compile_total:.1f} s with compiling), numpy loop {sweep_numpy:.1f} s: "
        f"{summary['ratio']:.1f}x ({summary['ratio_with_compile']:.1f}x with compiling)",
        flush=True,
    )
    return rows, summary


def matmul_ceiling(repeat: int) -> float:
    """float32 GFLOP/s of a large matmul in XLA on all devices' cores (the hardware ceiling for QR)."""
    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(a))
    _, best = median_time(lambda: jax.block_until_ready(f(a)), repeat)
    return 2 * n**3 / best / 1e9


def bench_qr(dims, repeat, seconds_per_case):
    mesh = parallel.make_mesh()
    sharding = jax.sharding.NamedSharding(mesh, PartitionSpec(parallel.AXIS))
    options = parallel.compiler_options(mesh)

    def sharded(fn):
        body = jax.shard_map(
            fn,
            mesh=mesh,
            in_specs=PartitionSpec(parallel.AXIS),
            out_specs=PartitionSpec(parallel.AXIS),
            check_vma=False,
        )
        return body

    def full_qr(a):
        f = linalg.qr(a)
        return linalg.q_matmul(f, jnp.eye(a.shape[1], dtype=a.dtype)), f.r

    def grouped(fn):
        return lambda stack: jax.lax.map(fn, stack, batch_size=linalg.stack_group(*stack.shape[1:]))

    ceiling = matmul_ceiling(repeat)
    print(f"matmul ceiling (XLA, float32, 2048^3): {ceiling:.1f} GFLOP/s", flush=True)
    rows = []
    for d in dims:
        # Size the batch so that one numpy call takes ~seconds_per_case.
        probe = np.random.default_rng(0).standard_normal((256, d, d)).astype(np.float32)
        t = median_time(lambda probe=probe: np.linalg.qr(probe, mode="r"), 3)[0]
        unit = mesh.devices.size * linalg.stack_group(d, d)
        batch = int(max(unit, min(400_000, 256 * seconds_per_case / max(t, 1e-6))))
        batch -= batch % unit
        stack = np.random.default_rng(1).standard_normal((batch, d, d)).astype(np.float32)
        on_devices = jax.device_put(stack, sharding)
        single = jax.device_put(stack, jax.devices()[0])
        cases = {
            "engine_r": jax.jit(sharded(linalg.qr_r_stack)).lower(on_devices).compile(compiler_options=options),
            "engine_qr": jax.jit(sharded(grouped(full_qr))).lower(on_devices).compile(compiler_options=options),
            "engine_r_one_vmap": jax.jit(sharded(jax.vmap(linalg.qr_r)))
            .lower(on_devices)
            .compile(compiler_options=options),
            "jnp_lapack_r_1_device": jax.jit(lambda a: jnp.linalg.qr(a, mode="r")),
        }
        timings = {}
        for name, fn in cases.items():
            arg = single if "1_device" in name else on_devices
            jax.block_until_ready(fn(arg))
            timings[name] = median_time(lambda fn=fn, arg=arg: jax.block_until_ready(fn(arg)), repeat)[0]
        timings["numpy_r"] = median_time(lambda stack=stack: np.linalg.qr(stack, mode="r"), repeat)[0]
        timings["numpy_qr"] = median_time(lambda stack=stack: np.linalg.qr(stack), repeat)[0]
        rates = {name: batch / t for name, t in timings.items()}
        rates = dict(sorted(rates.items()))
        flops_r = 4 / 3 * d**3  # Householder R of a d x d matrix
        row = {
            "d": d,
            "batch": batch,
            "matrices_per_s": rates,
            "engine_r_vs_numpy_r": rates["engine_r"] / rates["numpy_r"],
            "engine_qr_vs_numpy_qr": rates["engine_qr"] / rates["numpy_qr"],
            "engine_r_fraction_of_matmul_ceiling": rates["engine_r"] * flops_r / 1e9 / ceiling,
            "numpy_r_fraction_of_matmul_ceiling": rates["numpy_r"] * flops_r / 1e9 / ceiling,
        }
        rows.append(row)
        kilo = {name: rate / 1e3 for name, rate in rates.items()}
        print(
            f"QR d={d:3d} batch {batch:7d}: engine R {kilo['engine_r']:8.1f} k/s, "
            f"engine Q+R {kilo['engine_qr']:8.1f} k/s | numpy R {kilo['numpy_r']:8.1f} k/s, "
            f"numpy Q+R {kilo['numpy_qr']:8.1f} k/s | jnp LAPACK R (1 device) {kilo['jnp_lapack_r_1_device']:8.1f} k/s"
            f" | one vmap {kilo['engine_r_one_vmap']:8.1f} k/s | R ratio {row['engine_r_vs_numpy_r']:.2f}x, "
            f"Q+R ratio {row['engine_qr_vs_numpy_qr']:.2f}x | "
            f"ceiling {100 * row['engine_r_fraction_of_matmul_ceiling']:.1f}% "
            f"(numpy {100 * row['numpy_r_fraction_of_matmul_ceiling']:.1f}%)",
            flush=True,
        )
    return rows, ceiling


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--only", choices=["thm6", "qr"], default=None, help="run one part")
    args = parser.parse_args(argv)
    if args.quick:
        thm6_dims, engine_trials, numpy_seconds, repeat, qr_dims, qr_seconds = [8, 20], 200, 1.0, 3, [8, 12], 0.05
    else:
        thm6_dims, engine_trials, numpy_seconds, repeat, qr_dims, qr_seconds = (
            [8, 16, 24, 32, 40, 48, 56, 64],
            2000,
            6.0,
            5,
            [8, 12, 16, 32, 64],
            0.5,
        )
    info = machine()
    print(
        f"{info['processor']}, {info['cpu_count']} cores, jax {info['jax']} on {len(info['devices'])} devices",
        flush=True,
    )
    thm6_rows, thm6_summary = (
        bench_thm6(thm6_dims, engine_trials, numpy_seconds, repeat) if args.only != "qr" else ([], {})
    )
    qr_rows, ceiling = bench_qr(qr_dims, repeat, qr_seconds) if args.only != "thm6" else ([], None)
    body = {
        "thm6": {"per_d": thm6_rows, "sweep": thm6_summary},
        "qr": {"per_d": qr_rows, "matmul_ceiling_gflops": ceiling},
    }
    write_result(args.out, "bench_core", info, body, args.quick, f"-{args.only}" if args.only else "")


if __name__ == "__main__":
    main()
