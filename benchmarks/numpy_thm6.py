"""The baseline a researcher would write: Theorem 6's trial in numpy, one trial at a time.

Same computation as `jaxfrag.experiments.thm6` -- sample A and z, QR, a
condition-(6) network with one Gaussian hidden layer of width 2d, its exact
robustness (checked by applying the perturbation), the attack -2 z_d R_dd Q_:,d
applied to the network, and the exact nearest opposite-class point: all
2^(d-1) candidates up to d = 12, a recursive Schnorr-Euchner sphere decoder on
the sorted QR beyond (the algorithm the engine batches).
"""

from __future__ import annotations

import sys

import numpy as np

sys.setrecursionlimit(10_000)


def qr_positive(a):
    q, r = np.linalg.qr(a)
    signs = np.where(np.diag(r) < 0, -1.0, 1.0)
    return q * signs, r * signs[:, None]


def sorted_qr(c, b):
    """R of [C P | b] with P the smallest-residual-first order of C's columns."""
    n = c.shape[1]
    residual = c.copy()
    remaining, order = list(range(n)), []
    for _ in range(n):
        norms = np.linalg.norm(residual[:, remaining], axis=0)
        pick = remaining[int(np.argmin(norms))]
        order.append(pick)
        remaining.remove(pick)
        q = residual[:, pick] / np.linalg.norm(residual[:, pick])
        residual = residual - np.outer(q, q @ residual)
    _, r = qr_positive(np.column_stack([c[:, order], b]))
    return r, order


def sphere_decode(r):
    """min over s in {0,1}^n of ||R [s; 1]||^2 with the radius fixed at s = 0 (as the engine does)."""
    n = r.shape[0] - 1
    radius = float(np.sum(r[:, n] ** 2))
    best = [radius, np.zeros(n)]
    bits = np.zeros(n)

    def visit(k, partial, centre):
        if k < 0:
            if partial < best[0]:
                best[0], best[1] = partial, bits.copy()
            return
        t = centre[k]
        for cost, value in sorted([(t * t, 0.0), ((t + r[k, k]) ** 2, 1.0)]):
            if partial + cost >= radius:
                break
            bits[k] = value
            visit(k - 1, partial + cost, centre + r[:, k] * value)

    visit(n - 1, r[n, n] ** 2, r[:, n].copy())
    return best[1]


def nearest_opposite_bits(c, b, brute_force_max_d=12):
    n = c.shape[1]
    if n + 1 <= brute_force_max_d:
        patterns = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(float)
        values = b[None, :] + patterns @ c.T
        return patterns[np.argmin(np.sum(values * values, axis=1))]
    r, order = sorted_qr(c, b)
    found = sphere_decode(r)
    bits = np.zeros(n)
    bits[order] = found
    return bits


def trial(rng: np.random.Generator, d: int, scale_columns: float = 1.0) -> dict:
    a = rng.standard_normal((d, d))
    a[:, :-1] *= scale_columns
    z = rng.choice([-1.0, 1.0], d)
    hidden = rng.standard_normal((2 * d, d))
    q, r = qr_positive(a)
    last_row = np.linalg.solve(a.T, np.eye(d)[-1])  # last row of A^{-1}
    q_h, r_h = qr_positive(hidden)
    w_out = np.stack([last_row, -last_row]) @ np.linalg.solve(r_h, q_h.T)  # through hidden's pseudo-inverse

    def logits(x):
        return w_out @ (hidden @ x)

    x = a @ z
    label = 0 if z[-1] > 0 else 1
    gradient = (w_out[label] - w_out[1 - label]) @ hidden
    margin = logits(x)[label] - logits(x)[1 - label]
    nn = margin / np.linalg.norm(gradient)
    delta = -margin * gradient / gradient @ gradient
    flips = lambda p: np.argmax(logits(x + p)) != label  # noqa: E731
    e = -2 * z[-1] * r[-1, -1] * q[:, -1]
    c = a[:, :-1] * (z[:-1] * z[-1])
    bits = nearest_opposite_bits(c, a[:, -1])
    z_opposite = np.concatenate([np.where(bits > 0, -z[:-1], z[:-1]), -z[-1:]])
    opt = 0.5 * np.linalg.norm(x - a @ z_opposite)
    return {
        "phi": r[-1, -1] / np.linalg.norm(a[:, -1]),
        "nn_robustness": nn,
        "nn_min_flips": flips(1.0001 * delta) and not flips(0.9999 * delta),
        "attack_flips": flips(e),
        "opt_robustness": opt,
        "gap": nn / opt,
    }
