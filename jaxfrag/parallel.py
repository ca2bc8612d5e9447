"""Keys, devices and chunks: how a cell's trials are spread over hardware.

Contract:
* A trial's key is fold_in(fold_in(fold_in(key(seed), experiment id), d), trial
  index) -- nothing else -- so no number depends on chunk size, device count,
  padding or resuming.
* `CellRunner` compiles one program per (experiment, compiled size, chunk,
  config up to its seed and trial count) with the trial axis sharded over a
  1-D device mesh (`jax.shard_map`: every device runs its slice independently,
  with no communication), and runs a cell's trial indices through it chunk by
  chunk. The last chunk is padded with extra trial
  indices whose rows are dropped, so there is one compiled shape per bucket.
  Chunks are multiples of devices x `trial_group()` (see `jaxfrag.experiments`).
* Backend-aware: a chunk's working memory is bounded by 1 GiB on a CPU (the
  caches and 2 cores set the pace, not memory) and by half of each
  accelerator's free memory (`memory_stats`) on a GPU or TPU.
* On a CPU-only host, `configure_cpu_devices` splits the CPU into several
  devices (one per core by default) so that sharding uses every core.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxfrag import xla_options
from jaxfrag.config import EXPERIMENTS, Config
from jaxfrag.experiments.base import Experiment, trial_group

AXIS = "trials"
# Config fields a compiled program takes as run-time values, not constants: configs (grid points)
# that differ only in these share one program.
RUNTIME_FIELDS = ("scale_columns", "lr")
DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes of working memory per chunk, on a CPU
ACCELERATOR_MEMORY_FRACTION = 0.5  # of each accelerator's free memory: XLA's temporaries come on top of our estimate


def configure_cpu_devices(count: int | None = None) -> None:
    """Expose `count` CPU devices (default: one per core). Call before JAX starts its backend.

    Without a count, a device count the user set (JAX_NUM_CPU_DEVICES or XLA's
    --xla_force_host_platform_device_count) is left alone.
    """
    if count is None:
        if "JAX_NUM_CPU_DEVICES" in os.environ or "xla_force_host_platform_device_count" in os.environ.get(
            "XLA_FLAGS", ""
        ):
            return
        count = os.cpu_count() or 1
    jax.config.update("jax_num_cpu_devices", count)


def compiler_options(mesh: Mesh) -> dict:
    """XLA options for the trial programs on CPU.

    * Optimisation level 1: LLVM's full pipeline spends seconds on the unrolled
      threefry hash of jax.random (2.3 s vs 0.3 s for one normal draw); level 1
      compiles faster and ran the sphere decoder faster too (120 vs 171 ns per
      node, measured side by side).
    * No YNNPACK fusions: XLA hands some dots and reductions to YNNPACK, whose
      summation order depends on the batch size, so a trial's last bits would
      depend on the chunk it ran in (seen in thm1's distances). XLA's own
      emitters reduce each trial in a fixed order; this costs ~20% in the search.

    A level the user set in XLA_FLAGS wins: the test suite sets level 0, whose programs are small
    and run briefly, so that compiling them is most of their time.
    """
    if not all(device.platform == "cpu" for device in mesh.devices.flat):
        return {}
    options = {"xla_cpu_experimental_ynn_fusion_type": ""}
    if xla_options.flag("xla_backend_optimization_level") is None:
        options["xla_backend_optimization_level"] = 1
    return options


def cell_key(seed: int, experiment: str, d: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), EXPERIMENTS[experiment].id), d)


def trial_keys(key: jax.Array, trial_index: jax.Array) -> jax.Array:
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, trial_index)


def make_mesh(devices=None) -> Mesh:
    devices = devices if devices is not None else jax.devices()
    return Mesh(np.asarray(devices), (AXIS,))


def round_chunk(chunk: int, num_devices: int, group: int | None = None) -> int:
    """Round a chunk up so that every device gets a whole number of trial groups."""
    unit = num_devices * (group or trial_group())
    return unit * math.ceil(chunk / unit)


def auto_chunk(
    trials: int, bytes_per_trial: int, num_devices: int, budget: int = DEFAULT_MEMORY_BUDGET, group: int | None = None
) -> int:
    """Trials per compiled step: all of them if memory allows, split evenly otherwise (then rounded)."""
    cap = max(1, budget // max(bytes_per_trial, 1))
    chunks = math.ceil(trials / cap)
    return round_chunk(math.ceil(trials / chunks), num_devices, group)


def chunk_memory_budget(mesh: Mesh) -> int:
    """Bytes of working memory for one chunk over the whole mesh (see the module docstring)."""
    devices = list(mesh.devices.flat)
    stats = [device.memory_stats() if device.platform != "cpu" else None for device in devices]
    if any(s is None or "bytes_limit" not in s for s in stats):
        return DEFAULT_MEMORY_BUDGET
    free = min(s["bytes_limit"] - s.get("bytes_in_use", 0) for s in stats)
    return int(ACCELERATOR_MEMORY_FRACTION * free) * len(devices)


def runtime_values(experiment: str, config: Config) -> list[float]:
    """`RUNTIME_FIELDS`' values for an experiment (the column factor resolved to its default)."""
    return [float(config.scale_for(experiment)), float(config.lr)]


class CellResult(NamedTuple):
    columns: dict[str, np.ndarray]  # metric columns, one entry per trial
    aux: dict[str, np.ndarray]  # per-trial auxiliary arrays for cell statistics
    compile_s: float  # compiling its program (0 if an earlier cell compiled it)
    compile_wait_s: float  # how long this cell waited for that program
    run_s: float


class Chunk(NamedTuple):
    start: int  # first trial index
    stop: int  # one past the last
    arrays: dict[str, np.ndarray]  # the experiment's columns and "_" auxiliary arrays, one entry per trial
    run_s: float
    compile_s: float  # compiling the program (first chunk of its first use only, else 0)
    compile_wait_s: float  # waiting for that program (first chunk of a range only)
    chunk: int  # trials per compiled step


class CellRunner:
    """Runs (experiment, d) cells on a mesh; one compiled step per (experiment, compiled size, chunk, config).

    Every method takes an optional `config` (a grid point's, see `jaxfrag.grid`; default: the
    runner's). Configs that differ only in seed, trial count or `RUNTIME_FIELDS` share a program:
    the seed enters as the cell key's data and those fields as values, at run time, and the trial
    count only sets how many chunks run.

    `prefetch` starts compiling a cell's program on a background thread, so that
    a sweep compiles the next bucket's program while it runs the current cells
    (XLA compiles outside the GIL); `run_cell` waits for it.
    """

    def __init__(
        self,
        config: Config,
        mesh: Mesh | None = None,
        memory_budget: int | None = None,
        compile_workers: int = 1,
    ):
        self.config = config
        self.mesh = mesh or make_mesh()
        self.memory_budget = memory_budget or chunk_memory_budget(self.mesh)
        self.group = trial_group(self.mesh.devices.flat[0].platform)
        self._pool = ThreadPoolExecutor(max_workers=compile_workers, thread_name_prefix="jaxfrag-compile")
        self._programs: dict[tuple[str, int, int, Config], Future] = {}

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    def chunk_for(
        self,
        experiment: Experiment,
        d: int,
        chunk: int | None = None,
        trials: int | None = None,
        config: Config | None = None,
    ) -> int:
        """Trials per compiled step: `chunk` rounded, or sized from memory for `trials` (default: a whole cell)."""
        if chunk:
            return round_chunk(chunk, self.num_devices, self.group)
        config = config or self.config
        size = experiment.size(d, config)
        return auto_chunk(
            trials or config.trials,
            experiment.bytes_per_trial(size, config),
            self.num_devices,
            self.memory_budget,
            self.group,
        )

    def prefetch(
        self,
        experiment: Experiment,
        d: int,
        chunk: int | None = None,
        trials: int | None = None,
        config: Config | None = None,
    ) -> Future:
        """Start (or find) the compilation of the program that runs this cell's trials (`trials` of them)."""
        key = self.program_key(experiment, d, chunk, trials, config)
        if key not in self._programs:
            self._programs[key] = self._pool.submit(self._compile, experiment, *key[1:])
        return self._programs[key]

    def program_key(
        self,
        experiment: Experiment,
        d: int,
        chunk: int | None = None,
        trials: int | None = None,
        config: Config | None = None,
    ) -> tuple[str, int, int, Config]:
        """(experiment, compiled size, chunk, config up to seed, trials and run-time values): one program each."""
        config = config or self.config
        size, chunk = experiment.size(d, config), self.chunk_for(experiment, d, chunk, trials, config)
        shared = config._replace(seed=0, trials=0, **{field: None for field in RUNTIME_FIELDS})
        return experiment.name, size, chunk, shared

    def release(self, key: tuple[str, int, int, Config]) -> None:
        """Forget a program no later cell needs. A long grid compiles dozens of programs, and a CPU
        process that kept them all ran out of memory maps in LLVM's JIT (vm.max_map_count)."""
        self._programs.pop(key, None)

    def _compile(self, experiment: Experiment, size: int, chunk: int, config: Config) -> tuple[Callable, float]:
        def local(key_data, d, trial_index, runtime):
            keys = trial_keys(jax.random.wrap_key_data(key_data), trial_index)
            values = {field: runtime[k] for k, field in enumerate(RUNTIME_FIELDS)}
            return experiment.run_chunk(keys, d, size, config._replace(**values))

        sharded = jax.shard_map(
            local,
            mesh=self.mesh,
            in_specs=(PartitionSpec(), PartitionSpec(), PartitionSpec(AXIS), PartitionSpec()),
            out_specs=PartitionSpec(AXIS),
            # Trials never talk to each other, so nothing needs varying-axis tracking.
            check_vma=False,
        )
        key_data = jax.random.key_data(jax.random.key(0))
        start = time.perf_counter()
        compiled = (
            jax.jit(sharded)
            .lower(
                key_data,
                jnp.int32(0),
                jax.ShapeDtypeStruct((chunk,), jnp.int32, sharding=self._sharding()),
                jax.ShapeDtypeStruct((len(RUNTIME_FIELDS),), jnp.result_type(float)),
            )
            .compile(compiler_options=compiler_options(self.mesh))
        )
        return compiled, time.perf_counter() - start

    def close(self) -> None:
        """Drop compilations that have not started (an interrupted sweep should not wait for them)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(AXIS))

    def run_trials(
        self,
        experiment: Experiment,
        d: int,
        start: int,
        stop: int,
        chunk: int | None = None,
        config: Config | None = None,
    ) -> Iterator[Chunk]:
        """Trials start..stop-1 of one (experiment, d) cell, chunk by chunk, as numpy arrays in trial order.

        The first Chunk carries the program's compile time (0 if another range compiled it) and the wait for it.
        """
        trials, config = stop - start, config or self.config
        program = self.prefetch(experiment, d, chunk, trials, config)
        first_use = not getattr(program, "used", False)
        program.used = True
        wait_start = time.perf_counter()
        step, compile_s = program.result()
        compile_wait_s = time.perf_counter() - wait_start
        chunk = self.chunk_for(experiment, d, chunk, trials, config)
        key_data = jax.random.key_data(cell_key(config.seed, experiment.name, d))
        runtime = jnp.asarray(runtime_values(experiment.name, config), jnp.result_type(float))
        for first in range(start, stop, chunk):
            tic = time.perf_counter()
            index = jax.device_put(np.arange(first, first + chunk, dtype=np.int32), self._sharding())
            out = jax.device_get(step(key_data, jnp.int32(d), index, runtime))
            valid = min(chunk, stop - first)
            arrays = experiment.host_columns({name: np.asarray(value)[:valid] for name, value in out.items()})
            yield Chunk(
                first,
                first + valid,
                arrays,
                time.perf_counter() - tic,
                compile_s if first_use else 0.0,
                compile_wait_s,
                chunk,
            )
            first_use, compile_wait_s = False, 0.0

    def run_cell(
        self,
        experiment: Experiment,
        d: int,
        chunk: int | None = None,
        on_chunk: Callable[[int], None] | None = None,
        config: Config | None = None,
    ) -> CellResult:
        """All `config.trials` trials of one (experiment, d) cell, as numpy columns in trial order."""
        config = config or self.config
        pieces = []
        for piece in self.run_trials(experiment, d, 0, config.trials, chunk, config):
            pieces.append(piece)
            if on_chunk:
                on_chunk(piece.stop - piece.start)
        merged = {name: np.concatenate([p.arrays[name] for p in pieces]) for name in pieces[0].arrays}
        columns = {name: merged[name] for name in experiment.columns if name in merged}  # some are optional
        aux = {name: value for name, value in merged.items() if name.startswith("_")}
        return CellResult(columns, aux, pieces[0].compile_s, pieces[0].compile_wait_s, sum(p.run_s for p in pieces))
