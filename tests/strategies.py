"""Hypothesis strategies for the log-ratio loss, shared by the NumPy and cross-backend suites.

The strategies, :class:`LossCase` and :func:`expected` are public, in
:mod:`logratio.testing.strategies` (see its docstring for the grids, scales and sizes); this
module re-exports them under the names the test files use, with Hypothesis' ``hnp``.

Another backend runs a case with ``case.loss_kwargs(convert=to_backend)`` and compares with
``expected(case)``, computed by the float64 reference loops.
"""

from __future__ import annotations

from hypothesis.extra import numpy as hnp

from logratio.testing.strategies import (
    CHEBYSHEV,
    LABEL_METRICS,
    MAX_BATCH,
    MAX_DIM,
    REDUCTIONS,
    SOURCES,
    TIES,
    ChebyshevMetric,
    Expected,
    LossCase,
    anchor_specs,
    batch_sizes,
    block_sizes,
    dims,
    embedding_arrays,
    expected,
    label_arrays,
    label_distance_arrays,
    loss_cases,
    masks,
    orthogonal_matrices,
    powers_of_two,
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
    "ChebyshevMetric",
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
