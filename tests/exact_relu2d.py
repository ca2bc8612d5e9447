"""The exact minimal L2 perturbation of a one-hidden-layer ReLU net on a 2-D input, in float64 numpy.

Independent of jaxfrag. The net f(y) = H2 relu(H1 y + c1) + c2 is affine on every cell of the
arrangement of its hidden lines {H1_i . y + c1_i = 0}, so the set the attack must reach,
S = {y : f_label(y) <= max_{j != label} f_j(y)}, is a finite union of convex polygons
closure(cell) ∩ {(f_label - f_j)_cell <= 0}. The point of a convex polygon closest to x is x's
projection onto one of its edge lines or one of its vertices; the edge lines are hidden lines and
the cells' margin lines (f_label - f_j)_cell = 0. So the distance from x to S is the smallest
||y - x|| over a finite candidate set (those projections and the pairwise intersections) with the
net's own margin at y <= 0: exact, up to float64 rounding on the boundary (`slack`).

Every cell of an arrangement of non-parallel lines has a vertex on its boundary, so the cells are
enumerated by stepping from every vertex into its four sectors.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np


class ReluNet2D(NamedTuple):
    h1: np.ndarray  # (width, 2)
    c1: np.ndarray  # (width,)
    h2: np.ndarray  # (classes, width)
    c2: np.ndarray  # (classes,)

    def logits(self, y: np.ndarray) -> np.ndarray:
        """Logits of points y (..., 2)."""
        return np.maximum(y @ self.h1.T + self.c1, 0) @ self.h2.T + self.c2

    def margin(self, y: np.ndarray, label: int) -> np.ndarray:
        """f_label - max_{j != label} f_j at points y (..., 2): positive where the label wins."""
        out = self.logits(y)
        others = np.delete(out, label, axis=-1)
        return out[..., label] - others.max(-1)


def random_net(rng: np.random.Generator, width: int, classes: int) -> ReluNet2D:
    """Standard Gaussian weights and biases."""
    return ReluNet2D(
        rng.normal(size=(width, 2)), rng.normal(size=width), rng.normal(size=(classes, width)), rng.normal(size=classes)
    )


def _intersections(normals: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Pairwise intersections of the lines n . y + o = 0 (skipping near-parallel pairs), (m, 2)."""
    i, j = np.triu_indices(len(offsets), 1)
    a = np.stack([normals[i], normals[j]], axis=1)  # (pairs, 2, 2)
    det = np.linalg.det(a)
    ok = np.abs(det) > 1e-12 * np.linalg.norm(normals[i], axis=1) * np.linalg.norm(normals[j], axis=1)
    rhs = -np.stack([offsets[i], offsets[j]], axis=1)
    return np.linalg.solve(a[ok], rhs[ok][..., None])[..., 0]


def _projections(x: np.ndarray, normals: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """x projected onto each line n . y + o = 0, (m, 2)."""
    norms2 = np.sum(normals**2, axis=1)
    keep = norms2 > 0
    t = (normals[keep] @ x + offsets[keep]) / norms2[keep]
    return x - t[:, None] * normals[keep]


def cells(net: ReluNet2D) -> np.ndarray:
    """The activation patterns (bool, (cells, width)) of every cell of the hidden-line arrangement."""
    h, c = net.h1, net.c1
    patterns = set()
    for i, j in itertools.combinations(range(len(c)), 2):
        a = np.stack([h[i], h[j]])
        if abs(np.linalg.det(a)) < 1e-12 * np.linalg.norm(h[i]) * np.linalg.norm(h[j]):
            continue
        vertex = np.linalg.solve(a, -np.array([c[i], c[j]]))
        for signs in itertools.product((-1.0, 1.0), repeat=2):
            step = np.linalg.solve(a, np.array(signs))
            point = vertex + 1e-7 * (1 + np.linalg.norm(vertex)) * step / np.linalg.norm(step)
            pre = h @ point + c
            pattern = pre > 0
            pattern[i], pattern[j] = signs[0] > 0, signs[1] > 0  # the sector, whatever rounding says
            patterns.add(pattern.tobytes())
    return np.array([np.frombuffer(p, dtype=bool) for p in patterns])


class ExactResult(NamedTuple):
    distance: float  # inf when no point of S exists (the label wins everywhere)
    point: np.ndarray  # (2,), the closest point of S (nan when none)


def exact_min_perturbation(
    net: ReluNet2D, x: np.ndarray, label: int, target: int | None = None, slack: float = 1e-9
) -> ExactResult:
    """min ||y - x|| over y with f_label(y) <= max_{j != label} f_j(y), exactly (see the module docstring).

    With `target`, over y with f_target(y) >= max_{j != target} f_j(y) instead: per cell a convex
    polygon again, whose edge lines are hidden lines and the cell's lines (f_target - f_j) = 0.
    """
    x = np.asarray(x, float)
    pivot = label if target is None else target
    normals, offsets = [net.h1], [net.c1]
    for pattern in cells(net):
        w_cell = (net.h2 * pattern) @ net.h1  # (classes, 2): the cell's affine logits W y + b
        b_cell = (net.h2 * pattern) @ net.c1 + net.c2
        others = [j for j in range(len(net.c2)) if j != pivot]
        normals.append(w_cell[pivot] - w_cell[others])
        offsets.append(b_cell[pivot] - b_cell[others])
    normals, offsets = np.concatenate(normals), np.concatenate(offsets)
    # Margin lines of different cells coincide on shared edges; dedupe to keep the pairwise set small.
    lines = np.unique(np.round(np.column_stack([normals, offsets]), 12), axis=0)
    normals, offsets = lines[:, :2], lines[:, 2]
    candidates = np.concatenate([_projections(x, normals, offsets), _intersections(normals, offsets)])
    scale = np.abs(net.h2) @ (np.abs(candidates @ net.h1.T) + np.abs(net.c1)).T + np.abs(net.c2)[:, None]
    if target is None:
        inside = net.margin(candidates, label) <= slack * scale.max(0)
    else:
        inside = net.margin(candidates, target) >= -slack * scale.max(0)
    if not inside.any():
        return ExactResult(np.inf, np.full(2, np.nan))
    distances = np.linalg.norm(candidates[inside] - x, axis=1)
    best = np.argmin(distances)
    return ExactResult(float(distances[best]), candidates[inside][best])


class Family(NamedTuple):
    nets: list[ReluNet2D]
    x: np.ndarray  # (n, 2) the attacked inputs, N(0, I)
    labels: np.ndarray  # (n,) the nets' classes at x
    exact: np.ndarray  # (n,) the exact minimal perturbation's norm (inf when none exists)


def family(seed: int, count: int, width: int, classes: int) -> Family:
    """`count` random nets (`random_net`) and inputs from one seed, with their exact minimal perturbations."""
    rng = np.random.default_rng(seed)
    nets = [random_net(rng, width, classes) for _ in range(count)]
    x = rng.normal(size=(count, 2))
    labels = np.array([int(np.argmax(net.logits(point))) for net, point in zip(nets, x, strict=True)])
    exact = np.array([exact_min_perturbation(n, p, y).distance for n, p, y in zip(nets, x, labels, strict=True)])
    return Family(nets, x, labels, exact)
