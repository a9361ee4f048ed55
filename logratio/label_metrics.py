"""Built-in label metrics that are not Minkowski distances: angles on the circle.

The paper's labels are points in a vector space (Kim et al., CVPR 2019, Sec. 4); labels
such as a head pose or a wind direction live on a circle instead, where 350° is 10° away
from 0°.  :func:`periodic` builds that metric as an object that every ``label_metric``
argument accepts (:func:`logratio.log_ratio_loss`, :func:`logratio.knn_table`,
:class:`logratio.DenseBatchSampler`, :mod:`logratio.metrics`): it is a callable
``metric(a, b) -> (len(a), len(b))`` on any Array API namespace, and :func:`knn_table`
recognises it, so that its fast paths handle the wrap-around (docs/design.md §2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import array_api_compat

__all__ = ["PeriodicMetric", "periodic"]


@dataclass(frozen=True)
class PeriodicMetric:
    """Distance on the circle of circumference ``period``, column by column.

    For one label column the distance of ``a`` and ``b`` is ``min(r, period − r)`` with
    ``r = |a − b| mod period``, in ``[0, period / 2]``; labels need not lie in
    ``[0, period)``.  With several columns every column is an angle of the same period
    (a point on a torus), and the per-column distances are combined as a Euclidean norm
    ``sqrt(Σ_c d_c²)`` — the flat-torus distance.  Mixing periodic and linear columns is
    not built in (pass your own callable).

    Frozen, hence hashable and picklable; compares equal to another with the same period.
    """

    period: float = 360.0

    def __post_init__(self) -> None:
        try:
            value = float(self.period)
        except (TypeError, ValueError):
            raise TypeError(f"period must be a positive float; got {self.period!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"period must be a positive finite float; got {self.period!r}")
        object.__setattr__(self, "period", value)

    def __call__(self, a: Any, b: Any) -> Any:
        """(len(a), len(b)) distances between the rows of ``a`` (n, p) and ``b`` (m, p)."""
        xp = array_api_compat.array_namespace(a, b)
        if a.ndim == 1:
            a = xp.reshape(a, (a.shape[0], 1))
        if b.ndim == 1:
            b = xp.reshape(b, (b.shape[0], 1))
        return self.paired(a[:, None, :], b[None, :, :])

    def paired(self, a: Any, b: Any) -> Any:
        """Distances between matching rows of broadcastable ``a`` (..., p) and ``b`` (..., p).

        The same arithmetic as :meth:`__call__`, element by element, so both give bitwise
        equal values for the same pair of labels.
        """
        xp = array_api_compat.array_namespace(a, b)
        if not xp.isdtype(a.dtype, "real floating"):
            a = xp.astype(a, xp.float64)
        if not xp.isdtype(b.dtype, "real floating"):
            b = xp.astype(b, xp.float64)
        period = self.period
        out = None
        for c in range(a.shape[-1]):
            r = xp.abs(a[..., c] - b[..., c]) % period
            d = xp.minimum(r, period - r)
            if a.shape[-1] == 1:
                return d
            out = d * d if out is None else out + d * d
        if out is None:  # no columns: every pair at distance 0
            shape = tuple(max(x, y) for x, y in zip(a.shape[:-1], b.shape[:-1], strict=True))
            return xp.zeros(shape, dtype=a.dtype, device=array_api_compat.device(a))
        return xp.sqrt(out)

    def __repr__(self) -> str:
        return f"periodic(period={self.period!r})"


def periodic(period: float = 360.0) -> PeriodicMetric:
    """The label metric of angles: distance on a circle of circumference ``period``.

    ``periodic(360.0)`` for degrees, ``periodic(2 * math.pi)`` for radians,
    ``periodic(24.0)`` for the hour of the day.  Several label columns are combined as a
    Euclidean norm of the per-column circle distances (see :class:`PeriodicMetric`).
    :func:`logratio.knn_table` finds its neighbours with a sort (one column) or a periodic
    KD-tree (several), as for the built-in metrics.
    """
    return PeriodicMetric(period)
