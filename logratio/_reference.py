"""A float64 reference of the log-ratio loss by explicit enumeration (used by ``logratio check``).

Plain Python loops over every triplet, following docs/design.md §1 literally and sharing no code
with the dense implementation (no variance identity, no Gram trick, no blocks): slow,
O(B³ d), meant for batches of a few dozen at most.

    U_ab = log(D_ab + ε) − log(Δ_ab + ε),     l(a, i, j) = (U_ai − U_aj)²

for every anchor ``a`` and neighbours ``i ≠ j`` (both ``≠ a``, both allowed by the mask),
one ordering per unordered pair: ``Δ_ai < Δ_aj``, or ``Δ_ai = Δ_aj`` and ``i < j`` when ties
are included.  The gradient is summed per triplet (docs/design.md §1.2, the corrected anchor term).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["counted_triplets", "finite_differences", "label_distances", "loss_and_grad"]


def label_distances(labels: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """(B, B) label distances, one pair at a time."""
    y = np.asarray(labels, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    b = y.shape[0]
    out = np.zeros((b, b))
    for a in range(b):
        for c in range(b):
            diff = [float(y[a, t] - y[c, t]) for t in range(y.shape[1])]
            if metric == "cityblock":
                out[a, c] = sum(abs(x) for x in diff)
            elif metric == "sqeuclidean":
                out[a, c] = sum(x * x for x in diff)
            else:
                out[a, c] = math.sqrt(sum(x * x for x in diff))
    return out


def counted_triplets(
    dl: np.ndarray,
    anchors: Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    ties: str = "include",
) -> list[tuple[int, int, int]]:
    """The triplets ``(a, i, j)`` the loss counts, anchor by anchor."""
    b = dl.shape[0]
    out = []
    for a in range(b) if anchors is None else anchors:
        for i in range(b):
            for j in range(b):
                if a == i or a == j or i == j:
                    continue
                if mask is not None and not (mask[a][i] and mask[a][j]):
                    continue
                nearer = dl[a, i] < dl[a, j]
                tie_kept = ties == "include" and dl[a, i] == dl[a, j] and i < j
                if nearer or tie_kept:
                    out.append((a, i, j))
    return out


def _dist(f: np.ndarray, a: int, b: int, squared: bool, root_eps: float = 0.0) -> float:
    s = sum(float(f[a, t] - f[b, t]) ** 2 for t in range(f.shape[1]))
    return s if squared else math.sqrt(s + root_eps)


def loss_and_grad(
    embeddings: np.ndarray,
    dl: np.ndarray,
    *,
    anchors: Sequence[int] | None = None,
    mask: np.ndarray | None = None,
    squared: bool = True,
    eps: float = 1e-6,
    root_eps: float = 0.0,
    ties: str = "include",
    reduction: str = "mean",
    absolute: bool = False,
    magnitudes: bool = False,
) -> tuple[float, np.ndarray]:
    """The mean (or sum) over counted triplets and its gradient, by enumeration.

    With ``absolute``, the gradient's terms are summed in absolute value: the scale of what
    cancels in a gradient component, which bounds its rounding error in any evaluation.
    With ``magnitudes`` as well, each term's residual ``r`` is replaced by the sum of the
    magnitudes of the four logs it is the difference of: ``u`` times that bounds the rounding
    of a gradient whose residuals cancel (every residual of a row equal, a gradient of 0).
    """
    f = np.asarray(embeddings, dtype=np.float64)
    dl = np.asarray(dl, dtype=np.float64)
    total = 0.0
    grad = np.zeros_like(f)
    trips = counted_triplets(dl, anchors, mask, ties)
    for a, i, j in trips:
        d_ai, d_aj = _dist(f, a, i, squared, root_eps), _dist(f, a, j, squared, root_eps)
        r = (math.log(d_ai + eps) - math.log(d_aj + eps)) - (
            math.log(dl[a, i] + eps) - math.log(dl[a, j] + eps)
        )
        total += r * r
        if absolute and magnitudes:  # r replaced by the size of its four logs
            logs = (d_ai + eps, d_aj + eps, dl[a, i] + eps, dl[a, j] + eps)
            coef = sum(abs(math.log(x)) for x in logs)
        else:
            coef = r
        # ∂l/∂f_i = 2r ∂D_ai/∂f_i / (D_ai + ε),  ∂l/∂f_j = −2r ∂D_aj/∂f_j / (D_aj + ε)
        g_i = 2 * coef * _ddist(f, i, a, d_ai, squared) / (d_ai + eps)
        g_j = -2 * coef * _ddist(f, j, a, d_aj, squared) / (d_aj + eps)
        if absolute:
            g_i, g_j = np.abs(g_i), np.abs(g_j)
            grad[a] += g_i + g_j
        else:
            grad[a] -= g_i + g_j
        grad[i] += g_i
        grad[j] += g_j
    if reduction == "mean" and trips:
        total /= len(trips)
        grad /= len(trips)
    return total, grad


def _ddist(f: np.ndarray, x: int, y: int, dist: float, squared: bool) -> np.ndarray:
    """∂D(f_x, f_y)/∂f_x: ``2 (f_x − f_y)`` squared, ``(f_x − f_y) / D`` plain (0 at D = 0;
    with ``root_eps``, D = sqrt(‖f_x − f_y‖² + root_eps) and the same formula)."""
    diff = f[x] - f[y]
    if squared:
        return 2 * diff
    return diff / dist if dist > 0 else np.zeros_like(diff)


def finite_differences(
    fun: Callable[[np.ndarray], float], x: np.ndarray, step: float = 1e-6
) -> np.ndarray:
    """Central differences ``(fun(x + h e_k) − fun(x − h e_k)) / 2h`` of a scalar function."""
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += step
        down[idx] -= step
        g[idx] = (fun(up) - fun(down)) / (2 * step)
    return g
