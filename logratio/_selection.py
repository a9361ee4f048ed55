"""Row-wise selection shared by the k-NN tables and the retrieval metrics: the ``k`` smallest
entries of every row, nearest first, equal values by increasing column index."""

from __future__ import annotations

import array_api_compat

from ._validation import Array, Namespace

__all__ = ["smallest_k", "take_rows"]


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
