"""The engine's step: one block of anchors against its neighbours, for any formula.

:func:`block_step` is a pure function of the arrays of one block (:class:`~logratio.formula.Block`)
and the formula: it returns the block's per-anchor losses and counts and, optionally, its two
parts of the gradient, assembled from the formula's kernel (:mod:`logratio._pairs`).
Everything the engine computes over (r, n) pairs happens here or in the formula, once for
every backend; :mod:`logratio._dense` iterates over the blocks and assembles the results.
Being a pure function of arrays is what lets a framework compile it: the PyTorch engine
(:mod:`logratio.backends._torch_engine`) runs it through inductor, and the JAX adapter scans
it over the blocks (docs/design.md §4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import array_api_compat

from ._near import refine_pairs
from ._pairs import pair_ops
from ._validation import Array, Namespace
from .formula import Block, InPlace, Terms

__all__ = ["Step", "StepFn", "block_step", "eager_step", "in_place_step", "in_place_terms"]


class Step(NamedTuple):
    """One block's share of the loss and of ``Σ_a w_a ∇S_a``."""

    row_loss: Array  # (r,)
    row_count: Array  # (r,)
    anchor_grad: Array | None  # (r, d): the anchors' part, for the anchors' rows
    neighbour_grad: Array | None  # (n, d): the neighbours' part, for the neighbours' rows


#: ``step(xp, formula, block, want_grad) -> Step``: :func:`block_step` or a compiled version
StepFn = Callable[[Namespace, Any, Block, bool], Step]


def block_step(xp: Namespace, formula: Any, blk: Block, want_grad: bool) -> Step:
    """The formula's terms of one block and, with ``want_grad``, their gradient parts.

    The block's pairwise quantity is computed first unless ``blk.pairs`` holds it; the
    kernel ``K`` becomes the anchors' and neighbours' parts of the gradient by two r×n×d
    products (:meth:`logratio._pairs.PairOps.grad_parts`, docs/design.md §1.2, §7.2).  A pure
    function of arrays: the unit that the PyTorch engine compiles.
    """
    ops = pair_ops(formula.pairs)
    if blk.pairs is None:
        blk = blk._replace(pairs=ops.product(xp, blk))
    terms = formula.terms(xp, blk, want_grad)
    return _step(xp, ops, blk, terms, want_grad)


def _step(xp: Namespace, ops: Any, blk: Block, terms: Any, want_grad: bool) -> Step:
    if not want_grad:
        return Step(terms.row_loss, terms.row_count, None, None)
    k = terms.kernel
    if blk.weights is not None:
        k = k * blk.weights[:, None]
    anchor, neighbour = ops.grad_parts(xp, k, blk.anchors, blk.neighbours)
    return Step(terms.row_loss, terms.row_count, anchor, neighbour)


def eager_step(xp: Namespace, formula: Any, mask: Array | None) -> StepFn:
    """:func:`block_step`, or the formula's in-place evaluation for NumPy, CuPy and PyTorch arrays
    where it offers one for this call (decided once per call, outside compiled code)."""
    evaluate = formula.in_place(xp, mask)
    if evaluate is None:
        return block_step

    def step(xp: Namespace, formula: Any, blk: Block, want_grad: bool) -> Step:
        return in_place_step(xp, formula, blk, want_grad, evaluate)

    return step


def in_place_step(
    xp: Namespace, formula: Any, blk: Block, want_grad: bool, evaluate: InPlace
) -> Step:
    """:func:`block_step` with the terms of ``evaluate`` (:func:`in_place_terms`)."""
    terms = in_place_terms(xp, formula, blk, evaluate, want_grad)
    return _step(xp, pair_ops(formula.pairs), blk, terms, want_grad)


def in_place_terms(
    xp: Namespace, formula: Any, blk: Block, evaluate: InPlace, want_kernel: bool = True
) -> Terms:
    """The terms of ``evaluate``, which may overwrite the block's own product; squared
    distances are refined with a one-pass candidate count (:func:`_candidates`) and the
    refined positions handed on (``blk.refined``)."""
    sq = blk.left @ blk.right.T
    found = None
    if formula.pairs == "sqeuclidean":
        found = refine_pairs(xp, sq, blk, _candidates)
    return evaluate(xp, blk._replace(pairs=sq, refined=found), want_kernel)


def _candidates(xp: Namespace, sq: Array, near_row: Array, near_col: Array, ids: Any) -> Any:
    """An upper bound on the number of near pairs (0 exactly when there are none): pairs
    within ``near_row[a] + max(near_col)``, one comparison pass with an (r, 1) operand
    instead of the (r, n) bound of :func:`logratio._near.count_near`; the anchors' pairs
    with themselves (dense blocks) are not counted."""
    if sq.shape[1] == 0:
        return 0
    near = sq <= (near_row + xp.max(near_col))[:, None]
    count = int(xp.count_nonzero(near))
    if ids is not None:
        rows = xp.arange(sq.shape[0], device=array_api_compat.device(sq))
        count -= int(xp.count_nonzero(near[rows, ids]))
    return count
