"""Shared by the benchmark scripts: the machine's description and robust timing."""

from __future__ import annotations

import json
import os
import platform
import sys
import timeit
from datetime import datetime
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


def write_result(out_dir: str, name: str, result: dict, suffix: str = "") -> Path:
    """Write a benchmark's JSON as <out_dir>/<name>-<local time><suffix>.json; prints and returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path
