"""Many processes, one run: JAX's multi-process runtime, the work split, and stopping cleanly.

Contract:
* `connect(coordinator, num_processes, process_id)` starts `jax.distributed`
  when the three options are given, or with no options when a cluster
  launcher is detected (SLURM's srun, Open MPI's mpirun, a Cloud TPU pod
  slice: `jax.distributed.initialize()` reads their environment). It returns
  this process's `Processes(index, count)`; a lone process needs no runtime
  and gets `Processes(0, 1)` without importing JAX.
* `share(missing, processes)` splits each cell's missing trial indices into
  `count` contiguous, near-equal pieces and returns this process's piece. It
  depends only on what is missing and on (index, count), so every process
  computes the same plan; a trial's numbers never depend on which process ran
  it (its key is still (seed, experiment, d, trial index)).
* `Watchdog`: every process bumps a counter in the coordination service's
  key-value store each second and watches the others'. A peer whose counter
  stops for `peer_timeout` seconds is gone (killed, crashed, cut off), and this
  process stops at once with one line on stderr and exit status 1. Without it,
  a survivor would wait at a barrier until the runtime's own heartbeat check
  (100 s) aborts it with a C++ stack trace. What finished is on disk already.
* `share_items(items, processes)`: the same contiguous split for lists of
  whole cells (the MNIST entry point's networks, the ImageNet pairs).
* `barrier(name)` and `from_leader` (process 0 computes a string, e.g. the
  error that makes the run folder unusable, and every process gets it) go
  through the same coordination service, never through device collectives.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import NamedTuple

PEER_TIMEOUT_S = 60.0  # default: a peer silent this long is gone (a busy process still beats: XLA frees the GIL)
_BEAT_S = 1.0
_FOREVER_MS = 2**31 - 1  # barriers wait as long as the watchdog sees every peer alive


class Processes(NamedTuple):
    index: int
    count: int

    @property
    def leader(self) -> bool:
        return self.index == 0


class DistributedError(Exception):
    """The processes could not be brought together; the message is meant for the user."""


def launcher_detected(environ=os.environ) -> str | None:
    """The cluster launcher this process was started by, if it started more than one process."""
    if "SLURM_STEP_ID" in environ and int(environ.get("SLURM_STEP_NUM_TASKS", environ.get("SLURM_NTASKS", 1))) > 1:
        return "SLURM"
    if int(environ.get("OMPI_COMM_WORLD_SIZE", 1)) > 1:
        return "Open MPI"
    if len([h for h in environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1:
        return "TPU pod"
    return None


def validate(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Raise DistributedError unless the options are all absent or a consistent set."""
    given = [option is not None for option in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise DistributedError("--coordinator, --num-processes and --process-id go together: give all three or none")
    if coordinator is not None:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit():
            raise DistributedError(f"--coordinator {coordinator!r}: expected HOST:PORT")
        if not 0 <= process_id < num_processes:
            raise DistributedError(f"--process-id {process_id}: must be in 0..{num_processes - 1}")


def connect(coordinator: str | None, num_processes: int | None, process_id: int | None) -> Processes:
    """Join the run's processes (see the module docstring); a lone process returns Processes(0, 1)."""
    validate(coordinator, num_processes, process_id)
    if coordinator is None and launcher_detected() is None:
        return Processes(0, 1)
    if coordinator is not None and num_processes == 1:
        return Processes(0, 1)
    import jax

    # Gloo lets CPU processes run cross-process programs (ours need none); other backends ignore it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        if coordinator is None:
            jax.distributed.initialize()
        else:
            jax.distributed.initialize(coordinator, num_processes, process_id)
    except Exception as error:  # jaxlib raises its own runtime error types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DistributedError(f"could not join the other processes: {first_line}") from None
    return Processes(jax.process_index(), jax.process_count())


def share(missing: list[tuple[int, int]], processes: Processes) -> list[tuple[int, int]]:
    """This process's piece of one cell's missing trial ranges [start, stop): contiguous, near-equal shares."""
    total = sum(stop - start for start, stop in missing)
    low = total * processes.index // processes.count
    high = total * (processes.index + 1) // processes.count
    piece, seen = [], 0
    for start, stop in missing:
        # The slice [low, high) of the concatenated missing trials, mapped back into this range.
        first, last = max(start, start + low - seen), min(stop, start + high - seen)
        if first < last:
            piece.append((first, last))
        seen += stop - start
    return piece


def share_items(items: list, processes: Processes) -> list:
    """This process's contiguous, near-equal share of a list of work items (cells: networks, image pairs)."""
    low = len(items) * processes.index // processes.count
    return items[low : len(items) * (processes.index + 1) // processes.count]


def from_leader(processes: Processes, name: str, compute) -> str:
    """compute() on process 0, and its string on every process (the others wait for it)."""
    if processes.count == 1:
        return compute()
    if processes.leader:
        value = compute()
        publish(name, value)
        return value
    return receive(name)


def _client():
    from jax._src import distributed  # the runtime's client: the coordination service's key-value store

    if distributed.global_state.client is None:
        raise DistributedError("jax.distributed is not initialised")
    return distributed.global_state.client


class Watchdog:
    """Stops this process with one line (exit status 1) when a peer stops beating; see the module docstring."""

    def __init__(self, processes: Processes, message: str, peer_timeout: float = PEER_TIMEOUT_S):
        self.processes, self.message, self.peer_timeout = processes, message, peer_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="jaxfrag-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        if self.processes.count > 1:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def _watch(self) -> None:
        client = _client()
        me = self.processes.index
        last_seen = {peer: (None, time.monotonic()) for peer in range(self.processes.count) if peer != me}
        beat = 0
        while not self._stop.wait(_BEAT_S):
            beat += 1
            try:
                client.key_value_set(f"jaxfrag/beat/{me}", str(beat), allow_overwrite=True)
                beats = dict(client.key_value_dir_get("jaxfrag/beat/"))
            except Exception:  # the coordinator (process 0) is gone with its service
                self._fail(0)
            now = time.monotonic()
            for peer, (value, since) in last_seen.items():
                current = beats.get(f"jaxfrag/beat/{peer}")
                if current != value:
                    last_seen[peer] = (current, now)
                elif now - since > self.peer_timeout:
                    self._fail(peer)

    def _fail(self, peer: int) -> None:
        if self._stop.is_set():
            return
        print(
            f"{self.message.format(peer=peer, count=self.processes.count)} "
            f"(process {peer} of {self.processes.count} stopped answering)",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)  # the main thread may be inside XLA or a barrier: nothing else would stop it


def barrier(name: str, processes: Processes) -> None:
    """Wait until every process gets here (a Watchdog turns a lost peer into an error)."""
    if processes.count > 1:
        _client().wait_at_barrier(f"jaxfrag/{name}", _FOREVER_MS)


def publish(name: str, value: str) -> None:
    _client().key_value_set(f"jaxfrag/{name}", value)


def receive(name: str) -> str:
    return _client().blocking_key_value_get(f"jaxfrag/{name}", _FOREVER_MS)


def disconnect(processes: Processes) -> None:
    if processes.count > 1:
        import jax

        jax.distributed.shutdown()
