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
from typing import Any

import array_api_compat
import numpy as np

from . import _validation as v
from ._knn_host import host_numpy, kdtree, on_cpu, sort_knn, tree_knn
from ._selection import smallest_k
from ._validation import Array, Namespace
from .distances import direct_distances
from .label_metrics import PeriodicMetric

__all__ = [
    "DEFAULT_BLOCK_ELEMENTS",
    "METHODS",
    "PROGRESS_MIN_SAMPLES",
    "TREE_MAX_DIM",
    "knn_method",
    "knn_table",
    "label_matrix",
]

#: Elements of one (block, N, p) block of label differences when ``block_size`` is not given.
DEFAULT_BLOCK_ELEMENTS = 1 << 22

#: The values of ``method``.
METHODS = ("auto", "sort", "tree", "blocked")

#: ``"auto"`` uses the KD-tree up to this label dimension.
TREE_MAX_DIM = 16

#: ``progress=None`` shows a progress bar for the blocked search from this many samples.
PROGRESS_MIN_SAMPLES = 50_000


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
        host = host_numpy(y)
        if k == 0:
            top = np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=host.dtype)
        elif chosen == "sort":
            top = sort_knn(host, k, metric)
        else:
            top = tree_knn(host, k, metric)
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
        if p <= TREE_MAX_DIM and kdtree() is not None:
            return "tree"
        return "blocked"
    if method == "sort" and p != 1:
        raise ValueError(f"method='sort' needs scalar labels (p = 1); got p = {p} columns")
    if obstacle is not None:
        raise ValueError(f"method={method!r} cannot serve {obstacle}; use method='blocked'")
    if method == "tree" and kdtree() is None:
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
    if not on_cpu(y):
        return f"labels on device {array_api_compat.device(y)} (CPU only)"
    if not _cannot_overflow(xp, y):
        return "labels so large that their distances may overflow"
    return None


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
            v.check_finite(xp, d, "label distances")
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
    v.check_finite(xp, y, "labels", nonnegative=False)
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
