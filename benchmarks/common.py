"""Shared by the benchmark scripts: the machine's description and robust timing."""

from __future__ import annotations

import json
import os
import platform
import sys
import timeit
from datetime import UTC, datetime
from pathlib import Path

import jax
import numpy as np


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "processor": model,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
        "load_average_at_start": os.getloadavg(),
    }


def median_time(fn, repeat: int) -> tuple[float, float]:
    times = timeit.repeat(fn, number=1, repeat=repeat)
    return float(np.median(times)), float(np.min(times))


def write_result(out_dir: str, name: str, info: dict, body: dict, quick: bool, suffix: str = "") -> Path:
    """Write a benchmark's JSON (name, UTC time, machine `info`, `body`, quick) as
    <out_dir>/<name>-<local time>[-quick]<suffix>.json; prints and returns the path."""
    result = {
        "benchmark": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        **body,
        "quick": quick,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / f"{name}-{stamp}{'-quick' if quick else ''}{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path
