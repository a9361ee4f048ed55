"""The float64 reference of the tests: explicit loops over every triplet.

The loops live in :mod:`logratio._reference` (``logratio check`` uses them too); they share no
code with the dense implementation (no variance identity, no Gram trick, no blocks) and follow
docs/design.md §1 literally.  This module gives them the shapes the tests ask for: per-anchor sums
for ``reduction="none"``, the loss and the gradient separately.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from logratio._reference import counted_triplets as triplets
from logratio._reference import finite_differences as finite_difference_gradient
from logratio._reference import label_distances as label_distance_matrix
from logratio._reference import loss_and_grad

__all__ = [
    "cancellation_noise",
    "cancellation_unit",
    "finite_difference_gradient",
    "gradient",
    "gradient_terms_scale",
    "label_distance_matrix",
    "loss",
    "triplet_term",
    "triplets",
]


def triplet_term(f, dl, a, i, j, squared=True, eps=1e-6) -> float:
    """``(log (D_ai+ε)/(D_aj+ε) − log (Δ_ai+ε)/(Δ_aj+ε))²`` for one triplet."""
    f = np.asarray(f, dtype=np.float64)

    def dist(x: int, y: int) -> float:
        sq = float(np.dot(f[x] - f[y], f[x] - f[y]))
        return sq if squared else math.sqrt(sq)

    r = (math.log(dist(a, i) + eps) - math.log(dist(a, j) + eps)) - (
        math.log(dl[a, i] + eps) - math.log(dl[a, j] + eps)
    )
    return r * r


def loss(
    embeddings,
    label_distances,
    *,
    anchors: Sequence[int] | None = None,
    reduction: str = "mean",
    **options,
):
    """The loss by enumeration; ``"none"`` gives per-anchor sums in anchor order."""
    dl = np.asarray(label_distances, dtype=np.float64)
    if reduction == "none":
        rows = range(dl.shape[0]) if anchors is None else anchors
        per_anchor = [loss_and_grad(embeddings, dl, anchors=[a], reduction="sum", **options)[0]
                      for a in rows]  # fmt: skip
        return np.asarray(per_anchor)
    return loss_and_grad(embeddings, dl, anchors=anchors, reduction=reduction, **options)[0]


def gradient(embeddings, label_distances, *, reduction: str = "mean", **options) -> np.ndarray:
    """The gradient by per-triplet sums (with ``"none"``: the gradient of the sum)."""
    reduction = "sum" if reduction == "none" else reduction
    dl = np.asarray(label_distances, dtype=np.float64)
    return loss_and_grad(embeddings, dl, reduction=reduction, **options)[1]


def gradient_terms_scale(case, f, reduction: str = "mean", *, magnitudes: bool = False) -> float:
    """The largest component of the per-triplet gradient terms summed in absolute value:
    the scale of the rounding in any evaluation of a gradient component (``case``: a
    :class:`strategies.LossCase`, ``f`` its embeddings).  With ``magnitudes``, each term's
    residual is replaced by the size of the logs it is a difference of: times the unit
    roundoff, the noise of a gradient whose residuals cancel exactly."""
    kw = case.reference_kwargs()
    red = "sum" if reduction == "none" else reduction
    dl = case.label_distance_matrix()
    _, g = loss_and_grad(f, dl, reduction=red, absolute=True, magnitudes=magnitudes, **kw)
    return float(np.max(g, initial=0.0))


def cancellation_noise(case, f, reduction: str, dtype) -> float:
    """The rounding a gradient component of ``case`` (at embeddings ``f``) may carry in
    ``dtype`` where its residuals cancel exactly: the centred residuals of a row of equal
    ``U_ab`` are exactly 0, but their rounded mean (``fl(n·u)/n`` need not be ``u``) leaves
    residuals of the unit roundoff times the size of the logs ``U`` is a difference of
    (16 units: a few roundings in each log and in the mean)."""
    return cancellation_unit(dtype) * gradient_terms_scale(case, f, reduction, magnitudes=True)


def cancellation_unit(dtype) -> float:
    """The rounding of residuals that cancel exactly, per unit of the size of the logs they
    are differences of (``magnitudes=True`` terms): 16 machine epsilons of ``dtype``."""
    return 16 * float(np.finfo(dtype).eps)


def tangent_rounding(f, dl, t, anchor: int, *, squared=True, eps=1e-6, root_eps=0.0,
                     mask=None, ties="include") -> float:  # fmt: skip
    """A bound, divided by the unit roundoff, on the rounding of anchor ``anchor``'s
    derivative ``Σ_b K_ab (f_a − f_b)·(t_a − t_b)`` when each pair product is evaluated as
    ``f_a·t_a + f_b·t_b − f_a·t_b − f_b·t_a`` on centred rows (the core's matrix form): the
    products' magnitudes times each pair's ``|K_ab|``, with every residual replaced by the size
    of its logs.  Exactly-zero derivatives (equal tangents of the two rows) still carry it."""
    f = np.asarray(f, dtype=np.float64)
    fc, tc = f - f.mean(axis=0), t - t.mean(axis=0)
    fn, tn = np.linalg.norm(fc, axis=1), np.linalg.norm(tc, axis=1)
    total = 0.0
    for a, i, j in triplets(dl, [anchor], mask, ties):
        dists = {b: _pair_distance(f, a, b, squared, root_eps) for b in (i, j)}
        logs = [dists[i] + eps, dists[j] + eps, dl[a, i] + eps, dl[a, j] + eps]
        size = 2 * sum(abs(math.log(x)) for x in logs)
        for b, d in dists.items():
            if d <= 0:
                continue
            k = size * (2 / (d + eps) if squared else 1 / ((d + eps) * d))
            total += k * (fn[a] + fn[b]) * (tn[a] + tn[b])
    return total


def _pair_distance(f, a, b, squared, root_eps):
    s = float(np.sum((f[a] - f[b]) ** 2))
    if s == 0:
        return 0.0
    return s if squared else math.sqrt(s + root_eps)
