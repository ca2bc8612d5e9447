"""XLA options for the programs whose running time outweighs their compile: the CNN's.

Contract: `runtime_bound()` returns the `compiler_options` for such a program. Where XLA_FLAGS
lowers XLA's optimisation level below 1 or turns its fusion emitters off, it restores both for
these programs; where XLA_FLAGS does neither (a user's run, by default), it returns {} and XLA's
own defaults apply, unchanged.

Why: lowering the level and turning the fusion emitters off compiles a program in about half
the time (the test suite does both, since most of its hundreds of programs run for a second or
less), but a convolution network's training and attacks then run up to twice as long
(`benchmarks/suite_profile.py`, docs/performance.md). Imports nothing from JAX.
"""

from __future__ import annotations

import os
import re


def runtime_bound() -> dict:
    """compiler_options for a long-running program: at least level 1, the fusion emitters on."""
    flags = os.environ.get("XLA_FLAGS", "")
    options = {}
    level = re.findall(r"--xla_backend_optimization_level=(\d+)", flags)
    if level and int(level[-1]) < 1:
        options["xla_backend_optimization_level"] = 1
    emitters = re.findall(r"--xla_cpu_use_fusion_emitters=(\w+)", flags)
    if emitters and emitters[-1].lower() in ("false", "0"):
        options["xla_cpu_use_fusion_emitters"] = True
    return options
