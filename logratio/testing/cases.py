"""One log-ratio loss problem as float64 NumPy arrays (:class:`LossCase`) and its reference
values (:func:`expected`), without Hypothesis: :mod:`logratio.testing.strategies` draws them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from .reference import reference_label_distances as _spec_label_distances
from .reference import reference_loss_and_grad, reference_triplets

__all__ = [
    "CHEBYSHEV",
    "LABEL_METRICS",
    "MAX_BATCH",
    "MAX_DIM",
    "REDUCTIONS",
    "SOURCES",
    "TIES",
    "ChebyshevMetric",
    "Expected",
    "LossCase",
    "expected",
    "reference_label_distances",
]


MAX_BATCH = 40
MAX_DIM = 16
REDUCTIONS = ("mean", "sum", "none")
TIES = ("include", "exclude")
SOURCES = ("labels", "label_distances")


class ChebyshevMetric:
    """A label metric that is not built in, ``max_k |a_k − b_k|``, for the callable path.

    ``metric(a, b)`` takes (n, p) and (m, p) arrays of any Array API namespace and returns
    (n, m); :meth:`pair` is the scalar form the reference loops use.
    """

    name = "chebyshev"

    def __call__(self, a: Any, b: Any) -> Any:
        xp = array_api_compat.array_namespace(a, b)
        return xp.max(xp.abs(a[:, None, :] - b[None, :, :]), axis=2)

    @staticmethod
    def pair(u: np.ndarray, v: np.ndarray) -> float:
        return max(abs(float(x) - float(y)) for x, y in zip(u, v, strict=True))

    def __repr__(self) -> str:
        return "ChebyshevMetric()"


CHEBYSHEV = ChebyshevMetric()
LABEL_METRICS: tuple[Any, ...] = ("euclidean", "sqeuclidean", "cityblock", CHEBYSHEV)


def reference_label_distances(labels: np.ndarray, metric: Any) -> np.ndarray:
    """(B, B) float64 label distances by explicit loops (independent of the dense code):
    a callable with a scalar ``metric.pair(u, v)`` form (:class:`ChebyshevMetric`) is looped
    pair by pair, anything else goes to :func:`logratio.testing.reference_label_distances`."""
    if not hasattr(metric, "pair"):
        return _spec_label_distances(labels, metric)
    y = np.asarray(labels, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    b = y.shape[0]
    return np.array([[metric.pair(y[i], y[j]) for j in range(b)] for i in range(b)]).reshape(b, b)


@dataclass(frozen=True)
class LossCase:
    """One problem of :func:`logratio.log_ratio_loss`, as float64 NumPy arrays."""

    embeddings: np.ndarray  # (B, d) float64
    labels: np.ndarray | None  # (B,) or (B, p) float64; None when label_distances are given
    label_distances: np.ndarray | None  # (B, B) float64, non-negative
    anchors: Any = None  # None, a Python int, an int64 index array or a bool mask (B,)
    mask: np.ndarray | None = None  # (B, B) bool
    squared: bool = True
    label_metric: Any = "euclidean"
    ties: str = "include"
    reduction: str = "mean"
    root_eps: float = 0.0  # sqrt(‖f_a − f_b‖² + root_eps) with squared=False
    eps: float = 1e-6  # added to both distances before the log

    @property
    def batch(self) -> int:
        return self.embeddings.shape[0]

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    def replace(self, **changes: Any) -> LossCase:
        if changes.get("squared") and "root_eps" not in changes:
            changes["root_eps"] = 0.0  # squared distances take no root_eps
        return dataclasses.replace(self, **changes)

    def loss_kwargs(self, convert: Callable[[np.ndarray], Any] = lambda x: x) -> dict[str, Any]:
        """Keyword arguments of ``log_ratio_loss(embeddings, **kwargs)``.

        ``convert`` turns each NumPy array (labels, label distances, anchors, mask) into
        another backend's array; a Python int anchor stays an int.
        """
        kw: dict[str, Any] = {
            "squared": self.squared,
            "ties": self.ties,
            "reduction": self.reduction,
            "anchors": self.anchors,
        }
        if self.root_eps:
            kw["root_eps"] = self.root_eps
        if self.eps != 1e-6:
            kw["eps"] = self.eps
        if isinstance(self.anchors, np.ndarray):
            kw["anchors"] = convert(self.anchors)
        if self.mask is not None:
            kw["mask"] = convert(self.mask)
        if self.labels is not None:
            kw["labels"] = convert(self.labels)
            kw["label_metric"] = self.label_metric
        else:
            kw["label_distances"] = convert(self.label_distances)
        return kw

    def label_distance_matrix(self) -> np.ndarray:
        """The (B, B) float64 label distances, by loops (independently of the dense code)."""
        if self.label_distances is not None:
            return np.asarray(self.label_distances, dtype=np.float64)
        return reference_label_distances(self.labels, self.label_metric)

    def anchor_list(self) -> list[int] | None:
        """The anchors as a list of row indices in [0, B) (None: every row), in order."""
        a = self.anchors
        if a is None:
            return None
        if isinstance(a, (int, np.integer)):
            return [int(a) % self.batch]
        a = np.asarray(a)
        if a.dtype == np.bool_:
            return [int(i) for i in np.flatnonzero(a)]
        return [int(i) % self.batch for i in a]

    def reference_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the reference loops for this case, but the label distances
        and the reduction (``reference_loss_and_grad(f, label_distances=..., **these)``)."""
        kw = {
            "anchors": self.anchor_list(),
            "mask": self.mask,
            "squared": self.squared,
            "ties": self.ties,
            "root_eps": self.root_eps,
        }
        if self.eps != 1e-6:
            kw["eps"] = self.eps
        return kw

    def permuted(self, perm: Sequence[int]) -> LossCase:
        """The same problem with rows reordered: new row k is old row ``perm[k]``.

        Anchors keep their order (index arrays) or follow their rows (boolean masks); with
        ``anchors=None`` the per-anchor output of the new case is the old one ``[perm]``.
        """
        p = np.asarray(perm, dtype=np.int64)
        inv = np.empty_like(p)
        inv[p] = np.arange(p.shape[0])
        anchors = self.anchors
        if isinstance(anchors, (int, np.integer)):
            anchors = int(inv[int(anchors) % self.batch])
        elif isinstance(anchors, np.ndarray):
            if anchors.dtype == np.bool_:
                anchors = anchors[p]
            else:
                anchors = inv[anchors % self.batch]
        return self.replace(
            embeddings=self.embeddings[p],
            labels=None if self.labels is None else self.labels[p],
            label_distances=(
                None if self.label_distances is None else self.label_distances[np.ix_(p, p)]
            ),
            mask=None if self.mask is None else self.mask[np.ix_(p, p)],
            anchors=anchors,
        )


@dataclass(frozen=True)
class Expected:
    """Reference values of a case (float64, explicit loops), for every reduction at once."""

    per_anchor: np.ndarray  # (m,) Σ of the triplet terms of each anchor, in anchor order
    counts: np.ndarray  # (m,) number of counted triplets of each anchor
    gradient_sum: np.ndarray | None  # (B, d) ∂(Σ of all terms)/∂F, when asked for
    batch: int

    @property
    def total(self) -> float:
        return float(np.sum(self.per_anchor))

    @property
    def num_triplets(self) -> int:
        return int(np.sum(self.counts))

    def loss(self, reduction: str) -> Any:
        if reduction == "none":
            return self.per_anchor
        if reduction == "sum":
            return self.total
        return self.total / self.num_triplets if self.num_triplets else 0.0

    def gradient(self, reduction: str) -> np.ndarray:
        assert self.gradient_sum is not None, "expected(..., gradient=True) was not asked"
        if reduction == "mean" and self.num_triplets:
            return self.gradient_sum / self.num_triplets
        return self.gradient_sum

    def loss_tolerance(self, reduction: str, rtol: float) -> Any:
        """Absolute tolerance for a loss computed with relative accuracy ``rtol`` per distance.

        An error δ in each log-distance moves a term ``r²`` by about ``2|r|·2δ ≤ 2δ(1 + r²)``,
        so the sum may move by ``2δ·(count + Σ r²)``, and the mean by ``2δ·(1 + mean)``.
        Each anchor may also keep ``(10·δ·B)²`` of squared rounding from pairs that do not
        count (tied ones with ``ties="exclude"``).
        """
        floor = (10 * rtol * self.batch) ** 2
        if reduction == "none":
            return 2 * rtol * (self.counts + self.per_anchor) + floor
        if reduction == "sum":
            return 2 * rtol * (self.num_triplets + self.total) + floor * len(self.counts)
        return 2 * rtol * (1 + self.loss("mean")) + floor


def expected(
    case: LossCase, embeddings: np.ndarray | None = None, *, gradient: bool = False
) -> Expected:
    """Reference values of ``case`` (optionally with other embeddings, e.g. float32-rounded),
    from the float64 loops of :mod:`logratio.testing.reference`; the gradient is computed
    anyway and kept when ``gradient``."""
    if case.reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {case.reduction!r}")
    f = np.asarray(case.embeddings if embeddings is None else embeddings, dtype=np.float64)
    dl = case.label_distance_matrix()
    kw = case.reference_kwargs()
    per_anchor, grad = reference_loss_and_grad(f, label_distances=dl, reduction="none", **kw)
    rows = kw["anchors"] if kw["anchors"] is not None else range(case.batch)
    counts = np.array(
        [len(reference_triplets(dl, anchors=[a], mask=case.mask, ties=case.ties)) for a in rows],
        dtype=np.int64,
    )
    return Expected(
        per_anchor=np.asarray(per_anchor, dtype=np.float64),
        counts=counts,
        gradient_sum=grad if gradient else None,
        batch=case.batch,
    )


# --------------------------------------------------------------------------- sizes and scales
