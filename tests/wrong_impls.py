"""Small per-triplet NumPy implementations of the log-ratio loss, one correct and three with
bugs seen in ports, for the tests of :func:`logratio.testing.assert_matches_reference` and
``logratio check --against``.

Each takes ``(embeddings, labels, *, squared=True, ties="include", reduction="mean")`` with
(B,) or (B, p) labels under the Euclidean label metric, every row an anchor, and loops over
unordered neighbour pairs; nothing here uses :mod:`logratio`.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def _distance_and_derivative(f, x, y, squared):
    """``D(f_x, f_y)`` and ``∂D/∂f_x``."""
    diff = f[x] - f[y]
    sq = float(diff @ diff)
    if squared:
        return sq, 2 * diff
    d = np.sqrt(sq)
    return d, (diff / d if d > 0 else np.zeros_like(diff))


def _per_triplet(f, y, squared, ties, reduction, *, anchor_term="correct", tie_weight=1,
                 divide_by="triplets"):  # fmt: skip
    f = np.asarray(f, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    b = f.shape[0]
    dl = np.sqrt(((y[:, None, :] - y[None, :, :]) ** 2).sum(-1))
    per_anchor = np.zeros(b)
    grad = np.zeros_like(f)
    count = 0
    for a in range(b):
        others = [k for k in range(b) if k != a]
        for p, i in enumerate(others):
            for j in others[p + 1 :]:
                weight = 1
                if dl[a, i] == dl[a, j]:
                    if ties == "exclude":
                        continue
                    weight = tie_weight  # 2: both orderings of a tied pair
                d_ai, dd_i = _distance_and_derivative(f, i, a, squared)
                d_aj, dd_j = _distance_and_derivative(f, j, a, squared)
                r = np.log(d_ai + EPS) - np.log(d_aj + EPS)
                r -= np.log(dl[a, i] + EPS) - np.log(dl[a, j] + EPS)
                g_i = 2 * r * dd_i / (d_ai + EPS)
                g_j = -2 * r * dd_j / (d_aj + EPS)
                if anchor_term == "correct":
                    g_a = -(g_i + g_j)
                else:  # the widely copied form, ∂l/∂f_i − ∂l/∂f_j
                    g_a = g_i - g_j
                per_anchor[a] += weight * r * r
                grad[i] += weight * g_i
                grad[j] += weight * g_j
                grad[a] += weight * g_a
                count += weight
    if reduction == "none":
        return per_anchor, grad
    total = float(per_anchor.sum())
    if reduction == "sum":
        return total, grad
    n = count if divide_by == "triplets" else b
    return (total / n, grad / n) if n else (0.0, grad)


def loss(embeddings, labels, *, squared=True, ties="include", reduction="mean"):
    """Correct."""
    return _per_triplet(embeddings, labels, squared, ties, reduction)[0]


def loss_and_grad(embeddings, labels, *, squared=True, ties="include", reduction="mean"):
    """Correct, with the per-triplet gradient (anchor term ``−(∂l/∂f_i + ∂l/∂f_j)``)."""
    return _per_triplet(embeddings, labels, squared, ties, reduction)


def gradient(embeddings, labels, *, squared=True, ties="include", reduction="mean"):
    """The correct gradient alone."""
    return _per_triplet(embeddings, labels, squared, ties, reduction)[1]


def copied_anchor_gradient(embeddings, labels, *, squared=True, ties="include", reduction="mean"):
    """Correct loss; the gradient's anchor term is the widely copied ``∂l/∂f_i − ∂l/∂f_j``."""
    return _per_triplet(embeddings, labels, squared, ties, reduction, anchor_term="copied")


def mean_over_anchors(embeddings, labels, *, squared=True, ties="include", reduction="mean"):
    """``reduction="mean"`` divides the sum by the number of anchors, not of triplets."""
    return _per_triplet(embeddings, labels, squared, ties, reduction, divide_by="anchors")[0]


def ties_twice(embeddings, labels, *, squared=True, ties="include", reduction="mean"):
    """With ``ties="include"``, a tied pair counts twice (both of its orderings)."""
    return _per_triplet(embeddings, labels, squared, ties, reduction, tie_weight=2)[0]
