"""The inputs of one engine evaluation, checked once and brought into one namespace.

:class:`Arrays` is what a call passes (unchecked); :func:`check_inputs` validates it (shapes,
dtypes and, where values are visible, contents) and converts the arrays into the embeddings'
namespace and device; :func:`make_problem` turns checked :class:`Inputs` and a
:class:`~logratio.options.Spec` into a :class:`Problem`: the rows prepared for the formula's
pairwise quantity (:mod:`logratio._pairs`), the block size.  :func:`prepare` does both.  An
adapter that must check values before tracing (JAX) calls the two steps apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import array_api_compat

from . import _validation as v
from ._pairs import PairOps, pair_ops
from ._validation import Array, Namespace
from .options import Spec

__all__ = [
    "DEFAULT_BLOCK_ELEMENTS",
    "MIN_BLOCK_ROWS",
    "Arrays",
    "Inputs",
    "Problem",
    "check_inputs",
    "default_block_size",
    "make_problem",
    "prepare",
]

#: Rows × columns of one block of anchor rows when ``block_size`` is not given.  The dense
#: path keeps about ten (block, B) temporaries alive (80 MB in float32 at this size); blocks
#: of a few MB stay in the allocator's reused memory and near the caches, where a B×B block
#: would fault in fresh pages on every operation (measured: 2× slower at B = 4096).
DEFAULT_BLOCK_ELEMENTS = 1 << 21
#: ... but at least this many anchors (or the whole batch): every block also pays a few
#: (B, d) passes to accumulate the neighbours' gradient, small next to (block, B) ones.
MIN_BLOCK_ROWS = 256


class Arrays(NamedTuple):
    """The arrays of one call as the caller passed them (any array-likes, unchecked).

    ``num_queries`` Q: the first Q rows are queries (the anchors) and the others a reference
    set (the neighbours); None for the dense loss of a batch.
    """

    embeddings: Any
    labels: Any = None
    label_distances: Any = None
    anchors: Any = None
    mask: Any = None
    num_queries: int | None = None


class Inputs(NamedTuple):
    """Checked arrays of one call, in the embeddings' namespace and device."""

    embeddings: Array  # (B, d), the caller's dtype
    labels: Array | None  # (B, p) in the compute dtype, or None
    label_distances: Array | None  # (B, B) in the compute dtype, or None
    # (m,) indices, or None for every row; a range (step 1) is a contiguous run of rows, which
    # the core slices instead of gathering (a shard's rows in a gathered batch)
    anchors: Array | range | None
    mask: Array | None  # (B, B) bool, or None
    num_queries: int | None = None  # as in Arrays


@dataclass(frozen=True)
class Problem:
    """Everything the engine reads: prepared rows, label data, anchors, the spec."""

    xp: Namespace
    features: Array  # (B, d) in the compute dtype: centred, or L2-normalised (cosine)
    row_scale: Array  # (B,) squared norms of the centred rows, or the rows' norms (cosine)
    labels: Array | None
    label_distances: Array | None
    anchors: Array | range | None
    mask: Array | None
    spec: Spec
    num_queries: int | None  # as in Arrays
    block_size: int  # the run settings' block size, or the default for this batch
    out_dtype: Any  # the embeddings' dtype: the gradient's dtype
    # 0-d: 0, or NaN when an embedding is NaN or infinite (its norm is then not finite):
    # added to the loss and the gradient, so that a diverged model shows (docs/design.md §1.3)
    nonfinite: Array

    @property
    def formula(self) -> Any:
        return self.spec.formula

    @property
    def reduction(self) -> str:
        return self.spec.reduction

    @property
    def pairs(self) -> type[PairOps]:
        """The operations of the formula's pairwise quantity."""
        return pair_ops(self.spec.formula.pairs)

    @property
    def batch(self) -> int:
        return self.features.shape[0]

    @property
    def neighbours(self) -> slice | None:
        """The neighbour rows: None for every row (the anchor itself excluded), or the
        reference set ``slice(Q, B)`` when the first Q rows are queries."""
        q = self.num_queries
        return None if q is None else slice(q, self.batch)

    @property
    def num_anchors(self) -> int:
        if self.anchors is not None:
            a = self.anchors
            return len(a) if isinstance(a, range) else a.shape[0]
        q = self.num_queries
        return self.batch if q is None else q


def check_inputs(arrays: Arrays) -> Inputs:
    """Validate the arrays of a call; errors name the argument.

    With ``num_queries`` Q, the first Q rows are queries: label distances and the mask are
    (Q, B − Q) and anchors index the queries.
    """
    embeddings, labels, label_distances, anchors, mask, num_queries = arrays
    xp = v.namespace(embeddings, name="embeddings")
    v.embeddings_2d(xp, embeddings)
    dtype = v.compute_dtype(xp, embeddings)
    if (labels is None) == (label_distances is None):
        raise ValueError(
            "pass exactly one of labels (B,) / (B, p) or label_distances (B, B); got "
            + ("both" if labels is not None else "neither")
        )
    batch = embeddings.shape[0]
    if num_queries is not None and num_queries > batch:
        raise ValueError(f"num_queries={num_queries} exceeds the {batch} rows of embeddings")
    pairs = batch if num_queries is None else (num_queries, batch - num_queries)
    y = dl = None
    if labels is not None:
        y = v.labels_for(xp, labels, batch, embeddings, dtype)
    else:
        dl = v.label_distances_for(xp, label_distances, pairs, embeddings, dtype)
    return Inputs(
        embeddings,
        y,
        dl,
        v.anchors_for(xp, anchors, batch if num_queries is None else num_queries, embeddings),
        v.mask_for(xp, mask, pairs, embeddings),
        num_queries,
    )


def default_block_size(batch: int) -> int:
    """About ``DEFAULT_BLOCK_ELEMENTS / B`` anchors, at least ``MIN_BLOCK_ROWS`` (or B)."""
    return max(1, min(batch, max(DEFAULT_BLOCK_ELEMENTS // max(batch, 1), MIN_BLOCK_ROWS)))


def make_problem(inputs: Inputs, spec: Spec, default_block: int | None = None) -> Problem:
    """The :class:`Problem` of checked ``inputs``: rows in the compute dtype, prepared for the
    formula's pairwise quantity (centred, or L2-normalised).

    ``default_block``: the block size when the run settings give none (an adapter's choice for
    its device); else :func:`default_block_size`."""
    embeddings = inputs.embeddings
    xp = v.namespace(embeddings)
    dtype = v.compute_dtype(xp, embeddings)
    f = xp.astype(embeddings, dtype) if embeddings.dtype != dtype else embeddings
    batch = f.shape[0]
    block = spec.run.block_size
    if block is None:
        block = default_block if default_block is not None else default_block_size(batch)
        # a formula with more (r, n) temporaries per pair takes proportionally fewer rows
        block = max(1, block // getattr(spec.formula, "block_weight", 1))
    features, row_scale, nonfinite = pair_ops(spec.formula.pairs).prepare(xp, f)
    nonfinite = nonfinite + _label_guard(xp, inputs, nonfinite)
    return Problem(
        xp=xp,
        features=features,
        row_scale=row_scale,
        labels=inputs.labels,
        label_distances=inputs.label_distances,
        anchors=inputs.anchors,
        mask=inputs.mask,
        spec=spec,
        num_queries=inputs.num_queries,
        block_size=block,
        out_dtype=embeddings.dtype,
        nonfinite=nonfinite,
    )


def prepare(arrays: Arrays, spec: Spec, default_block: int | None = None) -> Problem:
    """:func:`check_inputs`, then :func:`make_problem`."""
    return make_problem(check_inputs(arrays), spec, default_block)


def _label_guard(xp: Namespace, inputs: Inputs, like: Array) -> Array:
    """0, or NaN when labels are not finite or label distances are negative or not finite.

    Concrete arrays were refused with an error by :func:`check_inputs`; traced ones (under
    ``jax.jit``, the one adapter that builds its problem from tracers) cannot be, and a
    formula that only compares label distances (a sort) would otherwise turn them into a
    finite loss.  O(B·p), or one pass over the label distances; nothing elsewhere.
    """
    zero = xp.zeros_like(like)
    if not array_api_compat.is_jax_namespace(xp):  # checked already, with an error
        return zero
    if inputs.labels is not None and inputs.labels.shape[0] > 0:
        # max, not sum: a finite label never overflows it; NaN and inf pass through
        return zero + 0 * xp.astype(xp.max(xp.abs(inputs.labels)), like.dtype)
    dl = inputs.label_distances
    if dl is not None and dl.shape[0] * dl.shape[1] > 0:
        bad = xp.any(~(dl >= 0)) | xp.any(~xp.isfinite(dl))
        return xp.where(bad, xp.full_like(zero, math.nan), zero)
    return zero
