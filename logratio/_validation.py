"""Argument checking and namespace helpers shared by the core modules.

Every public function validates its arguments here, so that bad input fails early with
an error naming the argument and what was expected.  Value checks (indices in range,
non-negative distances) run only on concrete arrays: under a tracer (``jax.jit``) they
are skipped, since a traced value cannot be inspected.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import array_api_compat

__all__ = [
    "EMBEDDING_METRICS",
    "LABEL_METRICS",
    "REDUCTIONS",
    "TIES",
    "Array",
    "Namespace",
    "anchors_for",
    "as_array",
    "check_finite",
    "check_label_distance_values",
    "choice",
    "compute_dtype",
    "concrete_any",
    "embeddings_2d",
    "label_distances_for",
    "label_metric",
    "labels_for",
    "mask_for",
    "namespace",
    "non_negative_float",
    "optional_block_size",
    "positive_float",
]

Array = Any
Namespace = Any

REDUCTIONS = ("mean", "sum", "none")
TIES = ("include", "exclude")
EMBEDDING_METRICS = ("sqeuclidean", "euclidean", "cityblock")
LABEL_METRICS = ("euclidean", "sqeuclidean", "cityblock")


def namespace(*arrays: Array, name: str | None = None) -> Namespace:
    """The Array API namespace of ``arrays`` (``None`` entries ignored).

    With ``name`` (the argument's name), a non-array gives a TypeError that names it.
    """
    try:
        return array_api_compat.array_namespace(*[a for a in arrays if a is not None])
    except TypeError as err:
        if name is None:
            raise
        raise TypeError(
            f"{name} must be an array (NumPy, PyTorch, JAX, CuPy or any Array API array "
            f"of one namespace); {err}"
        ) from None


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """Check that ``value`` is one of ``allowed``; return it."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def label_metric(value: Any) -> str | Callable[..., Array]:
    """Check ``label_metric``: a known name or a callable."""
    if callable(value):
        return value
    if not isinstance(value, str) or value not in LABEL_METRICS:
        raise ValueError(
            f"label_metric must be one of {', '.join(map(repr, LABEL_METRICS))} or a callable "
            f"metric(a, b) -> (len(a), len(b)) such as logratio.periodic(360); got {value!r}"
        )
    return value


def positive_float(name: str, value: Any) -> float:
    """Check a strictly positive finite Python number (not a bool or a string)."""
    return _finite_float(name, value, positive=True)


def non_negative_float(name: str, value: Any) -> float:
    """Check a non-negative finite Python number (not a bool or a string)."""
    return _finite_float(name, value, positive=False)


def _finite_float(name: str, value: Any, *, positive: bool) -> float:
    kind = "positive" if positive else "non-negative"
    if isinstance(value, (bool, str)):
        raise TypeError(f"{name} must be a {kind} float; got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a {kind} float; got {value!r}") from None
    if not (out > 0 if positive else out >= 0) or out == float("inf"):
        raise ValueError(f"{name} must be a {kind} finite float; got {value!r}")
    return out


def optional_block_size(value: Any) -> int | None:
    """Check ``block_size``: ``None`` or a positive integer (NumPy integers too)."""
    if value is None:
        return None
    try:
        out = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        out = None
    if out is None or out < 1:
        raise ValueError(f"block_size must be None or a positive int; got {value!r}")
    return out


def compute_dtype(xp: Namespace, x: Array) -> Any:
    """The floating dtype the loss is computed in: float32 for half precision, else ``x.dtype``.

    Raises TypeError for non-floating ``x``.
    """
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"embeddings must be a real floating array; got dtype {x.dtype}")
    if x.dtype == xp.float64 or x.dtype == xp.float32:
        return x.dtype
    return xp.float32


def embeddings_2d(xp: Namespace, x: Array, name: str = "embeddings") -> Array:
    """Check a (batch, dim) array with dim ≥ 1."""
    if getattr(x, "ndim", None) != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (batch, dim); got shape {_shape(x)}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column (dim ≥ 1); got shape {_shape(x)}")
    return x


def as_array(
    xp: Namespace, x: Any, *, like: Array, dtype: Any = None, name: str = "array"
) -> Array:
    """Bring ``x`` (list, NumPy or any Array API array) into ``like``'s namespace and device."""
    dev = array_api_compat.device(like)
    try:
        same = array_api_compat.is_array_api_obj(x) and namespace(x) is xp
    except TypeError:
        same = False
    if same:
        if array_api_compat.device(x) != dev:
            x = array_api_compat.to_device(x, dev)
    else:
        try:
            x = xp.asarray(x, device=dev)
        except Exception as err:
            raise TypeError(
                f"{name} could not be converted to the embeddings' array type "
                f"({xp.__name__}): {err}"
            ) from err
    if dtype is not None and x.dtype != dtype:
        x = xp.astype(x, dtype)
    return x


def labels_for(xp: Namespace, labels: Any, batch: int, like: Array, dtype: Any) -> Array:
    """Check and convert ``labels`` of shape (B,) or (B, p) to a (B, p) floating array."""
    y = as_array(xp, labels, like=like, name="labels")
    if not xp.isdtype(y.dtype, ("real floating", "integral", "bool")):
        raise TypeError(f"labels must hold real numbers; got dtype {y.dtype}")
    if y.ndim not in (1, 2) or y.shape[0] != batch:
        raise ValueError(
            f"labels must have shape ({batch},) or ({batch}, p) to match embeddings; "
            f"got shape {_shape(y)}"
        )
    if y.ndim == 1:
        y = xp.reshape(y, (y.shape[0], 1))
    if y.dtype != dtype:
        y = xp.astype(y, dtype)
    if concrete_any(xp, ~xp.isfinite(y)):
        raise ValueError("labels must be finite (no NaN or inf)")
    return y


def label_distances_for(
    xp: Namespace, label_distances: Any, batch: int | tuple[int, int], like: Array, dtype: Any
) -> Array:
    """Check and convert a (B, B) label distance matrix (``batch`` an int), or a (Q, N) one
    between queries and a reference set (``batch = (Q, N)``)."""
    dl = as_array(xp, label_distances, like=like, dtype=dtype, name="label_distances")
    if isinstance(batch, int):
        if dl.ndim != 2 or dl.shape[0] != dl.shape[1]:
            raise ValueError(
                f"label_distances must be a square (B, B) array; got shape {_shape(dl)}"
            )
        batch = (batch, batch)
    if dl.ndim != 2 or tuple(dl.shape) != batch:
        raise ValueError(
            f"label_distances must have shape {batch} to match the embeddings; "
            f"got shape {_shape(dl)}"
        )
    check_label_distance_values(xp, dl, "label_distances")
    return dl


def check_label_distance_values(xp: Namespace, dl: Array, name: str) -> None:
    """Label distances must be finite and non-negative (checked where values are concrete)."""
    if concrete_any(xp, ~xp.isfinite(dl)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    if concrete_any(xp, dl < 0):
        raise ValueError(f"{name} must be non-negative")


def anchors_for(xp: Namespace, anchors: Any, batch: int, like: Array) -> Array | None:
    """Normalise ``anchors`` to a 1-D index array (``None`` means every row).

    Accepts an int, a sequence or array of ints, or a boolean mask of shape (B,).
    A boolean mask is turned into indices with ``nonzero``, which needs concrete values.
    """
    if anchors is None:
        return None
    if isinstance(anchors, bool):
        raise TypeError(
            "anchors must be None, an int, an index array or a boolean mask; got a bool"
        )
    if isinstance(anchors, int):
        if not -batch <= anchors < batch:
            raise ValueError(f"anchors={anchors} is out of range for a batch of {batch}")
        idx = xp.asarray([anchors % batch], device=array_api_compat.device(like))
        return idx
    a = as_array(xp, anchors, like=like, name="anchors")
    if a.ndim == 0:
        a = xp.reshape(a, (1,))
    if a.ndim != 1:
        raise ValueError(f"anchors must be 1-D (indices or a boolean mask); got shape {_shape(a)}")
    if a.shape[0] == 0 and not xp.isdtype(a.dtype, ("integral", "bool")):
        a = xp.arange(0, device=array_api_compat.device(like))  # an empty list: no anchor
    if xp.isdtype(a.dtype, "bool"):
        if a.shape[0] != batch:
            raise ValueError(
                f"a boolean anchors mask must have shape ({batch},); got shape {_shape(a)}"
            )
        try:
            return xp.nonzero(a)[0]
        except TypeError as err:  # a traced mask (jax.jit): nonzero needs concrete values
            raise TypeError(
                "a boolean anchors mask needs concrete values; under jax.jit pass anchor "
                f"indices instead (e.g. computed outside the jitted function): {err}"
            ) from None
    if not xp.isdtype(a.dtype, "integral"):
        raise TypeError(f"anchors must hold integers or booleans; got dtype {a.dtype}")
    if concrete_any(xp, (a < -batch) | (a >= batch)):
        raise ValueError(f"anchors hold indices out of range for a batch of {batch}")
    return xp.where(a < 0, a + batch, a)


def mask_for(xp: Namespace, mask: Any, batch: int | tuple[int, int], like: Array) -> Array | None:
    """Check a (B, B) boolean mask of allowed (anchor, neighbour) pairs ((Q, N) between
    queries and a reference set when ``batch = (Q, N)``)."""
    if mask is None:
        return None
    shape = (batch, batch) if isinstance(batch, int) else batch
    m = as_array(xp, mask, like=like, name="mask")
    if m.ndim != 2 or tuple(m.shape) != shape:
        raise ValueError(f"mask must have shape {shape}; got shape {_shape(m)}")
    if not xp.isdtype(m.dtype, "bool"):
        raise TypeError(f"mask must be a boolean array; got dtype {m.dtype}")
    return m


def concrete_any(xp: Namespace, cond: Array) -> bool:
    """``bool(any(cond))`` when the value is concrete; ``False`` under a tracer."""
    try:
        return bool(xp.any(cond))
    except TypeError:  # jax.errors.ConcretizationTypeError derives from TypeError
        return False


def _shape(x: Any) -> tuple[Any, ...] | str:
    shape = getattr(x, "shape", None)
    return tuple(shape) if shape is not None else type(x).__name__


def check_finite(xp: Namespace, x: Array, name: str, *, nonnegative: bool = True) -> None:
    """Raise ValueError on NaN, ±inf (or negative values); skipped under a tracer."""
    bad = ~xp.isfinite(x)
    if nonnegative:
        bad = bad | (x < 0)
    try:
        found = bool(xp.any(bad))
    except TypeError:  # a traced value cannot be inspected
        return
    if found:
        what = "finite and non-negative" if nonnegative else "finite"
        raise ValueError(f"{name} must be {what}")
