"""The knobs that determine a sweep's numbers.

Contract: `Config` holds every option that can change a result row; anything
that cannot (chunk size, device count, progress bars, the output folder) lives
elsewhere. Two runs with equal `Config`, experiment and d produce identical rows.
`EXPERIMENTS` is the one table of the sweep's experiments (name, key id, module,
trained or not, the Config fields its rows depend on, default depth and column
factor): the parsers, the grid, the trial keys and the registry all read it, and
it imports nothing, so --help and bad input stay free of JAX.
"""

from __future__ import annotations

from typing import NamedTuple


class ExperimentSpec(NamedTuple):
    """One row of the sweep's experiment table: what the parsers, the grid, the keys and the registry read."""

    name: str
    id: int  # folded into every trial's key: stable, so adding an experiment never changes another's numbers
    module: str  # the module whose EXPERIMENT it is (`jaxfrag.experiments.registry` imports it by this name)
    trained: bool  # trains networks: asked for by name, fewer trials by default, d <= MAX_TRAINED_D
    fields: tuple[str, ...]  # the Config fields its rows depend on besides seed and x64 (the grid's axes)
    default_depth: int | None = None  # weight layers of its constructed networks when --depth is not given
    default_scale: float | None = None  # factor on A's first d-1 columns when --scale-columns is not given


# Section 6's trained networks depend on these besides the data model's options.
_TRAINED_FIELDS = (
    "scale_columns",
    "brute_force_max_d",
    "max_nodes",
    "width",
    "hidden_layers",
    "bias",
    "lr",
    "batch_size",
    "epochs",
    "init",
    "optimizer",
    "max_points",
    "protocol",
    "max_epochs",
    "attack",
)
# The sweep's experiments, in report order. A new experiment is a module under jaxfrag/experiments
# exposing EXPERIMENT, plus a row here.
# Default depths: Theorem 1 is about a 2-layer net, Theorem 4 about deeper ones, and section 6 trains
# Theorem 6's model with one hidden layer. Default column factors: Theorem 6 as stated (1) and the
# protocol of section 6 (5), which leaves the last column of R, hence phi, unchanged; the relu
# experiment (section 6's "Nonlinear networks") follows section 6's protocol too.
_ROWS = (
    ExperimentSpec("thm1", 1, "jaxfrag.experiments.thm1", False, ("depth", "width_mult"), default_depth=2),
    ExperimentSpec(
        "thm4", 4, "jaxfrag.experiments.thm4", False, ("depth", "width_mult", "generator_depth"), default_depth=3
    ),
    ExperimentSpec(
        "thm6",
        6,
        "jaxfrag.experiments.thm6",
        False,
        ("depth", "width_mult", "scale_columns", "brute_force_max_d", "max_nodes"),
        default_depth=2,
        default_scale=1.0,
    ),
    ExperimentSpec("linear", 100, "jaxfrag.experiments.linear", True, _TRAINED_FIELDS, default_scale=5.0),
    ExperimentSpec(
        "relu", 200, "jaxfrag.experiments.relu", True, (*_TRAINED_FIELDS, "pair", "certify"), default_scale=5.0
    ),
)
EXPERIMENTS: dict[str, ExperimentSpec] = {spec.name: spec for spec in _ROWS}


OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
INITS = ("torch", "glorot", "lecun")
# How long a trained network trains: the paper's fixed `epochs`, or at least `epochs` and then on
# until every training point is classified correctly, `max_epochs` in all at most.
PROTOCOLS = ("epochs", "until-fit")
# The minimal-L2 attack's presets (`jaxfrag.attacks.PRESETS`), as `--attack` names them: full, what
# the sweep's docs report; strong, full and eight ALMA lanes, what the MNIST study's docs report;
# walk, DeepFool's lane and a 300-step walk; quick, one DeepFool lane brought to the boundary, a
# looser upper bound whose program compiles in well under half the time (for trying options out,
# and the tests of the run plumbing).
ATTACKS = ("full", "strong", "walk", "quick")
# The relu experiment's certified lower bound (`jaxfrag.certify.METHODS`), or off: interval bounds,
# CROWN, CROWN with optimised slopes, or that tightened by branch and bound (the tightest).
CERTIFY = ("off", "ibp", "crown", "alpha", "bab")
# Where the relu experiment's inputs b1, b2 come from: a training pair (both among the training
# points, as in the paper's section 6) or a fresh one (both held out of training). While 2^d <=
# max_points, a training pair is one of all 2^d training points and a fresh pair is held out of them.
PAIRS = ("train", "fresh")
# The trained experiments' largest d: a training point's index is two uint32 words (`jaxfrag.data`).
MAX_TRAINED_D = 64


class Config(NamedTuple):
    seed: int = 0
    trials: int = 500
    x64: bool = False
    depth: int | None = None  # weight layers of the constructed networks; None: the experiment's default
    width_mult: int = 2  # hidden width = width_mult * d (an integer, so it is exact on device too)
    generator_depth: int = 2  # thm4: t in x = G_t ... G_1 v
    scale_columns: float | None = None  # factor on A's first d-1 columns; None: the experiment's default
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
    attack: str = "full"  # one of ATTACKS: linear's robustness_attack, relu's delta_b1 and delta_b2
    pair: str = "train"  # one of PAIRS: relu's b1, b2 are training points, or held out of training
    certify: str = "off"  # one of CERTIFY: relu's certified lower bound on the nets' robustness at b1, b2

    def depth_for(self, experiment: str) -> int:
        return self.depth if self.depth is not None else EXPERIMENTS[experiment].default_depth

    def scale_for(self, experiment: str) -> float:
        """The column factor: --scale-columns, else the experiment's default, else 1 (no factor)."""
        if self.scale_columns is not None:
            return self.scale_columns
        default = EXPERIMENTS[experiment].default_scale
        return 1.0 if default is None else default

    def hidden_widths(self, experiment: str, d):
        """Widths of the hidden layers for dimension d (a Python or a traced int)."""
        return (self.width_mult * d,) * (self.depth_for(experiment) - 1)
