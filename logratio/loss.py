"""The log-ratio loss of Kim et al., *Deep Metric Learning Beyond Binary Supervision*, CVPR 2019.

For embeddings ``F`` (B×d), label distances ``Δ`` (B×B) and embedding distances
``D_ab = ‖f_a − f_b‖²`` (or ``‖f_a − f_b‖`` with ``squared=False``), the residual is

    U_ab = log(D_ab + ε) − log(Δ_ab + ε)

and the loss of a triplet (anchor a, neighbours i ≠ j) is ``l(a, i, j) = (U_ai − U_aj)²``
(paper, Eq. 4), counted once per unordered neighbour pair.  Over every pair of an anchor's
neighbour set N (n = |N|, Ū the mean of ``U_a·`` over N) the identity

    Σ_{i<j ∈ N} (U_ai − U_aj)² = n · Σ_{i∈N} (U_ai − Ū)²

turns the dense loss over all B·(B−1)·(B−2)/2 triplets into a per-row variance: O(B²(d + p))
time and O(block·B) memory, the cost of the distance matrix itself (DESIGN.md §1.1).

The gradient is closed form (DESIGN.md §1.2): with ``G_ab = ∂L/∂U_ab`` and
``K_ab = 2 G_ab / (D_ab + ε)``, anchor and neighbour receive ``±K_ab (f_a − f_b)``, so the
gradients of every triplet sum to zero, as translation invariance demands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import array_api_compat

from . import _validation as v
from ._validation import Array, Namespace
from .distances import direct_distances, gram_noise_factor

#: Rows × columns of one block of anchor rows when ``block_size`` is not given.  The dense
#: path keeps about ten (block, B) temporaries alive (80 MB in float32 at this size); blocks
#: of a few MB stay in the allocator's reused memory and near the caches, where a B×B block
#: would fault in fresh pages on every operation (measured: 2× slower at B = 4096).
DEFAULT_BLOCK_ELEMENTS = 1 << 21
#: ... but at least this many anchors (or the whole batch): every block also pays a few
#: (B, d) passes to accumulate the neighbours' gradient, small next to (block, B) ones.
MIN_BLOCK_ROWS = 256


@dataclass(frozen=True)
class Problem:
    """Validated, normalised inputs of the dense loss (internal; shared with the adapters)."""

    xp: Namespace
    features: Array  # (B, d), centred, compute dtype
    sq_norms: Array  # (B,), squared row norms of ``features``
    labels: Array | None  # (B, p) compute dtype, or None when label_distances are given
    label_distances: Array | None  # (B, B) compute dtype
    label_metric: Any
    anchors: Array | None  # (m,) indices, or None for every row
    mask: Array | None  # (B, B) bool
    squared: bool
    eps: float
    ties: str
    reduction: str
    block_size: int
    out_dtype: Any  # the embeddings' dtype: the gradient's dtype

    @property
    def batch(self) -> int:
        return self.features.shape[0]

    @property
    def num_anchors(self) -> int:
        return self.batch if self.anchors is None else self.anchors.shape[0]


def prepare(
    embeddings: Array,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    squared: bool = True,
    label_metric: Any = "euclidean",
    eps: float = 1e-6,
    ties: str = "include",
    reduction: str = "mean",
    block_size: int | None = None,
) -> Problem:
    """Validate the arguments of :func:`log_ratio_loss` and bring them into one namespace."""
    xp = v.namespace(embeddings, name="embeddings")
    v.embeddings_2d(xp, embeddings)
    dtype = v.compute_dtype(xp, embeddings)
    v.choice("reduction", reduction, v.REDUCTIONS)
    v.choice("ties", ties, v.TIES)
    metric = v.label_metric(label_metric)
    eps = v.positive_float("eps", eps)
    block_size = v.optional_block_size(block_size)
    if not isinstance(squared, bool):
        raise TypeError(f"squared must be a bool; got {squared!r}")
    if (labels is None) == (label_distances is None):
        raise ValueError(
            "pass exactly one of labels (B,) / (B, p) or label_distances (B, B); got "
            + ("both" if labels is not None else "neither")
        )
    batch = embeddings.shape[0]
    f = xp.astype(embeddings, dtype) if embeddings.dtype != dtype else embeddings
    if batch > 0:  # the mean of no rows would warn and be NaN
        f = f - _grid_mean(xp, f)
    y = dl = None
    if labels is not None:
        y = v.labels_for(xp, labels, batch, f, dtype)
    else:
        dl = v.label_distances_for(xp, label_distances, batch, f, dtype)
    idx = v.anchors_for(xp, anchors, batch, f)
    m = v.mask_for(xp, mask, batch, f)
    if block_size is None:
        block_size = max(
            1, min(batch, max(DEFAULT_BLOCK_ELEMENTS // max(batch, 1), MIN_BLOCK_ROWS))
        )
    return Problem(
        xp=xp,
        features=f,
        sq_norms=xp.sum(f * f, axis=1),
        labels=y,
        label_distances=dl,
        label_metric=metric,
        anchors=idx,
        mask=m,
        squared=squared,
        eps=eps,
        ties=ties,
        reduction=reduction,
        block_size=block_size,
        out_dtype=embeddings.dtype,
    )


@dataclass(frozen=True)
class _Operands:
    """Per-call operands shared by every block: augmented features for one-product distances.

    ``left[a] · right[b] = ‖f_a‖² + ‖f_b‖² − 2 f_a·f_b + ε'`` (ε' = ε for squared distances,
    else 0), so a block's distances come out of one matrix product with no (r, B) pass to add
    the norms.
    """

    left: Array  # (B, d + 2): [−2F | ‖f‖² + ε' | 1]
    right: Array  # (B, d + 2): [F | 1 | ‖f‖²]
    # the rounding noise of D_ab + ε' is below c·(‖f_a‖² + ‖f_b‖² + ε'): D_ab counts as 0 unless
    # D_ab + ε' > thr_row[a] + thr_col[b]
    thr_row: Array  # (B,) c·(‖f_a‖² + ε') + ε'
    thr_col: Array  # (B,) c·‖f_b‖²
    cols: Array  # (B,) arange


def _operands(p: Problem) -> _Operands:
    xp, f, norms = p.xp, p.features, p.sq_norms
    ones = xp.ones((p.batch, 1), dtype=f.dtype, device=array_api_compat.device(f))
    eps_sq = p.eps if p.squared else 0.0
    noise = gram_noise_factor(xp, f.shape[1], f.dtype)
    dev = array_api_compat.device(f)
    return _Operands(
        left=xp.concat([-2 * f, (norms + eps_sq)[:, None], ones], axis=1),
        right=xp.concat([f, ones, norms[:, None]], axis=1),
        thr_row=noise * (norms + eps_sq) + eps_sq,
        thr_col=noise * norms,
        cols=xp.arange(p.batch, device=dev),
    )


def _grid_mean(xp: Namespace, f: Array) -> Array:
    """The column means of ``f`` rounded to a power-of-two grid about 2⁻²¹ of ``max |f|``.

    Centring only has to bring the rows near the origin (DESIGN.md §1.3), and a rounded mean
    makes ``f − mean`` one exact-operand subtraction: a compiler that evaluates the centring
    twice (XLA fuses it into each consumer, one with ``x − s·(1/n)`` contracted into an FMA)
    still gets bit-identical rows, so duplicates stay exact duplicates in every operand of
    the Gram product.  The grid step comes from ``max |f|`` (exact in any evaluation order),
    rounded half-way between powers of two so that power-of-two data sit far from a step
    boundary.
    """
    top = xp.max(xp.abs(f))
    top = xp.where(top > 0, top, xp.ones_like(top))
    tiny = math.log2(float(xp.finfo(f.dtype).smallest_normal))  # keep the step normal
    step = 2.0 ** xp.clip(xp.floor(xp.log2(top) + 0.5) - 21, min=tiny)
    return xp.round(xp.mean(f, axis=0) / step) * step


@dataclass(frozen=True)
class _Rows:
    """Per-anchor quantities of one block of anchor rows."""

    rows: Array | slice | None  # row indices or a slice of the batch; None = every row
    row_loss: Array  # (r,) S_a = Σ over the anchor's counted triplets of l(a, i, j)
    row_count: Array  # (r,) number of counted triplets
    # (r, B) K_ab: ∇f_a gains K_ab (f_a − f_b) and ∇f_b loses it (DESIGN.md §1.2); zero where
    # the pair adds no gradient
    dloss_ddist: Array | None


def _row_blocks(p: Problem) -> list[Array | None]:
    """Index arrays of the anchor blocks; ``[None]`` when one block holds every row."""
    xp, batch = p.xp, p.batch
    dev = array_api_compat.device(p.features)
    if p.anchors is None:
        if p.block_size >= batch:
            return [None]
        return [
            xp.arange(s, min(s + p.block_size, batch), device=dev)
            for s in range(0, batch, p.block_size)
        ]
    m = p.anchors.shape[0]
    return [p.anchors[s : min(s + p.block_size, m)] for s in range(0, m, p.block_size)]


def _block_rows(p: Problem) -> list[slice | Array]:
    """The anchor blocks: slices of the batch (views, no copy) or index arrays for ``anchors``."""
    if p.anchors is None:
        return [slice(s, min(s + p.block_size, p.batch)) for s in range(0, p.batch, p.block_size)]
    m = p.anchors.shape[0]
    return [p.anchors[s : min(s + p.block_size, m)] for s in range(0, m, p.block_size)]


def _take(xp: Namespace, x: Array, rows: Array | slice | None) -> Array:
    if rows is None:
        return x
    if isinstance(rows, slice):
        return x[rows, ...]
    return xp.take(x, rows, axis=0)


def _rows(
    p: Problem, rows: Array | slice | None, want_grad: bool, ops: _Operands | None = None
) -> _Rows:
    """Loss terms (and ∂/∂D) of the anchors ``rows`` against every neighbour: O(r·B·(d + p)).

    Every (r, B) array is one pass over memory, so the passes are counted: one product gives
    ``D + ε`` (:class:`_Operands`), one mask ``keep`` marks the pairs that count and are not
    rounding noise, and the residual is zero off ``valid`` without masking it (``D`` and the
    label distance both read 0 there).
    """
    xp = p.xp
    ops = _operands(p) if ops is None else ops
    batch = p.batch
    cols = ops.cols
    # D_ab + ε' up to rounding noise; pairs below the noise threshold, the anchor itself and
    # masked-out pairs have D = 0 and add no gradient (∇D = 2 (f_a − f_b) = 0 for duplicates,
    # whereas K·(f_a − f_b) evaluated as rowsum(K)·f_a − K·f would leave noise u·K_ab·‖f‖)
    sq = _take(xp, ops.left, rows) @ ops.right.T
    # valid: the pairs of an anchor with any other row (and allowed by the mask)
    ids = cols if rows is None else (cols[rows] if isinstance(rows, slice) else rows)
    valid = ids[:, None] != cols[None, :]
    if p.mask is not None:
        valid = valid & _take(xp, p.mask, rows)
    keep = (sq > _take(xp, ops.thr_row, rows)[:, None] + ops.thr_col[None, :]) & valid
    if p.squared:
        dist = None
        dpe = xp.where(keep, sq, p.eps)  # D + ε
    else:
        # mask the input of sqrt: autodiff through sqrt(0) would give inf · 0 = NaN
        dist = xp.where(keep, xp.sqrt(xp.where(keep, sq, 1.0)), 0.0)
        dpe = dist + p.eps
    del sq  # (r, B) temporaries are released as soon as they are used up: peak memory
    if p.label_distances is not None:
        lab = xp.where(valid, _take(xp, p.label_distances, rows), 0.0)
    else:
        lab = direct_distances(xp, _take(xp, p.labels, rows), p.labels, p.label_metric)
        if lab.dtype != dpe.dtype:
            lab = xp.astype(lab, dpe.dtype)
        if p.mask is not None or callable(p.label_metric):
            lab = xp.where(valid, lab, 0.0)
        # else: named metrics give Δ_aa = 0 exactly, the only pair off ``valid``
    # U = log((D + ε) / (Δ + ε)): one log; zero off valid, where D = Δ = 0
    u = xp.log(dpe / (lab + p.eps))
    if p.mask is None:
        n = xp.full(
            (u.shape[0],), max(batch - 1, 0), dtype=u.dtype, device=array_api_compat.device(u)
        )
    else:
        n = xp.sum(xp.astype(valid, u.dtype), axis=1)
    mean = xp.sum(u, axis=1) / xp.where(n > 0, n, 1.0)
    dev_ = xp.where(valid, u - mean[:, None], 0.0)
    del u
    row_loss = n * _sum_squares(xp, dev_)
    row_count = n * (n - 1) / 2
    # ∂S_a/∂U_ab = 2 c_a g_ab
    g, c = dev_, n
    if p.ties == "exclude":
        zero = xp.zeros_like(dev_)
        group_n, group_dev = _tie_groups(xp, lab, dev_, valid)
        # pairs across tie groups only, as a sum of non-negative terms rather than the
        # difference n·Σ(U − Ū)² − Σ_g n_g·Σ_g(U − Ū_g)², which cancels when most pairs tie:
        # Σ_g (n − n_g)·Σ_g (U − Ū_g)² + n·Σ_g n_g·(Ū_g − Ū)²
        # Ū_g − Ū, zero off valid; exactly zero when every pair of the row ties (no triplet)
        between = xp.where(group_n < n[:, None], dev_ - group_dev, zero)
        row_loss = xp.sum(
            (n[:, None] - group_n) * group_dev * group_dev + n[:, None] * between * between,
            axis=1,
        )
        row_count = row_count - xp.sum(xp.where(valid, (group_n - 1) / 2, zero), axis=1)
        if want_grad:
            g = (n[:, None] - group_n) * group_dev + n[:, None] * between
            c = xp.ones_like(n)
    if not want_grad:
        return _Rows(rows, row_loss, row_count, None)
    # K_ab = 2 ∂S_a/∂(D_ab²-distance) with the factor 2 of ∂‖f_a − f_b‖²/∂f_a folded in:
    # 4 c_a g_ab / (D + ε) for squared distances, 2 c_a g_ab / ((D + ε) · D) for Euclidean
    if p.squared:
        kernel = xp.where(keep, ((4 * c)[:, None] * g) / dpe, 0.0)
    else:
        kernel = xp.where(keep, ((2 * c)[:, None] * g) / xp.where(keep, dpe * dist, 1.0), 0.0)
    return _Rows(rows, row_loss, row_count, kernel)


def _sum_squares(xp: Namespace, x: Array) -> Array:
    """``Σ_b x_ab²`` per row; ``linalg.vecdot`` where the namespace has it (no temporary)."""
    linalg = getattr(xp, "linalg", None)
    if linalg is not None and hasattr(linalg, "vecdot"):
        return linalg.vecdot(x, x, axis=-1)
    return xp.sum(x * x, axis=1)


def _tie_groups(xp: Namespace, lab: Array, dev_: Array, valid: Array) -> tuple[Array, Array]:
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
    dev_s = xp.reshape(xp.take(xp.reshape(dev_, (-1,)), flat), (r, batch))
    first = xp.ones((r, 1), dtype=xp.bool, device=dev)
    new_group = xp.concat([first, key_s[:, 1:] != key_s[:, :-1]], axis=1)
    group = xp.cumulative_sum(xp.astype(new_group, order.dtype), axis=1) + row_start
    group = xp.reshape(group, (-1,))  # non-decreasing over the flattened block
    start = xp.searchsorted(group, group, side="left")
    stop = xp.searchsorted(group, group, side="right")
    csum = xp.reshape(xp.cumulative_sum(dev_s, axis=1, include_initial=True), (-1,))
    row_of = xp.reshape(xp.broadcast_to(xp.arange(r, device=dev)[:, None], (r, batch)), (-1,))
    row_of = xp.astype(row_of, start.dtype)
    # position k of row q sits at q·B + k in ``group`` and at q·(B + 1) + k in ``csum``
    sums = xp.take(csum, stop + row_of) - xp.take(csum, start + row_of)
    size_s = xp.reshape(xp.astype(stop - start, dev_.dtype), (r, batch))
    group_dev_s = dev_s - xp.reshape(sums, (r, batch)) / size_s
    inverse = xp.reshape(xp.argsort(order, axis=1) + row_start, (-1,))
    group_dev = xp.reshape(xp.take(xp.reshape(group_dev_s, (-1,)), inverse), (r, batch))
    group_n = xp.reshape(xp.take(xp.reshape(size_s, (-1,)), inverse), (r, batch))
    zero = xp.zeros_like(group_dev)
    return xp.where(valid, group_n, zero), xp.where(valid, group_dev, zero)


def evaluate(
    p: Problem, *, want_grad: bool = False, row_weights: Array | None = None
) -> tuple[Array, Array, Array | None]:
    """Per-anchor losses and triplet counts, and optionally ``Σ_a w_a ∇_F S_a``.

    Returns ``(row_loss (m,), row_count (m,), grad (B, d) in the compute dtype or None)``.
    ``row_weights`` (m,) defaults to ones.  Blocks of ``p.block_size`` anchors keep the
    working memory O(block · B).  With ``K`` from :func:`_rows` (DESIGN.md §1.2), a block of
    anchors A adds ``rowsum(K)·f_a − (K·F)_a`` to its anchors and ``colsum(K)·f_b − (Kᵀ·F_A)_b``
    to every row b: two r×B×d products (cheaper than forming ``W = K + Kᵀ``, a strided pass).
    """
    xp = p.xp
    f = p.features
    ops = _operands(p)
    losses, counts = [], []
    neighbour = None
    anchor_parts = []
    grad = None
    offset = 0
    for rows in _block_rows(p):
        blk = _rows(p, rows, want_grad, ops)
        losses.append(blk.row_loss)
        counts.append(blk.row_count)
        if not want_grad:
            continue
        k = blk.dloss_ddist
        r = k.shape[0]
        if row_weights is not None:
            k = k * row_weights[offset : offset + r, None]
        offset += r
        fr = _take(xp, f, rows)
        # ∇f_a += Σ_b K_ab (f_a − f_b)   and   ∇f_b −= K_ab (f_a − f_b)
        anchor_part = xp.sum(k, axis=1)[:, None] * fr - k @ f
        nb = xp.sum(k, axis=0)[:, None] * f - k.T @ fr
        neighbour = nb if neighbour is None else neighbour + nb
        if p.anchors is None:
            anchor_parts.append(anchor_part)
        else:
            onehot = xp.astype(rows[:, None] == ops.cols[None, :], f.dtype)
            anchor_part = onehot.T @ anchor_part
            grad = anchor_part if grad is None else grad + anchor_part
    if want_grad:
        if neighbour is None:  # no anchors at all
            grad = xp.zeros_like(f)
        else:
            grad = neighbour if grad is None else grad + neighbour
            if anchor_parts:
                grad = grad + _concat(xp, anchor_parts, f)
    row_loss = _concat(xp, losses, f)
    row_count = _concat(xp, counts, f)
    return row_loss, row_count, grad


def evaluate_jvp(p: Problem, tangent: Array) -> tuple[Array, Array, Array]:
    """Per-anchor losses and triplet counts, and their derivatives along ``tangent``.

    Returns ``(row_loss (m,), row_count (m,), row_tangent (m,))`` with
    ``row_tangent_a = ⟨∇_F S_a, T⟩ = Σ_b K_ab (f_a − f_b)·(t_a − t_b)``, ``K`` as in
    :func:`evaluate` (DESIGN.md §1.2): the forward-mode derivative of the unreduced loss,
    used by the JAX adapter for ``reduction="none"``.  ``tangent`` (B, d) is centred like the
    features (only differences of rows matter); the dot products come from two r×B×d
    matrix products per block of r anchors.
    """
    xp = p.xp
    f = p.features
    t = xp.astype(tangent, f.dtype) if tangent.dtype != f.dtype else tangent
    if p.batch > 0:
        t = t - xp.mean(t, axis=0)
    ft = xp.sum(f * t, axis=1)
    losses, counts, tangents = [], [], []
    for rows in _row_blocks(p):
        blk = _rows(p, rows, True)
        losses.append(blk.row_loss)
        counts.append(blk.row_count)
        if rows is None:
            fr, tr, ftr = f, t, ft
        else:
            fr, tr, ftr = xp.take(f, rows, axis=0), xp.take(t, rows, axis=0), xp.take(ft, rows)
        # (f_a − f_b)·(t_a − t_b) = f_a·t_a + f_b·t_b − f_a·t_b − f_b·t_a
        pair = ftr[:, None] + ft[None, :] - fr @ t.T - tr @ f.T
        tangents.append(xp.sum(blk.dloss_ddist * pair, axis=1))
    return _concat(xp, losses, f), _concat(xp, counts, f), _concat(xp, tangents, f)


def _concat(xp: Namespace, parts: list[Array], like: Array) -> Array:
    if not parts:
        return xp.zeros((0,), dtype=like.dtype, device=array_api_compat.device(like))
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)


def reduce_loss(p: Problem, row_loss: Array, row_count: Array) -> tuple[Array, Array]:
    """The reduced loss and the factor that scales ``Σ_a ∇S_a`` into its gradient."""
    xp = p.xp
    if p.reduction == "none":
        return row_loss, xp.ones((), dtype=row_loss.dtype)
    total = xp.sum(row_loss)
    if p.reduction == "sum":
        return total, xp.ones((), dtype=total.dtype)
    count = xp.sum(row_count)
    has = count > 0
    scale = xp.where(has, 1 / xp.where(has, count, count + 1), xp.zeros_like(count))
    return total * scale, scale


def log_ratio_loss(
    embeddings: Array,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    squared: bool = True,
    label_metric: Any = "euclidean",
    eps: float = 1e-6,
    ties: str = "include",
    reduction: str = "mean",
    block_size: int | None = None,
) -> Array:
    """Dense log-ratio loss over every triplet of the batch (Kim et al., CVPR 2019, Eq. 4).

    ``L = mean over counted triplets (a, i, j) of (log D_ai/D_aj − log Δ_ai/Δ_aj)²`` with
    ``ε = eps`` added to every distance before the log.

    Args:
      embeddings: (B, d) floating array (NumPy, or any Array API array).
      labels: (B,) or (B, p) continuous labels; their distances use ``label_metric``.
      label_distances: (B, B) non-negative label distances, instead of ``labels``.
      anchors: ``None`` (every row is an anchor), an int (``0``: the paper's mini-batch),
        an index array or a boolean mask of shape (B,).
      mask: (B, B) boolean, the (anchor, neighbour) pairs that may form triplets.
      squared: squared Euclidean embedding distances (the paper) or Euclidean (the
        authors' released code).
      label_metric: ``"euclidean"``, ``"sqeuclidean"``, ``"cityblock"`` or a callable
        ``metric(labels_a, labels_b) -> (len(labels_a), len(labels_b))``.
      eps: added to both distances before the log.
      ties: ``"include"`` counts neighbour pairs with equal label distance once (authors'
        code); ``"exclude"`` drops them (the paper's strict ``Δ_ai < Δ_aj``).
      reduction: ``"mean"`` over counted triplets, ``"sum"``, or ``"none"``: per-anchor sums
        of shape (number of anchors,).
      block_size: anchors per block; memory is O(block_size · B).  Default: about 2²¹ / B, at
        least 256.

    Returns:
      The loss in the embeddings' namespace and device, in float32 for half-precision input
      and in the embeddings' dtype otherwise.  A batch without any triplet gives 0.

    Cost: O(B²(d + p)) time (O(B² log B) more with ``ties="exclude"``), O(block_size · B)
    memory.
    """
    p = prepare(
        embeddings, labels, label_distances=label_distances, anchors=anchors, mask=mask,
        squared=squared, label_metric=label_metric, eps=eps, ties=ties, reduction=reduction,
        block_size=block_size,
    )  # fmt: skip
    row_loss, row_count, _ = evaluate(p)
    return reduce_loss(p, row_loss, row_count)[0]


def log_ratio_loss_and_grad(
    embeddings: Array,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    squared: bool = True,
    label_metric: Any = "euclidean",
    eps: float = 1e-6,
    ties: str = "include",
    reduction: str = "mean",
    block_size: int | None = None,
) -> tuple[Array, Array]:
    """The loss of :func:`log_ratio_loss` and its closed-form gradient ``∂L/∂embeddings``.

    The gradient (DESIGN.md §1.2) has the embeddings' shape, dtype, namespace and device.
    With ``reduction="none"`` it is the gradient of the sum of the per-anchor losses.
    Cost: one more B×B×d matrix product than the loss alone.
    """
    p = prepare(
        embeddings, labels, label_distances=label_distances, anchors=anchors, mask=mask,
        squared=squared, label_metric=label_metric, eps=eps, ties=ties, reduction=reduction,
        block_size=block_size,
    )  # fmt: skip
    row_loss, row_count, grad = evaluate(p, want_grad=True)
    loss, scale = reduce_loss(p, row_loss, row_count)
    grad = grad * scale
    if grad.dtype != p.out_dtype:
        grad = p.xp.astype(grad, p.out_dtype)
    return loss, grad
