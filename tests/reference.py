"""An independent float64 reference: explicit loops over every triplet, no shared code.

Nothing here imports :mod:`logratio`; it follows DESIGN.md §1 literally so that the
closed-form, blocked and cross-backend implementations can be checked against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def label_distance_matrix(labels: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """(B, B) label distances with explicit per-pair loops."""
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    b = y.shape[0]
    out = np.zeros((b, b))
    for a in range(b):
        for c in range(b):
            diff = y[a] - y[c]
            if metric == "cityblock":
                out[a, c] = float(np.sum(np.abs(diff)))
            elif metric == "sqeuclidean":
                out[a, c] = float(np.sum(diff * diff))
            else:
                out[a, c] = math.sqrt(float(np.sum(diff * diff)))
    return out


def triplets(
    label_distances: np.ndarray,
    anchors: Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    ties: str = "include",
) -> list[tuple[int, int, int]]:
    """Every counted triplet (a, i, j), in anchor order, with ``Δ_ai ≤ Δ_aj``."""
    dl = np.asarray(label_distances, dtype=np.float64)
    b = dl.shape[0]
    rows = range(b) if anchors is None else anchors
    out = []
    for a in rows:
        for i in range(b):
            for j in range(b):
                if len({a, i, j}) < 3:
                    continue
                if mask is not None and not (mask[a, i] and mask[a, j]):
                    continue
                if dl[a, i] < dl[a, j] or (ties == "include" and dl[a, i] == dl[a, j] and i < j):
                    out.append((a, i, j))
    return out


def embedding_distance(f: np.ndarray, a: int, b: int, squared: bool) -> float:
    diff = f[a] - f[b]
    sq = float(np.dot(diff, diff))
    return sq if squared else math.sqrt(sq)


def triplet_term(f, dl, a, i, j, squared=True, eps=1e-6) -> float:
    """``(log (D_ai+ε)/(D_aj+ε) − log (Δ_ai+ε)/(Δ_aj+ε))²``."""
    d_ai = embedding_distance(f, a, i, squared)
    d_aj = embedding_distance(f, a, j, squared)
    r = (
        math.log(d_ai + eps)
        - math.log(d_aj + eps)
        - math.log(dl[a, i] + eps)
        + math.log(dl[a, j] + eps)
    )
    return r * r


def loss(
    embeddings,
    label_distances,
    *,
    anchors: Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    squared: bool = True,
    eps: float = 1e-6,
    ties: str = "include",
    reduction: str = "mean",
):
    """The log-ratio loss by enumeration; "none" gives per-anchor sums in anchor order."""
    f = np.asarray(embeddings, dtype=np.float64)
    dl = np.asarray(label_distances, dtype=np.float64)
    rows = list(range(f.shape[0])) if anchors is None else list(anchors)
    per_anchor = []
    count = 0
    for a in rows:
        ts = triplets(dl, [a], mask, ties)
        count += len(ts)
        per_anchor.append(sum(triplet_term(f, dl, *t, squared=squared, eps=eps) for t in ts))
    if reduction == "none":
        return np.asarray(per_anchor)
    total = float(sum(per_anchor))
    if reduction == "sum":
        return total
    return total / count if count else 0.0


def gradient(
    embeddings,
    label_distances,
    *,
    anchors: Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    squared: bool = True,
    eps: float = 1e-6,
    ties: str = "include",
    reduction: str = "mean",
) -> np.ndarray:
    """Per-triplet gradients (DESIGN.md §1.2, corrected anchor term) summed over triplets.

    ``∂l/∂f_i = 2r·∂D_ai/∂f_i/(D_ai+ε)``, ``∂l/∂f_j = −2r·∂D_aj/∂f_j/(D_aj+ε)``,
    ``∂l/∂f_a = −(∂l/∂f_i + ∂l/∂f_j)``; with "none", the gradient of the sum.
    """
    f = np.asarray(embeddings, dtype=np.float64)
    dl = np.asarray(label_distances, dtype=np.float64)
    rows = list(range(f.shape[0])) if anchors is None else list(anchors)
    g = np.zeros_like(f)
    count = 0
    for a in rows:
        for _, i, j in triplets(dl, [a], mask, ties):
            count += 1
            d_ai = embedding_distance(f, a, i, squared)
            d_aj = embedding_distance(f, a, j, squared)
            r = (
                math.log(d_ai + eps) - math.log(d_aj + eps)
                - math.log(dl[a, i] + eps) + math.log(dl[a, j] + eps)
            )  # fmt: skip
            gi = _ddist(f, i, a, d_ai, squared) / (d_ai + eps)
            gj = _ddist(f, j, a, d_aj, squared) / (d_aj + eps)
            g[i] += 2 * r * gi
            g[j] -= 2 * r * gj
            g[a] -= 2 * r * gi - 2 * r * gj
    if reduction == "mean" and count:
        g /= count
    return g


def _ddist(f: np.ndarray, x: int, y: int, dist: float, squared: bool) -> np.ndarray:
    """∂D(f_x, f_y)/∂f_x."""
    diff = f[x] - f[y]
    if squared:
        return 2 * diff
    return diff / dist if dist > 0 else np.zeros_like(diff)


def finite_difference_gradient(fun, x: np.ndarray, step: float = 1e-6) -> np.ndarray:
    """Central differences of a scalar function of a float64 array."""
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros_like(x)
    for k in np.ndindex(*x.shape):
        xp_, xm = x.copy(), x.copy()
        xp_[k] += step
        xm[k] -= step
        g[k] = (fun(xp_) - fun(xm)) / (2 * step)
    return g
