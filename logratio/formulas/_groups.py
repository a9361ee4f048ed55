"""Rows of a block sorted by label distance: the groups of equal distances (ties).

Shared by formulas whose terms depend on each row's order by label distance: the log-ratio
loss without ties (docs/design.md §1.1).  O(r·n·log n) per block, no (r, n, n) array.
"""

from __future__ import annotations

import math
from typing import Any

from .._validation import Array, Namespace

__all__ = ["tie_groups"]


def tie_groups(
    xp: Namespace, lab: Array, centred: Array, valid: Array, dev: Any
) -> tuple[Array, Array]:
    """Size and centred value of each entry's tie group (equal ``Δ_a·`` within a row).

    Returns ``(n_g, x − x̄_g)`` per entry for ``x = centred``, zero off ``valid``.  Each row is
    sorted by label distance so that ties are contiguous; a group's sum is a difference of the
    row's cumulative sum of ``x``: O(r·n·log n), no (r, n, n) array.
    """
    r, batch = lab.shape
    if batch == 0:  # no neighbours (an empty reference set): no groups
        return xp.zeros_like(centred), xp.zeros_like(centred)
    key = xp.where(valid, lab, xp.full_like(lab, math.inf))
    order = xp.argsort(key, axis=1, stable=True)
    row_start = xp.arange(r, device=dev)[:, None] * batch
    flat = xp.reshape(order + row_start, (-1,))
    key_s = xp.reshape(xp.take(xp.reshape(key, (-1,)), flat), (r, batch))
    centred_s = xp.reshape(xp.take(xp.reshape(centred, (-1,)), flat), (r, batch))
    first = xp.ones((r, 1), dtype=xp.bool, device=dev)
    new_group = xp.concat([first, key_s[:, 1:] != key_s[:, :-1]], axis=1)
    group = xp.cumulative_sum(xp.astype(new_group, order.dtype), axis=1) + row_start
    group = xp.reshape(group, (-1,))  # non-decreasing over the flattened block
    start = xp.searchsorted(group, group, side="left")
    stop = xp.searchsorted(group, group, side="right")
    csum = xp.reshape(xp.cumulative_sum(centred_s, axis=1, include_initial=True), (-1,))
    row_of = xp.reshape(xp.broadcast_to(xp.arange(r, device=dev)[:, None], (r, batch)), (-1,))
    row_of = xp.astype(row_of, start.dtype)
    # position k of row q sits at q·B + k in ``group`` and at q·(B + 1) + k in ``csum``
    sums = xp.take(csum, stop + row_of) - xp.take(csum, start + row_of)
    size_s = xp.reshape(xp.astype(stop - start, centred.dtype), (r, batch))
    group_centred_s = centred_s - xp.reshape(sums, (r, batch)) / size_s
    inverse = xp.reshape(xp.argsort(order, axis=1) + row_start, (-1,))
    group_centred = xp.reshape(xp.take(xp.reshape(group_centred_s, (-1,)), inverse), (r, batch))
    group_n = xp.reshape(xp.take(xp.reshape(size_s, (-1,)), inverse), (r, batch))
    zero = xp.zeros_like(group_centred)
    return xp.where(valid, group_n, zero), xp.where(valid, group_centred, zero)
