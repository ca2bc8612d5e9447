"""Results on disk: one folder per sweep, written so that nothing is ever half-written.

Layout of a run folder (the contract notebooks and users rely on):
  meta.json          the config, environment and wall times (written first)
  cells/<experiment>_d<d>.parquet
                     one finished (experiment, d) cell: its rows, and its cell
                     statistics in the file's metadata; present means complete
  cells/parts/<experiment>_d<d>_<start>-<stop>.npz
                     finished trials start..stop-1 of a cell not yet merged
                     (one per compiled chunk, from any process); merged into
                     the cell file and removed once they cover every trial
  results.parquet    every finished cell's rows: experiment, d, trial, seed,
                     nonfinite, then the metric columns
  summary.csv        one row per (experiment, d)
  figures/           PNGs

Every file is written under a temporary name in its own folder, flushed and
renamed over the target, so a killed run leaves complete files or none.
`RunFolder.open` refuses folders it could damage: another run's folder without
--resume, a non-empty folder that is not a run, or a run with another config.
A resume may grow the config entries its entry point names growable (`open(...,
growable)`; the sweep's trials per cell, the MNIST study's 7s per network, the
ImageNet study's pairs): a count may rise (or become None, "all"), a list may
gain entries after its old ones; nothing may shrink. The cells then hold fewer
trials than asked, and a run extends them (for the sweep, a cell file plus parts
for its new trials, merged into one file).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

META = "meta.json"
CELLS = "cells"
PARTS = "parts"  # inside cells/
_PART_INFO = "__part__"  # the npz entry holding a part's JSON description
RESULTS = "results.parquet"
SUMMARY = "summary.csv"
FIGURES = "figures"
_TEMP_PREFIX = ".tmp-"
_CELL_META_KEY = b"jaxfrag.cell"

KEY_COLUMNS = ["experiment", "d", "trial", "seed", "nonfinite"]
GROWABLE = ("trials",)  # the sweep's: config counts a --resume may raise, never lower: the run's cells are extended
_UMASK = os.umask(0)
os.umask(_UMASK)


class RunFolderError(Exception):
    """A folder that cannot be used for this run; the message is meant for the user."""


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path` atomically."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX + path.name + ".", dir=path.parent)
    os.close(fd)
    temp = Path(temp)
    os.chmod(temp, 0o666 & ~_UMASK)  # mkstemp makes private files; results are ordinary files
    try:
        yield temp
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as temp:
        temp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _canonical(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def _is_scratch(entry: Path) -> bool:
    return entry.name.startswith(_TEMP_PREFIX)


def environment(*packages: str) -> dict:
    """meta.json's environment: Python, the machine, and each named package's version."""

    return {
        "python": platform.python_version(),
        **{name: metadata.version(name) for name in packages},
        "machine": platform.machine(),
        "processor": platform.processor(),
    }


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def open(cls, path: str | Path, config: dict, resume: bool, growable: tuple[str, ...] = GROWABLE) -> RunFolder:
        """Validate `path` for a run with `config` and make it ready; raises RunFolderError."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunFolderError(f"--out {path} exists and is not a folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / CELLS).mkdir(exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=_TEMP_PREFIX + "probe.", dir=path / CELLS)
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            raise RunFolderError(f"--out {path} is not writable ({error.strerror or error})") from None
        folder = cls(path)
        folder._remove_scratch()
        entries = [e for e in path.iterdir() if e.name != CELLS]
        meta = folder.read_meta()
        if meta is None:
            if entries or any((path / CELLS).iterdir()):
                raise RunFolderError(f"--out {path} is not empty and holds no jaxfrag run; choose an empty folder")
        elif not resume:
            raise RunFolderError(
                f"--out {path} already holds a run; pass --resume to continue it, or choose another folder"
            )
        elif folder.done_cells() or folder.parts():
            earlier = meta.get("config", {})
            fixed = lambda c: {k: v for k, v in c.items() if k not in growable}  # noqa: E731
            if _canonical(fixed(earlier)) != _canonical(fixed(config)):
                changed = sorted(k for k in set(config) | set(earlier) if config.get(k) != earlier.get(k))
                raise RunFolderError(
                    f"--resume: {path} was written with a different config ({', '.join(changed)} differ); "
                    "rerun with the same options or choose another folder"
                )
            for key in growable:
                if key in earlier and key in config and not grows(earlier[key], config[key]):
                    held = len(earlier[key]) if isinstance(earlier[key], list) else earlier[key]
                    raise RunFolderError(
                        f"--resume: {path} holds {held} {key.replace('_', ' ')}; they may grow on --resume "
                        f"(the run is extended), not shrink or change"
                    )
        return folder

    def _remove_scratch(self) -> None:
        for folder in (self.path, self.path / CELLS, self.path / CELLS / PARTS):
            for entry in folder.iterdir() if folder.is_dir() else ():
                if _is_scratch(entry) and entry.is_file():
                    entry.unlink(missing_ok=True)

    # --- meta -------------------------------------------------------------------------------
    def read_meta(self) -> dict | None:
        try:
            return json.loads((self.path / META).read_text())
        except FileNotFoundError:
            return None

    def write_meta(self, meta: dict) -> None:
        atomic_write_text(self.path / META, json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")

    # --- cells ------------------------------------------------------------------------------
    def cell_path(self, experiment: str, d: int) -> Path:
        return self.path / CELLS / f"{experiment}_d{d:04d}.parquet"

    def done_cells(self) -> set[tuple[str, int]]:
        done = set()
        for entry in (self.path / CELLS).glob("*.parquet"):
            experiment, _, d = entry.stem.rpartition("_d")
            done.add((experiment, int(d)))
        return done

    def write_cell(self, experiment: str, d: int, rows: pd.DataFrame, stats: dict) -> None:
        table = pa.Table.from_pandas(rows, preserve_index=False)
        metadata = dict(table.schema.metadata or {})
        metadata[_CELL_META_KEY] = json.dumps(stats, sort_keys=True).encode()
        table = table.replace_schema_metadata(metadata)
        with atomic_path(self.cell_path(experiment, d)) as temp:
            pq.write_table(table, temp)

    # --- parts: finished trial ranges of unfinished cells ----------------------------------
    def part_path(self, experiment: str, d: int, start: int, stop: int) -> Path:
        return self.path / CELLS / PARTS / f"{experiment}_d{d:04d}_{start:09d}-{stop:09d}.npz"

    def parts(self) -> dict[tuple[str, int], list[tuple[int, int]]]:
        """Finished trial ranges [start, stop) per unmerged cell, sorted."""
        found: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for entry in (self.path / CELLS / PARTS).glob("*.npz") if (self.path / CELLS / PARTS).is_dir() else ():
            cell, _, span = entry.stem.rpartition("_")
            experiment, _, d = cell.rpartition("_d")
            start, _, stop = span.partition("-")
            found.setdefault((experiment, int(d)), []).append((int(start), int(stop)))
        return {cell: sorted(ranges) for cell, ranges in found.items()}

    def missing(self, experiment: str, d: int, trials: int, first: int = 0) -> list[tuple[int, int]]:
        """The trial ranges from `first` to `trials` - 1 that neither a full cell file nor its parts hold."""
        if (experiment, d) in self.done_cells() and self.cell_trials(experiment, d) >= trials:
            return []
        return gaps(self.parts().get((experiment, d), []), trials, first)

    def cell_trials(self, experiment: str, d: int) -> int:
        """How many trials a finished cell's file holds (from its footer, without reading the rows)."""
        return pq.read_metadata(self.cell_path(experiment, d)).num_rows

    def read_cell(self, experiment: str, d: int) -> tuple[pd.DataFrame, dict]:
        """A finished cell's rows and statistics."""
        table = pq.read_table(self.cell_path(experiment, d))
        return table.to_pandas(), _cell_stats(table.schema)

    def write_part(self, experiment: str, d: int, start: int, stop: int, arrays: dict, info: dict) -> None:
        """Trials start..stop-1 of a cell: its arrays (one entry per trial) and a JSON-able description."""
        (self.path / CELLS / PARTS).mkdir(exist_ok=True)
        with atomic_path(self.part_path(experiment, d, start, stop)) as temp, open(temp, "wb") as handle:
            np.savez(handle, **arrays, **{_PART_INFO: np.asarray(json.dumps(info, sort_keys=True))})

    def read_parts(
        self, experiment: str, d: int, trials: int, first: int = 0
    ) -> tuple[dict[str, np.ndarray], list[dict]]:
        """A cell's parts joined in trial order, and their descriptions; raises unless they hold every
        trial from `first` to `trials` - 1 (first > 0: the new trials of a cell file being extended)."""
        ranges = [span for span in self.parts().get((experiment, d), []) if span[0] >= first]
        position = first
        for start, stop in ranges:
            if start != position:
                raise ValueError(f"{experiment} d={d}: parts do not tile the trials at {position}")
            position = stop
        if position != trials:
            raise ValueError(f"{experiment} d={d}: parts hold {position - first} of {trials - first} trials")
        pieces, infos = [], []
        for start, stop in ranges:
            with np.load(self.part_path(experiment, d, start, stop), allow_pickle=False) as npz:
                infos.append(json.loads(str(npz[_PART_INFO])))
                pieces.append({name: npz[name] for name in npz.files if name != _PART_INFO})
        return {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}, infos

    def remove_parts(self, experiment: str, d: int) -> None:
        for start, stop in self.parts().get((experiment, d), []):
            self.part_path(experiment, d, start, stop).unlink(missing_ok=True)

    def tidy(self) -> None:
        """Remove the parts folder once nothing is left in it (only when no process can still write a part)."""
        with contextlib.suppress(OSError):
            (self.path / CELLS / PARTS).rmdir()

    def read_cells(self) -> tuple[pd.DataFrame, dict[tuple[str, int], dict]]:
        """All finished cells' rows (in experiment, d order) and their cell statistics."""
        frames, stats = [], {}
        for experiment, d in sorted(self.done_cells()):
            rows, stats[(experiment, d)] = self.read_cell(experiment, d)
            frames.append(rows)
        if not frames:
            return pd.DataFrame(columns=KEY_COLUMNS), stats
        return pd.concat(frames, ignore_index=True), stats

    def read_cell_stats(self) -> dict[tuple[str, int], dict]:
        """Every finished cell's statistics, read from the files' metadata alone (no rows)."""
        return {cell: _cell_stats(pq.read_schema(self.cell_path(*cell))) for cell in sorted(self.done_cells())}

    # --- tables and figures -----------------------------------------------------------------
    def write_results(self, rows: pd.DataFrame) -> None:
        buffer = io.BytesIO()
        rows.to_parquet(buffer, index=False)
        atomic_write_bytes(self.path / RESULTS, buffer.getvalue())

    def write_summary(self, summary: pd.DataFrame) -> None:
        atomic_write_text(self.path / SUMMARY, summary.to_csv(index=False))

    def figure_path(self, name: str) -> Path:
        """figures/<name> (name may hold a subfolder, e.g. a grid point's), its folder made."""
        path = self.path / FIGURES / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def grows(earlier, now) -> bool:
    """Whether a growable config entry may go from `earlier` to `now` on --resume: a count that rises
    (or becomes None, "all"), a list that keeps its entries and adds some after them, or no change."""
    if earlier == now:
        return True
    if isinstance(earlier, list):
        return isinstance(now, list) and now[: len(earlier)] == earlier
    if isinstance(earlier, int):
        return now is None or (isinstance(now, int) and now > earlier)
    return False


def gaps(ranges: list[tuple[int, int]], trials: int, first: int = 0) -> list[tuple[int, int]]:
    """The ranges of first..trials-1 that the sorted finished `ranges` leave out (those before `first` ignored)."""
    missing, position = [], first
    for start, stop in (span for span in ranges if span[0] >= first):
        if start > position:
            missing.append((position, start))
        position = max(position, stop)
    return missing + ([(position, trials)] if position < trials else [])


def _cell_stats(schema) -> dict:
    return json.loads((schema.metadata or {}).get(_CELL_META_KEY, b"{}"))


def load(out_dir: str | Path) -> pd.DataFrame:
    """The per-trial table of a sweep's output folder, as a pandas DataFrame."""
    path = Path(out_dir)
    if (path / RESULTS).exists():
        return pd.read_parquet(path / RESULTS)
    if (path / CELLS).is_dir():
        return RunFolder(path).read_cells()[0]
    raise FileNotFoundError(f"{path} holds no jaxfrag results")
