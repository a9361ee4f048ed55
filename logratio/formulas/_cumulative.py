"""Cumulative log-sum-exp along the rows of a block, without underflow to ``log 0``.

Array API namespaces have ``cumulative_sum`` but no ``logcumsumexp``.  A cumulative sum of
``exp(x − m)`` with the row maximum ``m`` is accurate wherever the running sum stays far above
the smallest normal number; where it does not (every term of that suffix or prefix lies far
below ``m``: about 60 nats in float32, 680 in float64), the sum is taken again over those
positions alone, shifted by their own maximum.  ``PASSES`` rounds of this cover a spread of
``PASSES`` × that range within one row; beyond it the result is clamped to the position's
own term (a lower bound, never ``−inf``).  No data-dependent control flow: the same passes run
under ``torch.compile`` and ``jax.jit`` (docs/design.md §9).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["PASSES", "cumulative_logsumexp"]

#: rounds of the shifted cumulative sum (the first over the whole row)
PASSES = 3


def cumulative_logsumexp(xp: Any, x: Any, valid: Any, *, reverse: bool) -> Any:
    """``log Σ exp(x)`` over the valid entries of each row's suffix from every position
    (``reverse=True``: positions ``q' ≥ q``) or prefix up to it (``q' ≤ q``); ``−inf`` only
    where that set holds no valid entry.  O(PASSES · r · n)."""
    if reverse:
        x, valid = xp.flip(x, axis=1), xp.flip(valid, axis=1)
    out = _prefix(xp, x, valid)
    return xp.flip(out, axis=1) if reverse else out


def _prefix(xp: Any, x: Any, valid: Any) -> Any:
    low = xp.full_like(x, -math.inf)
    tiny = float(xp.finfo(x.dtype).smallest_normal) * 2.0**40
    # the region still to compute: every position at first
    todo = xp.ones(x.shape, dtype=xp.bool, device=_device(x))
    out = low
    for _ in range(PASSES):
        if x.shape[1] == 0:
            break
        # the region is a suffix of each row's positions; its valid entries' maximum
        top = xp.max(xp.where(todo & valid, x, low), axis=1)
        top = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
        # a prefix sum over the region only: entries before it are excluded (they are larger
        # than the region's terms by the amount that made the region fail)
        terms = xp.where(todo & valid, xp.exp(xp.where(todo & valid, x - top[:, None], 0.0)), 0.0)
        total = xp.cumulative_sum(terms, axis=1)
        good = total > tiny
        value = top[:, None] + xp.log(xp.where(good, total, xp.ones_like(total)))
        out = xp.where(todo & good, value, out)
        todo = todo & ~good
    # beyond the passes: at least the largest valid term up to here (never −inf if any)
    return xp.where(todo, _running_floor(xp, x, valid, out), out)


def _running_floor(xp: Any, x: Any, valid: Any, out: Any) -> Any:
    """A finite lower bound where the passes did not reach: the position's own term if valid,
    else the last computed value."""
    return xp.where(valid, xp.maximum(x, out), out)


def _device(x: Any) -> Any:
    import array_api_compat

    return array_api_compat.device(x)
