"""The exact k-NN methods that run on the CPU in NumPy: one sort (scalar labels) and a KD-tree
(low-dimensional labels), for :func:`logratio.knn_table` (docs/design.md §2, §6.3).

Both merge samples with equal labels first, find the ``k + 1`` nearest samples of every
distinct label, re-rank the candidates by the exact distances of the blocked path (the
arithmetic of :func:`logratio.distances.direct_distances`, element by element) and order them
by (distance, index), so that their tables equal the blocked search's exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from ._validation import Array
from .distances import COLUMN_LOOP_MAX
from .label_metrics import PeriodicMetric

__all__ = ["host_numpy", "kdtree", "on_cpu", "paired_distances", "sort_knn", "tree_knn"]

#: Candidate (row, neighbour) pairs per step of the sort and tree paths.
_CANDIDATE_BUDGET = 1 << 20


def kdtree() -> Any:
    """``scipy.spatial.cKDTree``, or None when scipy cannot be imported."""
    try:
        from scipy.spatial import cKDTree
    except ImportError:
        return None
    return cKDTree


def on_cpu(y: Array) -> bool:
    if isinstance(y, np.ndarray):
        return True
    if array_api_compat.is_torch_array(y):
        return y.device.type == "cpu"
    if array_api_compat.is_cupy_array(y):
        return False
    if array_api_compat.is_jax_array(y):
        try:
            return all(d.platform == "cpu" for d in y.devices())
        except Exception:  # a tracer has no devices
            return False
    return "cpu" in str(array_api_compat.device(y)).lower()


def host_numpy(y: Array) -> np.ndarray:
    """A NumPy view or copy of a CPU array."""
    if isinstance(y, np.ndarray):
        return y
    if array_api_compat.is_torch_array(y):
        return y.detach().numpy()
    try:
        return np.from_dlpack(y)
    except Exception:
        return np.asarray(y)


@dataclass
class _Groups:
    """The distinct labels of (N, p) ``y`` and the samples that carry each one."""

    values: np.ndarray  # (U, p) distinct labels, lexicographically increasing
    counts: np.ndarray  # (U,) samples per distinct label
    starts: np.ndarray  # (U,) where each label's samples begin in ``members``
    members: np.ndarray  # (N,) sample indices grouped by label, increasing within a label
    inverse: np.ndarray  # (N,) the distinct label of each sample


def _groups(y: np.ndarray) -> _Groups:
    n = y.shape[0]
    if y.shape[1] == 1:
        order = np.argsort(y[:, 0], kind="stable")
    else:
        order = np.lexsort(y.T[::-1])  # stable: equal rows keep increasing index
    s = y[order]
    new = np.ones(n, dtype=bool)
    new[1:] = np.any(s[1:] != s[:-1], axis=1)  # -0.0 == 0.0: equal distances to all
    starts = np.flatnonzero(new)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    counts = np.diff(np.append(starts, n))
    return _Groups(s[starts], counts, starts, order.astype(np.int64, copy=False), inverse)


def paired_distances(a: np.ndarray, b: np.ndarray, metric: Any) -> np.ndarray:
    """Distances between matching rows of broadcastable ``a`` (..., p) and ``b`` (..., p).

    Element by element the arithmetic of :func:`logratio.distances.direct_distances`
    (same operations in the same order), so both give bitwise equal values for a pair.
    """
    if isinstance(metric, PeriodicMetric):
        return metric.paired(a, b)
    p = a.shape[-1]
    if 0 < p <= COLUMN_LOOP_MAX:
        out = None
        for c in range(p):
            diff = a[..., c] - b[..., c]
            if metric == "cityblock" or (metric == "euclidean" and p == 1):
                term = np.abs(diff)
            else:
                term = diff * diff
            out = term if out is None else out + term
        return np.sqrt(out) if metric == "euclidean" and p > 1 else out
    diff = a - b
    if metric == "cityblock":
        return np.sum(np.abs(diff), axis=-1)
    sq = np.sum(diff * diff, axis=-1)
    return sq if metric == "sqeuclidean" else np.sqrt(sq)


def _slack(y: np.ndarray, metric: Any) -> tuple[float, float]:
    """(relative, absolute) bounds on the gap between a computed and a true label distance.

    Generous: a larger slack only makes more rows look again with more candidates.
    """
    p = y.shape[1]
    eps = float(np.finfo(y.dtype).eps) + float(np.finfo(np.float64).eps)
    rel = 16 * (p + 2) * eps
    absolute = 16 * math.sqrt(p * float(np.finfo(y.dtype).tiny))  # underflow of squares
    if isinstance(metric, PeriodicMetric):  # |a − b| mod period, period − r
        absolute += 16 * (p + 2) * eps * (metric.period + float(np.max(np.abs(y))))
    return rel, absolute


def _kth_point(e: np.ndarray, cnt: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the distance at which the candidates' sample counts reach ``kk``.

    ``e`` (r, m): candidate label distances (inf: no candidate); ``cnt`` (r, m): samples
    carrying each candidate label.  Returns ``(t, reached)``; ``t`` is meaningful where
    ``reached``.
    """
    order = np.argsort(e, axis=1, kind="stable")
    es = np.take_along_axis(e, order, axis=1)
    reach = np.cumsum(np.take_along_axis(cnt, order, axis=1), axis=1) >= kk
    pos = np.argmax(reach, axis=1)
    rows = np.arange(e.shape[0])
    return es[rows, pos], reach[rows, pos]


def _expand(
    cand: np.ndarray, e: np.ndarray, t: np.ndarray, kk: int, g: _Groups
) -> tuple[np.ndarray, np.ndarray]:
    """The ``kk`` nearest samples, by (distance, index), of rows whose candidates are complete.

    Every label at distance ``≤ t`` is a candidate; from each, its ``kk`` first samples
    (increasing index) suffice.  Returns (r, kk) sample indices and distances.
    """
    r, m = cand.shape
    take = np.where(e <= t[:, None], np.minimum(g.counts[cand], kk), 0)
    width = int(take.max())
    if r * m * width > 4 * _CANDIDATE_BUDGET:
        return _expand_flat(cand, e, take, kk, g)
    # (r, m, width): the first ``width`` samples of every candidate label, padded
    lane = np.arange(width)
    ok = lane < take[:, :, None]
    at = np.minimum(g.starts[cand][:, :, None] + lane, g.members.shape[0] - 1)
    mem = np.where(ok, g.members[at], np.iinfo(np.int64).max).reshape(r, m * width)
    dist = np.where(ok, e[:, :, None], np.inf).reshape(r, m * width)
    order = np.argsort(mem, axis=1, kind="stable")  # then by distance, stably
    dist = np.take_along_axis(dist, order, axis=1)
    mem = np.take_along_axis(mem, order, axis=1)
    order = np.argsort(dist, axis=1, kind="stable")[:, :kk]
    return np.take_along_axis(mem, order, axis=1), np.take_along_axis(dist, order, axis=1)


def _expand_flat(
    cand: np.ndarray, e: np.ndarray, take: np.ndarray, kk: int, g: _Groups
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_expand` for many samples per row: a flat list sorted by (row, distance, index)."""
    r = cand.shape[0]
    rr, jj = np.nonzero(take)
    grp, ee, tk = cand[rr, jj], e[rr, jj], take[rr, jj]
    ends = np.cumsum(tk)
    offset = np.arange(ends[-1]) - np.repeat(ends - tk, tk)
    mem = g.members[np.repeat(g.starts[grp], tk) + offset]
    dist = np.repeat(ee, tk)
    order = np.lexsort((mem, dist, np.repeat(rr, tk)))
    mem, dist = mem[order], dist[order]
    per_row = np.bincount(rr, weights=tk, minlength=r).astype(np.int64)
    rank = np.arange(mem.shape[0]) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    keep = rank < kk
    return mem[keep].reshape(r, kk), dist[keep].reshape(r, kk)


def _per_sample(
    g: _Groups, top: np.ndarray, top_d: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row ``a``: the ``k + 1`` nearest samples of ``a``'s label without ``a`` (or the last)."""
    n = g.inverse.shape[0]
    idx = top[g.inverse]
    is_self = idx == np.arange(n)[:, None]
    where = np.where(np.any(is_self, axis=1), np.argmax(is_self, axis=1), k)
    cols = np.arange(k)[None, :]
    src = cols + (cols >= where[:, None])
    return np.take_along_axis(idx, src, axis=1), np.take_along_axis(top_d[g.inverse], src, axis=1)


def sort_knn(y: np.ndarray, k: int, metric: Any) -> tuple[np.ndarray, np.ndarray]:
    """Scalar labels: for each distinct label, a window of sorted labels on both sides.

    The window starts ``k + 1`` labels wide on each side and doubles for the rows whose
    edge labels are not yet farther than the ``(k + 1)``-th nearest sample: computed 1-D
    distances grow monotonically away from a label, so beyond such edges nothing is nearer
    (on the circle, up to a rounding slack).  Each step costs O(rows · window).
    """
    g = _groups(y)
    u, kk = g.counts.shape[0], k + 1
    periodic = isinstance(metric, PeriodicMetric)
    if periodic:  # circular order of the labels
        ring = np.argsort(np.mod(g.values[:, 0].astype(np.float64), metric.period), kind="stable")
        rel, absolute = _slack(y, metric)
    else:  # distinct labels are already sorted; monotone distances need no slack
        ring = np.arange(u)
        rel = absolute = 0.0
    top = np.empty((u, kk), dtype=np.int64)
    top_d = np.empty((u, kk), dtype=y.dtype)
    pending = np.arange(u)  # positions in ``ring``
    half = kk
    while pending.size:
        width = u if periodic and 2 * half + 1 >= u else 2 * half + 1
        step = max(1, _CANDIDATE_BUDGET // width)
        left_over = []
        for s in range(0, pending.size, step):
            pos = pending[s : s + step]
            if width == u and periodic:  # the whole circle
                cpos = np.broadcast_to(np.arange(u), (pos.size, u))
                valid = np.ones(cpos.shape, dtype=bool)
            else:
                cpos = pos[:, None] + np.arange(-half, half + 1)
                if periodic:
                    cpos = cpos % u
                    valid = np.ones(cpos.shape, dtype=bool)
                else:
                    valid = (cpos >= 0) & (cpos < u)
                    cpos = np.clip(cpos, 0, u - 1)
            rows, cand = ring[pos], ring[cpos]
            e = paired_distances(g.values[rows][:, None, :], g.values[cand], metric)
            e = np.where(valid, e, np.inf)
            t, done = _kth_point(e, np.where(valid, g.counts[cand], 0), kk)
            if width != u or not periodic:
                far = t + (t * rel + absolute)
                lo_ok = e[:, 0] > far  # an invalid edge is inf: the end of the labels
                hi_ok = e[:, -1] > far
                if not periodic:
                    lo_ok |= pos - half <= 0
                    hi_ok |= pos + half >= u - 1
                done &= lo_ok & hi_ok
            if np.any(done):
                top[rows[done]], top_d[rows[done]] = _expand(cand[done], e[done], t[done], kk, g)
            left_over.append(pos[~done])
        pending = np.concatenate(left_over)
        half *= 2
    return _per_sample(g, top, top_d, k)


def tree_knn(y: np.ndarray, k: int, metric: Any) -> tuple[np.ndarray, np.ndarray]:
    """Low-dimensional labels: a KD-tree of the distinct labels, its answers re-ranked exactly.

    The tree gives each distinct label its ``q`` nearest distinct labels (``q = k + 3`` at
    first); they are complete when the ``(k + 1)``-th nearest sample among them, by the
    exact distance, is nearer (by more than a rounding slack) than the tree's ``q``-th
    label, since no label the tree left out can then be nearer.  Rows that are not complete
    (ties at the edge, many equidistant labels) ask again with ``q`` doubled.
    """
    tree_class = kdtree()
    g = _groups(y)
    u, kk = g.counts.shape[0], k + 1
    data = g.values.astype(np.float64)
    if isinstance(metric, PeriodicMetric):
        data = np.mod(data, metric.period)
        data[data >= metric.period] = 0.0  # a tiny negative label can round up to the period
        tree = tree_class(data, boxsize=metric.period)
    else:
        tree = tree_class(data)
    norm = 1 if metric == "cityblock" else 2
    rel, absolute = _slack(y, metric)
    top = np.empty((u, kk), dtype=np.int64)
    top_d = np.empty((u, kk), dtype=y.dtype)
    pending = np.arange(u)
    q = min(kk + 2, u)  # one label beyond the (k + 1)-th: most rows are complete at once
    while pending.size:
        step = max(1, _CANDIDATE_BUDGET // q)
        left_over = []
        for s in range(0, pending.size, step):
            rows = pending[s : s + step]
            if q == u:  # every label is a candidate
                cand = np.broadcast_to(np.arange(u), (rows.size, u))
            else:
                tree_d, cand = tree.query(data[rows], k=q, p=norm, workers=-1)
                tree_d, cand = tree_d.reshape(rows.size, q), cand.reshape(rows.size, q)
            e = paired_distances(g.values[rows][:, None, :], g.values[cand], metric)
            t, done = _kth_point(e, g.counts[cand], kk)
            if q < u:
                reach = np.sqrt(t) if metric == "sqeuclidean" else t
                done &= reach * (1 + rel) + absolute < tree_d[:, -1]
            if np.any(done):
                top[rows[done]], top_d[rows[done]] = _expand(cand[done], e[done], t[done], kk, g)
            left_over.append(rows[~done])
        pending = np.concatenate(left_over)
        q = min(2 * q, u)
    return _per_sample(g, top, top_d, k)
