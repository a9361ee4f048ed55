"""Dense triplet mining (Kim et al., CVPR 2019, Sec. 4): every triplet of a mini-batch."""

from __future__ import annotations

from typing import Any

import array_api_compat

from . import _validation as v
from ._validation import Array

__all__ = ["dense_triplets"]

#: Anchors enumerated at once by :func:`dense_triplets`: the (r, B, B) condition stays small.
_TRIPLET_BLOCK_ELEMENTS = 1 << 22


def dense_triplets(
    label_distances: Any,
    *,
    anchors: Any = None,
    mask: Any = None,
    ties: str = "include",
) -> tuple[Array, Array, Array]:
    """Enumerate the paper's triplets ``(a, i, j)`` of one batch.

    For every anchor ``a`` and neighbours ``i ≠ j`` (neither equal to ``a``, both allowed by
    ``mask[a]``), one ordering per unordered pair is kept: ``Δ_ai < Δ_aj``, and on a tie
    (``Δ_ai = Δ_aj``) ``i < j`` with ``ties="include"``, nothing with ``ties="exclude"``.

    Args:
      label_distances: (B, B) label distances.
      anchors: ``None`` (every row), an int, an index array or a boolean mask of shape (B,).
      mask: (B, B) boolean, the (anchor, neighbour) pairs allowed.
      ties: ``"include"`` or ``"exclude"``.

    Returns:
      Three 1-D integer arrays (anchor, nearer neighbour, farther neighbour), sorted by anchor
      position, then ``i``, then ``j``.  O(m·B²) time and output; O(block·B²) working memory.
    """
    xp = v.namespace(label_distances, name="label_distances")
    dl = label_distances
    if dl.ndim != 2 or dl.shape[0] != dl.shape[1]:
        raise ValueError(
            f"label_distances must be a square (B, B) array; got shape {tuple(dl.shape)}"
        )
    v.choice("ties", ties, v.TIES)
    v.check_label_distance_values(xp, dl, "label_distances")
    batch = dl.shape[0]
    dev = array_api_compat.device(dl)
    idx = v.anchors_for(xp, anchors, batch, dl)
    if idx is None:
        idx = xp.arange(batch, device=dev)
    m = v.mask_for(xp, mask, batch, dl)
    cols = xp.arange(batch, device=dev)
    block = max(1, _TRIPLET_BLOCK_ELEMENTS // max(batch * batch, 1))
    out: list[list[Array]] = [[], [], []]
    for s in range(0, idx.shape[0], block):
        rows = idx[s : min(s + block, idx.shape[0])]
        lab = xp.take(dl, rows, axis=0)  # (r, B)
        ok = rows[:, None] != cols[None, :]
        if m is not None:
            ok = ok & xp.take(m, rows, axis=0)
        li, lj = lab[:, :, None], lab[:, None, :]
        order = li < lj
        if ties == "include":
            order = order | ((li == lj) & (cols[:, None] < cols[None, :])[None, :, :])
        cond = ok[:, :, None] & ok[:, None, :] & order
        r_, i_, j_ = xp.nonzero(cond)
        out[0].append(xp.take(rows, r_))
        out[1].append(i_)
        out[2].append(j_)
    if not out[0]:
        empty = xp.zeros((0,), dtype=cols.dtype, device=dev)
        return empty, empty, empty
    return tuple(xp.concat(part, axis=0) if len(part) > 1 else part[0] for part in out)
