"""The dense log-ratio loss over every triplet, its closed-form gradient and its JVP.

This module is the core every backend runs: pure Array API operations on a
:class:`~logratio._problem.Problem`.  Two functions are its interface:

* :func:`loss_and_grad` — the reduced loss and, optionally, its gradient (the reduction's
  scale and the embeddings' dtype applied), or ``Σ_a w_a ∇S_a`` for per-anchor weights;
* :func:`loss_and_jvp` — the loss and its derivative along a tangent of the embeddings.

For an anchor ``a`` with neighbour set ``N`` (n = |N|) and residuals
``U_ab = log(D_ab + ε) − log(Δ_ab + ε)``, the identity
``Σ_{i<j∈N} (U_ai − U_aj)² = n · Σ_{i∈N} (U_ai − Ū_a)²`` (docs/design.md §1.1) makes the loss
over all triplets a per-row variance, O(B²(d + p)) time.  With ``K_ab`` the derivative of the
row's loss with respect to ``‖f_a − f_b‖²`` (times 2), anchor and neighbour receive
``±K_ab (f_a − f_b)`` (docs/design.md §1.2).  Anchors are processed in blocks of rows
(:func:`_blocks`), so the working memory is O(block · B).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import array_api_compat

from ._problem import Problem
from ._validation import Array, Namespace
from .distances import direct_distances, gram_noise_factor

__all__ = [
    "anchor_tangents",
    "anchor_terms",
    "anchor_totals",
    "finish_grad",
    "loss_and_grad",
    "loss_and_jvp",
    "reduce_totals",
]


# --------------------------------------------------------------------------- shared operands


@dataclass(frozen=True)
class _Operands:
    """Per-call operands shared by every block: augmented features for one-product distances.

    ``left[a] · right[b] = ‖f_a‖² + ‖f_b‖² − 2 f_a·f_b + ε'`` (ε' = ε for squared distances,
    else 0), so a block's distances come out of one matrix product with no (r, B) pass to add
    the norms.
    """

    left: Array  # (B, d + 2): [−2F | ‖f‖² + ε' | 1]
    right: Array  # (n, d + 2): [F | 1 | ‖f‖²] of the n neighbour rows
    # the rounding noise of D_ab + ε' is below c·(‖f_a‖² + ‖f_b‖² + ε') (docs/design.md §1.3):
    # D_ab counts as 0 unless D_ab + ε' > thr_row[a] + thr_col[b]
    thr_row: Array  # (B,) c·(‖f_a‖² + ε') + ε'
    thr_col: Array  # (n,) c·‖f_b‖² of the neighbours
    rows: Array  # (B,) arange
    cols: Array  # (n,) the neighbours' row indices
    neighbours: Array  # (n, d) the neighbours' features


def _operands(p: Problem) -> _Operands:
    xp, f, norms = p.xp, p.features, p.sq_norms
    dev = array_api_compat.device(f)
    ones = xp.ones((p.batch, 1), dtype=f.dtype, device=dev)
    eps_sq = p.options.eps if p.options.squared else 0.0
    noise = gram_noise_factor(xp, f.shape[1], f.dtype)
    nb = slice(None) if p.neighbours is None else p.neighbours
    rows = xp.arange(p.batch, device=dev)
    return _Operands(
        left=xp.concat([-2 * f, (norms + eps_sq)[:, None], ones], axis=1),
        right=xp.concat([f, ones, norms[:, None]], axis=1)[nb, ...],
        thr_row=noise * (norms + eps_sq) + eps_sq,
        thr_col=noise * norms[nb],
        rows=rows,
        cols=rows[nb],
        neighbours=f[nb, ...],
    )


# --------------------------------------------------------------------------- anchor blocks


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


class _Terms(NamedTuple):
    """What one block of anchors contributes."""

    row_loss: Array  # (r,) S_a = Σ over the anchor's counted triplets of l(a, i, j)
    row_count: Array  # (r,) number of counted triplets
    # (r, B) K_ab: ∇f_a gains K_ab (f_a − f_b) and ∇f_b loses it (docs/design.md §1.2); zero
    # where the pair adds no gradient; None when not asked for
    kernel: Array | None


def _block_terms(p: Problem, rows: slice | Array, ops: _Operands, want_kernel: bool) -> _Terms:
    """Loss terms (and ``K``) of the anchors ``rows`` against every neighbour: O(r·B·(d + p)).

    Every (r, B) array is one pass over memory, so the passes are counted: one product gives
    ``D + ε`` (:class:`_Operands`), one mask ``keep`` marks the pairs that count and are not
    rounding noise, and the residual is zero off ``valid`` without masking it (``D`` and the
    label distance both read 0 there).
    """
    xp, opts = p.xp, p.options
    eps = opts.eps
    cols = ops.cols
    # D_ab + ε' up to rounding noise; pairs below the noise threshold, the anchor itself and
    # masked-out pairs have D = 0 and add no gradient (∇D = 2 (f_a − f_b) = 0 for duplicates,
    # whereas K·(f_a − f_b) evaluated as rowsum(K)·f_a − K·f would leave noise u·K_ab·‖f‖)
    sq = _take(xp, ops.left, rows) @ ops.right.T
    # valid: the pairs of an anchor with any other row (and allowed by the mask); a
    # reference set (docs/design.md §1) never holds the anchor itself
    ids = ops.rows[rows] if isinstance(rows, slice) else rows
    if p.neighbours is None:
        valid = ids[:, None] != cols[None, :]
    else:
        valid = xp.ones(sq.shape, dtype=xp.bool, device=array_api_compat.device(sq))
    if p.mask is not None:
        valid = valid & _take(xp, p.mask, rows)
    keep = (sq > _take(xp, ops.thr_row, rows)[:, None] + ops.thr_col[None, :]) & valid
    if opts.squared:
        dist = None
        dpe = xp.where(keep, sq, eps)  # D + ε
    elif opts.root_eps == 0:
        # mask the input of sqrt: autodiff through sqrt(0) would give inf · 0 = NaN
        dist = xp.where(keep, xp.sqrt(xp.where(keep, sq, 1.0)), 0.0)
        dpe = dist + eps
    else:
        # sqrt(‖f_a − f_b‖² + root_eps) on every pair of distinct rows (docs/design.md §6.1);
        # rounding noise reads as ‖f_a − f_b‖² = 0, so a copy has distance sqrt(root_eps)
        dist = xp.where(valid, xp.sqrt(xp.where(keep, sq, 0.0) + opts.root_eps), 0.0)
        dpe = dist + eps
    del sq  # (r, B) temporaries are released as soon as they are used up: peak memory
    if p.label_distances is not None:
        lab = xp.where(valid, _take(xp, p.label_distances, rows), 0.0)
    else:
        nb_labels = p.labels if p.neighbours is None else p.labels[p.neighbours, ...]
        lab = direct_distances(xp, _take(xp, p.labels, rows), nb_labels, opts.label_metric)
        if lab.dtype != dpe.dtype:
            lab = xp.astype(lab, dpe.dtype)
        if p.mask is not None or callable(opts.label_metric):
            lab = xp.where(valid, lab, 0.0)
        # else: named metrics give Δ_aa = 0 exactly, the only pair off ``valid``
    # U = log((D + ε) / (Δ + ε)): one log; zero off valid, where D = Δ = 0
    u = xp.log(dpe / (lab + eps))
    if p.mask is None:
        dev = array_api_compat.device(u)
        others = p.batch - 1 if p.neighbours is None else cols.shape[0]
        n = xp.full((u.shape[0],), max(others, 0), dtype=u.dtype, device=dev)
    else:
        n = xp.sum(xp.astype(valid, u.dtype), axis=1)
    mean = xp.sum(u, axis=1) / xp.where(n > 0, n, 1.0)
    centred = xp.where(valid, u - mean[:, None], 0.0)  # U_ab − Ū_a on the counted pairs
    del u
    row_loss = n * _sum_squares(xp, centred)
    row_count = n * (n - 1) / 2
    # ∂S_a/∂U_ab = 2 c_a g_ab
    g, c = centred, n
    if opts.ties == "exclude":
        zero = xp.zeros_like(centred)
        group_n, group_centred = _tie_groups(xp, lab, centred, valid)
        # pairs across tie groups only, as a sum of non-negative terms rather than the
        # difference n·Σ(U − Ū)² − Σ_g n_g·Σ_g(U − Ū_g)², which cancels when most pairs tie:
        # Σ_g (n − n_g)·Σ_g (U − Ū_g)² + n·Σ_g n_g·(Ū_g − Ū)²   (docs/design.md §1.1)
        # Ū_g − Ū, zero off valid; exactly zero when every pair of the row ties (no triplet)
        between = xp.where(group_n < n[:, None], centred - group_centred, zero)
        row_loss = xp.sum(
            (n[:, None] - group_n) * group_centred * group_centred + n[:, None] * between * between,
            axis=1,
        )
        row_count = row_count - xp.sum(xp.where(valid, (group_n - 1) / 2, zero), axis=1)
        if want_kernel:
            g = (n[:, None] - group_n) * group_centred + n[:, None] * between
            c = xp.ones_like(n)
    if not want_kernel:
        return _Terms(row_loss, row_count, None)
    # K_ab = 2 ∂S_a/∂(squared distance) with the factor 2 of ∂‖f_a − f_b‖²/∂f_a folded in:
    # 4 c_a g_ab / (D + ε) for squared distances, 2 c_a g_ab / ((D + ε) · D) for Euclidean
    # (also with root_eps: ∂D/∂f_a = (f_a − f_b) / D)
    if opts.squared:
        kernel = xp.where(keep, ((4 * c)[:, None] * g) / dpe, 0.0)
    else:
        kernel = xp.where(keep, ((2 * c)[:, None] * g) / xp.where(keep, dpe * dist, 1.0), 0.0)
    return _Terms(row_loss, row_count, kernel)


def _sum_squares(xp: Namespace, x: Array) -> Array:
    """``Σ_b x_ab²`` per row; ``linalg.vecdot`` where the namespace has it (no temporary)."""
    linalg = getattr(xp, "linalg", None)
    if linalg is not None and hasattr(linalg, "vecdot"):
        return linalg.vecdot(x, x, axis=-1)
    return xp.sum(x * x, axis=1)


def _tie_groups(xp: Namespace, lab: Array, centred: Array, valid: Array) -> tuple[Array, Array]:
    """Size and centred residual of each entry's tie group (equal ``Δ_a·`` within a row).

    Returns ``(n_g, U − Ū_g)`` per entry, zero off ``valid``.  Each row is sorted by label
    distance so that ties are contiguous; a group's sum is a difference of the row's cumulative
    sum of the (already row-centred) residuals: O(r·B·log B), no (r, B, B) array.
    """
    r, batch = lab.shape
    dev = array_api_compat.device(lab)
    key = xp.where(valid, lab, xp.full_like(lab, math.inf))
    order = xp.argsort(key, axis=1, stable=True)
    row_start = xp.arange(r, device=dev)[:, None] * batch
    flat = xp.reshape(order + row_start, (-1,))
    key_s = xp.reshape(xp.take(xp.reshape(key, (-1,)), flat), (r, batch))
    centred_s = xp.reshape(xp.take(xp.reshape(centred, (-1,)), flat), (r, batch))
    first = xp.ones((r, 1), dtype=xp.bool, device=dev)
    new_group = xp.concat([first, key_s[:, 1:] != key_s[:, :-1]], axis=1)
    group = xp.cumulative_sum(xp.astype(new_group, order.dtype), axis=1) + row_start
    group = xp.reshape(group, (-1,))  # non-decreasing over the flattened block
    start = xp.searchsorted(group, group, side="left")
    stop = xp.searchsorted(group, group, side="right")
    csum = xp.reshape(xp.cumulative_sum(centred_s, axis=1, include_initial=True), (-1,))
    row_of = xp.reshape(xp.broadcast_to(xp.arange(r, device=dev)[:, None], (r, batch)), (-1,))
    row_of = xp.astype(row_of, start.dtype)
    # position k of row q sits at q·B + k in ``group`` and at q·(B + 1) + k in ``csum``
    sums = xp.take(csum, stop + row_of) - xp.take(csum, start + row_of)
    size_s = xp.reshape(xp.astype(stop - start, centred.dtype), (r, batch))
    group_centred_s = centred_s - xp.reshape(sums, (r, batch)) / size_s
    inverse = xp.reshape(xp.argsort(order, axis=1) + row_start, (-1,))
    group_centred = xp.reshape(xp.take(xp.reshape(group_centred_s, (-1,)), inverse), (r, batch))
    group_n = xp.reshape(xp.take(xp.reshape(size_s, (-1,)), inverse), (r, batch))
    zero = xp.zeros_like(group_centred)
    return xp.where(valid, group_n, zero), xp.where(valid, group_centred, zero)


# --------------------------------------------------------------------------- evaluation


def anchor_terms(
    p: Problem, *, want_grad: bool = False, row_weights: Array | None = None
) -> tuple[Array, Array, Array | None]:
    """Per-anchor losses ``S_a`` and triplet counts, and optionally ``Σ_a w_a ∇_F S_a``.

    Returns ``(row_loss (m,), row_count (m,), grad (B, d) in the compute dtype or None)``;
    ``row_weights`` (m,) defaults to ones.  A block of anchors A adds
    ``rowsum(K)·f_a − (K·F)_a`` to its anchors and ``colsum(K)·f_b − (Kᵀ·F_A)_b`` to every
    row b: two r×B×d products (cheaper than forming ``W = K + Kᵀ``, a strided pass).
    """
    xp, f = p.xp, p.features
    ops = _operands(p)
    losses, counts, anchor_parts = [], [], []
    neighbour = scattered = None
    for rows, start in _blocks(p):
        terms = _block_terms(p, rows, ops, want_grad)
        losses.append(terms.row_loss)
        counts.append(terms.row_count)
        if not want_grad:
            continue
        k = terms.kernel
        if row_weights is not None:
            k = k * row_weights[start : start + k.shape[0], None]
        fr, fn = _take(xp, f, rows), ops.neighbours
        # ∇f_a += Σ_b K_ab (f_a − f_b)   and   ∇f_b −= K_ab (f_a − f_b)
        anchor_part = xp.sum(k, axis=1)[:, None] * fr - k @ fn
        nb = xp.sum(k, axis=0)[:, None] * fn - k.T @ fr
        neighbour = nb if neighbour is None else neighbour + nb
        if isinstance(rows, slice):  # every row, or a contiguous run of rows
            anchor_parts.append(anchor_part)
        else:  # scatter-add into the anchors' rows (indices may repeat)
            onehot = xp.astype(rows[:, None] == ops.rows[None, :], f.dtype)
            part = onehot.T @ anchor_part
            scattered = part if scattered is None else scattered + part
    grad = None
    if want_grad:
        grad = _assemble(p, neighbour, scattered, anchor_parts)
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

    ``dS_a = ⟨∇_F S_a, T⟩ = Σ_b K_ab (f_a − f_b)·(t_a − t_b)`` (docs/design.md §1.2), from two
    r×B×d products per block of r anchors.  ``tangent`` (B, d) is centred like the features
    (only differences of rows matter).
    """
    xp, f = p.xp, p.features
    t = xp.astype(tangent, f.dtype) if tangent.dtype != f.dtype else tangent
    if p.batch > 0:
        t = t - xp.mean(t, axis=0)
    ft = xp.sum(f * t, axis=1)
    ops = _operands(p)
    nb = slice(None) if p.neighbours is None else p.neighbours
    losses, counts, tangents = [], [], []
    for rows, _ in _blocks(p):
        terms = _block_terms(p, rows, ops, True)
        losses.append(terms.row_loss)
        counts.append(terms.row_count)
        fr, tr, ftr = _take(xp, f, rows), _take(xp, t, rows), _take(xp, ft, rows)
        fn, tn, ftn = ops.neighbours, _take(xp, t, nb), _take(xp, ft, nb)
        # (f_a − f_b)·(t_a − t_b) = f_a·t_a + f_b·t_b − f_a·t_b − f_b·t_a
        pair = ftr[:, None] + ftn[None, :] - fr @ tn.T - tr @ fn.T
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
    xp, reduction = p.xp, p.options.reduction
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


def anchor_totals(p: Problem, tangent: Array | None = None) -> tuple[Array, Array, Array | None]:
    """``Σ_a S_a`` and ``Σ_a T_a`` over the anchors of ``p`` and, along ``tangent``, the
    derivative of ``Σ_a S_a``: the unreduced pieces of :func:`loss_and_jvp`.

    The total carries the non-finite guard; all three are 0-d in the compute dtype.  For a
    shard of anchors against a gathered batch (docs/design.md §6.2) the caller sums them
    over the shards and reduces with :func:`reduce_totals`.
    """
    xp = p.xp
    row_loss, row_count, grad = anchor_terms(p, want_grad=tangent is not None)
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
    p: Problem, *, want_grad: bool = True, row_weights: Array | None = None
) -> tuple[Array, Array | None]:
    """The loss of ``p`` and, with ``want_grad``, its gradient in the embeddings' dtype.

    The loss is in the compute dtype (float32 for half precision).  For ``reduction="none"``
    the gradient is that of ``Σ_a w_a S_a`` (``row_weights`` w, default ones): the
    vector-Jacobian product of the per-anchor losses.
    """
    row_loss, row_count, grad = anchor_terms(p, want_grad=want_grad, row_weights=row_weights)
    loss, scale = _reduce(p, row_loss, row_count)
    loss = loss + p.nonfinite
    if grad is not None:
        grad = finish_grad(p, grad, None if p.options.reduction == "none" else scale)
    return loss, grad


def loss_and_jvp(p: Problem, tangent: Array) -> tuple[Array, Array]:
    """The loss of ``p`` and its derivative along ``tangent`` (B, d), in the compute dtype.

    For ``"mean"`` / ``"sum"`` the derivative is ``⟨∇_F L, T⟩`` from the closed-form gradient;
    for ``"none"`` it is the vector of per-anchor derivatives ``dS_a``.
    """
    if p.options.reduction == "none":
        row_loss, _, row_tangent = anchor_tangents(p, tangent + p.nonfinite)
        return row_loss + p.nonfinite, row_tangent
    row_loss, row_count, grad = anchor_terms(p, want_grad=True)
    loss, scale = _reduce(p, row_loss, row_count)
    t = tangent if tangent.dtype == grad.dtype else p.xp.astype(tangent, grad.dtype)
    # the guard inside the product: JAX's transpose of this rule (its gradient) keeps it
    return loss + p.nonfinite, p.xp.sum((grad + p.nonfinite) * t) * scale
