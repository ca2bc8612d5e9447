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
perturbation: the argmax of f(x + delta) is not `label` (untargeted) or is
`target` (targeted).
* `minimal_l2` -- DeepFool's linearised steps (Moosavi-Dezfooli et al. 2016) to
  cross the boundary, then a bisection along the found perturbation for the
  smallest scale that still crosses: on an affine model this is the exact
  minimal perturbation, times 1 + 1e-6 (or what float resolution needs) so
  that it crosses wherever it is evaluated. On a nonlinear model DeepFool's
  crossing is not the nearest, so boundary projections (SuperDeepFool-style)
  then shrink it, each candidate bisected and verified before it is kept.
* `minimal_l2_best_target` -- the shortest of the targeted minimal-L2 attacks
  towards every other class: k - 1 times the work, for multi-class models
  whose nearest boundary is not the one DeepFool heads for.
* `fgsm_bisection` -- delta = eps sign(grad of the cross-entropy), with the
  smallest eps that changes the label found by bisection (the paper's MNIST Q).
* `least_likely` -- Kurakin et al.'s iterative least-likely-class attack, L-inf
  ball of radius eps, step size `step` (the paper's ImageNet Q).
Hand-written because the attack libraries (Foolbox 3) run JAX models one
eager operation at a time; these compile and vmap over trials.
"""

from __future__ import annotations

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
    # The barrier materialises the perturbed input, so every check of one candidate sees the same
    # rounded array (XLA would otherwise fuse x + s * delta into an FMA at some call sites only).
    predicted = jnp.argmax(model(jax.lax.optimization_barrier(x)))
    return predicted != label if target is None else predicted == target


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
    max_steps: int = 50,
    overshoot: float = 0.02,
    bisections: int = 30,
    refinements: int = 20,
) -> AttackResult:
    """DeepFool steps until the label changes (or reaches `target`), bisection along the perturbation,
    then `refinements` boundary projections, each kept only if it verifiably reaches the goal closer."""
    _check_target(label, target)

    def step_towards(point):
        logits = model(point)
        jacobian = jax.jacrev(model)(point)
        # Linearise around the current class c (the label until it changes): move to the
        # nearest boundary f_j = f_c, or to the target's when targeted.
        current = jnp.argmax(logits)
        margins = logits - logits[current]  # f_j - f_c <= 0
        directions = jacobian - jacobian[current]
        norms = jnp.linalg.norm(directions, axis=1)
        distances = jnp.abs(margins) / jnp.where(norms > 0, norms, 1)
        if target is None:
            blocked = (jnp.arange(logits.shape[0]) == current) | (norms == 0)
            j = jnp.argmin(jnp.where(blocked, jnp.inf, distances))
        else:
            j = jnp.asarray(target)
        return (jnp.abs(margins[j]) + 1e-12) / jnp.maximum(norms[j], 1e-30) ** 2 * directions[j]

    def cond(state):
        delta, steps = state
        return (steps < max_steps) & ~_reached(model, x + (1 + overshoot) * delta, label, target)

    def body(state):
        delta, steps = state
        return delta + step_towards(x + (1 + overshoot) * delta), steps + 1

    delta, steps = jax.lax.while_loop(cond, body, (jnp.zeros_like(x), jnp.int32(0)))
    delta = (1 + overshoot) * delta
    crossed = _reached(model, x + delta, label, target)
    delta = _scaled(delta, jnp.where(crossed, _bisect_scale(model, x, delta, label, target, bisections), 1))
    if refinements:
        delta = jnp.where(crossed, _refine(model, x, delta, label, target, bisections, refinements), delta)
    success = _reached(model, x + delta, label, target)
    return AttackResult(delta, jnp.linalg.norm(delta), success, steps + refinements)


def minimal_l2_best_target(model: Model, x: jax.Array, label: int | jax.Array, **options) -> AttackResult:
    """The shortest of the targeted `minimal_l2` attacks towards every other class, vmapped over targets.

    The untargeted attack follows the boundary DeepFool heads for first and refines it locally; with
    more than two classes a different class's boundary can be nearer. This runs k - 1 attacks (k - 1
    times the work) and keeps the shortest that verifiably reaches its target; `steps` is their sum.
    With two classes it is the untargeted attack.
    """
    classes = jax.eval_shape(model, x).shape[0]
    targets = jnp.arange(classes)
    # The label's own lane attacks another class instead (a target equal to the label has no
    # boundary to cross) and is discarded below.
    lanes = jnp.where(targets == label, (label + 1) % classes, targets)
    results = jax.vmap(lambda target: minimal_l2(model, x, label, target=target, **options))(lanes)
    usable = results.success & (targets != label)
    best = jnp.argmin(jnp.where(usable, results.norm, jnp.inf))
    picked = jax.tree_util.tree_map(lambda values: values[best], results)
    return picked._replace(success=usable[best], steps=jnp.sum(results.steps))


def _refine(model: Model, x, delta, label, target, bisections: int, refinements: int) -> jax.Array:
    """Shrink a perturbation that reaches the goal (the caller's precondition) by tangent-plane projections.

    On a curved or piecewise-linear boundary, DeepFool's crossing is not the closest one. At the
    boundary point p = x + delta, with w the gradient of the margin f_a - f_b of the boundary being
    crossed (a = label, b = the class at p; targeted: a = the runner-up at p, b = target), the
    closest point of the tangent plane to x is x + (w.delta / |w|^2) w (SuperDeepFool's projection,
    Abdollahpouri et al. 2023). The ray towards it, at the current best's length, is bisected to the
    boundary again and kept only if it reaches the goal; a ray that does not is retried halfway
    between it and the current best (the step halves), so each accepted delta is verified and shorter.
    """

    def boundary_normal(point):
        logits = model(point)
        if target is None:
            losing, winning = jnp.asarray(label), jnp.argmax(logits)
        else:
            others = jnp.where(jnp.arange(logits.shape[0]) == target, -jnp.inf, logits)
            losing, winning = jnp.argmax(others), jnp.asarray(target)
        return margin_gradient(model, losing, winning)(point)

    def body(_, state):
        best, step = state
        w = boundary_normal(x + best)
        projected = (w @ best) / jnp.maximum(w @ w, 1e-30) * w
        direction = best + step * (projected - best)
        length = jnp.linalg.norm(direction)
        candidate = direction * (jnp.linalg.norm(best) / jnp.where(length > 0, length, 1))
        usable = (length > 0) & _reached(model, x + candidate, label, target)
        # A usable candidate reaches the goal at scale 1, so the bisected one does (`_bisect_scale`).
        candidate = _scaled(candidate, _bisect_scale(model, x, candidate, label, target, bisections))
        better = usable & (jnp.linalg.norm(candidate) < jnp.linalg.norm(best))
        return jnp.where(better, candidate, best), jnp.where(better, step, 0.5 * step)

    refined, _ = jax.lax.fori_loop(0, refinements, body, (delta, jnp.ones((), x.dtype)))
    return refined


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
    """Iterative least-likely-class attack: descend CE towards argmin f(x) inside the L-inf ball eps (and bounds)."""
    target = jnp.argmin(model(x))

    def cond(state):
        delta, steps = state
        return (steps < max_steps) & ~_reached(model, x + delta, label, target)

    def body(state):
        delta, steps = state
        moved = delta - step * jnp.sign(_cross_entropy_gradient(model, x + delta, target))
        moved = jnp.clip(moved, -eps, eps)
        if bounds is not None:
            moved = jnp.clip(x + moved, *bounds) - x
        return moved, steps + 1

    delta, steps = jax.lax.while_loop(cond, body, (jnp.zeros_like(x), jnp.int32(0)))
    return AttackResult(delta, jnp.linalg.norm(delta), _reached(model, x + delta, label, target), steps)
