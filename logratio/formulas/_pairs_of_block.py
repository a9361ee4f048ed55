"""What the formulas read the same way from a block: the pairs that count, label distances."""

from __future__ import annotations

from typing import Any

from ..distances import direct_distances
from ..formula import Block

__all__ = ["counted", "label_distances"]


def counted(xp: Any, blk: Block, shape: tuple[int, ...]) -> Any:
    """(r, n) bool: an anchor with every other row (a reference set never holds the anchor
    itself), within the mask."""
    if blk.dense:
        valid = blk.ids[:, None] != blk.cols[None, :]
    else:
        valid = xp.ones(shape, dtype=xp.bool, device=blk.device)
    return valid if blk.mask is None else valid & blk.mask


def label_distances(xp: Any, blk: Block, metric: Any, dtype: Any) -> Any:
    """(r, n) label distances: given, or measured with ``metric`` (in ``dtype``)."""
    if blk.label_distances is not None:
        return blk.label_distances
    lab = direct_distances(xp, blk.labels, blk.neighbour_labels, metric)
    return lab if lab.dtype == dtype else xp.astype(lab, dtype)
