"""The inputs of one dense-loss evaluation, checked once and brought into one namespace.

:func:`check_inputs` validates the arrays of a call (shapes, dtypes and, where values are
visible, their contents) and converts them into the embeddings' namespace and device;
:func:`make_problem` turns checked inputs and a :class:`~logratio.options.LossOptions` into a
:class:`Problem`: centred features, their norms, the block size.  :func:`prepare` does both.
An adapter that must check values before tracing (JAX) calls the two steps apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import array_api_compat

from . import _validation as v
from ._validation import Array, Namespace
from .options import LossOptions

__all__ = [
    "DEFAULT_BLOCK_ELEMENTS",
    "MIN_BLOCK_ROWS",
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


class Inputs(NamedTuple):
    """Checked arrays of one call, in the embeddings' namespace and device."""

    embeddings: Array  # (B, d), the caller's dtype
    labels: Array | None  # (B, p) in the compute dtype, or None
    label_distances: Array | None  # (B, B) in the compute dtype, or None
    # (m,) indices, or None for every row; a range (step 1) is a contiguous run of rows, which
    # the core slices instead of gathering (a shard's rows in a gathered batch)
    anchors: Array | range | None
    mask: Array | None  # (B, B) bool, or None


@dataclass(frozen=True)
class Problem:
    """Everything the dense loss reads: features, label data, anchors, options."""

    xp: Namespace
    features: Array  # (B, d), centred, compute dtype
    sq_norms: Array  # (B,), squared row norms of ``features``
    labels: Array | None
    label_distances: Array | None
    anchors: Array | range | None
    mask: Array | None
    options: LossOptions
    block_size: int  # the options' block size, or the default for this batch
    out_dtype: Any  # the embeddings' dtype: the gradient's dtype
    # 0-d: 0, or NaN when an embedding is NaN or infinite (its norm is then not finite):
    # added to the loss and the gradient, so that a diverged model shows (docs/design.md §1.3)
    nonfinite: Array

    @property
    def batch(self) -> int:
        return self.features.shape[0]

    @property
    def neighbours(self) -> slice | None:
        """The neighbour rows: None for every row (the anchor itself excluded), or the
        reference set ``slice(Q, B)`` when the first Q rows are queries."""
        q = self.options.num_queries
        return None if q is None else slice(q, self.batch)

    @property
    def num_anchors(self) -> int:
        if self.anchors is not None:
            a = self.anchors
            return len(a) if isinstance(a, range) else a.shape[0]
        q = self.options.num_queries
        return self.batch if q is None else q


def check_inputs(
    embeddings: Any, labels: Any, label_distances: Any, anchors: Any, mask: Any,
    num_queries: int | None = None,
) -> Inputs:  # fmt: skip
    """Validate the arrays of :func:`logratio.log_ratio_loss`; errors name the argument.

    With ``num_queries`` Q, the first Q rows are queries: label distances and the mask are
    (Q, B − Q) and anchors index the queries.
    """
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
    )


def default_block_size(batch: int) -> int:
    """About ``DEFAULT_BLOCK_ELEMENTS / B`` anchors, at least ``MIN_BLOCK_ROWS`` (or B)."""
    return max(1, min(batch, max(DEFAULT_BLOCK_ELEMENTS // max(batch, 1), MIN_BLOCK_ROWS)))


def make_problem(inputs: Inputs, options: LossOptions, default_block: int | None = None) -> Problem:
    """The :class:`Problem` of checked ``inputs``: centred features in the compute dtype.

    ``default_block``: the block size when the options give none (an adapter's choice for
    its device); else :func:`default_block_size`."""
    embeddings = inputs.embeddings
    xp = v.namespace(embeddings)
    dtype = v.compute_dtype(xp, embeddings)
    f = xp.astype(embeddings, dtype) if embeddings.dtype != dtype else embeddings
    batch = f.shape[0]
    if batch > 0:  # the mean of no rows would warn and be NaN
        f = f - _grid_mean(xp, f)
    block = options.block_size
    if block is None:
        block = default_block if default_block is not None else default_block_size(batch)
    sq_norms = xp.sum(f * f, axis=1)
    # the blocks' tests would read a NaN pair as a copy or not near (no loss, no gradient):
    # the non-finite rows poison the result instead, at the cost of one pass over B norms
    if batch > 0:
        nonfinite = 0 * xp.max(sq_norms)
    else:
        nonfinite = xp.zeros((), dtype=f.dtype, device=array_api_compat.device(f))
    return Problem(
        xp=xp,
        features=f,
        sq_norms=sq_norms,
        labels=inputs.labels,
        label_distances=inputs.label_distances,
        anchors=inputs.anchors,
        mask=inputs.mask,
        options=options,
        block_size=block,
        out_dtype=embeddings.dtype,
        nonfinite=nonfinite,
    )


def prepare(
    *arrays: Any, options: LossOptions | None = None, default_block: int | None = None
) -> Problem:
    """:func:`check_inputs` of ``(embeddings, labels, label_distances, anchors, mask)`` (the
    missing trailing ones None), then :func:`make_problem` (default options when None)."""
    options = LossOptions() if options is None else options
    inputs = check_inputs(*arrays, *(None,) * (5 - len(arrays)), options.num_queries)
    return make_problem(inputs, options, default_block)


def _grid_mean(xp: Namespace, f: Array) -> Array:
    """The column means of ``f`` rounded to a power-of-two grid about 2⁻²¹ of ``max |f|``.

    Centring only has to bring the rows near the origin (docs/design.md §1.3), and a rounded
    mean makes ``f − mean`` one exact-operand subtraction: a compiler that evaluates the
    centring twice (XLA fuses it into each consumer, one with ``x − s·(1/n)`` contracted into
    an FMA) still gets bit-identical rows, so duplicates stay exact duplicates in every operand
    of the Gram product.  The grid step comes from ``max |f|`` (exact in any evaluation order),
    rounded half-way between powers of two so that power-of-two data sit far from a step
    boundary.
    """
    top = xp.max(xp.abs(f))
    top = xp.where(top > 0, top, xp.ones_like(top))
    tiny = math.log2(float(xp.finfo(f.dtype).smallest_normal))  # keep the step normal
    step = 2.0 ** xp.clip(xp.floor(xp.log2(top) + 0.5) - 21, min=tiny)
    return xp.round(xp.mean(f, axis=0) / step) * step
