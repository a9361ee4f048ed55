"""The engine's loop: a formula over every block of anchors, its gradient and its JVP.

This module is the core every backend runs: pure Array API operations on a
:class:`~logratio._problem.Problem`, for any formula (:mod:`logratio.formula`).  Two
functions are its interface:

* :func:`loss_and_grad` — the reduced loss and, optionally, its gradient (the reduction's
  scale and the embeddings' dtype applied), or ``Σ_a w_a ∇S_a`` for per-anchor weights;
* :func:`loss_and_jvp` — the loss and its derivative along a tangent of the embeddings.

Anchors are processed in blocks of rows (:func:`_blocks`), each by one call of
:func:`~logratio._block.block_step`, so the working memory is O(block · B); a block's kernel
becomes the gradient's rows by two products (docs/design.md §7.2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import NamedTuple

import array_api_compat

from ._block import StepFn, block_step, eager_step, in_place_terms
from ._pairs import Operands
from ._problem import Problem
from ._validation import Array, Namespace
from .formula import Block

__all__ = [
    "TermsFn",
    "anchor_tangents",
    "anchor_terms",
    "anchor_totals",
    "block_arrays",
    "block_step",
    "block_values",
    "finish_grad",
    "loss_and_grad",
    "loss_and_jvp",
    "operands",
    "reduce_totals",
]


def operands(p: Problem) -> Operands:
    """The per-call operands of the block product (:mod:`logratio._pairs`), with the
    formula's per-neighbour statistics where it has them (``Formula.columns``)."""
    nb = slice(None) if p.neighbours is None else p.neighbours
    ops = p.pairs.operands(p.xp, p.features, p.row_scale, nb)
    columns = getattr(p.formula, "columns", None)
    if columns is None:
        return ops
    stats = columns(p.xp, p.labels, p.label_distances, p.neighbours, p.block_size)
    return ops if stats is None else dataclasses.replace(ops, columns=stats)


def block_values(p: Problem) -> tuple[Array, ...]:
    """The formula's numeric options as 0-d arrays of the compute dtype."""
    f = p.features
    dev = array_api_compat.device(f)
    return tuple(p.xp.asarray(x, dtype=f.dtype, device=dev) for x in p.formula.values())


# --------------------------------------------------------------------------- anchor blocks

#: ``terms(p, *, want_grad, row_weights=None, step=None) -> (row_loss, row_count, grad)``:
#: :func:`anchor_terms` or another loop over the same blocks
TermsFn = Callable[..., tuple[Array, Array, "Array | None"]]


class _Block(NamedTuple):
    """One block of anchors: ``rows`` selects them from the batch, ``start`` is the position
    of the first in the list of anchors."""

    rows: slice | Array  # a slice of the batch (a view, no copy) or the anchors' indices
    start: int


def _blocks(p: Problem) -> Iterator[_Block]:
    """The anchor blocks of ``p``: ``p.block_size`` anchors each."""
    m, size, anchors = p.num_anchors, p.block_size, p.anchors
    first = 0 if anchors is None else anchors.start if isinstance(anchors, range) else None
    for s in range(0, m, size):
        stop = min(s + size, m)
        rows = anchors[s:stop] if first is None else slice(first + s, first + stop)
        yield _Block(rows, s)


def _take(xp: Namespace, x: Array, rows: slice | Array) -> Array:
    return x[rows, ...] if isinstance(rows, slice) else xp.take(x, rows, axis=0)


def block_arrays(
    p: Problem, ops: Operands, rows: slice | Array, start: int, row_weights: Array | None,
    values: tuple[Array, ...] | None = None,
) -> Block:  # fmt: skip
    """The :class:`~logratio.formula.Block` of the anchors ``rows`` (the block beginning at
    anchor ``start``): views for a slice, gathers for index anchors.  ``values``: the
    formula's values as arrays (made here when None)."""
    xp = p.xp
    nb = p.neighbours
    labels = nb_labels = lab = mask = weights = None
    if p.label_distances is not None:
        lab = _take(xp, p.label_distances, rows)
    else:
        labels = _take(xp, p.labels, rows)
        nb_labels = p.labels if nb is None else p.labels[nb, ...]
    if p.mask is not None:
        mask = _take(xp, p.mask, rows)
    left = _take(xp, ops.left, rows)
    if row_weights is not None:
        weights = row_weights[start : start + left.shape[0]]
    return Block(
        left=left,
        right=ops.right,
        near_row=None if ops.near_row is None else _take(xp, ops.near_row, rows),
        near_col=ops.near_col,
        ids=ops.rows[rows] if isinstance(rows, slice) else rows,
        cols=ops.cols,
        anchors=_take(xp, p.features, rows),
        neighbours=ops.neighbours,
        label_distances=lab,
        labels=labels,
        neighbour_labels=nb_labels,
        mask=mask,
        weights=weights,
        values=block_values(p) if values is None else values,
        dense=nb is None,
        device=array_api_compat.device(p.features),
        columns=ops.columns,
    )


def anchor_terms(
    p: Problem,
    *,
    want_grad: bool = False,
    row_weights: Array | None = None,
    step: StepFn | None = None,
) -> tuple[Array, Array, Array | None]:
    """Per-anchor losses ``S_a`` and counts, and optionally ``Σ_a w_a ∇_F S_a``.

    Returns ``(row_loss (m,), row_count (m,), grad (B, d) in the compute dtype or None)``;
    ``row_weights`` (m,) defaults to ones.  Each block of anchors is one call of ``step``
    (:func:`block_step`, or a compiled version of it: docs/design.md §4); its anchors' part
    of the gradient goes to their rows, its neighbours' part to every neighbour, and the
    sum is pulled back to the rows as given (:meth:`logratio._pairs.PairOps.pullback`).
    """
    xp, f = p.xp, p.features
    ops = operands(p)
    values = block_values(p)
    step = eager_step(xp, p.formula, p.mask) if step is None else step
    losses, counts, anchor_parts = [], [], []
    neighbour = scattered = None
    for rows, start in _blocks(p):
        blk = block_arrays(p, ops, rows, start, row_weights, values)
        out = step(xp, p.formula, blk, want_grad)
        losses.append(out.row_loss)
        counts.append(out.row_count)
        if not want_grad:
            continue
        nb = out.neighbour_grad
        neighbour = nb if neighbour is None else neighbour + nb
        if isinstance(rows, slice):  # every row, or a contiguous run of rows
            anchor_parts.append(out.anchor_grad)
        else:  # scatter-add into the anchors' rows (indices may repeat)
            onehot = xp.astype(rows[:, None] == ops.rows[None, :], f.dtype)
            part = onehot.T @ out.anchor_grad
            scattered = part if scattered is None else scattered + part
    grad = None
    if want_grad:
        grad = p.pairs.pullback(
            xp, f, p.row_scale, _assemble(p, neighbour, scattered, anchor_parts)
        )
    return _concat(xp, losses, f), _concat(xp, counts, f), grad


def _assemble(
    p: Problem, neighbour: Array | None, scattered: Array | None, anchor_parts: list[Array]
) -> Array:
    """The (B, d) gradient from the neighbours' part (every row, or the reference rows), the
    anchors' part scattered to their rows, or the anchors' parts of consecutive blocks."""
    xp, f = p.xp, p.features
    if neighbour is None:  # no anchors at all
        return xp.zeros_like(f)
    q = p.batch if p.neighbours is None else p.neighbours.start
    anchors = _rows_at(xp, _concat(xp, anchor_parts, f), p.anchors, q) if anchor_parts else None
    if p.neighbours is not None:  # rows [0, Q) are queries, [Q, B) the reference set
        if anchors is None:
            anchors = xp.zeros((q, f.shape[1]), dtype=f.dtype, device=array_api_compat.device(f))
        neighbour, anchors = xp.concat([anchors, neighbour], axis=0), None
    grad = neighbour if scattered is None else neighbour + scattered
    return grad if anchors is None else grad + anchors


def anchor_tangents(p: Problem, tangent: Array) -> tuple[Array, Array, Array]:
    """Per-anchor losses and counts, and their derivatives ``dS_a`` along ``tangent``.

    ``dS_a = Σ_b K_ab dP_ab`` with ``dP`` the pairs' derivatives along the tangent
    (:meth:`logratio._pairs.PairOps.tangent_pairs`; for squared distances
    ``(f_a − f_b)·(t_a − t_b)``, docs/design.md §1.2), from two r×B×d products per block of r
    anchors.
    """
    xp, f = p.xp, p.features
    t = xp.astype(tangent, f.dtype) if tangent.dtype != f.dtype else tangent
    t = p.pairs.tangent(xp, f, p.row_scale, t)
    ops = operands(p)
    values = block_values(p)
    nb = slice(None) if p.neighbours is None else p.neighbours
    tn = _take(xp, t, nb)
    losses, counts, tangents = [], [], []
    evaluate = p.formula.in_place(xp, p.mask)
    for rows, start in _blocks(p):
        blk = block_arrays(p, ops, rows, start, None, values)
        if evaluate is not None:
            terms = in_place_terms(xp, p.formula, blk, evaluate)
        else:
            terms = p.formula.terms(xp, blk._replace(pairs=p.pairs.product(xp, blk)), True)
        losses.append(terms.row_loss)
        counts.append(terms.row_count)
        pair = p.pairs.tangent_pairs(xp, blk.anchors, _take(xp, t, rows), blk.neighbours, tn)
        tangents.append(xp.sum(terms.kernel * pair, axis=1))
    return _concat(xp, losses, f), _concat(xp, counts, f), _concat(xp, tangents, f)


def _rows_at(xp: Namespace, x: Array, anchors: range | None, batch: int) -> Array:
    """The (m, d) rows ``x`` of a contiguous run of anchors placed in a (B, d) array."""
    if anchors is None or len(anchors) == batch:
        return x
    dev = array_api_compat.device(x)
    before = xp.zeros((anchors.start, x.shape[1]), dtype=x.dtype, device=dev)
    after = xp.zeros((batch - anchors.stop, x.shape[1]), dtype=x.dtype, device=dev)
    return xp.concat([before, x, after], axis=0)


def _concat(xp: Namespace, parts: list[Array], like: Array) -> Array:
    if not parts:
        return xp.zeros((0,), dtype=like.dtype, device=array_api_compat.device(like))
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)


def _reduce(p: Problem, row_loss: Array, row_count: Array) -> tuple[Array, Array]:
    """The reduced loss and the factor that scales ``Σ_a ∇S_a`` into its gradient."""
    xp, reduction = p.xp, p.reduction
    if reduction == "none":
        return row_loss, xp.ones((), dtype=row_loss.dtype)
    return reduce_totals(xp, reduction, xp.sum(row_loss), xp.sum(row_count))


def reduce_totals(xp: Namespace, reduction: str, total: Array, count: Array) -> tuple[Array, Array]:
    """``"mean"`` / ``"sum"`` of summed per-anchor losses, and the gradient's factor.

    ``total = Σ_a S_a`` and ``count = Σ_a T_a`` are 0-d, summed over the anchors of one batch
    or, across processes or devices, over the global batch (docs/design.md §6.2).  Returns
    ``(loss, scale)`` with ``loss = scale · total``: ``1 / count`` for the mean (0 when no
    triplet counts), 1 for the sum.
    """
    if reduction == "sum":
        return total, xp.ones((), dtype=total.dtype)
    has = count > 0
    scale = xp.where(has, 1 / xp.where(has, count, count + 1), xp.zeros_like(count))
    return total * scale, scale


def anchor_totals(
    p: Problem, tangent: Array | None = None, *, terms: TermsFn | None = None
) -> tuple[Array, Array, Array | None]:
    """``Σ_a S_a`` and ``Σ_a T_a`` over the anchors of ``p`` and, along ``tangent``, the
    derivative of ``Σ_a S_a``: the unreduced pieces of :func:`loss_and_jvp`.

    The total carries the non-finite guard; all three are 0-d in the compute dtype.  For a
    shard of anchors against a gathered batch (docs/design.md §6.2) the caller sums them
    over the shards and reduces with :func:`reduce_totals`.  ``terms``: as in
    :func:`loss_and_grad`.
    """
    xp = p.xp
    run = anchor_terms if terms is None else terms
    row_loss, row_count, grad = run(p, want_grad=tangent is not None)
    total = xp.sum(row_loss) + p.nonfinite
    if grad is None:
        return total, xp.sum(row_count), None
    t = tangent if tangent.dtype == grad.dtype else xp.astype(tangent, grad.dtype)
    return total, xp.sum(row_count), xp.sum((grad + p.nonfinite) * t)


def finish_grad(p: Problem, grad: Array, scale: Array | None = None) -> Array:
    """``Σ_a w_a ∇S_a`` from :func:`anchor_terms` as a gradient: times the reduction's
    ``scale`` (None: 1), with the non-finite guard, in the embeddings' dtype."""
    if scale is not None:
        grad = grad * scale
    grad = grad + p.nonfinite
    if grad.dtype != p.out_dtype:
        grad = p.xp.astype(grad, p.out_dtype)
    return grad


def loss_and_grad(
    p: Problem,
    *,
    want_grad: bool = True,
    row_weights: Array | None = None,
    step: StepFn | None = None,
    terms: TermsFn | None = None,
) -> tuple[Array, Array | None]:
    """The loss of ``p`` and, with ``want_grad``, its gradient in the embeddings' dtype.

    The loss is in the compute dtype (float32 for half precision).  For ``reduction="none"``
    the gradient is that of ``Σ_a w_a S_a`` (``row_weights`` w, default ones): the
    vector-Jacobian product of the per-anchor losses.  ``step`` replaces
    :func:`~logratio._block.block_step` (a compiled version of it); ``terms`` replaces
    :func:`anchor_terms`, the loop over the blocks (JAX: a ``lax.scan``).
    """
    run = anchor_terms if terms is None else terms
    row_loss, row_count, grad = run(p, want_grad=want_grad, row_weights=row_weights, step=step)
    loss, scale = _reduce(p, row_loss, row_count)
    loss = loss + p.nonfinite
    if grad is not None:
        grad = finish_grad(p, grad, None if p.reduction == "none" else scale)
    return loss, grad


def loss_and_jvp(
    p: Problem, tangent: Array, *, terms: TermsFn | None = None
) -> tuple[Array, Array]:
    """The loss of ``p`` and its derivative along ``tangent`` (B, d), in the compute dtype.

    For ``"mean"`` / ``"sum"`` the derivative is ``⟨∇_F L, T⟩`` from the closed-form gradient;
    for ``"none"`` it is the vector of per-anchor derivatives ``dS_a``.
    """
    if p.reduction == "none":
        row_loss, _, row_tangent = anchor_tangents(p, tangent + p.nonfinite)
        return row_loss + p.nonfinite, row_tangent
    run = anchor_terms if terms is None else terms
    row_loss, row_count, grad = run(p, want_grad=True)
    loss, scale = _reduce(p, row_loss, row_count)
    t = tangent if tangent.dtype == grad.dtype else p.xp.astype(tangent, grad.dtype)
    # the guard inside the product: JAX's transpose of this rule (its gradient) keeps it
    return loss + p.nonfinite, p.xp.sum((grad + p.nonfinite) * t) * scale
