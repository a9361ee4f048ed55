"""Retrieval metrics for continuous labels (Kim et al., CVPR 2019, Sec. 5; docs/design.md §3).

Every query is ranked against a database by squared Euclidean embedding distance
``‖f_q − f_b‖²`` (nearest first; equal distances by increasing database index), and the
ranking is judged by the queries' *label* distances ``Δ_qb`` to what it retrieves:

* **mean label distance @ K**: the mean over queries of the mean ``Δ`` of the top-K
  retrievals (lower is better; the paper's "mean pose distance");
* **nDCG @ K**: ``DCG_K / IDCG_K`` with graded relevance ``rel = 1 / (1 + Δ)`` and discount
  ``1 / log2(rank + 1)`` (rank 1 first), ``DCG_K = Σ_{r ≤ K} rel_r / log2(r + 1)``, and the
  ideal ``IDCG_K`` of the database ranked by label distance itself; in (0, 1], mean over
  queries (higher is better);
* **Spearman's ρ** between the embedding distances and the label distances of each query to
  the whole database (ties get average ranks), mean over queries: whether the whole geometry
  is kept, not only the top of the list.  A query whose embedding or label distances are
  all equal gets ρ = 0 (a collapsed embedding preserves nothing).

Embedding distances come from explicit differences (not the Gram identity), so that equal
distances are exactly equal and the tie rules hold.  Queries are processed ``block_size`` at a
time: memory O(block_size · N) for a database of N.
The label distances come from label vectors and ``label_metric`` or are given as a (Q, N)
matrix.  When the query set is the database (leave-one-out evaluation), pass
``exclude_self=True``: query ``q`` is then database item ``q``, and that item is removed from
its ranking, from the ideal ranking and from the correlation (``K ≤ N − 1``).
Any Array API namespace; the results are Python floats.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import array_api_compat

from . import _validation as v
from ._selection import smallest_k, take_rows
from ._validation import Array, Namespace
from .distances import direct_distances

__all__ = [
    "DEFAULT_BLOCK_ELEMENTS",
    "average_ranks",
    "mean_label_distance_at_k",
    "ndcg_at_k",
    "retrieval_metrics",
    "spearman_correlation",
]

#: Elements of one (block, N) temporary when ``block_size`` is not given.
DEFAULT_BLOCK_ELEMENTS = 1 << 22


def mean_label_distance_at_k(
    query_emb: Array,
    db_emb: Array,
    query_labels: Any = None,
    db_labels: Any = None,
    k: int | Sequence[int] = 10,
    *,
    label_distances: Any = None,
    label_metric: Any = "euclidean",
    exclude_self: bool = False,
    block_size: int | None = None,
) -> float | dict[int, float]:
    """Mean label distance of the top-``k`` retrievals, averaged over queries.

    ``(1/Q) Σ_q (1/k) Σ_{r ≤ k} Δ(y_q, y_{π_q(r)})`` where ``π_q`` ranks the database by
    squared Euclidean embedding distance to query ``q``.

    Args:
      query_emb: (Q, d) query embeddings.
      db_emb: (N, d) database embeddings, same namespace.
      query_labels, db_labels: (Q,) / (Q, p) and (N,) / (N, p) labels; or ``None`` with
        ``label_distances``.
      k: an int, or a sequence of ints (then a dict ``{k: value}``); ``1 ≤ k ≤`` the number
        of candidates (N, or N − 1 with ``exclude_self``).
      label_distances: (Q, N) non-negative label distances, instead of labels.
      label_metric: ``"euclidean"``, ``"sqeuclidean"``, ``"cityblock"`` or a callable
        ``metric(a, b) -> (len(a), len(b))``.
      exclude_self: the queries are the database (``Q = N``, query q is item q); each query's
        own item is left out.
      block_size: queries per block; memory O(block_size · N).

    Returns:
      A float for an int ``k``, a dict ``{k: float}`` for a sequence.
    """
    ks, single = _ks(k)
    out = _evaluate(
        query_emb, db_emb, query_labels, db_labels, label_distances, label_metric,
        exclude_self, block_size, mld_ks=ks, ndcg_ks=(), spearman=False,
    )  # fmt: skip
    values = {kk: out[f"mean_label_distance@{kk}"] for kk in ks}
    return values[ks[0]] if single else values


def ndcg_at_k(
    query_emb: Array,
    db_emb: Array,
    query_labels: Any = None,
    db_labels: Any = None,
    k: int | Sequence[int] = 10,
    *,
    label_distances: Any = None,
    label_metric: Any = "euclidean",
    exclude_self: bool = False,
    block_size: int | None = None,
) -> float | dict[int, float]:
    """nDCG@k with graded relevance ``1 / (1 + Δ)``, averaged over queries.

    ``DCG_k = Σ_{r ≤ k} rel(π_q(r)) / log2(r + 1)`` for the embedding ranking ``π_q``,
    divided by the same sum for the database sorted by increasing label distance (the ideal
    ranking), so 1 means the top ``k`` are as relevant as they can be.  Arguments as in
    :func:`mean_label_distance_at_k`.
    """
    ks, single = _ks(k)
    out = _evaluate(
        query_emb, db_emb, query_labels, db_labels, label_distances, label_metric,
        exclude_self, block_size, mld_ks=(), ndcg_ks=ks, spearman=False,
    )  # fmt: skip
    values = {kk: out[f"ndcg@{kk}"] for kk in ks}
    return values[ks[0]] if single else values


def spearman_correlation(
    query_emb: Array,
    db_emb: Array,
    query_labels: Any = None,
    db_labels: Any = None,
    *,
    label_distances: Any = None,
    label_metric: Any = "euclidean",
    exclude_self: bool = False,
    block_size: int | None = None,
) -> float:
    """Spearman's ρ between embedding and label distances of each query, mean over queries.

    For query ``q``, ``ρ_q`` is the Pearson correlation of the average ranks of
    ``(‖f_q − f_b‖²)_b`` and of ``(Δ_qb)_b`` over the database items ``b`` (without ``q``
    itself with ``exclude_self``); ``ρ_q = 0`` when either is constant.  Arguments as in
    :func:`mean_label_distance_at_k`.
    """
    out = _evaluate(
        query_emb, db_emb, query_labels, db_labels, label_distances, label_metric,
        exclude_self, block_size, mld_ks=(), ndcg_ks=(), spearman=True,
    )  # fmt: skip
    return out["spearman"]


def retrieval_metrics(
    query_emb: Array,
    db_emb: Array,
    query_labels: Any = None,
    db_labels: Any = None,
    *,
    ks: Sequence[int] = (1, 5, 10),
    ndcg_ks: Sequence[int] = (10, 100),
    spearman: bool = True,
    label_distances: Any = None,
    label_metric: Any = "euclidean",
    exclude_self: bool = False,
    block_size: int | None = None,
) -> dict[str, float]:
    """All the metrics above in one pass over the query blocks.

    Returns a dict with keys ``"mean_label_distance@K"`` for K in ``ks``, ``"ndcg@K"`` for K
    in ``ndcg_ks`` and ``"spearman"`` (when asked).  Other arguments as in
    :func:`mean_label_distance_at_k`.
    """
    return _evaluate(
        query_emb, db_emb, query_labels, db_labels, label_distances, label_metric,
        exclude_self, block_size, mld_ks=_ks(ks)[0] if len(ks) else (),
        ndcg_ks=_ks(ndcg_ks)[0] if len(ndcg_ks) else (), spearman=bool(spearman),
    )  # fmt: skip


@dataclass(frozen=True)
class _Inputs:
    xp: Namespace
    queries: Array  # (Q, d)
    database: Array  # (N, d)
    query_labels: Array | None  # (Q, p)
    db_labels: Array | None  # (N, p)
    label_distances: Array | None  # (Q, N)
    label_metric: Any
    exclude_self: bool
    block_size: int


def _evaluate(
    query_emb, db_emb, query_labels, db_labels, label_distances, label_metric,
    exclude_self, block_size, *, mld_ks, ndcg_ks, spearman,
) -> dict[str, float]:  # fmt: skip
    s = _inputs(
        query_emb, db_emb, query_labels, db_labels, label_distances, label_metric,
        exclude_self, block_size,
    )  # fmt: skip
    xp = s.xp
    n_db = s.database.shape[0]
    candidates = n_db - 1 if s.exclude_self else n_db
    for kk in (*mld_ks, *ndcg_ks):
        if kk > candidates:
            raise ValueError(
                f"k must be at most the {candidates} database items a query can retrieve"
                f"{' (N − 1 with exclude_self)' if s.exclude_self else ''}; got {kk}"
            )
    dtype = s.queries.dtype
    dev = array_api_compat.device(s.queries)
    cols = xp.arange(n_db, device=dev)
    k_top = max((*mld_ks, *ndcg_ks), default=0)
    k_ideal = max(ndcg_ks, default=0)
    if k_ideal:
        ranks = xp.arange(1, k_ideal + 1, device=dev)
        discount = 1 / xp.log2(xp.astype(ranks, dtype) + 1)
    parts: dict[str, list[Array]] = {}
    n_q = s.queries.shape[0]
    for start in range(0, n_q, s.block_size):
        q = s.queries[start : min(start + s.block_size, n_q), :]
        r = q.shape[0]
        emb = _exact_sq_distances(xp, q, s.database)
        lab = _label_block(s, start, r)
        own = None
        if s.exclude_self:
            own = xp.arange(start, start + r, device=dev)[:, None] == cols[None, :]
        if k_top:
            inf = xp.full_like(emb, math.inf)
            top, _ = smallest_k(xp, emb if own is None else xp.where(own, inf, emb), k_top)
            lab_top = take_rows(xp, lab, top)
            for kk in mld_ks:
                _add(parts, f"mean_label_distance@{kk}", xp.mean(lab_top[:, :kk], axis=1))
            if ndcg_ks:
                _, ideal = smallest_k(xp, lab if own is None else xp.where(own, inf, lab), k_ideal)
                gain = discount[None, :] / (1 + lab_top[:, :k_ideal])
                ideal_gain = discount[None, :] / (1 + ideal)
                for kk in ndcg_ks:
                    dcg = xp.sum(gain[:, :kk], axis=1)
                    _add(parts, f"ndcg@{kk}", dcg / xp.sum(ideal_gain[:, :kk], axis=1))
        if spearman:
            _add(parts, "spearman", _spearman_rows(xp, emb, lab, own))
    return {name: float(xp.mean(xp.concat(p, axis=0))) for name, p in parts.items()}


#: Embedding columns differenced at once: (block, N, 16) temporaries.
_COLUMNS_PER_PASS = 16


def _exact_sq_distances(xp: Namespace, q: Array, db: Array) -> Array:
    """``Σ_k (q_k − x_k)²`` from explicit differences, every pair summed in the same order.

    Not the Gram identity: its rounding turns equal distances (quantised or binary codes,
    integer grids) into unequal ones and breaks the documented tie rules (docs/design.md §3).
    O(r·N·d) time, O(r·N·16) memory.
    """
    out = None
    for c in range(0, q.shape[1], _COLUMNS_PER_PASS):
        stop = min(c + _COLUMNS_PER_PASS, q.shape[1])
        diff = q[:, None, c:stop] - db[None, :, c:stop]
        part = xp.sum(diff * diff, axis=2)
        out = part if out is None else out + part
    return out


def _add(parts: dict[str, list[Array]], name: str, value: Array) -> None:
    parts.setdefault(name, []).append(value)


def _label_block(s: _Inputs, start: int, r: int) -> Array:
    xp = s.xp
    if s.label_distances is not None:
        return s.label_distances[start : start + r, :]
    lab = direct_distances(xp, s.query_labels[start : start + r, :], s.db_labels, s.label_metric)
    if lab.dtype != s.queries.dtype:
        lab = xp.astype(lab, s.queries.dtype)
    v.check_finite(xp, lab, "label distances")
    return lab


def _spearman_rows(xp: Namespace, emb: Array, lab: Array, own: Array | None) -> Array:
    """Per-row Spearman ρ of ``emb`` and ``lab`` (r, N), leaving out ``own`` entries.

    Both are taken in the order of increasing ``emb``: the embedding ranks are then read off
    the sorted row directly, and only the label ranks need a sort of their own.  The own
    item, set to −∞, sorts first in every row and is dropped.
    """
    if own is not None:
        emb = xp.where(own, xp.full_like(emb, -math.inf), emb)
    order = xp.argsort(emb, axis=1, stable=False)
    emb_sorted = take_rows(xp, emb, order)
    lab_sorted = take_rows(xp, lab, order)
    if own is not None:
        emb_sorted, lab_sorted = emb_sorted[:, 1:], lab_sorted[:, 1:]
    rank_e = _sorted_average_ranks(xp, emb_sorted)
    rank_l = average_ranks(xp, lab_sorted)
    ce = rank_e - xp.mean(rank_e, axis=1)[:, None]
    cl = rank_l - xp.mean(rank_l, axis=1)[:, None]
    cov = xp.sum(ce * cl, axis=1)
    var_e = xp.sum(ce * ce, axis=1)
    var_l = xp.sum(cl * cl, axis=1)
    ok = (var_e > 0) & (var_l > 0)
    one = xp.ones_like(var_e)
    rho = cov / xp.sqrt(xp.where(ok, var_e, one) * xp.where(ok, var_l, one))
    return xp.where(ok, rho, xp.zeros_like(rho))


def average_ranks(xp: Namespace, x: Array) -> Array:
    """0-based ranks of every row of ``x`` (r, N); tied values share their average rank.

    A sort of each row (O(N log N)) and its inverse permutation; see
    :func:`_sorted_average_ranks` for the ties.
    """
    r, n = x.shape
    if r == 0 or n == 0:
        return xp.zeros_like(x)
    order = xp.argsort(x, axis=1, stable=False)
    ranks = _sorted_average_ranks(xp, take_rows(xp, x, order))
    return take_rows(xp, ranks, xp.argsort(order, axis=1, stable=False))


def _sorted_average_ranks(xp: Namespace, xs: Array) -> Array:
    """Average 0-based ranks of rows sorted in increasing order: O(r·N).

    A run of equal values at sorted positions ``[i, j)`` gets ``(i + j − 1) / 2``.  The runs
    of the whole block are numbered in one pass (each row starts a new run), and each
    position looks up its run's start and end.
    """
    r, n = xs.shape
    if r == 0 or n == 0:
        return xp.zeros_like(xs)
    dev = array_api_compat.device(xs)
    first = xp.ones((r, 1), dtype=xp.bool, device=dev)
    new_run = xp.reshape(xp.concat([first, xs[:, 1:] != xs[:, :-1]], axis=1), (-1,))
    if _concrete(xp, xp.all(new_run)):  # no ties: the ranks are 0, 1, …, N − 1
        ranks = xp.astype(xp.arange(n, device=dev), xs.dtype)
        return xp.broadcast_to(ranks[None, :], (r, n))
    starts = xp.nonzero(new_run)[0]  # flat position of each run's first element
    run = xp.cumulative_sum(xp.astype(new_run, starts.dtype)) - 1
    ends = xp.concat([starts[1:], xp.asarray([r * n], dtype=starts.dtype, device=dev)])
    offset = xp.reshape(
        xp.broadcast_to(xp.arange(r, dtype=starts.dtype, device=dev)[:, None] * n, (r, n)), (-1,)
    )
    lo = xp.take(starts, run) - offset
    hi = xp.take(ends, run) - offset
    return xp.reshape(xp.astype(lo + hi - 1, xs.dtype) / 2, (r, n))


def _concrete(xp: Namespace, flag: Array) -> bool:
    """``bool(flag)``, or ``False`` when the value is traced and cannot be read."""
    try:
        return bool(flag)
    except TypeError:
        return False


def _inputs(
    query_emb, db_emb, query_labels, db_labels, label_distances, label_metric,
    exclude_self, block_size,
) -> _Inputs:  # fmt: skip
    xp = v.namespace(query_emb, db_emb)
    v.embeddings_2d(xp, query_emb, "query_emb")
    v.embeddings_2d(xp, db_emb, "db_emb")
    if query_emb.shape[1] != db_emb.shape[1]:
        raise ValueError(
            f"query_emb and db_emb must have the same dimension; got shapes "
            f"{tuple(query_emb.shape)} and {tuple(db_emb.shape)}"
        )
    dtype = v.compute_dtype(xp, query_emb)
    n_q, n_db = query_emb.shape[0], db_emb.shape[0]
    if n_q == 0 or n_db == 0:
        raise ValueError("query_emb and db_emb must hold at least one row each")
    if exclude_self not in (True, False):
        raise TypeError(f"exclude_self must be a bool; got {exclude_self!r}")
    if exclude_self and n_q != n_db:
        raise ValueError(
            f"exclude_self=True means query q is database item q: Q must equal N; got Q={n_q}, "
            f"N={n_db}"
        )
    metric = v.label_metric(label_metric)
    block_size = v.optional_block_size(block_size)
    q = xp.astype(query_emb, dtype) if query_emb.dtype != dtype else query_emb
    db = xp.astype(db_emb, dtype) if db_emb.dtype != dtype else db_emb
    v.check_finite(xp, q, "query_emb", nonnegative=False)
    v.check_finite(xp, db, "db_emb", nonnegative=False)
    yq = ydb = dl = None
    p = 1
    if label_distances is not None:
        if query_labels is not None or db_labels is not None:
            raise ValueError("pass either query_labels and db_labels or label_distances, not both")
        dl = v.as_array(xp, label_distances, like=q, dtype=dtype, name="label_distances")
        if tuple(dl.shape) != (n_q, n_db):
            raise ValueError(
                f"label_distances must have shape (Q, N) = ({n_q}, {n_db}); got {tuple(dl.shape)}"
            )
        v.check_finite(xp, dl, "label_distances")
    else:
        if query_labels is None or db_labels is None:
            raise ValueError("pass query_labels and db_labels, or label_distances (Q, N)")
        yq = v.labels_for(xp, query_labels, n_q, q, dtype)
        ydb = v.labels_for(xp, db_labels, n_db, q, dtype)
        if yq.shape[1] != ydb.shape[1]:
            raise ValueError(
                f"query_labels and db_labels must have the same dimension; got {yq.shape[1]} "
                f"and {ydb.shape[1]}"
            )
        v.check_finite(xp, yq, "query_labels", nonnegative=False)
        v.check_finite(xp, ydb, "db_labels", nonnegative=False)
        p = yq.shape[1]
    if block_size is None:
        width = max(p, min(q.shape[1], _COLUMNS_PER_PASS))
        block_size = max(1, DEFAULT_BLOCK_ELEMENTS // max(n_db * width, 1))
    return _Inputs(
        xp=xp, queries=q, database=db, query_labels=yq,
        db_labels=ydb, label_distances=dl, label_metric=metric, exclude_self=exclude_self,
        block_size=block_size,
    )  # fmt: skip


def _ks(k: Any) -> tuple[tuple[int, ...], bool]:
    """``(ks, single)``: the ks as a tuple of positive ints and whether one int was given."""
    single = isinstance(k, numbers.Integral) and not isinstance(k, bool)
    items = (k,) if single else k
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"k must be a positive int or a sequence of them; got {k!r}") from None
    if not items:
        raise ValueError("k must name at least one cutoff; got an empty sequence")
    for kk in items:
        if isinstance(kk, bool) or not isinstance(kk, numbers.Integral) or kk < 1:
            raise ValueError(f"k must be a positive int or a sequence of them; got {k!r}")
    return tuple(int(kk) for kk in items), single
