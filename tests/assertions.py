"""Comparisons shared by the test files: one ``assert_close`` for every backend, and the
loss and gradient checks built on it."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from logratio.testing import strategies as S
from logratio.testing.backends import Backend


def assert_close(
    actual: Any,
    desired: Any,
    *,
    rtol: float,
    atol: Any = 0,
    backend: Backend | None = None,
    dtype: str | None = None,
) -> np.ndarray:
    """``actual`` within ``atol + rtol·|desired|`` of ``desired``, compared in float64 NumPy
    with the same shape (:func:`to_checked_numpy` checks its namespace, device and dtype
    first); returns ``actual`` as that float64 array."""
    actual = np.asarray(to_checked_numpy(actual, backend, dtype), dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, strict=True)
    return actual


def to_checked_numpy(
    actual: Any, backend: Backend | None = None, dtype: str | None = None
) -> np.ndarray:
    """``actual`` as a NumPy array.  With ``backend`` it must be the backend's array, on the
    backend's device; with ``dtype`` (a name), of the backend's dtype of that name (NumPy's
    without a backend)."""
    if backend is None:
        actual = np.asarray(actual)
        assert dtype is None or actual.dtype == np.dtype(dtype), (actual.dtype, dtype)
        return actual
    assert backend.is_native(actual), f"{type(actual)} is not a {backend.label} array"
    assert dtype is None or actual.dtype == backend.dtypes[dtype], (actual.dtype, dtype)
    here = array_api_compat.device(backend.asarray(np.zeros(0, dtype=np.float32)))
    assert array_api_compat.device(actual) == here, (array_api_compat.device(actual), here)
    return backend.to_numpy(actual)


def check_loss(
    got: Any,
    exp: S.Expected,
    reduction: str,
    rtol: float,
    *,
    backend: Backend | None = None,
    dtype: str | None = None,
) -> None:
    """The loss of ``reduction`` finite and within ``rtol`` per log-distance of ``exp``
    (``backend``, ``dtype``: as for :func:`to_checked_numpy`)."""
    want = exp.loss(reduction)
    got64 = np.asarray(to_checked_numpy(got, backend, dtype), dtype=np.float64)
    assert got64.shape == np.shape(want)
    assert np.all(np.isfinite(got64))
    err = np.abs(got64 - want)
    tol = exp.loss_tolerance(reduction, rtol)
    assert np.all(err <= tol), f"{reduction}: got {got64}, want {want}, error {err} > {tol}"


def check_gradient(
    got: Any,
    want: np.ndarray,
    rtol: float,
    *,
    backend: Backend | None = None,
    dtype: str | None = None,
    term_scale: float = 0.0,
    noise: float = 0.0,
) -> np.ndarray:
    """``got`` finite and within ``rtol`` of ``want``, relative to the largest component of
    ``want`` or, when larger, ``term_scale``: the size of the terms that cancel in a
    component (a gradient that is exactly 0 is rounding noise of that size in any
    evaluation); ``noise`` is an absolute rounding allowance added to that.  ``backend``,
    ``dtype``: as for :func:`to_checked_numpy`; returns ``got`` as a float64 NumPy array."""
    got = np.asarray(to_checked_numpy(got, backend, dtype), dtype=np.float64)
    assert got.shape == want.shape
    assert np.all(np.isfinite(got))
    scale = max(np.max(np.abs(want), initial=0.0), term_scale)
    return assert_close(got, want, rtol=rtol, atol=rtol * scale + noise + 1e-300)
