"""The log-ratio loss on an explicit list of triplets, for custom miners.

``l(a, i, j) = (log (D_ai + ε)/(D_aj + ε) − log (Δ_ai + ε)/(Δ_aj + ε))²`` (Kim et al., CVPR 2019,
Eq. 4) for each given triplet; on the triplets of :func:`logratio.dense_triplets` it agrees with
the dense :func:`logratio.log_ratio_loss`.  Cost O(T·d) time and memory for T triplets.  It is
written in plain Array API operations, so a framework's autodiff differentiates it directly.
"""

from __future__ import annotations

from typing import Any

from . import _validation as v
from ._validation import Array
from .options import LossOptions

__all__ = ["triplet_log_ratio_loss"]


def triplet_log_ratio_loss(
    embeddings: Array,
    label_distances: Any,
    triplets: Any,
    *,
    squared: bool = True,
    eps: float = 1e-6,
    root_eps: float = 0.0,
    reduction: str = "mean",
) -> Array:
    """Log-ratio loss over the given triplets.

    Args:
      embeddings: (B, d) floating array.
      label_distances: (B, B) non-negative label distances.
      triplets: a tuple ``(a, i, j)`` of three 1-D integer arrays of equal length (anchor,
        nearer neighbour, farther neighbour), or one (T, 3) integer array of rows
        ``(a, i, j)``.  A list is refused: it would read both ways.
      squared: squared Euclidean embedding distances (default) or Euclidean.
      eps: added to both distances before the log.
      root_eps: with ``squared=False``, distances ``sqrt(‖f_a − f_b‖² + root_eps)`` as in
        :func:`logratio.log_ratio_loss` (docs/design.md §6.1).
      reduction: ``"mean"`` over the triplets, ``"sum"``, or ``"none"`` (one value per triplet).

    Returns:
      The loss (a 0-D array, or (T,) with ``"none"``); 0 for an empty triplet list.
    """
    xp = v.namespace(embeddings, name="embeddings")
    v.embeddings_2d(xp, embeddings)
    dtype = v.compute_dtype(xp, embeddings)
    options = LossOptions(squared=squared, eps=eps, root_eps=root_eps, reduction=reduction)
    eps, root_eps = options.eps, options.root_eps
    f = xp.astype(embeddings, dtype) if embeddings.dtype != dtype else embeddings
    batch = f.shape[0]
    dl = v.label_distances_for(xp, label_distances, batch, f, dtype)
    a, i, j = _triplet_indices(xp, triplets, batch, f)

    def dist(x: Array, y: Array) -> Array:
        diff = xp.take(f, x, axis=0) - xp.take(f, y, axis=0)
        sq = xp.sum(diff * diff, axis=1)
        if squared:
            return sq
        if root_eps > 0:
            return xp.sqrt(sq + root_eps)
        pos = sq > 0  # mask sqrt's input so that autodiff at sq = 0 gives 0, not NaN
        zero = xp.zeros_like(sq)
        return xp.where(pos, xp.sqrt(xp.where(pos, sq, zero + 1)), zero)

    flat = xp.reshape(dl, (-1,))
    lab_ai = xp.take(flat, a * batch + i)
    lab_aj = xp.take(flat, a * batch + j)
    r = (xp.log(dist(a, i) + eps) - xp.log(dist(a, j) + eps)) - (
        xp.log(lab_ai + eps) - xp.log(lab_aj + eps)
    )
    per = r * r
    if reduction == "none":
        return per
    total = xp.sum(per)
    if reduction == "sum":
        return total
    count = per.shape[0]
    return total / count if count > 0 else total


def _triplet_indices(xp: Any, triplets: Any, batch: int, like: Array) -> tuple[Array, ...]:
    if isinstance(triplets, list):
        raise TypeError(
            "triplets must be a tuple (a, i, j) of index arrays or one (T, 3) array; got a "
            "list, which reads both ways: pass tuple(...) or an array of rows (T, 3)"
        )
    if isinstance(triplets, tuple):
        if len(triplets) != 3:
            raise ValueError(
                f"triplets as a tuple must be (a, i, j), three index arrays; got {len(triplets)}"
            )
        parts = [v.as_array(xp, t, like=like, name="triplets") for t in triplets]
    else:
        t = v.as_array(xp, triplets, like=like, name="triplets")
        if t.ndim != 2 or t.shape[1] != 3:
            raise ValueError(
                "triplets must be (a, i, j) index arrays or one (T, 3) array; "
                f"got shape {tuple(t.shape)}"
            )
        parts = [t[:, 0], t[:, 1], t[:, 2]]
    for part in parts:
        if part.ndim != 1 or part.shape[0] != parts[0].shape[0]:
            raise ValueError("triplets must be three 1-D index arrays of equal length")
        if not xp.isdtype(part.dtype, "integral"):
            raise TypeError(f"triplets must hold integers; got dtype {part.dtype}")
        if v.concrete_any(xp, (part < 0) | (part >= batch)):
            raise ValueError(f"triplets hold indices out of range for a batch of {batch}")
    return tuple(parts)
