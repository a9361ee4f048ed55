"""Cumulative log-sum-exp along the rows of a block, exact for any spread of the values.

The Array API has ``cumulative_sum`` but no ``logcumsumexp``, and a cumulative sum of
``exp(x − m)`` shifted by the row maximum ``m`` underflows to ``log 0`` wherever every term of
a prefix lies far below ``m`` (about 87 nats in float32).  So each namespace gets an exact
scan: ``torch.logcumsumexp``, ``jax.lax.cumlogsumexp``, NumPy's ``logaddexp.accumulate``, and
elsewhere (CuPy, array-api-strict) a Hillis–Steele scan of ``logaddexp`` in ⌈log₂ n⌉ passes
(docs/design.md §9).  All are finite wherever the exact value is, and ``−inf`` only for an
empty set.
"""

from __future__ import annotations

import importlib
import math
import sys
from typing import Any

import array_api_compat

__all__ = ["cumulative_logsumexp", "running_max"]


def cumulative_logsumexp(xp: Any, x: Any, valid: Any, *, reverse: bool) -> Any:
    """``log Σ exp(x)`` over the valid entries of each row's suffix from every position
    (``reverse=True``: positions ``q' ≥ q``) or prefix up to it (``q' ≤ q``); ``−inf`` only
    where that set holds no valid entry.  O(r · n), or O(r · n · log n) for the generic scan.
    """
    masked = xp.where(valid, x, xp.full_like(x, -math.inf))
    if x.shape[1] == 0:
        return masked
    if reverse:
        masked = xp.flip(masked, axis=1)
    out = _prefix(xp, masked)
    return xp.flip(out, axis=1) if reverse else out


def _prefix(xp: Any, x: Any) -> Any:
    if array_api_compat.is_torch_namespace(xp):
        return x.logcumsumexp(1)  # the tensor's method: torch.compile traces it
    if array_api_compat.is_jax_namespace(xp):
        return sys.modules["jax"].lax.cumlogsumexp(x, axis=1)
    if array_api_compat.is_numpy_namespace(xp):
        np = importlib.import_module("numpy")
        with np.errstate(invalid="ignore", divide="ignore"):  # −inf with −inf: −inf
            return np.logaddexp.accumulate(x, axis=1)
    return _scan(xp, x)


def _scan(xp: Any, x: Any) -> Any:
    """Hillis–Steele: after the pass with shift ``s`` each entry holds the log-sum-exp of the
    ``2s`` entries up to it; ``logaddexp`` is exact at any spread."""
    r, n = x.shape
    out = x
    shift = 1
    while shift < n:
        pad = xp.full((r, shift), -math.inf, dtype=x.dtype, device=array_api_compat.device(x))
        out = xp.logaddexp(out, xp.concat([pad, out[:, : n - shift]], axis=1))
        shift *= 2
    return out


def running_max(xp: Any, v: Any) -> Any:
    """The running maximum along the rows of an integer array (a cumulative max):
    ``torch.cummax``, ``jax.lax.cummax``, NumPy's ``maximum.accumulate``, else a
    Hillis–Steele scan of ``maximum``."""
    if v.shape[1] == 0:
        return v
    if array_api_compat.is_torch_namespace(xp):
        return v.cummax(1).values
    if array_api_compat.is_jax_namespace(xp):
        return sys.modules["jax"].lax.cummax(v, axis=1)
    if array_api_compat.is_numpy_namespace(xp):
        return importlib.import_module("numpy").maximum.accumulate(v, axis=1)
    r, n = v.shape
    out = v
    shift = 1
    while shift < n:
        pad = xp.zeros((r, shift), dtype=v.dtype, device=array_api_compat.device(v))
        out = xp.maximum(out, xp.concat([pad, out[:, : n - shift]], axis=1))
        shift *= 2
    return out
