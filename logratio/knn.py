"""Nearest neighbours in label space, computed in blocks (Kim et al., CVPR 2019, Sec. 4).

The paper builds each mini-batch around an anchor and its ``k`` nearest neighbours in
*label* space (docs/design.md §2).  :func:`knn_table` finds them for every sample at once,
``block_size`` rows at a time, so that memory stays O(block_size · N) however large N is,
in the labels' own Array API namespace and device (GPU arrays stay on the GPU).

Ties are broken by index: among samples at equal label distance the one with the smaller
index comes first, so the table is a deterministic function of the labels.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from . import _validation as v
from ._validation import Array, Namespace
from .distances import direct_distances

#: Elements of one (block, N, p) block of label differences when ``block_size`` is not given.
DEFAULT_BLOCK_ELEMENTS = 1 << 22


def knn_table(
    labels: Any,
    k: int,
    *,
    label_metric: Any = "euclidean",
    block_size: int | None = None,
    return_distances: bool = False,
) -> Array | tuple[Array, Array]:
    """The ``k`` nearest neighbours of every sample in label space, nearest first.

    Row ``a`` of the result lists the ``k`` samples ``b ≠ a`` with the smallest label
    distance ``Δ(y_a, y_b)``, in increasing distance; equal distances are ordered by
    increasing index ``b``.  The sample itself is never listed, even when other samples
    share its label (distance 0): those come first.

    Args:
      labels: (N,) or (N, p) labels, any Array API array (or a NumPy array-like).
        Integer labels are converted to float64.
      k: number of neighbours, ``0 ≤ k ≤ N − 1``.
      label_metric: ``"euclidean"``, ``"sqeuclidean"``, ``"cityblock"`` or a callable
        ``metric(a, b) -> (len(a), len(b))`` of finite, non-negative distances, called on
        (r, p) and (N, p) blocks of the (2-D) labels.
      block_size: rows per block; memory is O(block_size · N · p).  Default: about
        2²² / (N · p) rows.
      return_distances: also return the (N, k) label distances of the neighbours.

    Returns:
      (N, k) integer index array in the labels' namespace and device; with
      ``return_distances``, the pair ``(indices, distances)``.

    Cost: O(N² p) time for the distances, plus the selection: O(N²) with a framework's
    partition or top-k (NumPy, CuPy, JAX, PyTorch), a full sort otherwise (O(N² log N)).
    """
    xp, y = label_matrix(labels)
    metric = v.label_metric(label_metric)
    block_size = v.optional_block_size(block_size)
    if return_distances not in (True, False):
        raise TypeError(f"return_distances must be a bool; got {return_distances!r}")
    n = y.shape[0]
    if n == 0:
        raise ValueError("labels must hold at least one sample; got an empty array")
    k = _check_k(k, n)
    dev = array_api_compat.device(y)
    if block_size is None:
        block_size = max(1, DEFAULT_BLOCK_ELEMENTS // max(n * y.shape[1], 1))
    cols = xp.arange(n, device=dev)
    # a named metric of finite labels is finite and non-negative unless it overflows
    check_distances = callable(metric) or not _cannot_overflow(xp, y)
    indices, dists = [], []
    for s in range(0, n, block_size):
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
    if not return_distances:
        return idx
    return idx, dists[0] if len(dists) == 1 else xp.concat(dists, axis=0)


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
