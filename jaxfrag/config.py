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
# Factor on the first d-1 columns of A: Theorem 6 as stated (1) and the protocol
# of section 6 (5), which leaves the last column of R, hence phi, unchanged.
# The relu experiment (section 6's "Nonlinear networks") follows section 6's protocol too.
DEFAULT_SCALE_COLUMNS = {"thm6": 1.0, "linear": 5.0, "relu": 5.0}
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
INITS = ("torch", "glorot", "lecun")
# How long a trained network trains: the paper's fixed `epochs`, or at least `epochs` and then on
# until every training point is classified correctly, `max_epochs` in all at most.
PROTOCOLS = ("epochs", "until-fit")
# The trained experiments' largest d: a training point's index is two uint32 words (`jaxfrag.data`).
MAX_TRAINED_D = 64


class Config(NamedTuple):
    seed: int = 0
    trials: int = 500
    x64: bool = False
    depth: int | None = None  # weight layers of the constructed networks; None: DEFAULT_DEPTH
    width_mult: int = 2  # hidden width = width_mult * d (an integer, so it is exact on device too)
    generator_depth: int = 2  # thm4: t in x = G_t ... G_1 v
    scale_columns: float | None = None  # thm6/linear/relu: factor on A's first d-1 columns; None: DEFAULT_SCALE_COLUMNS
    brute_force_max_d: int = 12  # thm6: enumerate all 2^(d-1) candidates up to this d
    max_nodes: int = 1 << 26  # thm6/linear/relu: node cap per sphere-decoder search (then opt_exact is False)
    # linear and relu (section 6): trained d -> width -> ... -> 2 networks, identity or ReLU. The paper
    # gives the width, Adam, cross-entropy and 20 epochs; lr, batch size and init are our choice.
    width: int = 3000
    hidden_layers: int = 1
    bias: bool = False
    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 20
    init: str = "torch"  # one of INITS; torch: U(+-1/sqrt(fan_in)), PyTorch's nn.Linear default
    optimizer: str = "adam"  # one of OPTIMIZERS, with PyTorch's default hyperparameters
    max_points: int = 65536  # train on all 2^d points while 2^d <= this, else on this many sampled
    protocol: str = "epochs"  # one of PROTOCOLS
    max_epochs: int = 200  # until-fit: the cap on epochs (epochs_run records what each net used)

    def depth_for(self, experiment: str) -> int:
        return self.depth if self.depth is not None else DEFAULT_DEPTH[experiment]

    def scale_for(self, experiment: str) -> float:
        return self.scale_columns if self.scale_columns is not None else DEFAULT_SCALE_COLUMNS[experiment]

    def hidden_widths(self, experiment: str, d):
        """Widths of the hidden layers for dimension d (a Python or a traced int)."""
        return (self.width_mult * d,) * (self.depth_for(experiment) - 1)
