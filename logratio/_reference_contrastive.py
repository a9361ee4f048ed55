"""Float64 loop references of Rank-N-Contrast and y-aware InfoNCE, with their gradients.

Like :mod:`logratio._reference` for the log-ratio loss: explicit loops over anchors and pairs,
written from the definitions (docs/design.md §8, §9), sharing no code with the engine (no
sort, no cumulative sums, no blocks).  Every log-sum-exp subtracts its own set's maximum.
The gradients are the loops' exact derivatives: ``∂/∂s`` of each term, then the chain rule
through ``s_ij = −‖z_i − z_j‖/τ`` (Rank-N-Contrast) or ``s_ij = ⟨ẑ_i, ẑ_j⟩/τ`` (y-aware).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._reference import label_distances

__all__ = ["rank_n_contrast", "y_aware_infonce"]


def _lse(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _allowed(n: int, i: int, mask: Any) -> list[int]:
    return [j for j in range(n) if j != i and (mask is None or bool(mask[i, j]))]


def _reduce(losses, counts, grads, reduction):
    total_grad = sum(grads) if grads else 0.0
    if reduction == "none":
        return np.asarray(losses, dtype=np.float64), total_grad
    total = float(sum(losses))
    if reduction == "sum":
        return total, total_grad
    count = sum(counts)
    scale = 1.0 / count if count else 0.0
    return total * scale, total_grad * scale


def rank_n_contrast(
    embeddings: Any, labels: Any = None, *, label_distances_: Any = None, anchors: Any = None,
    mask: Any = None, temperature: float = 2.0, label_metric: Any = "cityblock",
    reduction: str = "mean",
) -> tuple[Any, np.ndarray]:  # fmt: skip
    """``(loss, ∂loss/∂embeddings)`` of Rank-N-Contrast by loops (float64); for ``"none"``
    the per-anchor losses and the gradient of their sum."""
    z = np.asarray(embeddings, dtype=np.float64)
    n = z.shape[0]
    dl = _label_matrix(labels, label_distances_, label_metric)
    diff = z[:, None, :] - z[None, :, :]
    dist = np.sqrt((diff**2).sum(-1))
    s = -dist / temperature
    losses, counts, grads = [], [], []
    for i in range(n) if anchors is None else anchors:
        allowed = _allowed(n, i, mask)
        g_s = np.zeros(n)  # ∂S_i/∂s_ij
        total = 0.0
        for k in allowed:
            members = [j for j in allowed if dl[i, j] >= dl[i, k]]
            den = _lse([s[i, j] for j in members])
            total += den - s[i, k]
            g_s[k] -= 1.0
            for j in members:
                g_s[j] += math.exp(s[i, j] - den)
        grad = np.zeros_like(z)
        for j in allowed:
            if dist[i, j] > 0:  # ∂s_ij/∂z_i = −(z_i − z_j) / (τ ‖z_i − z_j‖); copies: none
                step = -g_s[j] * diff[i, j] / (temperature * dist[i, j])
                grad[i] += step
                grad[j] -= step
        losses.append(total)
        counts.append(len(allowed))
        grads.append(grad)
    return _reduce(losses, counts, grads, reduction)


def y_aware_infonce(
    embeddings: Any, labels: Any = None, *, label_distances_: Any = None, anchors: Any = None,
    mask: Any = None, temperature: float = 0.1, sigma: float = 1.0,
    label_metric: Any = "sqeuclidean", reduction: str = "mean",
) -> tuple[Any, np.ndarray]:  # fmt: skip
    """``(loss, ∂loss/∂embeddings)`` of y-aware InfoNCE with the paper's weights, by loops
    (float64); for ``"none"`` the per-anchor losses and the gradient of their sum."""
    z = np.asarray(embeddings, dtype=np.float64)
    n = z.shape[0]
    dl = _label_matrix(labels, label_distances_, label_metric)
    norms = np.sqrt((z**2).sum(1))
    unit = z / np.where(norms > 0, norms, 1.0)[:, None]
    s = unit @ unit.T / temperature
    losses, counts, grads = [], [], []
    for i in range(n) if anchors is None else anchors:
        allowed = _allowed(n, i, mask)
        grad = np.zeros_like(z)
        if not allowed:
            losses.append(0.0)
            counts.append(0)
            grads.append(grad)
            continue
        den = _lse([s[i, j] for j in allowed])
        wden = _lse([-dl[i, j] / (2 * sigma**2) for j in allowed])
        total = 0.0
        g_unit = np.zeros_like(z)  # ∂S_i/∂ẑ
        for j in allowed:
            w = math.exp(-dl[i, j] / (2 * sigma**2) - wden)
            p = math.exp(s[i, j] - den)
            total -= w * (s[i, j] - den)
            g = (p - w) / temperature  # ∂S_i/∂⟨ẑ_i, ẑ_j⟩
            g_unit[i] += g * unit[j]
            g_unit[j] += g * unit[i]
        for a in range(n):  # through ẑ = z / ‖z‖
            if norms[a] > 0:
                grad[a] = (g_unit[a] - unit[a] * (unit[a] @ g_unit[a])) / norms[a]
        losses.append(total)
        counts.append(1)
        grads.append(grad)
    return _reduce(losses, counts, grads, reduction)


def _label_matrix(labels: Any, given: Any, metric: Any) -> np.ndarray:
    if given is not None:
        return np.asarray(given, dtype=np.float64)
    return label_distances(np.asarray(labels, dtype=np.float64), metric)
