"""The sweep's cells from plan to disk: plan this process's share, run it chunk by chunk, merge what is complete.

Contract:
* `Request(experiments, points, dims, trials)`: the cells a run asks for, (experiment, grid
  point, d), each of `trials` trials; `pairs()` its (experiment, point) pairs in report order.
* `plan(request, folder, runner, experiments, processes, chunk)` -> [Piece]: this process's share
  (`distributed.share`) of every trial not yet on disk, with the chunk each piece compiles for.
* `compile_ahead(runner, experiments, plan, position, programs)`: start compiling the programs of
  the pieces from `position` on, at most `programs` distinct ones.
* `run(plan, folder, runner, experiments, processes, programs, progress, after_piece)`: run every
  piece, each finished chunk written as a part (`store.RunFolder.write_part`), each program
  released after its last piece, `after_piece()` called after each piece.
* `merge(request, folder, experiments, config, meta)`: every cell whose parts hold all its trials
  becomes a cell file (its rows, the cell statistics), its parts go, and meta's stages record it.
* Extending: a cell file that holds fewer trials than the request (a --resume with more --trials) is
  planned from its first missing trial, and merged as its rows followed by the new ones; an experiment
  whose cell statistics need every trial's auxiliary arrays (`Experiment.stats_from_every_trial`) is
  planned from trial 0 again, and its cell file replaced. Either way the rows equal a fresh run's.
A trial's numbers depend only on (seed, experiment, d, trial index): never on the plan's chunks,
the process that ran it, or whether the run was resumed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd

from jaxfrag import distributed, grid, parallel, stats, store
from jaxfrag.config import Config
from jaxfrag.experiments.base import Experiment


class Request(NamedTuple):
    experiments: list[str]
    points: list[grid.Point]  # the grid's points ([()] without a grid)
    dims: list[int]
    trials: int

    def pairs(self) -> list[tuple[str, grid.Point]]:
        """The run's (experiment, grid point) pairs, in report order."""
        return [(name, point) for name in self.experiments for point in self.points]


class Piece(NamedTuple):
    """Trials of one cell that this process runs: ranges [start, stop), compiled `chunk` at a time."""

    experiment: str
    point: tuple  # the grid point (`jaxfrag.grid`; () without a grid)
    d: int
    ranges: list[tuple[int, int]]
    chunk: int

    @property
    def cell(self) -> str:
        """The cell's name in the run folder."""
        return grid.cell_name(self.experiment, self.point)

    @property
    def trials(self) -> int:
        return sum(stop - start for start, stop in self.ranges)


def plan(
    request: Request,
    folder: store.RunFolder,
    runner: parallel.CellRunner,
    experiments: dict[str, Experiment],
    processes: distributed.Processes,
    chunk: int | None = None,
    barrier: str = "planned",
) -> list[Piece]:
    """This process's share of every trial not yet on disk (`chunk`: trials per compiled step, else automatic).

    Every process plans from the same listing of the run folder: they wait for each other at `barrier`
    (a name unique to this call) before any runs, since one that listed the folder after another had
    written parts would take those trials as done, share out only the rest, and leave a gap."""
    done, parts = folder.done_cells(), folder.parts()  # one listing for every cell
    pieces = []
    for name, point in request.pairs():
        cell, config = grid.cell_name(name, point), grid.config_for(runner.config, point)
        for d in request.dims:
            first = first_trial(folder, experiments[name], cell, d, done, request.trials)
            missing = [] if first is None else store.gaps(parts.get((cell, d), []), request.trials, first)
            ranges = distributed.share(missing, processes)
            if ranges:
                trials = sum(stop - start for start, stop in ranges)
                pieces.append(
                    Piece(name, point, d, ranges, runner.chunk_for(experiments[name], d, chunk, trials, config))
                )
    distributed.barrier(barrier, processes)
    return pieces


def first_trial(
    folder: store.RunFolder, experiment: Experiment, cell: str, d: int, done: set, trials: int
) -> int | None:
    """The first trial a cell's new parts start at: 0 for a cell not on disk (or whose statistics need
    every trial), the cell file's count for one being extended; None for a cell with all `trials`."""
    if (cell, d) not in done:
        return 0
    held = folder.cell_trials(cell, d)
    if held >= trials:
        return None
    return 0 if experiment.stats_from_every_trial else held


def program_key(runner, experiments: dict[str, Experiment], piece: Piece):
    return runner.program_key(
        experiments[piece.experiment], piece.d, piece.chunk, config=grid.config_for(runner.config, piece.point)
    )


def compile_ahead(runner, experiments: dict[str, Experiment], plan: list[Piece], position: int, programs: int) -> None:
    """Start compiling the programs of the pieces from `position` on, up to `programs` distinct ones.

    Only a few ahead: a compiled program holds memory (and memory maps) until it is released.
    """
    keys = set()
    for piece in plan[position:]:
        keys.add(program_key(runner, experiments, piece))
        if len(keys) > programs:
            break
        runner.prefetch(
            experiments[piece.experiment], piece.d, piece.chunk, config=grid.config_for(runner.config, piece.point)
        )


def run(
    plan: list[Piece],
    folder: store.RunFolder,
    runner: parallel.CellRunner,
    experiments: dict[str, Experiment],
    processes: distributed.Processes,
    programs: int,
    progress,
    after_piece: Callable[[], None],
) -> None:
    """Run the plan, writing every finished chunk as a part; `progress` is a tqdm bar (or alike)."""
    keys = [program_key(runner, experiments, piece) for piece in plan]
    for position, piece in enumerate(plan):
        compile_ahead(runner, experiments, plan, position, programs)
        experiment, config = experiments[piece.experiment], grid.config_for(runner.config, piece.point)
        progress.set_description(f"{piece.cell} d={piece.d}")
        for start, stop in piece.ranges:
            for chunk in runner.run_trials(experiment, piece.d, start, stop, piece.chunk, config):
                info = {
                    "process": processes.index,
                    "devices": runner.num_devices,
                    "chunk": chunk.chunk,
                    "run_s": round(chunk.run_s, 4),
                    "compile_s": round(chunk.compile_s, 3),
                    "compile_wait_s": round(chunk.compile_wait_s, 3),
                }
                folder.write_part(piece.cell, piece.d, chunk.start, chunk.stop, chunk.arrays, info)
                progress.update(chunk.stop - chunk.start)
        if keys[position] not in keys[position + 1 :]:
            runner.release(keys[position])
        after_piece()


def merge(
    request: Request, folder: store.RunFolder, experiments: dict[str, Experiment], config: Config, meta: dict
) -> None:
    """Every cell whose parts hold all its trials becomes a cell file, with its statistics; its parts go."""
    trials = request.trials
    points = {grid.label(point): point for point in request.points}
    done, parts = folder.done_cells(), folder.parts()
    for cell, d in parts:
        name, point_label = grid.split_cell_name(cell)
        if name not in request.experiments or point_label not in points or d not in request.dims:
            continue
        experiment, point = experiments[name], points[point_label]
        first = first_trial(folder, experiment, cell, d, done, trials)
        if first is None:  # merged by a run that stopped before removing the parts
            folder.remove_parts(cell, d)
            continue
        if store.gaps(parts[(cell, d)], trials, first):
            continue
        point_config = grid.config_for(config, point)
        arrays, infos = folder.read_parts(cell, d, trials, first)
        # An experiment may leave out columns an option turns off (relu's certified ones without --certify).
        columns = {column: arrays[column] for column in experiment.columns if column in arrays}
        count = trials - first
        rows = pd.DataFrame(
            {
                "experiment": name,
                **{field: [value] * count for field, value in point},  # grid columns: the cell's point
                "d": np.full(count, d, np.int32),
                "trial": np.arange(first, trials, dtype=np.int32),
                "seed": np.full(count, point_config.seed, np.int64),
                "nonfinite": stats.nonfinite_rows(columns),
                **columns,
            }
        )
        if first:  # extending: the cell file's rows first, unchanged
            rows = pd.concat([folder.read_cell(cell, d)[0], rows], ignore_index=True)
        size = experiment.size(d, point_config)
        aux = {key: value for key, value in arrays.items() if key.startswith("_")}
        folder.write_cell(cell, d, rows, {"size": size, **experiment.cell_stats(aux, d, size, point_config)})
        folder.remove_parts(cell, d)
        key = f"{cell}/d={d}"
        earlier_s = meta["stages"].get(key, {}).get("run_s", 0.0) if first else 0.0
        run_s = earlier_s + sum(info["run_s"] for info in infos)
        meta["stages"][key] = {
            "compile_s": max(info["compile_s"] for info in infos),
            "compile_wait_s": max(info["compile_wait_s"] for info in infos),
            "run_s": round(run_s, 3),
            "trials_per_s": round(trials / max(run_s, 1e-9), 1),
            "compiled_size": size,
            "chunk": sorted({info["chunk"] for info in infos}),
            "processes": sorted({info["process"] for info in infos}),
            **({"decoder_nodes_total": int(rows["decoder_nodes"].sum())} if "decoder_nodes" in rows else {}),
        }
        folder.write_meta(meta)
