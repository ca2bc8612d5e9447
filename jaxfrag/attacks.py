"""Adversarial perturbations of one input, each checked by applying it.

Contract: functions take a model `f(x) -> logits` for ONE input, the input x
and its label, and return plain arrays; vmap them over trials.

* `linear_min_perturbation` -- the exact smallest L2 perturbation that changes
  the argmax of an AFFINE model: the label's decision region is the polyhedron
  {f_label >= f_j for all j}, and the distance from an interior point to the
  boundary of a polyhedron is the smallest distance to one of its facet
  hyperplanes, (f_label - f_j) / ||grad f_label - grad f_j||. Gradients come from
  the model itself (jax.jacfwd), so this is computed from the network and not
  from a formula for its weights.
* `changes_label` -- does adding a perturbation change the argmax?
* `is_minimal` -- the verification used for exact minimal perturbations: scaled
  by (1 + s) it changes the label, scaled by (1 - s) it does not, with s = 1e-4
  or the input's floating-point resolution if coarser (`resolvable_step`).

Gradient attacks on ANY differentiable model (no closed form needed), each
returning an `AttackResult` whose `success` comes from applying the
perturbation: f(x + delta)'s winning class is not `label` (untargeted) or is
`target` (targeted), by more than rounding (`CROSSING_ULPS`), so the flip holds
wherever the model is evaluated.
* `minimal_l2` -- the shortest of `restarts` lanes. Lane 0 is DeepFool's
  linearised steps (Moosavi-Dezfooli et al. 2016) from x; where they stall
  uncrossed, DeepFool from `rescue_starts` random points at log-uniform
  distances rescues it. The other lanes restart DeepFool from random points
  at several multiples of lane 0's distance, and one more lane is DDN's walk
  from x (Rony et al. 2019); optionally, more lanes are ALMA's (Rony et al.
  2021) from x and from random points (`alma_lanes`). Each lane's crossing is bisected back to the
  boundary along its ray (on an affine model that is the exact minimal
  perturbation, times 1 + what rounding needs), then shrunk by boundary
  projections (SuperDeepFool-style), each candidate bisected and verified
  before it is kept, and walked a few of FMN's annealed L2 steps (Pintor et al.
  2021) before the lanes are compared. Last, the walk continues from the
  shortest lane and the shorter of the two is kept.
* `minimal_l2_best_target` -- the shortest of the untargeted attack and the
  targeted ones towards every other class (one lane each by default), for
  multi-class models whose nearest boundary is not the one DeepFool heads for.
* `fgsm_bisection` -- delta = eps sign(grad of the cross-entropy), with the
  smallest eps that changes the label found by bisection.
* `fgsm_scan` -- the same step, untargeted or targeted, with eps scanned on a
  grid and bisected inside the first step that reaches the goal (the paper's
  MNIST Q: along eps the label can pass through other classes first).
* `least_likely` -- Kurakin et al.'s iterative least-likely-class attack, L-inf
  ball of radius eps, step size `step` (the paper's ImageNet Q).
Hand-written because the attack libraries (Foolbox 3) run JAX models one
eager operation at a time; these compile and vmap over trials.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxfrag.compression import margin_gradient

Model = Callable[[jax.Array], jax.Array]


class MinimalPerturbation(NamedTuple):
    norm: jax.Array  # (), its L2 norm (the model's robustness at x)
    delta: jax.Array  # (d,), the perturbation that reaches the nearest decision boundary
    target: jax.Array  # int32 (), the class on the other side of that boundary


def linear_min_perturbation(
    model: Model, x: jax.Array, label: int | jax.Array, classes: jax.Array | None = None
) -> MinimalPerturbation:
    """Exact minimal L2 perturbation of an affine model at x.

    `classes` (bool, one per logit) restricts the competing classes; logits
    outside it do not exist for the classifier (padding, see `jaxfrag.padding`).
    """
    logits = model(x)
    jacobian = jax.jacfwd(model)(x)  # (k, d)
    margins = logits[label] - logits
    directions = jacobian[label] - jacobian  # gradient of f_label - f_j
    norms = jnp.linalg.norm(directions, axis=1)
    distances = margins / jnp.where(norms > 0, norms, 1)
    excluded = (jnp.arange(logits.shape[0]) == label) | (norms == 0)
    if classes is not None:
        excluded = excluded | ~classes
    distances = jnp.where(excluded, jnp.inf, distances)
    target = jnp.argmin(distances)
    delta = -margins[target] * directions[target] / norms[target] ** 2
    return MinimalPerturbation(distances[target], delta, target.astype(jnp.int32))


def predict(model: Model, x: jax.Array, classes: jax.Array | None = None) -> jax.Array:
    """The argmax class, over `classes` only when given."""
    logits = model(x)
    if classes is not None:
        logits = jnp.where(classes, logits, -jnp.inf)
    return jnp.argmax(logits)


def changes_label(
    model: Model, x: jax.Array, delta: jax.Array, label: int | jax.Array, classes: jax.Array | None = None
) -> jax.Array:
    """True when argmax f(x + delta) is not `label`."""
    return predict(model, x + delta, classes) != label


def resolvable_step(x: jax.Array, delta: jax.Array, rel: float = 1e-4) -> jax.Array:
    """max(rel, 32 eps ||x|| / ||delta||): the smallest relative change of delta that x + delta resolves.

    In float32 a perturbation 1e-4 of a tiny delta can vanish when added to a
    large x (thm4's networks have robustness ~1e-4 ||x||); below this step the
    check would test rounding, not the attack. In float64 it is 1e-4 throughout.
    """
    eps = jnp.finfo(x.dtype).eps
    return jnp.maximum(rel, 32 * eps * jnp.linalg.norm(x) / jnp.linalg.norm(delta))


def is_minimal(
    model: Model,
    x: jax.Array,
    delta: jax.Array,
    label: int | jax.Array,
    classes: jax.Array | None = None,
    rel: float = 1e-4,
) -> jax.Array:
    """True when (1 + s) delta changes the label and (1 - s) delta does not, s = resolvable_step."""
    step = resolvable_step(x, delta, rel)
    return changes_label(model, x, (1 + step) * delta, label, classes) & ~changes_label(
        model, x, (1 - step) * delta, label, classes
    )


# Lanes of `minimal_l2` and where they start, measured against the exact minimum of 2-D ReLU nets
# (tests/test_attacks_relu.py; the README gives the figures and the cost).
RESTARTS = 8
START_RADII = (1.0, 4.0, 16.0, 64.0, 2.0, 8.0, 32.0, 0.5)  # times lane 0's length, cycled
RESCUE_STARTS = 256
# The rescue's starts run this many at a time (one block after another), so that its memory is a
# block's and not all the starts': 256 CNN Jacobians at once asked for gigabytes per input.
RESCUE_BLOCK = 16
RESCUE_RADII = (-4.0, 12.0)  # log2 of the rescue starts' distance over the linearised one
# Boundary projections every lane gets before the shortest is refined to the end, and the step
# below which a refinement has converged (it halves on every projection that does not help).
LANE_REFINEMENTS = 5
LANE_BISECTIONS = 12  # evaluations per boundary search while lanes compete; the finalists get `bisections`
REFINE_MIN_STEP = 2.0**-12
REFINE_STILL = 2.0**-20  # relative: a projection this close to the current best has converged
# The walk that finishes `minimal_l2` (FMN's L2 steps, Pintor et al. 2021, from the lanes' best):
# its steps (one forward and one backward pass each), and its step size, cosine-annealed from
# WALK_ALPHA to WALK_ALPHA_FINAL times the start's norm, with eps's relative change annealed from
# WALK_GAMMA[0] to WALK_GAMMA[1]. Measured on the paper's MNIST CNN against FMN, DDN and ALMA at
# 1000 steps (benchmarks/bench_attack_optimality.py; docs/results/attacks.md).
WALK_STEPS = 200
WALK_ALPHA = 1.0
WALK_ALPHA_FINAL = 0.01
WALK_GAMMA = (0.05, 0.001)
# Steps every lane walks before the lanes are compared (a lane's first boundary point says little
# about the local minimum it leads to), and DDN's lane from x (Rony et al. 2019: normalised
# cross-entropy gradient steps on a sphere whose radius follows success): its steps, and its step
# size, cosine-annealed from DDN_ALPHA to WALK_ALPHA_FINAL times lane 0's length. At DDN_ALPHA far
# above the radius, each early step points along the gradient at the current point, so the lane
# explores the loss landscape before it settles. On the paper's MNIST CNN, this lane and the lane
# walks raised the share of inputs within 1% of the best baseline from 65% to 79-88%
# (benchmarks/bench_attack_optimality.py, docs/results/attacks.md).
LANE_WALK_STEPS = 30
DDN_STEPS = 150
DDN_ALPHA = 40.0
DDN_GAMMA = 0.05
# ALMA's lanes (Rony et al. 2021: gradient steps on |delta| plus a penalty-Lagrangian of the
# difference-of-logits ratio, with RMSProp and momentum, the multiplier and penalty adapting as the
# attack goes): their steps, and their learning rates per coordinate in units of lane 0's length over
# sqrt(d) (ALMA's own 0.1 and 0.03 on [0, 1] pixels at a typical MNIST robustness of 1.4), cycled;
# lanes past the first len(ALMA_LRS) start from random points at ALMA_START_RADIUS times lane 0's
# length. Each lane costs one forward and one backward pass per step, and lanes from different
# starts and rates reach different local minima: on the paper's MNIST CNN they found the shortest
# perturbations more often per pass than DeepFool's restarts (docs/results/attacks.md).
ALMA_STEPS = 200
ALMA_LRS = (2.0, 0.6)
ALMA_START_RADIUS = 0.5
ALMA_PENALTY_GROWTH = 1.2  # the penalty parameter's growth when the constraint stalls (ALMA's gamma)
ALMA_IMPROVEMENT = 0.95  # the constraint's improvement rate that counts as progress (ALMA's tau)
ALMA_CHECK = 10  # steps between those checks (ALMA's M)
ALMA_AVERAGING = 0.9  # RMSProp's and the momentum's averaging weight, and the multiplier's (ALMA's alpha)
ALMA_LR_REDUCTION = 0.01  # the learning rate decays by this factor from the first success to the last step
ALMA_LOGIT_TOLERANCE = 1e-4
# Classes whose linearised constraints a targeted step projects onto at once (the rest are
# farther from the target).
TARGET_COMPETITORS = 4
# How far past the boundary an attack must land to count, in units of the rounding error of the
# model's logits at x (`Goal`); the attacks search for twice that.
CROSSING_ULPS = 16
# Relative precision to which `_boundary_scale` brackets the boundary: float32's resolution (the
# excess it then adds, at least 1e-6, is larger).
BRACKET = 2.0**-24

# `minimal_l2`'s options by name, as `--attack` names them (`config.ATTACKS`). full: the defaults.
# strong: the defaults and eight ALMA lanes, the shortest on the MNIST CNN against the field's
# attacks at 1000 steps (benchmarks/bench_attack_optimality.py, docs/results/attacks.md), at about
# 2.2x the defaults' time; four lanes left it more than 1% longer than the best of them on 5.3% of
# the inputs untargeted, eight on 2.7%. On the relu nets it finds what full finds,
# at 2.1x the time.
# walk: DeepFool's lane and a 300-step walk, a few percent longer on the CNN at a sixth of the
# time. quick: DeepFool from x alone, brought back to the boundary along its ray; no restarts,
# rescue, DDN lane, walks or projections along the boundary. An upper bound like the others, only
# looser; its program is a fraction of the full attack's to compile.
PRESETS = {
    "full": {},
    "strong": dict(alma_lanes=8),
    "walk": dict(restarts=1, rescue_starts=0, ddn_steps=0, lane_walk_steps=0, refinements=0, walk_steps=300),
    "quick": dict(restarts=1, rescue_starts=0, ddn_steps=0, lane_walk_steps=0, refinements=0, walk_steps=0),
}


def preset_options(*names: str) -> dict[str, dict]:
    """{name: every keyword option of `minimal_l2` under that preset}: its defaults with the preset's changes.

    A run records these, not only the names, so that it resumes only with the attack it started
    with, even where a preset or a default has changed since (`strong` had four ALMA lanes before
    eight).
    """
    parameters = inspect.signature(minimal_l2).parameters.values()
    defaults = {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY and p.name != "key"}
    return {name: {**defaults, **PRESETS[name]} for name in names}


class AttackResult(NamedTuple):
    delta: jax.Array  # (d,), the perturbation
    norm: jax.Array  # (), its L2 norm
    success: jax.Array  # bool (), applying it changes the label (reaches the target), by more than rounding
    steps: jax.Array  # int32 (), gradient steps used


class Goal(NamedTuple):
    """What an attack at x must reach: another class than `label`, or `target` when given.

    Right at the boundary the argmax depends on how the model's sums were rounded, which differs
    between call sites, batch sizes and backends. So a perturbation counts (`verified`) only if the
    goal class leads by CROSSING_ULPS roundings of the logits at x + delta, and the attacks search
    (`reached`) for twice that: what they find keeps its verdict wherever it is evaluated. One
    rounding is eps (max |f| + ||x + delta|| g): the size of the logits and of the terms that sum
    to them (moving the input by one float resolution moves the logits by the second), with g the
    largest gradient norm of the label's and its strongest rival's (or the target's) logit at x:
    two backward passes, once, whatever the number of classes.
    """

    model: Model
    x: jax.Array
    label: jax.Array | int
    target: jax.Array | int | None
    gradient: jax.Array  # g above
    # DeepFool's classes (the label first, then the highest logits at x), or None for all: with many
    # classes (ImageNet's 1000) a step's Jacobian is then `candidates` backward passes, not k.
    candidates: jax.Array | None = None

    @classmethod
    def at(cls, model: Model, x: jax.Array, label, target=None, candidates: int | None = None) -> Goal:
        logits, pullback = jax.vjp(model, x)
        classes = jnp.arange(logits.shape[0])
        rival = jnp.argmax(jnp.where(classes == label, -jnp.inf, logits)) if target is None else target
        one_hot = functools.partial(jax.nn.one_hot, num_classes=logits.shape[0], dtype=logits.dtype)
        (rows,) = jax.vmap(pullback)(one_hot(jnp.stack([jnp.asarray(label), jnp.asarray(rival)])))
        chosen = None
        if candidates is not None and candidates < logits.shape[0]:
            if candidates < 2:
                raise ValueError(f"candidates must be at least 2 (the label and a rival), got {candidates}")
            _, chosen = jax.lax.top_k(jnp.where(classes == label, jnp.inf, logits), candidates)
        return cls(model, x, label, target, jnp.max(jnp.linalg.norm(rows.reshape(2, -1), axis=1)), chosen)

    def rounding(self, point: jax.Array, logits: jax.Array) -> jax.Array:
        """One rounding of the logits at `point` (the model's input)."""
        return jnp.finfo(logits.dtype).eps * (jnp.max(jnp.abs(logits)) + jnp.linalg.norm(point) * self.gradient)

    def lead(self, delta: jax.Array, roundings: float | None = None) -> jax.Array:
        """How far the goal class leads at x + delta beyond `roundings` roundings (default the
        search's, 2 CROSSING_ULPS): > 0 when reached."""
        # The barrier materialises the perturbed input, so every check of one candidate sees the
        # same rounded array (XLA would otherwise fuse x + s * delta into an FMA at some sites only).
        point = jax.lax.optimization_barrier(self.x + delta)
        return self.lead_at(point, self.model(point), roundings)

    def lead_at(self, point: jax.Array, logits: jax.Array, roundings: float | None = None) -> jax.Array:
        """`lead` from the model's logits at point = x + delta, when the caller has them."""
        roundings = 2 * CROSSING_ULPS if roundings is None else roundings
        classes = jnp.arange(logits.shape[0])
        if self.target is None:
            lead = jnp.max(jnp.where(classes == self.label, -jnp.inf, logits)) - logits[self.label]
        else:
            lead = logits[self.target] - jnp.max(jnp.where(classes == self.target, -jnp.inf, logits))
        return lead - roundings * self.rounding(point, logits)

    def reached(self, delta: jax.Array) -> jax.Array:
        """Past the boundary by what the attacks search for."""
        return self.lead(delta) > 0

    def verified(self, delta: jax.Array) -> jax.Array:
        """Past the boundary by more than rounding: the `success` every attack reports."""
        return self.lead(delta, CROSSING_ULPS) > 0


def _check_target(label, target) -> None:
    """Reject a target equal to the true class when both are concrete (under jit they are traced)."""
    if target is None:
        return
    try:
        same = bool(np.asarray(label) == np.asarray(target))
    except (jax.errors.TracerBoolConversionError, jax.errors.TracerArrayConversionError):
        return
    if same:
        raise ValueError(f"the target class {int(np.asarray(target))} is the true class; choose another")


def _boundary_scale(goal: Goal, delta, iterations: int, active=True) -> jax.Array:
    """The smallest s in (0, 1] (to BRACKET, or `iterations` evaluations) with x + s delta reaching the goal.

    delta itself must reach it; where `active` is False the search stops at once and s is 1. The
    boundary is bracketed by the Illinois variant of regula falsi on the lead (`Goal.lead`): on a
    model that is affine along the ray the first secant lands on the boundary, so a handful of
    evaluations replace a bisection's 30; every third step bisects, so the bracket at least halves
    every three. Then s is raised by a relative excess, from max(1e-6, 4 eps ||x|| / ||s delta||)
    (what adding s delta to x can resolve), doubled until s * delta, materialised, reaches the goal.
    """
    x = goal.x
    zero = jnp.zeros((), x.dtype)
    tiny = jnp.finfo(x.dtype).tiny
    # x itself is short of the goal; if it is not, the boundary is at 0 and the search heads there.
    ends = (zero, jnp.minimum(goal.lead(zero * delta), -tiny), zero + 1, jnp.maximum(goal.lead(delta), tiny))

    def unresolved(state):
        low, _, high, _, k, _ = state
        return active & (k < iterations) & (high - low > BRACKET * high)

    def narrow(state):
        low, lead_low, high, lead_high, k, moved = state  # moved: +1 high, -1 low last time
        secant = high - lead_high * (high - low) / (lead_high - lead_low)
        # Half a resolution inside the bracket: a secant that lands on an end (the root right
        # there) then closes the bracket at once instead of creeping up to it.
        inset = 0.5 * BRACKET * high
        middle = jnp.where(k % 3 == 2, 0.5 * (low + high), jnp.clip(secant, low + inset, high - inset))
        lead_middle = goal.lead(middle * delta)
        hit = lead_middle > 0
        # Illinois: when the same end moves twice in a row, the other end's lead is halved, so the
        # next secant moves that one too and the bracket closes from both sides.
        lead_low = jnp.where(hit, jnp.where(moved == 1, 0.5, 1.0) * lead_low, lead_middle)
        lead_high = jnp.where(hit, lead_middle, jnp.where(moved == -1, 0.5, 1.0) * lead_high)
        low, high = jnp.where(hit, low, middle), jnp.where(hit, middle, high)
        return low, lead_low, high, lead_high, k + 1, jnp.where(hit, 1, -1).astype(jnp.int32)

    _, _, high, _, _, _ = jax.lax.while_loop(unresolved, narrow, (*ends, jnp.int32(0), jnp.int32(0)))

    def not_yet(state):
        scale, excess = state
        return active & (excess < 1) & ~goal.reached(_scaled(delta, scale))

    def raise_scale(state):
        _, excess = state
        return jnp.minimum(high * (1 + excess), 1), 2 * excess

    excess = jnp.maximum(1e-6, 4 * jnp.finfo(x.dtype).eps * jnp.linalg.norm(x) / jnp.linalg.norm(high * delta))
    scale, _ = jax.lax.while_loop(not_yet, raise_scale, (jnp.minimum(high * (1 + excess), 1), 2 * excess))
    return jnp.where(active, scale, 1)


def minimal_l2(
    model: Model,
    x: jax.Array,
    label: int | jax.Array,
    target: int | jax.Array | None = None,
    *,
    restarts: int = RESTARTS,
    rescue_starts: int = RESCUE_STARTS,
    key: jax.Array | None = None,
    max_steps: int = 50,
    overshoot: float = 0.02,
    bisections: int = 30,
    refinements: int = 20,
    candidates: int | None = None,
    walk_steps: int = WALK_STEPS,
    lane_walk_steps: int = LANE_WALK_STEPS,
    ddn_steps: int = DDN_STEPS,
    alma_lanes: int = 0,
    alma_steps: int = ALMA_STEPS,
) -> AttackResult:
    """The shortest verified perturbation over `restarts` lanes, each a crossing shrunk to a local minimum, then walked.

    Lane 0 is DeepFool from x (`_deepfool`). Where it ends without crossing (it can stall in a
    positive local minimum of the margin), lane 0 takes instead the shortest crossing of DeepFool
    run from `rescue_starts` random points (`_rescue`; it costs nothing where DeepFool crossed).
    Lanes 1.. are DeepFool restarted from x + r u, u random, r = START_RADII times lane 0's
    length, so that other boundary pieces, near and far, are reached. With `ddn_steps`, one more
    lane is DDN's walk from x (`_ddn`). With `alma_lanes`, that many more are ALMA's (`_alma`,
    `alma_steps` steps each), from x at the rates ALMA_LRS and then from random points. Every
    lane's crossing is brought back to the boundary along its ray (`_boundary_scale`, at most
    `bisections` evaluations), refined by
    LANE_REFINEMENTS boundary projections (`_refine`) and walked `lane_walk_steps` steps (`_walk`);
    the shortest lane and lane 0 are then refined up to `refinements` projections, and the shorter
    wins.
    Random directions come from `key` (default a fixed key: the attack is a deterministic
    function of its input). `steps` counts DeepFool steps and projections over all lanes.
    With `candidates`, untargeted DeepFool linearises only the label and the candidates - 1
    classes with the highest logits at x (Foolbox's DeepFool does the same): for models with
    many classes; the crossing is still verified against every class. Last, `walk_steps` steps
    of FMN's walk (`_walk`) start from the shortest lane (or from x, where no lane crossed) and
    the shorter of the two is kept: DeepFool's steps and projections stop at the first local
    minimum of a piecewise-linear boundary, and the walk's annealed steps cross its small pieces.
    """
    _check_target(label, target)
    goal = Goal.at(model, x, label, target, candidates)
    first, steps = _deepfool(goal, jnp.zeros_like(x), max_steps, overshoot)
    first_crossed = goal.reached(first)
    key_starts, key_rescue, key_alma = jax.random.split(jax.random.key(0) if key is None else key, 3)
    rescued, rescue_steps = _rescue(goal, key_rescue, ~first_crossed, rescue_starts, max_steps, overshoot)
    lane0 = jnp.where(first_crossed, first, rescued)
    units = _unit_rows(jax.random.normal(key_starts, (restarts - 1, *x.shape), x.dtype))
    radii = jnp.linalg.norm(lane0) * jnp.asarray(START_RADII, x.dtype)[jnp.arange(restarts - 1) % len(START_RADII)]
    others, other_steps = jax.vmap(lambda start: _deepfool(goal, start, max_steps, overshoot))(
        units * _column(radii, x)
    )
    lanes = jnp.concatenate([lane0[None], others])
    if ddn_steps:
        lanes = jnp.concatenate([lanes, _ddn(goal, jnp.linalg.norm(lane0), ddn_steps)[None]])
    if alma_lanes:
        lanes = jnp.concatenate([lanes, _alma_lanes(goal, key_alma, jnp.linalg.norm(lane0), alma_lanes, alma_steps)])
    lane_refinements = min(refinements, LANE_REFINEMENTS)
    lane_bisections = min(bisections, LANE_BISECTIONS)

    def shrink(delta):
        delta = _shrink(goal, delta, goal.reached(delta), lane_bisections, lane_refinements)
        return _walked(goal, delta, lane_walk_steps, lane_bisections) if lane_walk_steps else delta

    # Every lane is refined and walked a little; then the shortest and lane 0 (so that the lanes
    # never do worse than DeepFool's alone) to convergence: where lanes end on different boundary
    # pieces, a few projections and steps already tell which piece is nearest.
    deltas = jax.vmap(shrink)(lanes)
    reached = jax.vmap(goal.reached)(deltas)
    norms = jnp.linalg.norm(deltas.reshape(len(lanes), -1), axis=1)
    # With one lane, lane 0 is the shortest: one finalist.
    finalists = jnp.stack([0, jnp.argmin(jnp.where(reached, norms, jnp.inf))][: min(len(lanes), 2)])
    deltas, reached = deltas[finalists], reached[finalists]
    if refinements > lane_refinements or bisections > LANE_BISECTIONS:
        deltas = jax.vmap(lambda delta, ok: _shrink(goal, delta, ok, bisections, refinements))(deltas, reached)
    norms = jnp.linalg.norm(deltas.reshape(len(finalists), -1), axis=1)
    delta = deltas[jnp.argmin(jnp.where(reached, norms, jnp.inf))]
    steps = steps + rescue_steps + jnp.sum(other_steps) + ddn_steps + alma_lanes * alma_steps
    steps = steps + len(lanes) * (lane_refinements + lane_walk_steps)
    steps = steps + len(finalists) * refinements
    if walk_steps:
        delta = _walked(goal, delta, walk_steps, bisections)
        steps = steps + walk_steps
    return AttackResult(delta, jnp.linalg.norm(delta), goal.verified(delta), steps)


def _walked(goal: Goal, delta, steps: int, bisections: int) -> jax.Array:
    """The shorter of `delta` and FMN's walk from it (from x where delta does not reach the goal), at the boundary."""
    crossed = goal.reached(delta)
    start = jnp.where(crossed, delta, jnp.zeros_like(delta))
    walked = _walk(goal, start, steps)
    reached = goal.reached(walked)
    walked = _scaled(walked, _boundary_scale(goal, walked, bisections, reached))
    shorter = reached & (~crossed | (jnp.linalg.norm(walked) < jnp.linalg.norm(delta)))
    return jnp.where(shorter, walked, delta)


def _ddn(goal: Goal, scale, steps: int) -> jax.Array:
    """DDN's lane from x (Rony et al. 2019): the shortest iterate that reaches the goal, or zeros.

    Each step is one forward and one backward pass: a step of size alpha along the normalised
    gradient of the cross-entropy (away from the label, or towards the target), then the
    perturbation is scaled to length eps, which shrinks by 1 - DDN_GAMMA after an iterate that
    reaches the goal and grows by 1 + DDN_GAMMA after one that does not. eps starts at `scale`;
    alpha is cosine-annealed from DDN_ALPHA to WALK_ALPHA_FINAL times `scale`.
    """
    x = goal.x
    tiny = jnp.finfo(x.dtype).tiny
    scale = _usable_scale(scale, x)

    def loss(logits):
        log_p = jax.nn.log_softmax(logits)
        return -log_p[goal.label] if goal.target is None else log_p[goal.target]

    def body(i, state):
        delta, eps, best, best_norm = state
        cosine = (1 + jnp.cos(jnp.pi * i / steps)) / 2
        alpha = scale * (WALK_ALPHA_FINAL + (DDN_ALPHA - WALK_ALPHA_FINAL) * cosine)
        # One forward pass for both the check and the gradient.
        point = jax.lax.optimization_barrier(x + delta)
        logits, pullback = jax.vjp(goal.model, point)
        reached = goal.lead_at(point, logits) > 0
        norm = jnp.linalg.norm(delta)
        best, best_norm = _kept_if_shorter(reached, delta, norm, best, best_norm)
        (gradient,) = pullback(jax.grad(loss)(logits))
        delta = delta + alpha * gradient / jnp.maximum(jnp.linalg.norm(gradient), tiny)
        eps = eps * jnp.where(reached, 1 - DDN_GAMMA, 1 + DDN_GAMMA)
        delta = delta * eps / jnp.maximum(jnp.linalg.norm(delta), tiny)
        return delta, eps, best, best_norm

    zero = jnp.zeros_like(x)
    inf = jnp.asarray(jnp.inf, x.dtype)
    _, _, best, _ = jax.lax.fori_loop(0, steps, body, (zero, scale.astype(x.dtype), zero, inf))
    return best


def _alma_lanes(goal: Goal, key, scale, lanes: int, steps: int) -> jax.Array:
    """`lanes` of ALMA's walk (`_alma`), vmapped: from x at the rates ALMA_LRS, then from random points.

    Returns (lanes, *x.shape): each lane's shortest iterate that reaches the goal, or zeros.
    """
    x = goal.x
    scale = _usable_scale(scale, x)
    index = jnp.arange(lanes)
    rates = jnp.asarray(ALMA_LRS, x.dtype)[index % len(ALMA_LRS)] * scale / math.sqrt(x.size)
    radii = jnp.where(index < len(ALMA_LRS), 0, ALMA_START_RADIUS * scale).astype(x.dtype)
    starts = _unit_rows(jax.random.normal(key, (lanes, *x.shape), x.dtype)) * _column(radii, x)
    return jax.vmap(lambda start, rate: _alma(goal, start, rate, steps))(starts, rates)


def _alma_penalty(y, rho, mu):
    """ALMA's penalty-Lagrangian P2 of the constraint y <= 0, with multiplier mu and penalty parameter rho."""
    positive = mu * y + mu * rho * y**2 + rho**2 * y**3 / 6
    return jnp.where(y >= 0, positive, mu * y / (1 - rho * jnp.minimum(y, 0)))


def _difference_of_logits_ratio(goal: Goal, logits) -> jax.Array:
    """ALMA's constraint: > 0 until the goal is reached; the logits' margin over a spread of the top logits.

    Untargeted, (f_label - max_other + tol) / (top1 - top3); targeted,
    -(f_target - max_other + tol) / (top1 - (top3 + top4) / 2) (Croce and Hein's DLR, as ALMA uses it):
    dividing by the spread makes the constraint invariant to the logits' scale.
    """
    classes = jnp.arange(logits.shape[0])
    chosen = goal.label if goal.target is None else goal.target
    margin = logits[chosen] - jnp.max(jnp.where(classes == chosen, -jnp.inf, logits)) + ALMA_LOGIT_TOLERANCE
    top = jax.lax.top_k(logits, min(4, logits.shape[0]))[0]
    if goal.target is None:
        return margin / (top[0] - top[min(2, len(top) - 1)] + 1e-8)
    return -margin / (top[0] - (top[min(2, len(top) - 1)] + top[-1]) / 2 + 1e-8)


def _alma(goal: Goal, start, rate, steps: int) -> jax.Array:
    """ALMA's L2 lane (Rony et al. 2021) from x + start: the shortest iterate that reaches the goal, or zeros.

    Each step is one forward and one backward pass on |delta| + P(y; rho, mu), y the difference of
    logits ratio (`_difference_of_logits_ratio`), P ALMA's penalty P2: an RMSProp step with
    momentum at `rate`, decaying by ALMA_LR_REDUCTION from the step the constraint is first met to
    the last; mu follows P's derivative (an exponential average) and rho grows by
    ALMA_PENALTY_GROWTH every ALMA_CHECK steps in which y has not improved by ALMA_IMPROVEMENT
    (until the constraint is first met). Hand-written after adv_lib's `alma`: in the engine's
    unboxed input space, for one input, in JAX.
    """
    x = goal.x
    dtype, tiny, average = x.dtype, jnp.finfo(x.dtype).tiny, ALMA_AVERAGING
    constraint = jax.value_and_grad(lambda logits: _difference_of_logits_ratio(goal, logits))
    penalty_slope = jax.grad(_alma_penalty)

    def body(i, state):
        delta, square, momentum, mu, rho, previous, best, best_norm, met, met_at = state
        point = jax.lax.optimization_barrier(x + delta)
        logits, pullback = jax.vjp(goal.model, point)
        y, y_gradient = constraint(logits)
        norm = jnp.linalg.norm(delta)
        best, best_norm = _kept_if_shorter(goal.lead_at(point, logits) > 0, delta, norm, best, best_norm)
        checking = (i > 0) & ((i + 1) % ALMA_CHECK == 0)
        rho = jnp.where(checking & ~met & (y >= ALMA_IMPROVEMENT * previous), ALMA_PENALTY_GROWTH * rho, rho)
        previous = jnp.where((i == 0) | checking, y, previous)
        mu = jnp.where(i > 0, jnp.clip(average * mu + (1 - average) * penalty_slope(y, rho, mu), 1e-6, 1e12), mu)
        met_at = jnp.where(~met & (y < 0), i, met_at)
        met = met | (y < 0)
        # The first step follows the penalty alone (|delta| has no gradient at 0).
        (gradient,) = pullback(penalty_slope(y, rho, mu) * y_gradient)
        gradient = gradient + jnp.where(i > 0, delta / jnp.maximum(norm, tiny), 0)
        decay = ALMA_LR_REDUCTION ** (jnp.maximum(i - met_at, 0) / (steps - met_at))
        square = average * square + (1 - average) * gradient**2
        momentum = average * momentum + gradient / (jnp.sqrt(square) + 1e-8)
        return delta - rate * decay * momentum, square, momentum, mu, rho, previous, best, best_norm, met, met_at

    one, zero = jnp.ones((), dtype), jnp.zeros_like(x)
    state = (start, jnp.ones_like(x), zero, one, one, one, zero, jnp.asarray(jnp.inf, dtype), jnp.bool_(False))
    state = jax.lax.fori_loop(0, steps, body, (*state, jnp.asarray(steps + 1, dtype)))
    return state[6]


def _walk(goal: Goal, start, steps: int) -> jax.Array:
    """FMN's L2 walk (Pintor et al. 2021) on the goal's lead from x + start: the shortest iterate that reaches the goal.

    Each step is one forward and one backward pass: a step of size alpha along the lead's
    normalised gradient, then a projection onto the ball |delta| <= eps, where eps shrinks by a
    factor 1 - gamma after an iterate that reaches the goal, grows by 1 + gamma after one that
    does not once any has, and before that is the linearised distance to the boundary; alpha and
    gamma are cosine-annealed (WALK_ALPHA, WALK_ALPHA_FINAL, WALK_GAMMA). Step sizes are relative
    to the start's norm, or to the linearised distance at x for a start at x. Returns `start`
    where no iterate reaches the goal.
    """
    lead_and_gradient = jax.value_and_grad(goal.lead)
    tiny = jnp.finfo(goal.x.dtype).tiny
    lead0, gradient0 = lead_and_gradient(jnp.zeros_like(start))
    linearised = jnp.abs(lead0) / jnp.maximum(jnp.linalg.norm(gradient0), tiny)
    scale = jnp.where(jnp.any(start != 0), jnp.linalg.norm(start), linearised)
    alpha0, alpha1 = WALK_ALPHA * scale, WALK_ALPHA_FINAL * scale
    gamma0, gamma1 = WALK_GAMMA

    def body(i, state):
        delta, eps, best, best_norm = state
        cosine = (1 + jnp.cos(jnp.pi * i / steps)) / 2
        alpha, gamma = alpha1 + (alpha0 - alpha1) * cosine, gamma1 + (gamma0 - gamma1) * cosine
        lead, gradient = lead_and_gradient(delta)
        norm = jnp.linalg.norm(delta)
        reached = lead > 0
        best, best_norm = _kept_if_shorter(reached, delta, norm, best, best_norm)
        gradient_norm = jnp.maximum(jnp.linalg.norm(gradient), tiny)
        found = jnp.isfinite(best_norm)
        eps = jnp.where(
            reached,
            jnp.minimum(eps * (1 - gamma), best_norm),
            jnp.where(found, eps * (1 + gamma), norm + jnp.abs(lead) / gradient_norm),
        )
        delta = delta + alpha * gradient / gradient_norm
        delta = delta * jnp.minimum(1, eps / jnp.maximum(jnp.linalg.norm(delta), tiny))
        return delta, eps, best, best_norm

    inf = jnp.asarray(jnp.inf, goal.x.dtype)
    _, _, best, _ = jax.lax.fori_loop(0, steps, body, (start, inf, start, inf))
    return best


def _kept_if_shorter(reached, delta, norm, best, best_norm) -> tuple[jax.Array, jax.Array]:
    """A walk's shortest iterate so far that reaches the goal: `delta` where it does and is shorter, else `best`."""
    better = reached & (norm < best_norm)
    return jnp.where(better, delta, best), jnp.where(better, norm, best_norm)


def _usable_scale(scale: jax.Array, x: jax.Array) -> jax.Array:
    """A lane's length scale: `scale` where positive, else one of x's own (a zero gradient at x gives none)."""
    return jnp.where(scale > 0, scale, 1e-3 * (1 + jnp.linalg.norm(x)))


def _column(values: jax.Array, like: jax.Array) -> jax.Array:
    """values (n,) shaped to broadcast against a stack of n arrays shaped like `like`."""
    return values.reshape(-1, *([1] * like.ndim))


def _unit_rows(rows: jax.Array) -> jax.Array:
    """Each row (over its trailing axes) divided by its L2 norm."""
    norms = jnp.linalg.norm(rows.reshape(rows.shape[0], math.prod(rows.shape[1:])), axis=1)
    return rows / norms.reshape(-1, *([1] * (rows.ndim - 1)))


def _rescue(goal: Goal, key, active, starts: int, max_steps: int, overshoot: float):
    """DeepFool from `starts` random points x + r u: the shortest crossing found, or zeros.

    r is log-uniform over RESCUE_RADII times the linearised distance at x (DeepFool's first
    step; where the gradient is zero there, a scale of x's own). A start already past the boundary
    is a crossing of its own. The starts run RESCUE_BLOCK at a time. Runs only where `active`:
    inside a loop of at most one trip, so that vmapped over inputs it costs nothing unless some
    input needs it. Returns (delta, DeepFool steps).
    """
    x = goal.x
    if starts == 0:
        return jnp.zeros_like(x), jnp.int32(0)

    def search(state):
        # The draws depend on the carried step count: XLA hoists loop-invariant work (anything
        # computed from values the loop passes through unchanged) out of a while loop, which would
        # run the search even when the loop takes no trip.
        _, _, carried_steps = state
        key_units, key_radii = jax.random.split(jax.random.fold_in(key, carried_steps))
        estimate = jnp.linalg.norm(_deepfool(goal, jnp.zeros_like(x), 1, 0.0)[0])
        scale = _usable_scale(estimate, x)
        units = _unit_rows(jax.random.normal(key_units, (starts, *x.shape), x.dtype))
        radii = scale * 2.0 ** jax.random.uniform(key_radii, (starts,), x.dtype, *RESCUE_RADII)
        found, steps = jax.lax.map(
            lambda start: _deepfool(goal, start, max_steps, overshoot),
            units * _column(radii, x),
            batch_size=min(RESCUE_BLOCK, starts),
        )
        crossed = jax.vmap(goal.reached)(found)
        best = jnp.argmin(jnp.where(crossed, jnp.linalg.norm(found.reshape(starts, -1), axis=1), jnp.inf))
        delta = jnp.where(crossed[best], found[best], jnp.zeros_like(x))
        return jnp.bool_(True), delta, carried_steps + jnp.sum(steps, dtype=jnp.int32)

    _, delta, steps = jax.lax.while_loop(
        lambda state: active & ~state[0], search, (jnp.bool_(False), jnp.zeros_like(x), jnp.int32(0))
    )
    return delta, steps


def _deepfool(goal: Goal, start, max_steps, overshoot: float):
    """DeepFool's steps from x + start until x + (1 + overshoot) delta reaches the goal or `max_steps` pass.

    Untargeted, each step moves to the nearest linearised boundary of the current class
    (Moosavi-Dezfooli et al.). Targeted, it moves to the nearest point of the target's linearised
    region (`_project_on_constraints`, aiming past its boundary instead of overshooting): the
    boundary with the target alone would be crossed into a third class as often as not, and the
    steps would circle. Returns ((1 + overshoot) delta, steps); a start already past the boundary
    takes no step.
    """
    model, x, target = goal.model, goal.x, goal.target
    if target is not None:
        overshoot = 0.0  # scaling a point of the target's region along its ray can leave the region

    # Aim past the boundary by twice the lead `Goal.reached` asks for, or a point right at the
    # boundary (x near it, or a flat margin) would take ever smaller steps.
    aim_roundings = 4 * CROSSING_ULPS

    def next_delta(delta):
        if target is not None:
            # From the current point, as DeepFool's untargeted step: projecting x itself jumps
            # between linear pieces of a ReLU net, where most targeted attacks then stalled.
            return delta + _project_on_constraints(goal, delta, aim_roundings, from_point=True)
        point = x + (1 + overshoot) * delta
        if goal.candidates is None:
            logits = model(point)
            aim = aim_roundings * goal.rounding(point, logits)
            jacobian = jax.jacrev(model)(point)
        else:
            # Only the candidate classes: their logits and gradients, in candidates' order.
            all_logits, pullback = jax.vjp(model, point)
            aim = aim_roundings * goal.rounding(point, all_logits)
            one_hot = jax.nn.one_hot(goal.candidates, all_logits.shape[0], dtype=all_logits.dtype)
            (jacobian,) = jax.vmap(pullback)(one_hot)
            logits = all_logits[goal.candidates]
        # Linearise around the current class c (the label until it changes) and move to the
        # nearest boundary f_j = f_c.
        current = jnp.argmax(logits)
        margins = logits - logits[current]  # f_j - f_c <= 0
        directions = jacobian - jacobian[current]
        norms = jnp.linalg.norm(directions.reshape(logits.shape[0], -1), axis=1)
        distances = jnp.abs(margins) / jnp.where(norms > 0, norms, 1)
        blocked = (jnp.arange(logits.shape[0]) == current) | (norms == 0)
        j = jnp.argmin(jnp.where(blocked, jnp.inf, distances))
        # A zero gradient (every ReLU off, say) gives a zero step, not 0 / 0.
        moving = norms[j] > 0
        return (
            delta
            + jnp.where(moving, (jnp.abs(margins[j]) + aim) / jnp.where(moving, norms[j], 1) ** 2, 0) * (directions[j])
        )

    def cond(state):
        delta, steps = state
        return (steps < max_steps) & ~goal.reached((1 + overshoot) * delta)

    def body(state):
        delta, steps = state
        return next_delta(delta), steps + 1

    delta, steps = jax.lax.while_loop(cond, body, (start / (1 + overshoot), jnp.int32(0)))
    return (1 + overshoot) * delta, steps


def _shrink(goal: Goal, delta, crossed, bisections: int, refinements: int):
    """A crossing delta brought back to the boundary along its ray, then refined; unchanged if not crossed."""
    delta = _scaled(delta, _boundary_scale(goal, delta, bisections, crossed))
    if refinements:
        delta = jnp.where(crossed, _refine(goal, delta, bisections, refinements), delta)
    return delta


def minimal_l2_best_target(
    model: Model, x: jax.Array, label: int | jax.Array, *, restarts: int = 1, rescue_starts: int = 0, **options
) -> AttackResult:
    """The shortest of the untargeted `minimal_l2` and the targeted ones towards every other class.

    The untargeted attack heads for the boundary DeepFool finds first and restarts around it; with
    more than two classes a different class's boundary can be nearer. This adds k - 1 targeted
    attacks (vmapped over targets), each of `restarts` lanes and without the rescue by default (the
    targets are the diversity; vmapped over inputs, one rescue makes every input of the batch wait
    for it), to the untargeted attack at its defaults, so it is never longer than that and finds a
    crossing wherever it does. It keeps the shortest that verifiably reaches its goal; `steps` is
    their sum. `options` go to every attack.
    """
    untargeted = minimal_l2(model, x, label, **options)
    classes = jax.eval_shape(model, x).shape[0]
    targets = jnp.arange(classes)
    # The label's own lane attacks another class instead (a target equal to the label has no
    # boundary to cross) and is discarded below.
    lanes = jnp.where(targets == label, (label + 1) % classes, targets)
    targeted = jax.vmap(
        lambda target: minimal_l2(
            model, x, label, target=target, restarts=restarts, rescue_starts=rescue_starts, **options
        )
    )(lanes)
    results = jax.tree_util.tree_map(lambda many, one: jnp.concatenate([many, one[None]]), targeted, untargeted)
    usable = results.success & jnp.append(targets != label, True)
    best = jnp.argmin(jnp.where(usable, results.norm, jnp.inf))
    picked = jax.tree_util.tree_map(lambda values: values[best], results)
    return picked._replace(success=usable[best], steps=jnp.sum(results.steps))


def _refine(goal: Goal, delta, bisections: int, refinements: int) -> jax.Array:
    """Shrink a perturbation that reaches the goal (the caller's precondition) by tangent-plane projections.

    On a curved or piecewise-linear boundary, DeepFool's crossing is not the closest one. At the
    boundary point p = x + delta, with w the gradient of the margin f_label - f_b of the boundary
    being crossed (b = the class at p), the closest point of the tangent plane to x is
    x + (w.delta / |w|^2) w (SuperDeepFool's projection, Abdollahpouri et al. 2023). Targeted, the
    target's region is an intersection, {f_target >= f_j for all j}, whose nearest point often lies
    on an edge where several boundaries meet; projecting on one plane at a time zigzags there, so x
    is projected onto the intersection of the linearised constraints of the TARGET_COMPETITORS
    classes closest to the target at p (`_project_on_constraints`). The ray towards the projection,
    at the current best's length, is brought back to the boundary and kept only if it reaches the
    goal and is shorter; a ray that does not is retried halfway between it and the current best (the
    step halves), until `refinements` projections or a step below REFINE_MIN_STEP.
    """
    model, x, label, target = goal.model, goal.x, goal.label, goal.target

    def projection(best):
        point = x + best
        if target is None:
            w = margin_gradient(model, jnp.asarray(label), jnp.argmax(model(point)))(point)
            return jnp.vdot(w, best) / jnp.maximum(jnp.vdot(w, w), jnp.finfo(x.dtype).tiny) * w
        return _project_on_constraints(goal, best)

    def body(state):
        best, step, k = state
        move = projection(best) - best
        # A projection that does not move (the minimum of an affine piece) ends the refinement:
        # halving the step would retry the same point.
        still = jnp.linalg.norm(move) <= REFINE_STILL * jnp.linalg.norm(best)
        direction = best + step * move
        length = jnp.linalg.norm(direction)
        candidate = direction * (jnp.linalg.norm(best) / jnp.where(length > 0, length, 1))
        usable = (length > 0) & ~still & goal.reached(candidate)
        # A usable candidate reaches the goal at scale 1, so the scaled one does (`_boundary_scale`).
        candidate = _scaled(candidate, _boundary_scale(goal, candidate, bisections, usable))
        better = usable & (jnp.linalg.norm(candidate) < jnp.linalg.norm(best))
        step = jnp.where(better, step, jnp.where(still, 0.0, 0.5 * step))
        return jnp.where(better, candidate, best), step, k + 1

    def improving(state):
        _, step, k = state
        return (k < refinements) & (step >= REFINE_MIN_STEP)

    refined, _, _ = jax.lax.while_loop(improving, body, (delta, jnp.ones((), x.dtype), jnp.int32(0)))
    return refined


def _project_on_constraints(goal: Goal, delta, aim_roundings=0.0, from_point=False) -> jax.Array:
    """u minimising |u| subject to the target's linearised lead at p = x + delta, over its nearest rivals.

    With A the gradients of f_j - f_target at p for the m classes j closest to the target
    (m <= TARGET_COMPETITORS) and g their values there, the constraints g + A (u - delta) <= -aim
    say x + u is in the target's region, by a lead of aim = `aim_roundings` roundings of the
    logits at p (`Goal.rounding`), to first order. The minimiser is
    u = -A_S^T lambda_S for the set S of constraints that hold with equality,
    lambda_S = -(A_S A_S^T)^-1 c_S >= 0 (c = A delta - g - aim), with the others satisfied: every S
    is tried at once, and the shortest u that meets those conditions is the answer (the nearest
    rival's plane alone when rounding leaves none). Exact for models with up to
    TARGET_COMPETITORS + 1 classes; with more, the farther rivals are left to the next step.
    With `from_point`, the same for the step v from p (g + A v <= -aim, |v| least): DeepFool's.
    """
    model, x, target = goal.model, goal.x, goal.target
    point = x + delta
    logits, pullback = jax.vjp(model, point)
    aim = aim_roundings * goal.rounding(point, logits)
    classes = logits.shape[0]
    rivals = jnp.where(jnp.arange(classes) == target, -jnp.inf, logits)
    m = min(TARGET_COMPETITORS, classes - 1)
    _, nearest = jax.lax.top_k(rivals, m)
    one_hot = functools.partial(jax.nn.one_hot, num_classes=classes, dtype=logits.dtype)
    (a,) = jax.vmap(pullback)(one_hot(nearest) - one_hot(target))
    a = a.reshape(m, -1)
    gram = a @ a.T
    start = jnp.zeros_like(delta) if from_point else delta
    c = a @ start.reshape(-1) - (logits[nearest] - logits[target]) - aim
    subsets = jnp.asarray(np.array([[(s >> i) & 1 for i in range(m)] for s in range(1, 2**m)], bool))
    outer = subsets[:, :, None] & subsets[:, None, :]
    ridge = jnp.finfo(x.dtype).eps ** 2 * jnp.trace(gram) + jnp.finfo(x.dtype).tiny  # for parallel rows
    systems = jnp.where(outer, gram + ridge * jnp.eye(m, dtype=gram.dtype), jnp.eye(m, dtype=gram.dtype))
    duals = jnp.where(subsets, _solve_small(systems, jnp.where(subsets, -c, 0)), 0)
    moves = -duals @ a  # (subsets, d)
    slack = 1e-6 * (jnp.max(jnp.abs(c)) + jnp.finfo(x.dtype).tiny)
    feasible = jnp.all(duals >= -slack * jnp.max(jnp.abs(duals)), axis=1) & jnp.all(moves @ a.T <= c + slack, axis=1)
    feasible = feasible.at[0].set(feasible[0] | ~jnp.any(feasible))  # subset 0 is the nearest rival alone
    best = jnp.argmin(jnp.where(feasible, jnp.sum(moves**2, axis=1), jnp.inf))
    return moves[best].reshape(x.shape)


def _solve_small(matrices: jax.Array, rhs: jax.Array) -> jax.Array:
    """Solve symmetric positive definite systems (..., m, m) x = (..., m) by Gauss-Jordan, m small and static.

    Written out in plain JAX ops because the trial programs call no LAPACK kernel (jaxfrag/linalg.py).
    """
    m = matrices.shape[-1]
    for k in range(m):
        factor = (matrices[..., :, k] / matrices[..., k, k][..., None]).at[..., k].set(0)
        matrices = matrices - factor[..., :, None] * matrices[..., None, k, :]
        rhs = rhs - factor * rhs[..., k : k + 1]
    return rhs / jnp.diagonal(matrices, axis1=-2, axis2=-1)


def _scaled(delta: jax.Array, scale: jax.Array) -> jax.Array:
    """scale * delta as one materialised array (the one `_boundary_scale` verified)."""
    return jax.lax.optimization_barrier(scale * delta)


def _cross_entropy_gradient(model: Model, x: jax.Array, cls) -> jax.Array:
    return jax.grad(lambda point: -jax.nn.log_softmax(model(point))[cls])(x)


def fgsm_bisection(
    model: Model, x: jax.Array, label: int | jax.Array, eps_max: float, bisections: int = 30
) -> AttackResult:
    """FGSM's direction sign(grad CE(f(x), label)) with the smallest eps in (0, eps_max] that changes the label."""
    goal = Goal.at(model, x, label)
    delta = eps_max * jnp.sign(_cross_entropy_gradient(model, x, label))
    crossed = goal.reached(delta)
    delta = _scaled(delta, _boundary_scale(goal, delta, bisections, crossed))
    return AttackResult(delta, jnp.linalg.norm(delta), goal.verified(delta), jnp.int32(1))


SCAN_BLOCK = 32  # fgsm_scan's grid steps evaluated together


def fgsm_scan(
    model: Model,
    x: jax.Array,
    label: int | jax.Array,
    target: int | jax.Array | None = None,
    *,
    eps_max: float,
    grid: int = 256,
    bisections: int = 30,
    direction: jax.Array | None = None,
) -> AttackResult:
    """The smallest FGSM step that reaches the goal: delta = eps * direction, eps scanned, then bisected.

    The direction defaults to FGSM's: sign(grad CE(f(x), label)) untargeted, -sign(grad CE(f(x),
    target)) targeted (pass another sign pattern, e.g. from another tie rule of the same model's
    gradient, as `direction`). Along eps the winning class can pass through other classes and never
    reach the target, so eps is scanned on `grid` equal steps up to eps_max (SCAN_BLOCK at a time,
    stopping after the block with the first hit) and the boundary is searched (`_boundary_scale`)
    only inside the first step that reaches the goal. No step does:
    success is False and delta is eps_max * direction.
    """
    _check_target(label, target)
    goal = Goal.at(model, x, label, target)
    if direction is None:
        if target is None:
            direction = jnp.sign(_cross_entropy_gradient(model, x, label))
        else:
            direction = -jnp.sign(_cross_entropy_gradient(model, x, target))
    eps = eps_max * jnp.arange(1, grid + 1, dtype=x.dtype) / grid
    # The grid in blocks of SCAN_BLOCK steps, stopping after the first block that reaches the goal.
    block = min(grid, SCAN_BLOCK)
    blocks = -(-grid // block)
    padded = jnp.concatenate([eps, jnp.full(blocks * block - grid, jnp.inf, x.dtype)]).reshape(blocks, block)

    def unfinished(state):
        k, hits = state
        return (k < blocks) & ~jnp.any(hits)

    def scan_block(state):
        k, hits = state
        row = padded[k]
        reached = jax.vmap(
            lambda e: jnp.isfinite(e) & goal.reached(_scaled(direction, jnp.where(jnp.isfinite(e), e, 0)))
        )
        return k + 1, hits.at[k].set(reached(row))

    _, hits = jax.lax.while_loop(unfinished, scan_block, (jnp.int32(0), jnp.zeros((blocks, block), bool)))
    hits = hits.reshape(-1)[:grid]
    first = jnp.argmax(hits)
    found = hits[first]
    low = jnp.where(first > 0, eps[jnp.maximum(first - 1, 0)], 0)
    high = eps[first]
    # Searched from the bracket's low end, whose lead the scan found short of the goal.
    base = _scaled(direction, low)
    shifted = goal._replace(x=x + base)
    scale = _boundary_scale(shifted, (high - low) * direction, bisections, found)
    delta = jnp.where(found, base + _scaled(direction, scale * (high - low)), eps_max * direction)
    return AttackResult(delta, jnp.linalg.norm(delta), found & goal.verified(delta), jnp.int32(1))


def least_likely(
    model: Model,
    x: jax.Array,
    label: int | jax.Array,
    eps: float,
    step: float,
    max_steps: int = 100,
    bounds: tuple[float, float] | None = None,
) -> AttackResult:
    """Iterative least-likely-class attack: `iterative_targeted` towards argmin f(x) (which may be `label`)."""
    return _iterative(model, x, label, jnp.argmin(model(x)), eps, step, max_steps, bounds)


def iterative_targeted(
    model: Model,
    x: jax.Array,
    label: int | jax.Array,
    target: int | jax.Array,
    eps: float | jax.Array,
    step: float,
    max_steps: int | jax.Array = 100,
    bounds: tuple[float, float] | None = None,
) -> AttackResult:
    """Kurakin et al.'s iterative targeted attack: signed steps down CE(f(x + delta), target) in the L-inf ball eps.

    Every iterate is projected onto the intersection of the ball |delta_i| <= eps and the box
    bounds[0] <= x_i + delta_i <= bounds[1] (their Clip_{X,eps}), so both hold by construction;
    the steps stop at the first iterate that reaches the target. That intersection contains 0 only
    if x lies in the box: an x outside it is a ValueError (when concrete; traced, the attack
    returns delta = 0 and success False).
    """
    _check_target(label, target)
    return _iterative(model, x, label, target, eps, step, max_steps, bounds)


def _iterative(model: Model, x, label, target, eps, step, max_steps, bounds) -> AttackResult:
    goal = Goal.at(model, x, label, target)
    lower, upper = -jnp.full_like(x, eps), jnp.full_like(x, eps)
    if bounds is not None:
        _check_inside(x, bounds)
        lower, upper = jnp.maximum(lower, bounds[0] - x), jnp.minimum(upper, bounds[1] - x)
    feasible = jnp.all(lower <= 0) & jnp.all(upper >= 0)

    def cond(state):
        delta, steps = state
        return feasible & (steps < max_steps) & ~goal.reached(delta)

    def body(state):
        delta, steps = state
        moved = delta - step * jnp.sign(_cross_entropy_gradient(model, x + delta, target))
        return jnp.clip(moved, lower, upper), steps + 1

    delta, steps = jax.lax.while_loop(cond, body, (jnp.zeros_like(x), jnp.int32(0)))
    return AttackResult(delta, jnp.linalg.norm(delta), feasible & goal.verified(delta), steps)


def kurakin_steps(eps: jax.Array, step: float) -> jax.Array:
    """Kurakin et al.'s iteration count for radius eps and step size `step`: min(eps/step + 4, 1.25 eps/step), >= 1."""
    ratio = eps / step
    return jnp.maximum(jnp.ceil(jnp.minimum(ratio + 4, 1.25 * ratio)), 1).astype(jnp.int32)


class IterativeSearch(NamedTuple):
    result: AttackResult  # at the smallest radius found to reach the target
    eps: jax.Array  # that radius (L-inf); eps_max where none did
    eps_below: jax.Array  # the largest radius below it that the search saw fail (0 if none)
    runs: jax.Array  # int32 (), attacks run by the search


def iterative_targeted_min_eps(
    model: Model,
    x: jax.Array,
    label: int | jax.Array,
    target: int | jax.Array,
    *,
    eps_max: float,
    step: float,
    bounds: tuple[float, float] | None = None,
    bisections: int = 10,
    max_steps: int = 1000,
) -> IterativeSearch:
    """The smallest radius at which `iterative_targeted` (Kurakin's iteration count) reaches the target.

    The radius doubles from step / 8 until an attack succeeds (or eps_max is passed), then the
    bracket between the last failure and the first success is bisected `bisections` times. Success
    need not be monotone in the radius, so the result is the smallest radius the search saw
    succeed: an upper bound on this attack's minimal radius. Each run is applied and verified;
    where none succeeds, the result is the failed attack at eps_max.
    """
    _check_target(label, target)

    def attack(eps):
        steps = jnp.minimum(kurakin_steps(eps, step), max_steps)
        return iterative_targeted(model, x, label, target, eps, step, steps, bounds)

    def double(state):
        k, _, eps, _ = state
        larger = jnp.minimum(2 * eps, eps_max)
        return k + 1, eps, larger, attack(larger)  # eps failed: it is the bracket's low end

    first = jnp.minimum(jnp.asarray(step / 8, x.dtype), eps_max)
    k, low, high, found = jax.lax.while_loop(
        lambda state: ~state[3].success & (state[2] < eps_max),
        double,
        (jnp.int32(1), jnp.zeros((), x.dtype), first, attack(first)),
    )

    def bisect(state):
        i, low, high, best = state
        middle = 0.5 * (low + high)
        trial = attack(middle)
        better = trial.success
        best = jax.tree_util.tree_map(lambda new, old: jnp.where(better, new, old), trial, best)
        return i + 1, jnp.where(better, low, middle), jnp.where(better, middle, high), best

    _, low, high, best = jax.lax.while_loop(
        lambda state: found.success & (state[0] < bisections), bisect, (jnp.int32(0), low, high, found)
    )
    runs = k + jnp.where(found.success, bisections, 0)
    return IterativeSearch(best, jnp.where(found.success, high, eps_max), low, runs.astype(jnp.int32))


def _check_inside(x, bounds) -> None:
    """Reject an input outside the box when it is concrete (under jit it is traced)."""
    try:
        values = np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    if values.min() < bounds[0] or values.max() > bounds[1]:
        raise ValueError(
            f"x lies outside the bounds [{bounds[0]}, {bounds[1]}] (its range is [{values.min():.4g}, "
            f"{values.max():.4g}]): the attack keeps x + delta inside them"
        )
