"""Measurement: what XLA's CPU flags cost in compile time, on the full minimal-L2 attack.

    python benchmarks/compile_flags.py            # 3 rounds of every flag set, interleaved

Each measurement is a fresh Python process with the flag set in XLA_FLAGS and no compilation
cache: it traces and lowers `attacks.minimal_l2` at its defaults on a 10-class affine model in
R^40 (float32), compiles it, runs it once, and reports the seconds of each and the norm found
(the flags change how XLA emits the program, not what it computes). The flag sets are the test
suite's (level 0 and the fusion emitters off, tests/conftest.py), each alone, and level 1
(the sweep's trial programs) with and without the emitters. Rounds interleave the flag sets so
that a slow spell of a shared machine falls on all of them; the medians are reported.
Results go to benchmarks/results/compile_flags-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, write_result  # noqa: E402

FLAG_SETS = {
    "level 0": "--xla_backend_optimization_level=0",
    "level 0, fusion emitters off": "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false",
    "level 1": "--xla_backend_optimization_level=1",
    "level 1, fusion emitters off": "--xla_backend_optimization_level=1 --xla_cpu_use_fusion_emitters=false",
}

# Run in the child process: one compile of the attack, timed by stage, printed as JSON.
CHILD = """
import functools, json, time
import jax, jax.numpy as jnp, numpy as np
from jaxfrag import attacks

rng = np.random.default_rng(0)
w = jnp.asarray(rng.standard_normal((10, 40)), jnp.float32)
b = jnp.zeros(10, jnp.float32)
x = jnp.asarray(rng.standard_normal(40), jnp.float32)
attack = jax.jit(lambda w, b, x, label: attacks.minimal_l2(lambda v: w @ v + b, x, label))
start = time.perf_counter()
lowered = attack.lower(w, b, x, 0)
traced = time.perf_counter()
compiled = lowered.compile()
done = time.perf_counter()
norm = float(compiled(w, b, x, 0).norm)
ran = time.perf_counter()
print(json.dumps({"trace_lower_s": traced - start, "compile_s": done - traced, "run_s": ran - done, "norm": norm}))
"""


def measure(flags: str) -> dict:
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    runs = {name: [] for name in FLAG_SETS}
    for _ in range(args.rounds):
        for name, flags in FLAG_SETS.items():
            runs[name].append(measure(flags))
    body = {"model": "minimal_l2 defaults, 10-class affine model in R^40, float32", "flag_sets": FLAG_SETS}
    body["results"] = {}
    print(f"{'flags':32} {'trace+lower':>12} {'compile':>8} {'run':>7}  norm")
    for name, found in runs.items():
        medians = {key: float(np.median([r[key] for r in found])) for key in ("trace_lower_s", "compile_s", "run_s")}
        norms = sorted({r["norm"] for r in found})
        body["results"][name] = {**medians, "norms": norms, "runs": found}
        print(
            f"{name:32} {medians['trace_lower_s']:11.2f}s {medians['compile_s']:7.2f}s {medians['run_s']:6.3f}s  "
            + ", ".join(f"{n:.7g}" for n in norms)
        )
    write_result(args.out, "compile_flags", machine(), body, quick=args.rounds < 3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
