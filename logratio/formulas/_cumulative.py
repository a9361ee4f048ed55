"""Cumulative log-sum-exp along the rows of a block, exact for any spread of the values.

The Array API has ``cumulative_sum`` but no ``logcumsumexp``.  A cumulative sum of
``exp(x − m)`` shifted by the row maximum ``m`` is fast, and exact while every valid term of
the row stays in the normal range of the summing dtype (float64 where the namespace has it);
it underflows to ``log 0`` where a whole prefix lies far below ``m``.  Blocks whose rows
spread further take an exact scan: ``torch.logcumsumexp``, ``jax.lax.cumlogsumexp``, NumPy's
``logaddexp.accumulate``, and elsewhere (CuPy, array-api-strict) a Hillis–Steele scan of
``logaddexp`` in ⌈log₂ n⌉ passes (docs/design.md §9).  Either way the result is finite
wherever the exact value is, and ``−inf`` only for an empty set.
"""

from __future__ import annotations

import importlib
import math
import sys
from typing import Any

import array_api_compat

__all__ = ["cumulative_logsumexp", "inverse_permutation", "is_library", "running_max"]

# below exp(−SPREAD) of the row maximum a term may leave the normal range of the dtype
_SPREAD = {4: 80.0, 8: 700.0}


def is_library(xp: Any, library: str) -> bool:
    """Whether ``xp`` is ``library``'s namespace (a plain name test: Dynamo traces it, where
    array-api-compat's cached tests warn inside a compiled graph)."""
    name = getattr(xp, "__name__", "")
    if library == "jax":
        return name.startswith("jax")
    return name in {library, f"array_api_compat.{library}"}


def cumulative_logsumexp(xp: Any, x: Any, valid: Any, *, reverse: bool) -> Any:
    """``log Σ exp(x)`` over the valid entries of each row's suffix from every position
    (``reverse=True``: positions ``q' ≥ q``) or prefix up to it (``q' ≤ q``); ``−inf`` only
    where that set holds no valid entry.  O(r · n), or O(r · n · log n) for the generic scan.
    """
    masked = xp.where(valid, x, xp.full_like(x, -math.inf))
    if x.shape[1] == 0 or x.shape[0] == 0:
        return masked
    if reverse:
        masked = xp.flip(masked, axis=1)
    out = _shifted_or_exact(xp, masked)
    return xp.flip(out, axis=1) if reverse else out


def _wide(xp: Any, x: Any) -> Any:
    """The summing dtype: float64 where the namespace has it (JAX only with x64 enabled)."""
    if x.dtype == xp.float64:
        return x.dtype
    if is_library(xp, "jax"):
        return xp.float64 if sys.modules["jax"].config.jax_enable_x64 else x.dtype
    return xp.float64 if hasattr(xp, "float64") else x.dtype


def _shifted(xp: Any, x: Any, top: Any) -> Any:
    wide = _wide(xp, x)
    shift = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    terms = xp.exp(xp.astype(x - shift, wide))
    total = xp.cumulative_sum(terms, axis=1)
    empty = total == 0  # no valid entry yet: log 0 = −inf, without a warning
    logs = xp.where(empty, -math.inf, xp.log(xp.where(empty, 1.0, total)))
    return xp.astype(logs, x.dtype) + shift


def _shifted_or_exact(xp: Any, x: Any) -> Any:
    top = xp.max(x, axis=1, keepdims=True)
    low = xp.min(xp.where(x > -math.inf, x, xp.full_like(x, math.inf)), axis=1, keepdims=True)
    spread = _SPREAD[xp.finfo(_wide(xp, x)).bits // 8]
    narrow = xp.all((top - low <= spread) | ~xp.isfinite(top))
    if is_library(xp, "jax"):
        lax = sys.modules["jax"].lax
        return lax.cond(narrow, lambda a: _shifted(xp, a, top), lambda a: _prefix(xp, a), x)
    if is_library(xp, "torch") and _compiling():
        return _prefix(xp, x)  # no data-dependent branch inside a compiled graph
    return _shifted(xp, x, top) if bool(narrow) else _prefix(xp, x)


def _compiling() -> bool:
    compiler = getattr(sys.modules["torch"], "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def inverse_permutation(xp: Any, order: Any) -> Any:
    """Per row, the inverse of a permutation: ``out[i, order[i, q]] = q``.  A scatter where
    the namespace has one (O(r · n)), else an argsort."""
    r, n = order.shape
    if n == 0:
        return order
    if is_library(xp, "torch"):
        pos = xp.broadcast_to(xp.arange(n, dtype=order.dtype, device=order.device), (r, n))
        return xp.empty_like(order).scatter_(1, order, pos)
    if is_library(xp, "jax"):
        rows = xp.arange(r)[:, None]
        pos = xp.broadcast_to(xp.arange(n, dtype=order.dtype), (r, n))
        return xp.zeros_like(order).at[rows, order].set(pos)
    if is_library(xp, "numpy"):
        np = importlib.import_module("numpy")
        out = np.empty_like(order)
        np.put_along_axis(out, order, np.broadcast_to(np.arange(n, dtype=order.dtype), (r, n)), 1)
        return out
    return xp.argsort(order, axis=1)


def _prefix(xp: Any, x: Any) -> Any:
    if is_library(xp, "torch"):
        return x.logcumsumexp(1)  # the tensor's method: torch.compile traces it
    if is_library(xp, "jax"):
        return sys.modules["jax"].lax.cumlogsumexp(x, axis=1)
    if is_library(xp, "numpy"):
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
    if is_library(xp, "torch"):
        if v.shape[1] < 2**24:  # positions exact in float32, whose scan is several times faster
            return v.to(dtype=xp.float32).cummax(1).values.to(dtype=v.dtype)
        return v.cummax(1).values
    if is_library(xp, "jax"):
        return sys.modules["jax"].lax.cummax(v, axis=1)
    if is_library(xp, "numpy"):
        return importlib.import_module("numpy").maximum.accumulate(v, axis=1)
    r, n = v.shape
    out = v
    shift = 1
    while shift < n:
        pad = xp.zeros((r, shift), dtype=v.dtype, device=array_api_compat.device(v))
        out = xp.maximum(out, xp.concat([pad, out[:, : n - shift]], axis=1))
        shift *= 2
    return out
