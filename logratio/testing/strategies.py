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

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .cases import (
    CHEBYSHEV,
    LABEL_METRICS,
    MAX_BATCH,
    MAX_DIM,
    REDUCTIONS,
    SOURCES,
    TIES,
    Expected,
    LossCase,
    expected,
    reference_label_distances,
)

__all__ = [
    "CHEBYSHEV",
    "LABEL_METRICS",
    "MAX_BATCH",
    "MAX_DIM",
    "REDUCTIONS",
    "SOURCES",
    "TIES",
    "Expected",
    "LossCase",
    "anchor_specs",
    "batch_sizes",
    "block_sizes",
    "dims",
    "embedding_arrays",
    "expected",
    "hnp",
    "label_arrays",
    "label_distance_arrays",
    "loss_cases",
    "masks",
    "orthogonal_matrices",
    "powers_of_two",
    "reference_label_distances",
]


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
