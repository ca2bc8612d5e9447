"""XLA options for the programs whose running time outweighs their compile: the CNN's.

Contract: `flag(name)` is a flag's setting in XLA_FLAGS (the last one, or None). `runtime_bound()`
returns the `compiler_options` for a long-running program: where XLA_FLAGS lowers XLA's
optimisation level below 1 or turns its fusion emitters off, it restores both for that program;
where XLA_FLAGS does neither (a user's run, by default), it returns {} and XLA's own defaults
apply, unchanged.

Why: level 0 without the fusion emitters compiles the full minimal-L2 attack in 3.8 s instead of
6.0 (`benchmarks/compile_flags.py`), and the test suite sets both, since most of its hundreds of
programs run for a second or less; but a convolution network's training and attacks then run
longer (docs/performance.md). Imports nothing from JAX.
"""

from __future__ import annotations

import os
import re


def flag(name: str) -> str | None:
    """The value XLA_FLAGS gives `name` (its last setting, the one XLA keeps), or None where it sets none."""
    values = re.findall(rf"--{name}=(\S+)", os.environ.get("XLA_FLAGS", ""))
    return values[-1] if values else None


def runtime_bound() -> dict:
    """compiler_options for a long-running program: at least level 1, the fusion emitters on."""
    options = {}
    level = flag("xla_backend_optimization_level")
    if level is not None and int(level) < 1:
        options["xla_backend_optimization_level"] = 1
    if (flag("xla_cpu_use_fusion_emitters") or "").lower() in ("false", "0"):
        options["xla_cpu_use_fusion_emitters"] = True
    return options
