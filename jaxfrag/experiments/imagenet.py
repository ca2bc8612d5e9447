"""Section 6's ImageNet analysis (Tables 7-8, Figure 6) for one (source, target) pair of images.

Contract (images are FLAT pixel vectors in [0, 1]; f is a model of one image, e.g.
`jaxfrag.models.imagenet.classifier`; the source class is the model's class of the source
image and the target class the model's class of the target image):
* `nearest_targets(sources, targets)` -- per source image, the index of the target image
  nearest in L2 (the paper's pairing), computed exactly in float64 numpy.
* `path_columns(f, x_src, x_tgt, src, tgt, n_alpha)` -- along the paper's path
  x_alpha = alpha x_src + (1 - alpha) x_tgt (alpha = 1 at the source), with
  g = f_src - f_tgt: L, cos_theta_t, cos_theta_alpha_<i> (Table 7, alpha = i / 10),
  cos_mean (its "Avg." row, over every alpha), M (eq. (8), normalised by ||grad g(x_src)||,
  via `jaxfrag.compression.path_compression`), grad_norm_src, and cos_path, the n_alpha
  cosines in the paper's alpha order (Figure 6).
* `kurakin_columns(f, x_src, src, tgt, eps_max, step)` -- Q_ll, the paper's Q: the L2 norm of
  Kurakin et al.'s iterative targeted attack towards tgt at the smallest L-inf radius that
  reaches it (`attacks.iterative_targeted_min_eps`, inside the [0, 1] box).
* `minimal_columns(f, x_src, src, tgt, options)` -- Q_l2_targeted (towards tgt) and Q_l2
  (untargeted) from `attacks.minimal_l2`, with the classes they reach and their box shares.
Every attack's `success` comes from applying it (`attacks.Goal.verified`); the entry point
applies each perturbation once more, outside these programs, for the *_class columns.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxfrag import attacks, compression
from jaxfrag.experiments.mnist import ALPHA_TABLE, check_n_alpha  # noqa: F401  (the same alpha grid rule)

# The paper's Table 7 (experiments 1-4; alpha = 0, 0.1, ..., 1, then the average) and Table 8.
PAPER_TABLE7 = [
    [0.0011, 0.0022, -0.0022, -0.0008],
    [0.0037, -0.0021, 0.0015, 0.0003],
    [-0.0036, 0.0076, -0.0029, -0.0056],
    [-0.0020, 0.0041, 0.0005, -0.0059],
    [-0.0091, -0.0035, 0.0058, 0.0026],
    [-0.0057, -0.0060, -0.0199, -0.0098],
    [-0.0094, -0.0042, -0.0011, -0.0051],
    [-0.0009, -0.0055, -0.0039, -0.0035],
    [0.0014, -0.0034, -0.0018, -0.0059],
    [-0.0005, -0.0008, -0.0020, -0.0024],
    [0.0012, -0.0004, 0.0008, -0.0011],
]
PAPER_TABLE7_AVERAGE = [-0.0022, -0.0348, -0.0024, -0.0034]
PAPER_TABLE8 = {
    "M/(0.5L)": [-0.0765, -0.03486, -0.03865, -0.0806],
    "Q": [5.8044, 5.8278, 5.8693, 5.8207],
    "L": [198.2214, 160.8016, 193.3129, 171.4597],
    "Q/(0.5L)": [0.0722, 0.0828, 0.0607, 0.0679],
}

COLUMNS = {
    "L": "||x_tgt - x_src|| (pixels in [0, 1])",
    "cos_theta_t": "signed cosine of grad(f_src - f_tgt)(x_src) with x_tgt - x_src",
    "cos_mean": "mean of cos theta_alpha over every alpha of the path (Table 7's Avg.)",
    "M": "eq. (8) over the path's alphas, normalised by ||grad(f_src - f_tgt)(x_src)||",
    "grad_norm_src": "||grad(f_src - f_tgt)(x_src)||",
    "Q_ll": "L2 norm of Kurakin's iterative targeted attack towards tgt at its smallest successful L-inf radius",
    "Q_ll_eps": "that radius (L-inf, pixels in [0, 1])",
    "Q_ll_runs": "attacks the radius search ran",
    "Q_ll_success": "x_src + the attack is classified tgt, by more than rounding",
    "Q_l2_targeted": "L2 norm of the targeted minimal-L2 attack towards tgt",
    "Q_l2_targeted_success": "x_src + it is classified tgt, by more than rounding",
    "Q_l2": "L2 norm of the untargeted minimal-L2 attack",
    "Q_l2_success": "x_src + it is not classified src, by more than rounding",
    "box_l2_targeted": "fraction of pixels of x_src + the targeted minimal-L2 perturbation outside [0, 1]",
    "box_l2": "the same for the untargeted one",
    "Q_ll_ratio": "Q_ll / (0.5 L)",
    "Q_l2_targeted_ratio": "Q_l2_targeted / (0.5 L)",
    "Q_l2_ratio": "Q_l2 / (0.5 L)",
    "M_ratio": "M / (0.5 L)",
    **{
        f"cos_theta_alpha_{i}": f"cos theta at the paper's alpha = {i / 10:.1f} (0: x_tgt, 1: x_src; Table 7)"
        for i in range(ALPHA_TABLE)
    },
}


def nearest_targets(sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each row of `sources`, the index of the nearest row of `targets` in L2 (ties: the first)."""
    sources = np.asarray(sources, np.float64).reshape(len(sources), -1)
    targets = np.asarray(targets, np.float64).reshape(len(targets), -1)
    if targets.shape[0] == 0:
        raise ValueError("no target images to pair with")
    # Exact squared distances; the expansion |a|^2 - 2 a.b + |b|^2 would cancel for near-equal images.
    distances = np.stack([np.sum((targets - s) ** 2, axis=1) for s in sources])
    return np.argmin(distances, axis=1)


def path_columns(f: Callable, x_src, x_tgt, src, tgt, n_alpha: int) -> dict[str, jax.Array]:
    # path_compression runs from x_src (its alpha 0) to x_tgt: its cosine is taken with x_tgt - x_src and
    # its M is normalised at x_src, as the paper's; the paper's alpha is 1 minus its alpha.
    path = compression.path_compression(f, x_src, x_tgt, (src, tgt), n_alpha)
    cos_paper = path.cos[::-1]  # index k: the paper's alpha = k / (n_alpha - 1)
    step = (n_alpha - 1) // (ALPHA_TABLE - 1)
    return {
        "L": jnp.linalg.norm(x_tgt - x_src),
        "cos_theta_t": path.cos[0],
        "cos_mean": jnp.mean(path.cos),
        "M": path.length[-1],
        "grad_norm_src": path.grad_norm[0],
        "cos_path": cos_paper,
        **{f"cos_theta_alpha_{i}": cos_paper[i * step] for i in range(ALPHA_TABLE)},
    }


def kurakin_columns(f: Callable, x_src, src, tgt, eps_max: float, step: float) -> dict[str, jax.Array]:
    search = attacks.iterative_targeted_min_eps(f, x_src, src, tgt, eps_max=eps_max, step=step, bounds=(0.0, 1.0))
    return {
        "Q_ll": search.result.norm,
        "Q_ll_eps": search.eps,
        "Q_ll_runs": search.runs,
        "Q_ll_success": search.result.success,
        "delta_ll": search.result.delta,
    }


def minimal_columns(f: Callable, x_src, src, tgt, options: dict) -> dict[str, jax.Array]:
    columns = {}
    for name, target in (("Q_l2_targeted", tgt), ("Q_l2", None)):
        result = attacks.minimal_l2(f, x_src, src, target, **options)
        moved = x_src + result.delta
        columns[name] = result.norm
        columns[f"{name}_success"] = result.success
        columns["box_" + name[2:]] = jnp.mean((moved < 0) | (moved > 1))
        columns["delta_" + name[2:]] = result.delta
    return columns
