"""Hypothesis strategies for log-ratio loss problems (requires ``hypothesis``).

A :class:`LossCase` is one float64 NumPy problem: embeddings, labels (scalar or vector) or a
label distance matrix, anchors (None, an int, an index array or a boolean mask), a pair mask,
``squared``, ``label_metric``, ``ties``, ``reduction`` and ``root_eps``; :func:`loss_cases`
draws them.  Values sit on integer grids scaled by a power of two, so that

* duplicates (equal rows) and ties (equal label distances) happen often and survive a cast to
  float32 exactly, whichever way the distances are computed;
* no two distinct embeddings are closer than one grid step, so the float64 (and, with
  ``coarse=True``, float32) distance computation resolves every pair: a disagreement with
  the reference (:mod:`logratio.testing.reference`) is then a bug, not a rounding artefact;
* the scale varies widely from one example to the next (2⁻¹⁰ … 2¹⁰ for embeddings,
  2⁻²⁰ … 2¹⁰ for labels, i.e. from below ``eps = 1e-6`` to far above it).

Batch sizes run from 1 (or 0) to 40 and dimensions from 1 to 16, most examples small: the
reference enumerates triplets with Python loops, O(B³).

An implementation runs a case with ``case.loss_kwargs(convert=to_its_arrays)`` and compares
with ``expected(case)``: the float64 reference values of every reduction, with the
tolerance :meth:`Expected.loss_tolerance` of a given accuracy per log-distance.
:func:`logratio.testing.assert_matches_reference` runs this comparison for you.

This is the only module of :mod:`logratio.testing` that imports Hypothesis.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

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
    "anchor_specs",
    "batch_sizes",
    "block_sizes",
    "dims",
    "embedding_arrays",
    "expected",
    "label_arrays",
    "label_distance_arrays",
    "loss_cases",
    "masks",
    "orthogonal_matrices",
    "powers_of_two",
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


def batch_sizes(min_size: int = 1, max_size: int = MAX_BATCH) -> st.SearchStrategy[int]:
    """Batch sizes in [min_size, max_size]; about nine examples in ten have at most 10 rows."""
    small = st.integers(min_size, max(min_size, min(max_size, 10)))
    if max_size <= 10:
        return small
    return st.integers(0, 9).flatmap(lambda k: st.integers(min_size, max_size) if k == 0 else small)


def dims(max_dim: int = MAX_DIM) -> st.SearchStrategy[int]:
    """Embedding dimensions in [1, max_dim], mostly at most 4."""
    small = st.integers(1, min(max_dim, 4))
    if max_dim <= 4:
        return small
    return st.integers(0, 3).flatmap(lambda k: st.integers(1, max_dim) if k == 0 else small)


def powers_of_two(lo: int, hi: int) -> st.SearchStrategy[float]:
    """``2**k`` for k in [lo, hi]: scales that keep grid values exact in float32."""
    return st.integers(lo, hi).map(lambda k: math.ldexp(1.0, k))


# --------------------------------------------------------------------------- arrays


@st.composite
def embedding_arrays(
    draw: st.DrawFn,
    batch: int,
    dim: int,
    *,
    coarse: bool = False,
    duplicates: bool = True,
    offset: bool = True,
    scale: float | None = None,
) -> np.ndarray:
    """(batch, dim) float64 embeddings on an integer grid times a power of two.

    ``coarse=True`` keeps the grid small (|values| ≤ 4 steps, no offset) so that float32
    resolves every distance to about 1e-5; otherwise values reach ±64 steps, optionally
    around an offset of up to 2¹² steps.  With ``duplicates``, rows are drawn from a pool
    that may be smaller than the batch.
    """
    scale = draw(powers_of_two(-10, 10)) if scale is None else scale
    levels = 4 if coarse else 64
    ints = st.integers(-levels, levels)
    if batch == 0:
        return np.zeros((0, dim))
    if duplicates:
        n_distinct = draw(st.integers(1, batch))
        pool = draw(hnp.arrays(np.int64, (n_distinct, dim), elements=ints))
        rows = draw(hnp.arrays(np.int64, (batch,), elements=st.integers(0, n_distinct - 1)))
        grid = pool[rows]
    else:  # distinct rows: distinct codes of the (2·levels + 1)^dim grid cells
        side = 2 * levels + 1
        assert side**dim >= batch, "too few grid cells for distinct rows"
        codes = draw(
            st.lists(st.integers(0, side**dim - 1), min_size=batch, max_size=batch, unique=True)
        )
        grid = np.array([[(c // side**k) % side - levels for k in range(dim)] for c in codes])
    x = grid.astype(np.float64)
    if offset and not coarse and draw(st.booleans()):
        x = x + draw(hnp.arrays(np.int64, (dim,), elements=st.integers(-(2**12), 2**12)))
    return x * scale


@st.composite
def label_arrays(
    draw: st.DrawFn,
    batch: int,
    *,
    vector: bool | None = None,
    max_p: int = 3,
    scale: float | None = None,
) -> np.ndarray:
    """Continuous labels, (batch,) or (batch, p), on a small integer grid: many ties and
    duplicates; the scale 2⁻²⁰ … 2¹⁰ puts label distances below and far above eps."""
    scale = draw(powers_of_two(-20, 10)) if scale is None else scale
    vector = draw(st.booleans()) if vector is None else vector
    shape = (batch, draw(st.integers(1, max_p))) if vector else (batch,)
    grid = draw(hnp.arrays(np.int64, shape, elements=st.integers(-8, 8)))
    return grid.astype(np.float64) * scale


@st.composite
def label_distance_arrays(draw: st.DrawFn, batch: int, *, scale: float | None = None):
    """(batch, batch) non-negative label distances: small integers times a power of two,
    symmetric or not, with zeros (duplicate labels), ties and an arbitrary diagonal."""
    scale = draw(powers_of_two(-20, 10)) if scale is None else scale
    grid = draw(hnp.arrays(np.int64, (batch, batch), elements=st.integers(0, 12)))
    if draw(st.booleans()):
        grid = grid + grid.T
    return grid.astype(np.float64) * scale


def anchor_specs(batch: int) -> st.SearchStrategy[Any]:
    """``None``, an int (negative ones too), an index array (repeats allowed) or a bool mask."""
    options: list[st.SearchStrategy[Any]] = [st.none()]
    if batch > 0:
        index = st.integers(-batch, batch - 1)
        options += [
            index,
            hnp.arrays(np.int64, st.integers(0, min(2 * batch, 12)), elements=index),
        ]
    options.append(hnp.arrays(np.bool_, (batch,)))
    return st.one_of(options)


def masks(batch: int) -> st.SearchStrategy[np.ndarray | None]:
    """``None`` or a (batch, batch) boolean mask of allowed (anchor, neighbour) pairs."""
    dense = hnp.arrays(np.bool_, (batch, batch), elements=st.booleans())
    mostly_true = hnp.arrays(np.bool_, (batch, batch)).map(np.logical_not)
    return st.one_of(st.none(), dense, mostly_true)


def _choose(draw: st.DrawFn, value: Any, default: st.SearchStrategy[Any]) -> Any:
    """A fixed value, a strategy to draw from, or ``default`` when ``value`` is None."""
    if value is None:
        return draw(default)
    if isinstance(value, st.SearchStrategy):
        return draw(value)
    return value


def _option(draw: st.DrawFn, value: Any, default: st.SearchStrategy[Any]) -> Any:
    """``"draw"``: draw from ``default``; a strategy: draw from it; anything else: itself."""
    if isinstance(value, str) and value == "draw":
        return draw(default)
    if isinstance(value, st.SearchStrategy):
        return draw(value)
    return value


@st.composite
def loss_cases(
    draw: st.DrawFn,
    *,
    min_batch: int = 1,
    max_batch: int = MAX_BATCH,
    max_dim: int = MAX_DIM,
    source: Any = None,
    anchors: Any = "draw",
    mask: Any = "draw",
    squared: Any = None,
    label_metric: Any = None,
    ties: Any = None,
    reduction: Any = None,
    coarse: bool = False,
    duplicates: bool = True,
) -> LossCase:
    """A full :class:`LossCase`.  Each option is drawn unless fixed (a value or a strategy);
    ``anchors=None`` / ``mask=None`` fix them to None, the default ``"draw"`` draws them."""

    batch = draw(batch_sizes(min_batch, max_batch))
    dim = draw(dims(max_dim))
    emb = draw(embedding_arrays(batch, dim, coarse=coarse, duplicates=duplicates))
    source = _choose(draw, source, st.sampled_from(SOURCES))
    squared = _choose(draw, squared, st.booleans())
    # the released implementations' sqrt(‖f_a − f_b‖² + root_eps), with their two values
    root_eps = 0.0 if squared else draw(st.sampled_from([0.0, 1e-4 / dim, 1e-4 / max(batch, 1)]))
    labels = dists = None
    metric = "euclidean"
    if source == "labels":
        labels = draw(label_arrays(batch))
        metric = _choose(draw, label_metric, st.sampled_from(LABEL_METRICS))
    else:
        dists = draw(label_distance_arrays(batch))
    return LossCase(
        embeddings=emb,
        labels=labels,
        label_distances=dists,
        anchors=_option(draw, anchors, anchor_specs(batch)),
        mask=_option(draw, mask, masks(batch)),
        squared=squared,
        label_metric=metric,
        ties=_choose(draw, ties, st.sampled_from(TIES)),
        reduction=_choose(draw, reduction, st.sampled_from(REDUCTIONS)),
        root_eps=root_eps,
    )


def block_sizes(batch: int) -> st.SearchStrategy[int | None]:
    """``None`` (one block) or a block of 1 … batch anchors."""
    return st.one_of(st.none(), st.integers(1, max(batch, 1)))


@st.composite
def orthogonal_matrices(draw: st.DrawFn, dim: int) -> np.ndarray:
    """A (dim, dim) float64 orthogonal matrix (QR of a seeded Gaussian matrix)."""
    seed = draw(st.integers(0, 2**32 - 1))
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))[None, :]
