"""Pairwise distances, written once against the Array API standard.

Embedding distances use the Gram identity ``‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b`` (one matrix
product, the cost of ``torch.cdist``) on **centred** inputs: subtracting the mean first keeps
the identity accurate when every point sits far from the origin (docs/design.md §1.3).  Label
distances use explicit differences, so equal label gaps give exactly equal distances and the
tie rule of the loss sees them as ties.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from . import _validation as v
from ._validation import Array, Namespace

__all__ = [
    "COLUMN_LOOP_MAX",
    "direct_distances",
    "gram_noise_factor",
    "pairwise_distances",
    "sq_euclidean_centered",
]


def pairwise_distances(x: Array, y: Array | None = None, *, metric: str = "sqeuclidean") -> Array:
    """Distances between the rows of ``x`` and those of ``y`` (default: ``x`` itself).

    Args:
      x: (n, d) array, or (n,) for scalar features.
      y: optional (m, d) array in the same namespace; ``None`` means ``x``.
      metric: ``"sqeuclidean"`` (``‖a − b‖²``), ``"euclidean"`` (``‖a − b‖``) or
        ``"cityblock"`` (``Σ|a − b|``).

    Returns:
      (n, m) array of distances in ``x``'s namespace, device and floating dtype; the diagonal
      of ``pairwise_distances(x)`` is exactly zero.

    (Squared) Euclidean distances are computed from centred inputs with one matrix product,
    O(n·m·d) time and O(n·m) memory; ``cityblock`` uses explicit differences, O(n·m·d) memory.
    A squared distance below the product's rounding noise, ``c·(‖a‖² + ‖b‖²)`` with
    ``c = (4√d + 4)·u`` for the centred rows (:func:`gram_noise_factor`; u the dtype's unit
    roundoff), reads as exactly 0: in float32 with ``‖a‖ ≈ 1`` and d = 128, pairs closer
    than about 0.003 (a squared distance of 1.2e-5).  The loss recomputes such pairs from
    their differences instead (docs/design.md §1.3); use ``cityblock``, or float64, where
    they matter here.
    """
    xp = v.namespace(x, y, name="x (and y)")
    v.choice("metric", metric, v.EMBEDDING_METRICS)
    for name, arr in (("x", x), ("y", y)):
        if arr is not None and xp.isdtype(arr.dtype, "complex floating"):
            raise TypeError(f"{name} must be real; got dtype {arr.dtype}")
    x = _as_2d(xp, x, "x")
    if y is not None:
        y = _as_2d(xp, y, "y")
        if y.shape[1] != x.shape[1]:
            raise ValueError(
                f"y must have {x.shape[1]} columns to match x; got shape {tuple(y.shape)}"
            )
    dtype = _float_dtype(xp, x)
    x = xp.astype(x, dtype) if x.dtype != dtype else x
    if y is not None and y.dtype != dtype:
        y = xp.astype(y, dtype)
    if metric == "cityblock":
        return direct_distances(xp, x, x if y is None else y, metric)
    # the mean of no rows would warn and be NaN
    center = xp.mean(x, axis=0) if x.shape[0] > 0 else xp.sum(x, axis=0)
    xc = x - center
    yc = None if y is None else y - center
    sq = sq_euclidean_centered(xp, xc, _row_sq_norms(xp, xc), yc)
    if y is None:
        n = x.shape[0]
        eye = xp.arange(n)[:, None] == xp.arange(n)[None, :]
        sq = xp.where(eye, xp.zeros_like(sq), sq)
    return sq if metric == "sqeuclidean" else xp.sqrt(sq)


def sq_euclidean_centered(
    xp: Namespace,
    xc: Array,
    x_norms: Array,
    yc: Array | None = None,
    y_norms: Array | None = None,
) -> Array:
    """Squared distances between centred rows, clipped at zero: ``‖x‖² + ‖y‖² − 2 x·yᵀ``.

    ``x_norms`` (and ``y_norms``) are the precomputed squared row norms, so that a caller
    working in blocks of rows computes them once.
    """
    if yc is None:
        yc, y_norms = xc, x_norms
    elif y_norms is None:
        y_norms = _row_sq_norms(xp, yc)
    scale = x_norms[:, None] + y_norms[None, :]
    sq = scale - 2 * (xc @ yc.T)
    # The identity leaves rounding noise of about sqrt(d)·u·(‖x‖² + ‖y‖²) (u: unit roundoff);
    # below a few times that, the value is noise, and duplicates must give exactly 0: log and
    # sqrt would otherwise magnify the noise into the loss and its gradient.
    noise = gram_noise_factor(xp, xc.shape[1], sq.dtype) * scale
    return xp.where(sq > noise, sq, xp.zeros_like(sq))


#: Label dimensions up to this many are differenced one column at a time.
COLUMN_LOOP_MAX = 16


def gram_noise_factor(xp: Namespace, dim: int, dtype: object) -> float:
    """``c`` such that ``c·(‖x‖² + ‖y‖²)`` bounds the rounding noise of the Gram identity.

    The identity leaves noise of about ``sqrt(d)·u·(‖x‖² + ‖y‖²)`` (u: unit roundoff); squared
    distances below a few times that are noise and are read as exactly 0.
    """
    return (4 * math.sqrt(dim) + 4) * float(xp.finfo(dtype).eps)


def direct_distances(
    xp: Namespace, a: Array, b: Array, metric: str | Callable[..., Array]
) -> Array:
    """Distances from explicit differences ``a[:, None, :] − b[None, :, :]``: exact ties.

    ``metric`` is a name from ``LABEL_METRICS`` or a callable ``metric(a, b) -> (len(a), len(b))``.
    Memory O(len(a)·len(b)·p): meant for labels, whose dimension p is small.
    """
    if callable(metric):
        return _call_metric(xp, metric, a, b)
    if 0 < a.shape[1] <= COLUMN_LOOP_MAX:
        # one (n, m) pass per label column instead of an (n, m, p) array reduced over its
        # short last axis; |a − b| for one Euclidean column (sqrt(x²) can underflow)
        out = None
        for k in range(a.shape[1]):
            diff = a[:, k, None] - b[None, :, k]
            if metric == "cityblock" or (metric == "euclidean" and a.shape[1] == 1):
                term = xp.abs(diff)
            else:
                term = diff * diff
            out = term if out is None else out + term
        if metric == "euclidean" and a.shape[1] > 1:
            out = xp.sqrt(out)
        return out
    diff = a[:, None, :] - b[None, :, :]
    if metric == "cityblock":
        return xp.sum(xp.abs(diff), axis=2)
    sq = xp.sum(diff * diff, axis=2)
    return sq if metric == "sqeuclidean" else xp.sqrt(sq)


def _call_metric(xp: Namespace, metric: Callable[..., Array], a: Array, b: Array) -> Array:
    """``metric(a, b)``, checked: an (len(a), len(b)) array of the inputs' kind whose values,
    where they can be read, are finite and non-negative."""
    name = getattr(metric, "__name__", type(metric).__name__)
    try:
        out = metric(a, b)
    except Exception as err:
        raise ValueError(
            f"the callable label_metric {name} raised {type(err).__name__}: {err}"
        ) from err
    try:
        same = v.namespace(out) is xp
    except TypeError:
        same = False
    if not same:
        raise TypeError(
            f"the callable label_metric {name} must return an array of its inputs' kind "
            f"({type(a).__module__}.{type(a).__name__}); got {type(out).__module__}."
            f"{type(out).__name__}"
        )
    if tuple(out.shape) != (a.shape[0], b.shape[0]):
        raise ValueError(
            "a callable label_metric(a, b) must return an array of shape "
            f"({a.shape[0]}, {b.shape[0]}); got {tuple(out.shape)}"
        )
    v.check_label_distance_values(xp, out, f"the distances of label_metric {name}")
    return out


def _row_sq_norms(xp: Namespace, x: Array) -> Array:
    return xp.sum(x * x, axis=1)


def _as_2d(xp: Namespace, x: Array, name: str) -> Array:
    if x.ndim == 1:
        return xp.reshape(x, (x.shape[0], 1))
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 1-D or 2-D array; got shape {tuple(x.shape)}")
    return x


def _float_dtype(xp: Namespace, x: Array):
    if xp.isdtype(x.dtype, "real floating"):
        return xp.float32 if x.dtype not in (xp.float32, xp.float64) else x.dtype
    return xp.float64 if xp.isdtype(x.dtype, "integral") else xp.float32
