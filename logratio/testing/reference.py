"""The specification of the log-ratio loss: a float64 reference by explicit enumeration.

Kim, Seo, Laptev, Cho, Kwak, *Deep Metric Learning Beyond Binary Supervision*, CVPR 2019,
Eq. 4, as docs/design.md §1 states it.  For embeddings ``F`` (rows ``f_a``) and label
distances ``Δ`` (given, or computed from the labels with ``label_metric``):

    D_ab = ‖f_a − f_b‖²  (squared=True, the paper)   or   sqrt(‖f_a − f_b‖² + root_eps)
    U_ab = log(D_ab + ε) − log(Δ_ab + ε)                                        (ε = eps)
    l(a, i, j) = (U_ai − U_aj)² = ( log (D_ai+ε)/(D_aj+ε) − log (Δ_ai+ε)/(Δ_aj+ε) )²

for every anchor ``a`` and every *unordered* pair of distinct neighbours ``{i, j}``, both
``≠ a`` and both allowed by row ``a`` of ``mask``, counted once: in the ordering
``Δ_ai < Δ_aj``, or, on a tie ``Δ_ai = Δ_aj``, once (``ties="include"``, the authors' code)
or not at all (``ties="exclude"``, the paper's strict inequality).  ``reduction="mean"``
divides the sum of the counted terms by their number ``T`` (0 when ``T = 0``), ``"sum"``
returns the sum, ``"none"`` the per-anchor sums in anchor order.  A repeated anchor counts
once per occurrence.

The gradient is summed triplet by triplet with the anchor term
``∂l/∂f_a = −(∂l/∂f_i + ∂l/∂f_j)`` (docs/design.md §1.2; not the widely copied
``∂l/∂f_i − ∂l/∂f_j``, which breaks translation invariance).

Everything is plain Python loops in float64 (:mod:`logratio._reference`), O(B³ d), and shares
no code with the dense O(B²) implementation of :func:`logratio.log_ratio_loss`: it is meant for
checking other implementations on batches of a few dozen rows, not for training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _reference

__all__ = [
    "LABEL_METRICS",
    "reference_anchors",
    "reference_label_distances",
    "reference_loss",
    "reference_loss_and_grad",
    "reference_triplets",
]

#: The label metrics named by a string (a callable metric is accepted too).
LABEL_METRICS = ("euclidean", "sqeuclidean", "cityblock")
_TIES = ("include", "exclude")
_REDUCTIONS = ("mean", "sum", "none")


def reference_label_distances(labels: Any, metric: Any = "euclidean") -> np.ndarray:
    """(B, B) float64 label distances of (B,) or (B, p) labels, one pair at a time.

    ``metric``: ``"euclidean"`` ``sqrt(Σ (y_a − y_b)²)``, ``"sqeuclidean"`` ``Σ (y_a − y_b)²``,
    ``"cityblock"`` ``Σ |y_a − y_b|``, or a callable ``metric(y, y) -> (B, B)`` called once
    with the (B, p) float64 NumPy labels.
    """
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim not in (1, 2):
        raise ValueError(f"labels must have shape (B,) or (B, p); got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("labels must be finite")
    if callable(metric):
        y2 = y[:, None] if y.ndim == 1 else y
        out = np.asarray(metric(y2, y2), dtype=np.float64)
        if out.shape != (y.shape[0], y.shape[0]):
            raise ValueError(f"label_metric(y, y) gave shape {out.shape} for {y.shape[0]} labels")
        return _checked_distances(out, "label_metric(y, y)")
    if metric not in LABEL_METRICS:
        raise ValueError(
            f"label_metric must be one of {LABEL_METRICS} or a callable; got {metric!r}"
        )
    return _reference.label_distances(y, metric)


def reference_anchors(anchors: Any, batch: int) -> list[int] | None:
    """The anchors as row indices in ``[0, B)``, in order (``None``: every row).

    ``anchors``: ``None``, an int (negative counts from the end; ``0`` is the paper's single
    anchor), a sequence or array of ints (repeats allowed) or a boolean mask of shape (B,).
    """
    if anchors is None:
        return None
    if isinstance(anchors, bool):
        raise TypeError("anchors must be None, an int, an index array or a boolean mask")
    if isinstance(anchors, (int, np.integer)):
        return [_index(int(anchors), batch)]
    a = np.asarray(anchors)
    if a.dtype == np.bool_:
        if a.shape != (batch,):
            raise ValueError(f"a boolean anchor mask must have shape ({batch},); got {a.shape}")
        return [int(i) for i in np.flatnonzero(a)]
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"anchors must be a 1-d integer or boolean array; got {a.dtype} {a.shape}")
    return [_index(int(i), batch) for i in a]


def reference_triplets(
    label_distances: Any,
    *,
    anchors: Any = None,
    mask: Any = None,
    ties: str = "include",
) -> list[tuple[int, int, int]]:
    """Every counted triplet ``(a, i, j)``, anchor by anchor, with ``Δ_ai < Δ_aj`` (or, on a
    kept tie, ``i < j``): the triplets whose terms :func:`reference_loss` adds up."""
    dl = _checked_distances(np.asarray(label_distances, dtype=np.float64), "label_distances")
    _check_choice("ties", ties, _TIES)
    rows = reference_anchors(anchors, dl.shape[0])
    return _reference.counted_triplets(dl, rows, _checked_mask(mask, dl.shape[0]), ties)


def reference_loss_and_grad(
    embeddings: Any, labels: Any = None, *, label_distances: Any = None, anchors: Any = None,
    mask: Any = None, squared: bool = True, label_metric: Any = "euclidean", eps: float = 1e-6,
    root_eps: float = 0.0, ties: str = "include", reduction: str = "mean",
) -> tuple[Any, np.ndarray]:  # fmt: skip
    """The loss and its gradient ``∂loss/∂embeddings`` by enumeration, in float64.

    Arguments as in :func:`logratio.log_ratio_loss` (without ``block_size``); inputs are
    anything :func:`numpy.asarray` takes.  Returns ``(loss, grad)``: ``loss`` a Python float
    (``"mean"``, ``"sum"``) or a float64 array of per-anchor sums (``"none"``), and ``grad`` a
    (B, d) float64 array; with ``reduction="none"`` it is the gradient of the sum of the
    per-anchor losses.  See the module docstring for the formula.  Cost: O(B³ d) Python
    operations (about 0.1 s at B = 20).
    """
    f = np.asarray(embeddings, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"embeddings must have shape (B, d); got {f.shape}")
    b = f.shape[0]
    if (labels is None) == (label_distances is None):
        raise ValueError("give exactly one of labels and label_distances")
    if labels is not None:
        dl = reference_label_distances(labels, label_metric)
    else:
        dl = _checked_distances(np.asarray(label_distances, dtype=np.float64), "label_distances")
    if dl.shape != (b, b):
        raise ValueError(f"{b} embeddings but label distances of shape {dl.shape}")
    _check_choice("ties", ties, _TIES)
    _check_choice("reduction", reduction, _REDUCTIONS)
    eps, root_eps = float(eps), float(root_eps)
    if not (math.isfinite(eps) and eps >= 0 and math.isfinite(root_eps) and root_eps >= 0):
        raise ValueError(f"eps and root_eps must be finite and >= 0; got {eps!r}, {root_eps!r}")
    if squared and root_eps:
        raise ValueError("root_eps applies to plain Euclidean distances (squared=False)")
    rows = reference_anchors(anchors, b)
    opts = {
        "mask": _checked_mask(mask, b),
        "squared": bool(squared),
        "eps": eps,
        "root_eps": root_eps,
        "ties": ties,
    }
    if reduction != "none":
        loss, grad = _reference.loss_and_grad(f, dl, anchors=rows, reduction=reduction, **opts)
        return float(loss), grad
    per_anchor, grad = [], np.zeros_like(f)
    for a in range(b) if rows is None else rows:
        s, g = _reference.loss_and_grad(f, dl, anchors=[a], reduction="sum", **opts)
        per_anchor.append(s)
        grad += g
    return np.asarray(per_anchor, dtype=np.float64), grad


def reference_loss(embeddings: Any, labels: Any = None, **options: Any) -> Any:
    """The loss of :func:`reference_loss_and_grad` alone (same arguments): the specification
    of :func:`logratio.log_ratio_loss`, by explicit enumeration of the triplets in float64."""
    return reference_loss_and_grad(embeddings, labels, **options)[0]


def _index(i: int, batch: int) -> int:
    if not -batch <= i < batch:
        raise IndexError(f"anchor {i} out of range for a batch of {batch}")
    return i % batch


def _checked_distances(dl: np.ndarray, what: str) -> np.ndarray:
    if dl.ndim != 2 or dl.shape[0] != dl.shape[1]:
        raise ValueError(f"{what} must have shape (B, B); got {dl.shape}")
    if not np.all(np.isfinite(dl)) or np.any(dl < 0):
        raise ValueError(f"{what} must be finite and non-negative")
    return dl


def _checked_mask(mask: Any, batch: int) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype != np.bool_ or m.shape != (batch, batch):
        raise ValueError(
            f"mask must be a ({batch}, {batch}) boolean array; got {m.dtype} {m.shape}"
        )
    return m


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
