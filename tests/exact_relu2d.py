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
    """Pairwise intersections of the lines n . y + o = 0 (skipping near-parallel pairs), (m, 2).

    Cramer's rule on all pairs at once: a loop of 2x2 solves made this oracle most of its tests' time."""
    i, j = np.triu_indices(len(offsets), 1)
    (a, b), (c, d) = normals[i].T, normals[j].T  # the rows (a, b) and (c, d) of each pair's matrix
    det = a * d - b * c
    ok = np.abs(det) > 1e-12 * np.linalg.norm(normals[i], axis=1) * np.linalg.norm(normals[j], axis=1)
    r, s = -offsets[i][ok], -offsets[j][ok]
    a, b, c, d, det = a[ok], b[ok], c[ok], d[ok], det[ok]
    return np.column_stack([(r * d - b * s) / det, (a * s - c * r) / det])


def _projections(x: np.ndarray, normals: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """x projected onto each line n . y + o = 0, (m, 2)."""
    norms2 = np.sum(normals**2, axis=1)
    keep = norms2 > 0
    t = (normals[keep] @ x + offsets[keep]) / norms2[keep]
    return x - t[:, None] * normals[keep]


def cells(net: ReluNet2D) -> np.ndarray:
    """The activation patterns (bool, (cells, width)) of every cell of the hidden-line arrangement."""
    h, c = net.h1, net.c1
    i, j = np.triu_indices(len(c), 1)
    pairs = np.stack([h[i], h[j]], axis=1)  # (pairs, 2, 2): the two hidden lines through each vertex
    ok = np.abs(np.linalg.det(pairs)) >= 1e-12 * np.linalg.norm(h[i], axis=1) * np.linalg.norm(h[j], axis=1)
    pairs, i, j = pairs[ok], i[ok], j[ok]
    vertices = np.linalg.solve(pairs, -np.stack([c[i], c[j]], axis=1)[..., None])[..., 0]
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=2)))  # the vertex's four sectors
    steps = np.linalg.solve(pairs[:, None], np.broadcast_to(signs[..., None], (len(i), 4, 2, 1)))[..., 0]
    scale = 1e-7 * (1 + np.linalg.norm(vertices, axis=1))[:, None, None]
    points = vertices[:, None] + scale * steps / np.linalg.norm(steps, axis=2, keepdims=True)
    patterns = points @ h.T + c > 0  # (pairs, 4, width)
    rows = np.arange(len(i))[:, None]
    patterns[rows, np.arange(4), i[:, None]] = signs[:, 0] > 0  # the sector, whatever rounding says
    patterns[rows, np.arange(4), j[:, None]] = signs[:, 1] > 0
    return np.unique(patterns.reshape(-1, len(c)), axis=0)


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
    patterns = cells(net)
    w_cells = np.einsum("cw,pw,wd->pcd", net.h2, patterns, net.h1)  # (cells, classes, 2): each cell's W y + b
    b_cells = (net.h2 * patterns[:, None]) @ net.c1 + net.c2
    others = [j for j in range(len(net.c2)) if j != pivot]
    normals = np.concatenate([net.h1, (w_cells[:, pivot, None] - w_cells[:, others]).reshape(-1, 2)])
    offsets = np.concatenate([net.c1, (b_cells[:, pivot, None] - b_cells[:, others]).ravel()])
    # Margin lines of different cells coincide on shared edges; dedupe to keep the pairwise set small.
    lines = np.unique(np.round(np.column_stack([normals, offsets]), 12), axis=0)
    normals, offsets = lines[:, :2], lines[:, 2]
    candidates = np.concatenate([_projections(x, normals, offsets), _intersections(normals, offsets)])
    # The nearest candidate in S: candidates in order of distance, the net evaluated a block at a
    # time until one lies in S (the same answer as evaluating all of them, at a fraction of the cost).
    distances = np.linalg.norm(candidates - x, axis=1)
    order = np.argsort(distances, kind="stable")
    for block in np.array_split(order, np.arange(256, len(order), 256)):
        points = candidates[block]
        scale = np.abs(net.h2) @ (np.abs(points @ net.h1.T) + np.abs(net.c1)).T + np.abs(net.c2)[:, None]
        if target is None:
            inside = net.margin(points, label) <= slack * scale.max(0)
        else:
            inside = net.margin(points, target) >= -slack * scale.max(0)
        if inside.any():
            first = block[np.argmax(inside)]
            return ExactResult(float(distances[first]), candidates[first])
    return ExactResult(np.inf, np.full(2, np.nan))


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


class Problems(NamedTuple):
    nets: list[ReluNet2D]
    x: np.ndarray  # (n, 2)
    labels: np.ndarray  # (n,)
    targets: np.ndarray | None  # (n,), targeted problems only
    exact: np.ndarray  # (n,), inf where the goal is unreachable


def problems(first_seed: int, seeds: int, count: int, width: int, classes: int, targeted: bool) -> Problems:
    """The families of `seeds` seeds from `first_seed` pooled; targeted: each input towards every other class."""
    parts = [family(first_seed + seed, count, width, classes) for seed in range(seeds)]
    nets = [net for part in parts for net in part.nets]
    x = np.concatenate([part.x for part in parts])
    labels = np.concatenate([part.labels for part in parts])
    if not targeted:
        return Problems(nets, x, labels, None, np.concatenate([part.exact for part in parts]))
    pairs = [(n, p, y, t) for n, p, y in zip(nets, x, labels, strict=True) for t in range(classes) if t != y]
    exact = np.array([exact_min_perturbation(n, p, y, target=t).distance for n, p, y, t in pairs])
    nets, x, labels, targets = zip(*pairs, strict=True)
    return Problems(list(nets), np.array(x), np.array(labels), np.array(targets), exact)
