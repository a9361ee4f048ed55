"""The kernel of the dense loss: one block of anchors against its neighbours.

:func:`block_step` is a pure function of the arrays of one block (:class:`BlockArrays`) and
the options: it returns the block's per-anchor losses and triplet counts and, optionally, its
two parts of the closed-form gradient.  Everything the loss computes over (r, n) pairs happens
here, once for every backend; :mod:`logratio._dense` iterates over the blocks and assembles
the results.  Being a pure function of arrays is what lets a framework compile it: the PyTorch
engine (:mod:`logratio.backends._torch_engine`) runs it through inductor, and the JAX adapter
maps it over the blocks with ``jax.lax.map`` (docs/design.md §4).

For an anchor ``a`` with neighbour set ``N`` (n = |N|) and residuals
``U_ab = log(D_ab + ε) − log(Δ_ab + ε)``, the identity
``Σ_{i<j∈N} (U_ai − U_aj)² = n · Σ_{i∈N} (U_ai − Ū_a)²`` (docs/design.md §1.1) makes the loss
of an anchor over all its triplets a row variance.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

from ._block_inplace import block_terms_in_place, supports
from ._near import CountFn, refine_near
from ._validation import Array, Namespace
from .distances import direct_distances
from .options import LossOptions

__all__ = [
    "BlockArrays",
    "Step",
    "StepFn",
    "Terms",
    "block_distances",
    "block_step",
    "block_terms",
    "eager_step",
    "terms_for",
]


class BlockArrays(NamedTuple):
    """One block of r anchors against the n neighbours: every array :func:`block_step` reads.

    Built by :func:`block_arrays` (slices or gathers of the call's operands); the step itself
    is a pure function of these arrays and the options, which is what a compiler (the PyTorch
    engine, ``jax.lax.map``) needs.
    """

    left: Array  # (r, d + 2) the anchors' rows of _Operands.left
    right: Array  # (n, d + 2)
    near_row: Array  # (r,) a pair is near (logratio._near) when its Gram value is at most
    near_col: Array  # (n,) near_row[a] + near_col[b]
    ids: Array  # (r,) the anchors' rows in the batch
    cols: Array  # (n,) the neighbours' rows in the batch
    anchors: Array  # (r, d) the anchors' features
    neighbours: Array  # (n, d)
    label_distances: Array | None  # (r, n), or None to compute them from the labels
    labels: Array | None  # (r, p) the anchors' labels
    neighbour_labels: Array | None  # (n, p)
    mask: Array | None  # (r, n) bool
    weights: Array | None  # (r,) per-anchor weights of the gradient (reduction="none")
    # 0-d, the compute dtype: the options' ε and root_eps as values rather than constants, so
    # a compiled step serves every ε (the options still decide which formula applies)
    eps: Array
    root_eps: Array
    dense: bool  # the neighbours are the whole batch: the anchor itself is excluded
    device: Any  # where new arrays are made (no device lookup inside the step)
    # (r, n) the block's squared distances when already computed (the PyTorch engine computes
    # them outside its compiled kernel); None: the step computes them (block_distances)
    distances: Array | None = None


class Terms(NamedTuple):
    """What one block of anchors contributes."""

    row_loss: Array  # (r,) S_a = Σ over the anchor's counted triplets of l(a, i, j)
    row_count: Array  # (r,) number of counted triplets
    # (r, n) K_ab: ∇f_a gains K_ab (f_a − f_b) and ∇f_b loses it (docs/design.md §1.2); zero
    # where the pair adds no gradient; None when not asked for
    kernel: Array | None


class Step(NamedTuple):
    """One block's share of the loss and of ``Σ_a w_a ∇S_a``."""

    row_loss: Array  # (r,)
    row_count: Array  # (r,)
    anchor_grad: Array | None  # (r, d): Σ_b K_ab (f_a − f_b), for the anchors' rows
    neighbour_grad: Array | None  # (n, d): −Σ_a K_ab (f_a − f_b), for the neighbours' rows


#: ``step(xp, options, block, want_grad) -> Step``: :func:`block_step` or a compiled version
StepFn = Callable[[Namespace, LossOptions, BlockArrays, bool], Step]

#: ``evaluate(xp, options, block, want_kernel) -> Terms``: :func:`block_terms` or
#: :func:`logratio._block_inplace.block_terms_in_place`
TermsEval = Callable[[Namespace, LossOptions, BlockArrays, bool], Terms]


def terms_for(xp: Namespace, options: LossOptions, mask: Array | None) -> TermsEval:
    """How to evaluate the blocks of a call: in place for NumPy and CuPy arrays when the
    call has no mask and includes ties (:mod:`logratio._block_inplace`), else
    :func:`block_terms`.  Decided once per call, outside any compiled code."""
    return block_terms_in_place if supports(xp, options, mask) else block_terms


def eager_step(xp: Namespace, options: LossOptions, mask: Array | None) -> StepFn:
    """:func:`block_step` with the evaluation :func:`terms_for` picks."""
    evaluate = terms_for(xp, options, mask)
    if evaluate is block_terms:
        return block_step
    return functools.partial(block_step, evaluate=evaluate)


def block_step(
    xp: Namespace,
    options: LossOptions,
    blk: BlockArrays,
    want_grad: bool,
    evaluate: TermsEval | None = None,
) -> Step:
    """The loss terms of one block of anchors and, with ``want_grad``, their gradient parts.

    ``∇f_a += Σ_b K_ab (f_a − f_b) = rowsum(K)·f_a − (K·F)_a`` and
    ``∇f_b −= Σ_a K_ab (f_a − f_b) = colsum(K)·f_b − (Kᵀ·F_A)_b`` (docs/design.md §1.2): two
    r×n×d products, cheaper than forming ``K + Kᵀ`` (a strided pass).  A pure function of
    arrays: the unit that the PyTorch engine compiles.  ``evaluate`` computes the terms
    (default :func:`block_terms`; :func:`terms_for` picks the in-place evaluation for NumPy).
    """
    terms = (block_terms if evaluate is None else evaluate)(xp, options, blk, want_grad)
    if not want_grad:
        return Step(terms.row_loss, terms.row_count, None, None)
    k = terms.kernel
    if blk.weights is not None:
        k = k * blk.weights[:, None]
    fr, fn = blk.anchors, blk.neighbours
    anchor = xp.sum(k, axis=1)[:, None] * fr - k @ fn
    neighbour = xp.sum(k, axis=0)[:, None] * fn - k.T @ fr
    return Step(terms.row_loss, terms.row_count, anchor, neighbour)


def block_distances(xp: Namespace, blk: BlockArrays, count: CountFn | None = None) -> Array:
    """The block's (r, n) squared distances ``‖f_a − f_b‖²``: one product of the augmented
    operands, then exact differences for the pairs near its rounding noise
    (:func:`logratio._near.refine_near`; ``count`` as there)."""
    return refine_near(xp, blk.left @ blk.right.T, blk, count)


def block_terms(xp: Namespace, opts: LossOptions, blk: BlockArrays, want_kernel: bool) -> Terms:
    """Loss terms (and ``K``) of one block of anchors against every neighbour: O(r·n·(d + p)).

    Every (r, n) array is one pass over memory, so the passes are counted: one product gives
    ``D`` (:func:`block_distances`), one mask ``keep`` marks the pairs that count and are not
    copies, and the residual is zero off ``valid`` without masking it (``D`` and the label
    distance both read 0 there).
    """
    eps = blk.eps
    # D_ab, exact for the pairs near the Gram identity's noise (logratio._near); pairs at
    # D = 0 (copies), the anchor itself and masked-out pairs add no gradient (∇D =
    # 2 (f_a − f_b) = 0 for copies, whereas K·(f_a − f_b) evaluated as rowsum(K)·f_a − K·f
    # would leave noise u·K_ab·‖f‖)
    sq = block_distances(xp, blk) if blk.distances is None else blk.distances
    # valid: the pairs of an anchor with any other row (and allowed by the mask); a
    # reference set (docs/design.md §1) never holds the anchor itself
    if blk.dense:
        valid = blk.ids[:, None] != blk.cols[None, :]
    else:
        valid = xp.ones(sq.shape, dtype=xp.bool, device=blk.device)
    if blk.mask is not None:
        valid = valid & blk.mask
    above = sq > 0  # not a copy (logratio._near sets copies to exactly 0)
    keep = above & valid
    if opts.squared:
        dist = None
        dpe = xp.where(keep, sq, 0.0) + eps  # D + ε
    elif opts.root_eps == 0:
        # mask the input of sqrt: autodiff through sqrt(0) would give inf · 0 = NaN
        dist = xp.where(keep, xp.sqrt(xp.where(keep, sq, 1.0)), 0.0)
        dpe = dist + eps
    else:
        # sqrt(‖f_a − f_b‖² + root_eps) on every pair of distinct rows (docs/design.md §6.1);
        # a copy has distance sqrt(root_eps)
        dist = xp.where(valid, xp.sqrt(xp.where(keep, sq, 0.0) + blk.root_eps), 0.0)
        dpe = dist + eps
    del sq  # (r, n) temporaries are released as soon as they are used up: peak memory
    if blk.label_distances is not None:
        lab = xp.where(valid, blk.label_distances, 0.0)
    else:
        lab = direct_distances(xp, blk.labels, blk.neighbour_labels, opts.label_metric)
        if lab.dtype != dpe.dtype:
            lab = xp.astype(lab, dpe.dtype)
        if blk.mask is not None or callable(opts.label_metric):
            lab = xp.where(valid, lab, 0.0)
        # else: named metrics give Δ_aa = 0 exactly, the only pair off ``valid``
    # U = log((D + ε) / (Δ + ε)): one log; zero off valid, where D = Δ = 0
    u = xp.log(dpe / (lab + eps))
    if blk.mask is None:
        others = blk.cols.shape[0] - 1 if blk.dense else blk.cols.shape[0]
        n = xp.zeros_like(blk.near_row) + max(others, 0)
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
        group_n, group_centred = _tie_groups(xp, lab, centred, valid, blk.device)
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
        return Terms(row_loss, row_count, None)
    # K_ab = 2 ∂S_a/∂(squared distance) with the factor 2 of ∂‖f_a − f_b‖²/∂f_a folded in:
    # 4 c_a g_ab / (D + ε) for squared distances, 2 c_a g_ab / ((D + ε) · D) for Euclidean
    # (also with root_eps: ∂D/∂f_a = (f_a − f_b) / D)
    # ``above & valid`` again rather than ``keep``: one more pass when eager, but inductor then
    # recomputes the mask inside its second fused loop instead of storing a boolean (r, n)
    # buffer after the first and reading it back, which measured 6x slower per block
    # (docs/design.md §4.1)
    keep = above & valid
    if opts.squared:
        kernel = xp.where(keep, ((4 * c)[:, None] * g) / dpe, 0.0)
    else:
        kernel = xp.where(keep, ((2 * c)[:, None] * g) / xp.where(keep, dpe * dist, 1.0), 0.0)
    return Terms(row_loss, row_count, kernel)


def _sum_squares(xp: Namespace, x: Array) -> Array:
    """``Σ_b x_ab²`` per row; ``linalg.vecdot`` where the namespace has it (no temporary)."""
    linalg = getattr(xp, "linalg", None)
    if linalg is not None and hasattr(linalg, "vecdot"):
        return linalg.vecdot(x, x, axis=-1)
    return xp.sum(x * x, axis=1)


def _tie_groups(
    xp: Namespace, lab: Array, centred: Array, valid: Array, dev: Any
) -> tuple[Array, Array]:
    """Size and centred residual of each entry's tie group (equal ``Δ_a·`` within a row).

    Returns ``(n_g, U − Ū_g)`` per entry, zero off ``valid``.  Each row is sorted by label
    distance so that ties are contiguous; a group's sum is a difference of the row's cumulative
    sum of the (already row-centred) residuals: O(r·B·log B), no (r, B, B) array.
    """
    r, batch = lab.shape
    if batch == 0:  # no neighbours (an empty reference set): no groups
        return xp.zeros_like(centred), xp.zeros_like(centred)
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
