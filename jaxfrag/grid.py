"""Grids over options: cells beyond (experiment, d), for ablations with common random numbers.

Contract:
* `parse(items, parser, given)` reads `--grid` items "option=v1,v2,..." into a `Grid`: the
  axes in the order given, each a `Config` field with values parsed and checked by that option's
  own argparse type and choices. It raises `GridError` (one line, for the user) on an unknown
  option, a value the option refuses, a repeated axis or value, d or the experiments as an axis,
  an option that does not change results, or an option also given as a flag (`given`).
* `Grid.points()` is the Cartesian product, the first axis varying slowest. A point is a tuple
  of (field, value) pairs; `config_for(config, point)` is the run's config at that point.
* A point is a cell coordinate like d and never part of a trial's key: every point sees the same
  data matrix, labels and initialisation key for the same (seed, experiment, d, trial), so
  differences between points are paired. A point equal to the defaults gives a run without
  --grid's rows bit for bit.
* `label(point)` names the point's cells on disk and in tables: "optimizer=sgd,width=64" ("" for
  the empty point of a run without a grid); `cell_name(experiment, point)` is the store's name.
* `check_experiments(grid, experiments)` refuses an axis that some experiment of the run ignores
  (its cells would repeat each other).
"""

from __future__ import annotations

import argparse
import itertools
from typing import NamedTuple

from jaxfrag.config import EXPERIMENTS, Config

# Every experiment's rows depend on these; the others are in its `config.EXPERIMENTS` row.
COMMON_FIELDS = ("seed", "x64")
# Options that change results but cannot be axes, and why.
NOT_AXES = {
    "trials": "--trials is every point's sample size (points are paired trial by trial); give it once",
    "x64": "--x64 sets JAX's precision for the whole process; run float32 and float64 as two sweeps",
}
CELL_SEPARATOR = "~"  # between the experiment and the point's label in a cell's name on disk
_TRUE, _FALSE = ("true", "on", "yes", "1"), ("false", "off", "no", "0")

Point = tuple[tuple[str, object], ...]


class GridError(Exception):
    """A --grid that cannot run; the message is one line for the user."""


class Axis(NamedTuple):
    option: str  # the flag's name without dashes, as written in --grid: "hidden-layers"
    field: str  # the Config field: "hidden_layers"
    values: tuple


class Grid(NamedTuple):
    axes: tuple[Axis, ...] = ()

    def points(self) -> list[Point]:
        """Every combination of the axes' values, the first axis varying slowest; [()] without axes."""
        return [
            tuple((axis.field, value) for axis, value in zip(self.axes, values, strict=True))
            for values in itertools.product(*(axis.values for axis in self.axes))
        ]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(axis.field for axis in self.axes)

    def describe(self) -> dict:
        """JSON-able: {option: [values]} in axis order (meta.json and the resume fingerprint)."""
        return {axis.option: list(axis.values) for axis in self.axes}


def format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def label(point: Point) -> str:
    """'optimizer=sgd,width=64': the point as --grid writes it ('' for the empty point)."""
    return ",".join(f"{field.replace('_', '-')}={format_value(value)}" for field, value in point)


def cell_name(experiment: str, point: Point) -> str:
    """The store's name for the experiment's cells at a point: 'linear' or 'linear~optimizer=sgd'."""
    return f"{experiment}{CELL_SEPARATOR}{label(point)}" if point else experiment


def split_cell_name(name: str) -> tuple[str, str]:
    """(experiment, point label) of a store cell name."""
    experiment, _, point_label = name.partition(CELL_SEPARATOR)
    return experiment, point_label


def config_for(config: Config, point: Point) -> Config:
    return config._replace(**dict(point))


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        string[2:]: action
        for action in parser._actions  # argparse keeps no public list of its options
        for string in action.option_strings
        if string.startswith("--")
    }


def _parse_value(option: str, action: argparse.Action, text: str):
    if isinstance(action, argparse._StoreTrueAction):
        lowered = text.lower()
        if lowered in _TRUE + _FALSE:
            return lowered in _TRUE
        raise GridError(f"--grid {option}: {text!r} is not true or false")
    try:
        value = action.type(text) if action.type else text
    except argparse.ArgumentTypeError as error:
        raise GridError(f"--grid {option}: {error}") from None
    except ValueError:
        raise GridError(f"--grid {option}: invalid value {text!r}") from None
    if action.choices is not None and value not in action.choices:
        raise GridError(f"--grid {option}: {text!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def parse(items: list[str] | None, parser: argparse.ArgumentParser, given: set[str]) -> Grid:
    """The Grid of `--grid` items; `given` holds the options written as flags on the command line."""
    if not items:
        return Grid()
    options, axes = _options(parser), []
    for item in items:
        option, equals, text = item.partition("=")
        option = option.strip().removeprefix("--")
        if not equals or not option or not text.strip():
            raise GridError(f"--grid {item!r}: expected option=value1,value2,... (for example width=64,512)")
        if option in ("d", "experiment"):
            raise GridError(f"--grid {option}: {option} is already the sweep's own axis; give it with --{option}")
        action = options.get(option)
        if action is None:
            raise GridError(f"--grid {option}: unknown option; a grid axis is one of the sweep's options")
        if action.dest in NOT_AXES:
            raise GridError(f"--grid {option}: {NOT_AXES[action.dest]}")
        if action.dest not in Config._fields:
            raise GridError(f"--grid {option}: --{option} does not change results, so it cannot be a grid axis")
        if option in given:
            raise GridError(f"--grid {option}: --{option} is also given as an option; give its values once")
        if any(axis.field == action.dest for axis in axes):
            raise GridError(f"--grid {option}: the axis is given twice")
        values = tuple(_parse_value(option, action, part.strip()) for part in text.split(","))
        if len(set(values)) != len(values):
            raise GridError(f"--grid {option}: a value is repeated")
        axes.append(Axis(option, action.dest, values))
    return Grid(tuple(axes))


def check_experiments(grid: Grid, experiments: list[str]) -> None:
    """Refuse an axis that some experiment of the run does not use."""
    for axis in grid.axes:
        if axis.field in COMMON_FIELDS:
            continue
        ignoring = [name for name in experiments if axis.field not in EXPERIMENTS[name].fields]
        if ignoring:
            raise GridError(
                f"--grid {axis.option}: {', '.join(ignoring)} does not use --{axis.option}; "
                "run it without that axis, or run the experiments that use it"
            )
