"""Nearest neighbours in label space (Kim et al., CVPR 2019, Sec. 4).

The paper builds each mini-batch around an anchor and its ``k`` nearest neighbours in
*label* space (docs/design.md §2).  :func:`knn_table` finds them for every sample at once
and chooses how by the labels and the metric (:func:`knn_method`):

* ``"sort"`` — scalar labels (p = 1): one sort, then for every sample a window of sorted
  neighbours on both sides, widened until it provably holds every candidate up to the
  ``k``-th distance; O(N log N) time, O(N·k) memory.  Handles :func:`logratio.periodic`
  (the window wraps around the circle).
* ``"tree"`` — low-dimensional labels (p ≤ 16) and a built-in metric: a KD-tree
  (``scipy.spatial.cKDTree``, periodic boundaries for :func:`logratio.periodic`), about
  O(N log N) for small p; on the CPU, the result moved back to the labels' namespace and
  device.  scipy is optional: without it ``"auto"`` falls back to ``"blocked"``.
* ``"blocked"`` — everything else (high p, callable metrics, GPU arrays): the exact search
  over all pairs, ``block_size`` rows at a time, memory O(block_size · N), in the labels'
  own Array API namespace and device (GPU arrays stay on the GPU); O(N² p) time.

Whichever method runs, the table is the same: ties are broken by index (among samples at
equal label distance the one with the smaller index comes first), so the table is a
deterministic function of the labels.  The fast paths first merge samples with equal labels,
find the ``k + 1`` nearest samples of every distinct label (the tree's or the window's
candidates re-ranked by the exact distances of the blocked path, ordered by (distance,
index)), then drop each sample from its own row; distances are computed with the formula of
:func:`logratio.distances.direct_distances`, so they equal the blocked path's bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from . import _validation as v
from ._validation import Array, Namespace
from .distances import _COLUMN_LOOP_MAX, direct_distances
from .label_metrics import PeriodicMetric

#: Elements of one (block, N, p) block of label differences when ``block_size`` is not given.
DEFAULT_BLOCK_ELEMENTS = 1 << 22

#: The values of ``method``.
METHODS = ("auto", "sort", "tree", "blocked")

#: ``"auto"`` uses the KD-tree up to this label dimension.
TREE_MAX_DIM = 16

#: ``progress=None`` shows a progress bar for the blocked search from this many samples.
PROGRESS_MIN_SAMPLES = 50_000

#: Candidate (row, neighbour) pairs per step of the sort and tree paths.
_CANDIDATE_BUDGET = 1 << 20


def knn_table(
    labels: Any,
    k: int,
    *,
    label_metric: Any = "euclidean",
    method: str = "auto",
    block_size: int | None = None,
    return_distances: bool = False,
    progress: bool | None = None,
) -> Array | tuple[Array, Array]:
    """The ``k`` nearest neighbours of every sample in label space, nearest first.

    Row ``a`` of the result lists the ``k`` samples ``b ≠ a`` with the smallest label
    distance ``Δ(y_a, y_b)``, in increasing distance; equal distances are ordered by
    increasing index ``b``.  The sample itself is never listed, even when other samples
    share its label (distance 0): those come first.  These are the anchor neighbourhoods of
    the paper's mini-batches (Kim et al., CVPR 2019, Sec. 4; docs/design.md §2).

    Args:
      labels: (N,) or (N, p) labels, any Array API array (or a NumPy array-like).
        Integer labels are converted to float64.
      k: number of neighbours, ``0 ≤ k ≤ N − 1``.
      label_metric: ``"euclidean"``, ``"sqeuclidean"``, ``"cityblock"``,
        :func:`logratio.periodic` (angles) or a callable ``metric(a, b) -> (len(a),
        len(b))`` of finite, non-negative distances, called on (r, p) and (N, p) blocks of
        the (2-D) labels.
      method: ``"auto"`` (default: :func:`knn_method` decides), ``"sort"`` (p = 1),
        ``"tree"`` (needs scipy) or ``"blocked"``; all give the same table.  A method that
        cannot serve the input raises ValueError.
      block_size: rows per block of the blocked search; memory is O(block_size · N · p).
        Default: about 2²² / (N · p) rows.  Unused by the other methods.
      return_distances: also return the (N, k) label distances of the neighbours.
      progress: a progress bar (tqdm, when installed) for the blocked search: ``None``
        shows one from N = 50 000 samples on, ``True`` always, ``False`` never.

    Returns:
      (N, k) integer index array in the labels' namespace and device; with
      ``return_distances``, the pair ``(indices, distances)``.

    Cost: ``"sort"`` O(N log N) time, O(N·k) memory; ``"tree"`` about O(N log N) for small
    p (the KD-tree's query grows quickly with p), O(N·k) memory; ``"blocked"`` O(N² p)
    time for the distances, plus the selection: O(N²) with a framework's partition or
    top-k (NumPy, CuPy, JAX, PyTorch), a full sort otherwise (O(N² log N)).  Many samples
    with exactly equal labels cost the fast paths nothing extra: they are merged first.
    """
    xp, y = label_matrix(labels)
    metric = v.label_metric(label_metric)
    block_size = v.optional_block_size(block_size)
    if return_distances not in (True, False):
        raise TypeError(f"return_distances must be a bool; got {return_distances!r}")
    if progress not in (None, True, False):
        raise TypeError(f"progress must be None, True or False; got {progress!r}")
    n = y.shape[0]
    if n == 0:
        raise ValueError("labels must hold at least one sample; got an empty array")
    k = _check_k(k, n)
    chosen = _resolve_method(method, xp, y, metric)
    if chosen == "blocked":
        idx, dist = _blocked_knn(xp, y, k, metric, block_size, progress)
    else:
        host = _host_numpy(y)
        if k == 0:
            top = np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=host.dtype)
        elif chosen == "sort":
            top = _sort_knn(host, k, metric)
        else:
            top = _tree_knn(host, k, metric)
        dev = array_api_compat.device(y)
        index_dtype = np.int32 if xp.arange(1, device=dev).dtype == xp.int32 else np.int64
        idx = xp.asarray(top[0].astype(index_dtype, copy=False), device=dev)
        dist = xp.asarray(top[1], device=dev) if return_distances else None
    if not return_distances:
        return idx
    return idx, dist


def knn_method(labels: Any, *, label_metric: Any = "euclidean", method: str = "auto") -> str:
    """The method :func:`knn_table` uses for these labels: ``"sort"``, ``"tree"`` or ``"blocked"``.

    ``"auto"`` picks ``"sort"`` for scalar labels, ``"tree"`` for 2 ≤ p ≤ 16 when scipy is
    installed, ``"blocked"`` otherwise; and ``"blocked"`` whatever p for a callable metric
    (other than :func:`logratio.periodic`), labels off the CPU, labels in a dtype other than
    float32 / float64, or labels so large that their distances might overflow.  An explicit
    ``method`` is returned as is, or raises ValueError when it cannot serve the labels.
    """
    xp, y = label_matrix(labels)
    return _resolve_method(method, xp, y, v.label_metric(label_metric))


def _resolve_method(method: Any, xp: Namespace, y: Array, metric: Any) -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    if method == "blocked":
        return method
    p = y.shape[1]
    obstacle = _fast_path_obstacle(xp, y, metric)
    if method == "auto":
        if obstacle is not None:
            return "blocked"
        if p == 1:
            return "sort"
        if p <= TREE_MAX_DIM and _kdtree() is not None:
            return "tree"
        return "blocked"
    if method == "sort" and p != 1:
        raise ValueError(f"method='sort' needs scalar labels (p = 1); got p = {p} columns")
    if obstacle is not None:
        raise ValueError(f"method={method!r} cannot serve {obstacle}; use method='blocked'")
    if method == "tree" and _kdtree() is None:
        raise ValueError(
            "method='tree' needs scipy (scipy.spatial.cKDTree), which cannot be imported; "
            "install scipy or use method='blocked'"
        )
    return method


def _fast_path_obstacle(xp: Namespace, y: Array, metric: Any) -> str | None:
    """Why the sort and tree paths cannot take ``y`` and ``metric``, or None."""
    if callable(metric) and not isinstance(metric, PeriodicMetric):
        return "a callable label_metric (only the built-in names and logratio.periodic)"
    if y.shape[1] == 0:
        return "labels with no columns"
    if y.dtype not in (xp.float32, xp.float64):
        return f"labels of dtype {y.dtype} (float32 or float64 only)"
    if not _on_cpu(y):
        return f"labels on device {array_api_compat.device(y)} (CPU only)"
    if not _cannot_overflow(xp, y):
        return "labels so large that their distances may overflow"
    return None


def _kdtree() -> Any:
    """``scipy.spatial.cKDTree``, or None when scipy cannot be imported."""
    try:
        from scipy.spatial import cKDTree
    except ImportError:
        return None
    return cKDTree


def _on_cpu(y: Array) -> bool:
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


def _host_numpy(y: Array) -> np.ndarray:
    """A NumPy view or copy of a CPU array."""
    if isinstance(y, np.ndarray):
        return y
    if array_api_compat.is_torch_array(y):
        return y.detach().numpy()
    try:
        return np.from_dlpack(y)
    except Exception:
        return np.asarray(y)


def _blocked_knn(
    xp: Namespace,
    y: Array,
    k: int,
    metric: Any,
    block_size: int | None,
    progress: bool | None,
) -> tuple[Array, Array]:
    """The exact search over all pairs, ``block_size`` rows at a time, in ``y``'s namespace."""
    n = y.shape[0]
    dev = array_api_compat.device(y)
    if block_size is None:
        block_size = max(1, DEFAULT_BLOCK_ELEMENTS // max(n * y.shape[1], 1))
    cols = xp.arange(n, device=dev)
    # a named metric of finite labels is finite and non-negative unless it overflows
    check_distances = callable(metric) or not _cannot_overflow(xp, y)
    indices, dists = [], []
    show = progress if progress is not None else n >= PROGRESS_MIN_SAMPLES
    for s in _progress_bar(range(0, n, block_size), show, f"knn_table (N={n})"):
        rows = y[s : min(s + block_size, n), :]
        d = direct_distances(xp, rows, y, metric)
        if not xp.isdtype(d.dtype, "real floating"):
            d = xp.astype(d, y.dtype)
        if check_distances:
            _check_finite_nonnegative(xp, d, "label distances")
        ids = xp.arange(s, s + rows.shape[0], device=dev)
        d = xp.where(ids[:, None] == cols[None, :], xp.full_like(d, math.inf), d)
        idx, val = smallest_k(xp, d, k)
        indices.append(idx)
        dists.append(val)
    idx = indices[0] if len(indices) == 1 else xp.concat(indices, axis=0)
    return idx, dists[0] if len(dists) == 1 else xp.concat(dists, axis=0)


def _progress_bar(steps: range, show: bool, desc: str) -> Any:
    """``steps`` wrapped in a tqdm bar when ``show`` and tqdm is installed."""
    if not show:
        return steps
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return steps
    return tqdm(steps, desc=desc, unit="block", leave=False)


# ---------------------------------------------------------------------------------------
# The sort and tree paths: NumPy on the CPU.
# ---------------------------------------------------------------------------------------


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
    if 0 < p <= _COLUMN_LOOP_MAX:
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


def _sort_knn(y: np.ndarray, k: int, metric: Any) -> tuple[np.ndarray, np.ndarray]:
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


def _tree_knn(y: np.ndarray, k: int, metric: Any) -> tuple[np.ndarray, np.ndarray]:
    """Low-dimensional labels: a KD-tree of the distinct labels, its answers re-ranked exactly.

    The tree gives each distinct label its ``q`` nearest distinct labels (``q = k + 3`` at
    first); they are complete when the ``(k + 1)``-th nearest sample among them, by the
    exact distance, is nearer (by more than a rounding slack) than the tree's ``q``-th
    label, since no label the tree left out can then be nearer.  Rows that are not complete
    (ties at the edge, many equidistant labels) ask again with ``q`` doubled.
    """
    tree_class = _kdtree()
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


def smallest_k(xp: Namespace, d: Array, k: int) -> tuple[Array, Array]:
    """Column indices and values of the ``k`` smallest entries of every row of ``d``.

    Sorted by increasing value, equal values by increasing column index: exactly the first
    ``k`` columns of a stable ``argsort``.  ``d`` must hold no NaN.

    When the framework has a selection primitive (NumPy / CuPy ``partition``, JAX
    ``jnp.partition``, PyTorch ``topk``) and ``k`` is small, the ``k``-th smallest value
    ``t`` of each row is found first in O(N): every entry below ``t`` is kept, then the
    entries equal to ``t`` in column order until there are ``k``; only those ``k`` are
    sorted.  Otherwise each row is sorted in full, O(N log N).
    """
    r, n = d.shape
    kth = _kth_smallest(xp, d, k) if 0 < k <= n // 4 else None
    if kth is None:
        order = xp.argsort(d, axis=1, stable=True)[:, :k]
        return order, take_rows(xp, d, order)
    below = d < kth
    chosen = d <= kth
    extra = xp.sum(xp.astype(chosen, xp.int32), axis=1) - k  # tied entries beyond the k-th
    if bool(xp.any(extra > 0)):
        at = xp.astype(d == kth, xp.int32)
        need = k - xp.sum(xp.astype(below, xp.int32), axis=1, keepdims=True)
        chosen = below | ((at > 0) & (xp.cumulative_sum(at, axis=1) <= need))
    cols = xp.reshape(xp.nonzero(chosen)[1], (r, k))  # increasing column within each row
    vals = take_rows(xp, d, cols)
    order = xp.argsort(vals, axis=1, stable=True)
    return take_rows(xp, cols, order), take_rows(xp, vals, order)


def _kth_smallest(xp: Namespace, d: Array, k: int) -> Array | None:
    """(r, 1) ``k``-th smallest value of each row by the framework's selection, if it has one."""
    if array_api_compat.is_torch_array(d):
        values = d.topk(k, dim=1, largest=False, sorted=False).values
        return xp.max(values, axis=1, keepdims=True)
    if array_api_compat.is_numpy_array(d) or array_api_compat.is_cupy_array(d):
        part = d.copy()
        part.partition(k - 1, axis=1)  # in place, O(N) per row
        return part[:, k - 1 : k]
    if array_api_compat.is_jax_array(d) and hasattr(xp, "partition"):
        return xp.partition(d, k - 1, axis=1)[:, k - 1 : k]
    return None


def take_rows(xp: Namespace, x: Array, idx: Array) -> Array:
    """``out[q, j] = x[q, idx[q, j]]`` for a 2-D ``x`` (``take_along_axis`` on axis 1)."""
    r, n = x.shape
    if r == 0 or idx.shape[1] == 0:
        return xp.zeros((r, idx.shape[1]), dtype=x.dtype, device=array_api_compat.device(x))
    start = xp.arange(r, dtype=idx.dtype, device=array_api_compat.device(x))[:, None] * n
    flat = xp.reshape(idx + start, (-1,))
    return xp.reshape(xp.take(xp.reshape(x, (-1,)), flat), idx.shape)


def label_matrix(labels: Any) -> tuple[Namespace, Array]:
    """``labels`` as a finite (N, p) floating array in its own namespace (NumPy for lists)."""
    if not array_api_compat.is_array_api_obj(labels):
        try:
            labels = np.asarray(labels)
        except Exception as err:
            raise TypeError(f"labels must be an array of numbers; got {type(labels)}") from err
    xp = v.namespace(labels)
    y = labels
    if y.ndim == 1:
        y = xp.reshape(y, (y.shape[0], 1))
    if y.ndim != 2:
        raise ValueError(f"labels must have shape (N,) or (N, p); got shape {tuple(y.shape)}")
    if not xp.isdtype(y.dtype, "real floating"):
        if not xp.isdtype(y.dtype, ("integral", "bool")):
            raise TypeError(f"labels must hold real numbers; got dtype {y.dtype}")
        y = xp.astype(y, xp.float64)
    _check_finite_nonnegative(xp, y, "labels", nonnegative=False)
    return xp, y


def _cannot_overflow(xp: Namespace, y: Array) -> bool:
    """Whether every built-in label distance of ``y`` (N, p) is surely finite."""
    if y.shape[0] == 0:
        return True
    big = float(xp.max(xp.abs(y)))
    return 2 * big < math.sqrt(float(xp.finfo(y.dtype).max) / (4 * y.shape[1]))


def _check_k(k: Any, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int; got {k!r}")
    if not 0 <= k <= max(n - 1, 0):
        raise ValueError(f"k must satisfy 0 <= k <= N - 1 = {n - 1} for N = {n} samples; got {k}")
    return int(k)


def _check_finite_nonnegative(
    xp: Namespace, x: Array, name: str, *, nonnegative: bool = True
) -> None:
    """Raise ValueError on NaN, ±inf (or negative values); skipped under a tracer."""
    bad = ~xp.isfinite(x)
    if nonnegative:
        bad = bad | (x < 0)
    try:
        found = bool(xp.any(bad))
    except TypeError:  # a traced value cannot be inspected
        return
    if found:
        what = "finite and non-negative" if nonnegative else "finite"
        raise ValueError(f"{name} must be {what}")
