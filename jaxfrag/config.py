"""The knobs that determine a sweep's numbers.

Contract: `Config` holds every option that can change a result row; anything
that cannot (chunk size, device count, progress bars, the output folder) lives
elsewhere. Two runs with equal `Config`, experiment and d produce identical rows.
"""

from __future__ import annotations

from typing import NamedTuple

# Default network depths (number of weight layers) of the constructed networks:
# Theorem 1 is about a 2-layer net, Theorem 4 about deeper ones, and section 6
# trains Theorem 6's model with one hidden layer.
DEFAULT_DEPTH = {"thm1": 2, "thm4": 3, "thm6": 2}


class Config(NamedTuple):
    seed: int = 0
    trials: int = 500
    x64: bool = False
    depth: int | None = None  # weight layers of the constructed networks; None: DEFAULT_DEPTH
    width_mult: int = 2  # hidden width = width_mult * d (an integer, so it is exact on device too)
    generator_depth: int = 2  # thm4: t in x = G_t ... G_1 v
    scale_columns: float = 1.0  # thm6: factor on the first d-1 columns of A (section 6 uses 5)
    brute_force_max_d: int = 12  # thm6: enumerate all 2^(d-1) candidates up to this d
    max_nodes: int = 1 << 26  # thm6: node cap per sphere-decoder search (then opt_exact is False)

    def depth_for(self, experiment: str) -> int:
        return self.depth if self.depth is not None else DEFAULT_DEPTH[experiment]

    def hidden_widths(self, experiment: str, d):
        """Widths of the hidden layers for dimension d (a Python or a traced int)."""
        return (self.width_mult * d,) * (self.depth_for(experiment) - 1)
