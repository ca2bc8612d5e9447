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
  at several multiples of lane 0's distance. Each lane's crossing is bisected
  back to the boundary along its ray (on an affine model that is the exact
  minimal perturbation, times 1 + what rounding needs), then shrunk by boundary
  projections (SuperDeepFool-style), each candidate bisected and verified
  before it is kept.
* `minimal_l2_best_target` -- the shortest of the targeted minimal-L2 attacks
  towards every other class (one lane each by default), for multi-class models
  whose nearest boundary is not the one DeepFool heads for.
* `fgsm_bisection` -- delta = eps sign(grad of the cross-entropy), with the
  smallest eps that changes the label found by bisection (the paper's MNIST Q).
* `least_likely` -- Kurakin et al.'s iterative least-likely-class attack, L-inf
  ball of radius eps, step size `step` (the paper's ImageNet Q).
Hand-written because the attack libraries (Foolbox 3) run JAX models one
eager operation at a time; these compile and vmap over trials.
"""

from __future__ import annotations

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
    outside it do not exist for the classifier (padding, see `jaxfrag.embedding`).
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


# Lanes of `minimal_l2` and where they start: measured against the exact minimum of 2-D ReLU nets
# (tests/test_attacks_relu.py; the README gives the figures). 8 lanes cost 2-4x one.
RESTARTS = 8
# How far past the boundary (in float resolutions of the largest logit) an attack must land.
CROSSING_ULPS = 16
START_RADII = (1.0, 4.0, 16.0, 64.0, 2.0, 8.0, 32.0, 0.5)  # times lane 0's length, cycled
RESCUE_STARTS = 256
RESCUE_RADII = (-4.0, 12.0)  # log2 of the rescue starts' distance over the linearised one


class AttackResult(NamedTuple):
    delta: jax.Array  # (d,), the perturbation
    norm: jax.Array  # (), its L2 norm
    success: jax.Array  # bool (), applying it changes the label (reaches the target)
    steps: jax.Array  # int32 (), gradient steps used


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


def _reached(model: Model, x: jax.Array, label, target) -> jax.Array:
    """Does f(x) give another class than `label` (the `target`, when given), by more than rounding?

    The winning logit must beat the label's (targeted: every other class's) by CROSSING_ULPS
    float resolutions of the largest logit. Right at the boundary the argmax depends on how the
    model's sums were rounded, which differs between call sites, batch sizes and backends; a
    perturbation that crosses by less is not one a user can rely on, so it does not count.
    """
    # The barrier materialises the perturbed input, so every check of one candidate sees the same
    # rounded array (XLA would otherwise fuse x + s * delta into an FMA at some call sites only).
    logits = model(jax.lax.optimization_barrier(x))
    classes = jnp.arange(logits.shape[0])
    if target is None:
        lead = jnp.max(jnp.where(classes == label, -jnp.inf, logits)) - logits[label]
    else:
        lead = logits[target] - jnp.max(jnp.where(classes == target, -jnp.inf, logits))
    return lead > CROSSING_ULPS * jnp.finfo(logits.dtype).eps * jnp.max(jnp.abs(logits))


def _bisect_scale(model: Model, x, delta, label, target, iterations: int) -> jax.Array:
    """The smallest s in (0, 1] (to 2^-iterations) with x + s delta reaching the goal; delta itself must.

    Right at the boundary the model's answer depends on rounding, which differs between call
    sites (fused multiply-adds, the summation order of a dot), so s is then raised by a relative
    excess, from max(1e-6, 4 eps ||x|| / ||s delta||) (what adding s delta to x can resolve),
    doubled until s * delta, added to x, reaches the goal.
    """

    def body(_, bounds):
        low, high = bounds
        middle = 0.5 * (low + high)
        hit = _reached(model, x + middle * delta, label, target)
        return jnp.where(hit, low, middle), jnp.where(hit, middle, high)

    zero = jnp.zeros((), x.dtype)
    _, high = jax.lax.fori_loop(0, iterations, body, (zero, zero + 1))

    def not_yet(state):
        scale, excess = state
        return (excess < 1) & ~_reached(model, x + _scaled(delta, scale), label, target)

    def raise_scale(state):
        scale, excess = state
        return jnp.minimum(high * (1 + excess), 1), 2 * excess

    start = jnp.maximum(1e-6, 4 * jnp.finfo(x.dtype).eps * jnp.linalg.norm(x) / jnp.linalg.norm(high * delta))
    scale, _ = jax.lax.while_loop(not_yet, raise_scale, (jnp.minimum(high * (1 + start), 1), 2 * start))
    return scale


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
) -> AttackResult:
    """The shortest verified perturbation over `restarts` lanes, each a crossing shrunk to a local minimum.

    Lane 0 is DeepFool from x (`_deepfool`). Where it ends without crossing (it can stall in a
    positive local minimum of the margin), lane 0 takes instead the shortest crossing of DeepFool
    run from `rescue_starts` random points x + r u, r log-uniform over RESCUE_RADII times the
    linearised distance at x (`_rescue`; it takes no step where DeepFool crossed). Lanes 1.. are
    DeepFool restarted from x + r u, u random, r = START_RADII times lane 0's length, so that
    other boundary pieces, near and far, are reached. Every lane's crossing is bisected back to
    the boundary along its ray and refined by boundary projections (`_refine`); the shortest lane
    that verifiably reaches the goal wins. Random directions come from `key` (default a fixed
    key: the attack is a deterministic function of its input). `steps` counts DeepFool and
    refinement steps over all lanes.
    """
    _check_target(label, target)
    goal = Goal(model, x, label, target)
    first, steps = _deepfool(goal, jnp.zeros_like(x), max_steps, overshoot)
    first_crossed = goal.reached(first)
    # The linearised distance at x (DeepFool's first step) sets the rescue's scale; where the
    # gradient is zero there, a scale of x's own.
    estimate = jnp.linalg.norm(_deepfool(goal, jnp.zeros_like(x), 1, 0.0)[0])
    estimate = jnp.where(estimate > 0, estimate, 1e-3 * (1 + jnp.linalg.norm(x)))
    key_starts, key_rescue = jax.random.split(jax.random.key(0) if key is None else key)
    rescued, rescue_steps = _rescue(goal, key_rescue, ~first_crossed, estimate, rescue_starts, max_steps, overshoot)
    lane0 = jnp.where(first_crossed, first, rescued)
    units = _unit_rows(jax.random.normal(key_starts, (restarts - 1, *x.shape), x.dtype))
    radii = jnp.linalg.norm(lane0) * jnp.asarray(START_RADII, x.dtype)[jnp.arange(restarts - 1) % len(START_RADII)]
    others, other_steps = jax.vmap(lambda start: _deepfool(goal, start, max_steps, overshoot))(
        units * _column(radii, x)
    )

    def shrink(delta):
        return _shrink(goal, delta, goal.reached(delta), bisections, refinements)

    deltas = jax.vmap(shrink)(jnp.concatenate([lane0[None], others]))
    reached = jax.vmap(goal.reached)(deltas)
    norms = jnp.linalg.norm(deltas.reshape(restarts, -1), axis=1)
    best = jnp.argmin(jnp.where(reached, norms, jnp.inf))
    steps = steps + rescue_steps + jnp.sum(other_steps) + restarts * refinements
    return AttackResult(deltas[best], norms[best], reached[best], steps)


class Goal(NamedTuple):
    """What an attack at x must reach: another class than `label`, or `target` when given."""

    model: Model
    x: jax.Array
    label: jax.Array | int
    target: jax.Array | int | None

    def reached(self, delta: jax.Array) -> jax.Array:
        return _reached(self.model, self.x + delta, self.label, self.target)


def _column(values: jax.Array, like: jax.Array) -> jax.Array:
    """values (n,) shaped to broadcast against a stack of n arrays shaped like `like`."""
    return values.reshape(-1, *([1] * like.ndim))


def _unit_rows(rows: jax.Array) -> jax.Array:
    """Each row (over its trailing axes) divided by its L2 norm."""
    norms = jnp.linalg.norm(rows.reshape(rows.shape[0], math.prod(rows.shape[1:])), axis=1)
    return rows / norms.reshape(-1, *([1] * (rows.ndim - 1)))


def _rescue(goal: Goal, key, active, scale, starts: int, max_steps: int, overshoot: float):
    """DeepFool from `starts` random points x + r u (r = scale 2^U(RESCUE_RADII)): the shortest crossing, or zeros.

    A start already past the boundary is a crossing of its own. Takes no step unless `active`.
    Returns (delta, DeepFool steps taken).
    """
    x = goal.x
    if starts == 0:
        return jnp.zeros_like(x), jnp.int32(0)
    key_units, key_radii = jax.random.split(key)
    units = _unit_rows(jax.random.normal(key_units, (starts, *x.shape), x.dtype))
    radii = scale * 2.0 ** jax.random.uniform(key_radii, (starts,), x.dtype, *RESCUE_RADII)
    steps_allowed = jnp.where(active, max_steps, 0)
    found, steps = jax.vmap(lambda start: _deepfool(goal, start, steps_allowed, overshoot))(units * _column(radii, x))
    crossed = jax.vmap(goal.reached)(found)
    norms = jnp.linalg.norm(found.reshape(starts, -1), axis=1)
    best = jnp.argmin(jnp.where(crossed, norms, jnp.inf))
    return jnp.where(active & crossed[best], found[best], jnp.zeros_like(x)), jnp.sum(steps)


def _deepfool(goal: Goal, start, max_steps, overshoot: float):
    """DeepFool's steps from x + start until x + (1 + overshoot) delta reaches the goal or `max_steps` pass.

    Returns ((1 + overshoot) delta, steps); a start already past the boundary takes no step.
    """
    model, x, label, target = goal

    def step_towards(point):
        logits = model(point)
        jacobian = jax.jacrev(model)(point)
        # Linearise around the current class c (the label until it changes): move to the
        # nearest boundary f_j = f_c, or to the target's when targeted.
        current = jnp.argmax(logits)
        margins = logits - logits[current]  # f_j - f_c <= 0
        directions = jacobian - jacobian[current]
        norms = jnp.linalg.norm(directions.reshape(logits.shape[0], -1), axis=1)
        distances = jnp.abs(margins) / jnp.where(norms > 0, norms, 1)
        if target is None:
            blocked = (jnp.arange(logits.shape[0]) == current) | (norms == 0)
            j = jnp.argmin(jnp.where(blocked, jnp.inf, distances))
        else:
            j = jnp.asarray(target)
        # A zero gradient (every ReLU off, say) gives a zero step, not 0 / 0.
        moving = norms[j] > 0
        return jnp.where(moving, (jnp.abs(margins[j]) + 1e-12) / jnp.where(moving, norms[j], 1) ** 2, 0) * directions[j]

    def cond(state):
        delta, steps = state
        return (steps < max_steps) & ~goal.reached((1 + overshoot) * delta)

    def body(state):
        delta, steps = state
        return delta + step_towards(x + (1 + overshoot) * delta), steps + 1

    delta, steps = jax.lax.while_loop(cond, body, (start / (1 + overshoot), jnp.int32(0)))
    return (1 + overshoot) * delta, steps


def _shrink(goal: Goal, delta, crossed, bisections: int, refinements: int):
    """A crossing delta bisected back to the boundary along its ray, then refined; delta unchanged if not crossed."""
    model, x, label, target = goal
    delta = _scaled(delta, jnp.where(crossed, _bisect_scale(model, x, delta, label, target, bisections), 1))
    if refinements:
        delta = jnp.where(crossed, _refine(model, x, delta, label, target, bisections, refinements), delta)
    return delta


def minimal_l2_best_target(
    model: Model, x: jax.Array, label: int | jax.Array, *, restarts: int = 1, **options
) -> AttackResult:
    """The shortest of the targeted `minimal_l2` attacks towards every other class, vmapped over targets.

    The untargeted attack heads for the boundary DeepFool finds first and restarts around it; with
    more than two classes a different class's boundary can be nearer. This runs k - 1 targeted
    attacks, each of `restarts` lanes (default one: the targets are the diversity, and k - 1
    lanes cost about what the untargeted attack's RESTARTS do), and keeps the shortest that
    verifiably reaches its target; `steps` is their sum. With two classes it is the untargeted attack.
    """
    classes = jax.eval_shape(model, x).shape[0]
    targets = jnp.arange(classes)
    # The label's own lane attacks another class instead (a target equal to the label has no
    # boundary to cross) and is discarded below.
    lanes = jnp.where(targets == label, (label + 1) % classes, targets)
    results = jax.vmap(lambda target: minimal_l2(model, x, label, target=target, restarts=restarts, **options))(lanes)
    usable = results.success & (targets != label)
    best = jnp.argmin(jnp.where(usable, results.norm, jnp.inf))
    picked = jax.tree_util.tree_map(lambda values: values[best], results)
    return picked._replace(success=usable[best], steps=jnp.sum(results.steps))


def _refine(model: Model, x, delta, label, target, bisections: int, refinements: int) -> jax.Array:
    """Shrink a perturbation that reaches the goal (the caller's precondition) by tangent-plane projections.

    On a curved or piecewise-linear boundary, DeepFool's crossing is not the closest one. At the
    boundary point p = x + delta, with w the gradient of the margin f_label - f_b of the boundary
    being crossed (b = the class at p), the closest point of the tangent plane to x is
    x + (w.delta / |w|^2) w (SuperDeepFool's projection, Abdollahpouri et al. 2023). Targeted, the
    target's region is an intersection, {f_target >= f_j for all j}, whose nearest point often lies
    on an edge where several boundaries meet; projecting on one plane at a time zigzags there, so x
    is projected onto the intersection of the linearised constraints of the TARGET_COMPETITORS
    classes closest to the target at p (`_project_on_constraints`). The ray towards the projection,
    at the current best's length, is bisected to the boundary again and kept only if it reaches the
    goal; a ray that does not is retried halfway between it and the current best (the step halves),
    so each accepted delta is verified and shorter.
    """

    def projection(best):
        point = x + best
        if target is None:
            logits = model(point)
            w = margin_gradient(model, jnp.asarray(label), jnp.argmax(logits))(point)
            return jnp.vdot(w, best) / jnp.maximum(jnp.vdot(w, w), jnp.finfo(x.dtype).tiny) * w
        return _project_on_constraints(model, x, best, target)

    def body(_, state):
        best, step = state
        direction = best + step * (projection(best) - best)
        length = jnp.linalg.norm(direction)
        candidate = direction * (jnp.linalg.norm(best) / jnp.where(length > 0, length, 1))
        usable = (length > 0) & _reached(model, x + candidate, label, target)
        # A usable candidate reaches the goal at scale 1, so the bisected one does (`_bisect_scale`).
        candidate = _scaled(candidate, _bisect_scale(model, x, candidate, label, target, bisections))
        better = usable & (jnp.linalg.norm(candidate) < jnp.linalg.norm(best))
        return jnp.where(better, candidate, best), jnp.where(better, step, 0.5 * step)

    refined, _ = jax.lax.fori_loop(0, refinements, body, (delta, jnp.ones((), x.dtype)))
    return refined


# Classes whose linearised constraints the targeted refinement projects onto at once, and the
# coordinate-descent sweeps that solve that small projection's dual.
TARGET_COMPETITORS = 4
DUAL_SWEEPS = 50


def _project_on_constraints(model: Model, x, delta, target) -> jax.Array:
    """u minimising |u| subject to the target's linearised lead at p = x + delta, over its nearest rivals.

    With A the gradients of f_j - f_target at p for the m classes j closest to the target and g
    their values there, the constraints g + A (u - delta) <= 0 say x + u stays in the target's
    region to first order. The dual, min over lambda >= 0 of lambda.G lambda / 2 + lambda.c with
    G = A A^T and c = A delta - g, is m-dimensional; coordinate descent solves it and u = -A^T lambda.
    """
    logits, pullback = jax.vjp(model, x + delta)
    classes = logits.shape[0]
    rivals = jnp.where(jnp.arange(classes) == target, -jnp.inf, logits)
    m = min(TARGET_COMPETITORS, classes - 1)
    _, nearest = jax.lax.top_k(rivals, m)
    cotangents = jax.nn.one_hot(nearest, classes, dtype=logits.dtype) - jax.nn.one_hot(
        target, classes, dtype=logits.dtype
    )
    (a,) = jax.vmap(pullback)(cotangents)
    a = a.reshape(m, -1)
    g = logits[nearest] - logits[target]
    gram = a @ a.T
    c = a @ delta.reshape(-1) - g
    diagonal = jnp.maximum(jnp.diag(gram), jnp.finfo(x.dtype).tiny)

    def sweep(_, dual):
        def coordinate(i, dual):
            return dual.at[i].set(jnp.maximum(0, dual[i] - (gram[i] @ dual + c[i]) / diagonal[i]))

        return jax.lax.fori_loop(0, m, coordinate, dual)

    dual = jax.lax.fori_loop(0, DUAL_SWEEPS, sweep, jnp.zeros(m, x.dtype))
    return (-a.T @ dual).reshape(x.shape)


def _scaled(delta: jax.Array, scale: jax.Array) -> jax.Array:
    """scale * delta as one materialised array (the one `_bisect_scale` verified)."""
    return jax.lax.optimization_barrier(scale * delta)


def _cross_entropy_gradient(model: Model, x: jax.Array, cls) -> jax.Array:
    return jax.grad(lambda point: -jax.nn.log_softmax(model(point))[cls])(x)


def fgsm_bisection(
    model: Model, x: jax.Array, label: int | jax.Array, eps_max: float, bisections: int = 30
) -> AttackResult:
    """FGSM's direction sign(grad CE(f(x), label)) with the smallest eps in (0, eps_max] that changes the label."""
    direction = jnp.sign(_cross_entropy_gradient(model, x, label))
    delta = eps_max * direction
    crossed = _reached(model, x + delta, label, None)
    delta = _scaled(delta, jnp.where(crossed, _bisect_scale(model, x, delta, label, None, bisections), 1))
    return AttackResult(delta, jnp.linalg.norm(delta), _reached(model, x + delta, label, None), jnp.int32(1))


def least_likely(
    model: Model,
    x: jax.Array,
    label: int | jax.Array,
    eps: float,
    step: float,
    max_steps: int = 100,
    bounds: tuple[float, float] | None = None,
) -> AttackResult:
    """Iterative least-likely-class attack: descend CE towards argmin f(x) inside the L-inf ball eps (and bounds).

    Every iterate is projected onto the intersection of the ball |delta_i| <= eps and the box
    bounds[0] <= x_i + delta_i <= bounds[1] (Kurakin et al.'s Clip_{X,eps}), so both hold by
    construction. That intersection contains 0 only if x lies in the box: an x outside it is a
    ValueError (when concrete; traced, the attack returns delta = 0 and success False).
    """
    target = jnp.argmin(model(x))
    lower, upper = -jnp.full_like(x, eps), jnp.full_like(x, eps)
    if bounds is not None:
        _check_inside(x, bounds)
        lower, upper = jnp.maximum(lower, bounds[0] - x), jnp.minimum(upper, bounds[1] - x)
    feasible = jnp.all(lower <= 0) & jnp.all(upper >= 0)

    def cond(state):
        delta, steps = state
        return feasible & (steps < max_steps) & ~_reached(model, x + delta, label, target)

    def body(state):
        delta, steps = state
        moved = delta - step * jnp.sign(_cross_entropy_gradient(model, x + delta, target))
        return jnp.clip(moved, lower, upper), steps + 1

    delta, steps = jax.lax.while_loop(cond, body, (jnp.zeros_like(x), jnp.int32(0)))
    success = feasible & _reached(model, x + delta, label, target)
    return AttackResult(delta, jnp.linalg.norm(delta), success, steps)


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
