"""Rank-N-Contrast as a formula of the engine (Zha et al., NeurIPS 2023).

"Rank-N-Contrast: Learning Continuous Representations for Regression".  With similarities
``s_ij = −‖z_i − z_j‖ / τ`` and label distances ``Δ`` (L1 by default), every anchor ``i`` and
positive ``k ≠ i`` contribute

    ℓ_ik = −s_ik + log Σ_{j ≠ i, Δ_ij ≥ Δ_ik} exp(s_ij)

(the sum includes ``k`` and its ties), and the loss is the mean over the pairs.  Sorted by
label distance, a row's denominators are suffix log-sum-exps taken from the start of each
tie group, and the gradient with respect to ``s`` is a prefix sum over the same order
(docs/design.md §9): O(r·n·log n) per block of r anchors, where the released loop is
O(n³) in time and memory.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import array_api_compat

from .. import _validation as v
from .._validation import Array
from ..formula import Block, PairKind, Terms, register
from ._cumulative import cumulative_logsumexp, inverse_permutation, is_library, running_max
from ._pairs_of_block import counted, label_distances

__all__ = ["RankNContrast"]


@register
@dataclass(frozen=True)
class RankNContrast:
    """The options of Rank-N-Contrast, validated on creation.

    Attributes:
      temperature: τ > 0 (the paper: 2).
      label_metric: the label distance: ``"cityblock"`` (L1, the paper), ``"euclidean"``,
        ``"sqeuclidean"`` or a callable.
    """

    name: ClassVar[str] = "rank_n_contrast"
    pairs: ClassVar[PairKind] = "sqeuclidean"
    #: the default block's rows are divided by this: its sort keeps about four times the
    #: (r, n) temporaries of the log-ratio loss (indices, float64 scans), docs/design.md §9
    block_weight: ClassVar[int] = 4

    temperature: float = 2.0
    label_metric: str | Callable[..., Any] = "cityblock"

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperature", v.positive_float("temperature", self.temperature))
        if self.temperature < 1e-300:
            raise ValueError(f"temperature must be at least 1e-300; got {self.temperature!r}")
        object.__setattr__(self, "label_metric", v.label_metric(self.label_metric))

    def values(self) -> tuple[float, ...]:
        return (1.0 / self.temperature,)

    def canonical(self) -> RankNContrast:
        return dataclasses.replace(self, temperature=1.0)

    def in_place(self, xp: Any, mask: Any) -> None:
        return None

    def terms(self, xp: Any, blk: Block, want_kernel: bool) -> Terms:
        return _terms(xp, self, blk, want_kernel)


def _along(xp: Any, x: Array, index: Array) -> Array:
    """``x[i, index[i, q]]`` for every row ``i`` (``take_along_axis``, or a flat ``take``)."""
    if is_library(xp, "torch"):
        return x.gather(1, index)  # array-api-compat's version wraps negative indices first
    if hasattr(xp, "take_along_axis"):
        return xp.take_along_axis(x, index, axis=1)
    r, n = index.shape
    rows = xp.arange(r, dtype=index.dtype, device=array_api_compat.device(index))
    rows = rows[:, None] * x.shape[1]
    flat = xp.reshape(index + rows, (-1,))
    return xp.reshape(xp.take(xp.reshape(x, (-1,)), flat), (r, n))


def _row_order(xp: Any, key: Array, labels: Array | None) -> Array:
    """Each row's stable argsort of ``key``.  With scalar labels the columns are first put in
    label order: every row is then V-shaped around its anchor, two runs that an adaptive
    sort merges in about O(n) (docs/design.md §9)."""
    if labels is None or labels.shape[1] != 1 or key.shape[1] < 2:
        return xp.argsort(key, axis=1, stable=True)
    by_label = xp.argsort(labels[:, 0], stable=True)
    in_order = xp.take(key, by_label, axis=1)
    order = xp.argsort(in_order, axis=1, stable=True)
    return xp.reshape(xp.take(by_label, xp.reshape(order, (-1,))), order.shape)


def _terms(xp: Any, opts: RankNContrast, blk: Block, want_kernel: bool) -> Terms:
    (inv_tau,) = blk.values
    sq: Array = blk.pairs
    r, n = sq.shape
    valid = counted(xp, blk, sq.shape)
    keep = (sq > 0) & valid  # copies (distance 0) count, but add no gradient
    dist = xp.where(keep, xp.sqrt(xp.where(keep, sq, 1.0)), 0.0)
    sim = -dist * inv_tau
    lab = label_distances(xp, blk, opts.label_metric, sim.dtype)
    count = xp.sum(xp.astype(valid, sim.dtype), axis=1)
    if n == 0 or r == 0:
        zero = xp.zeros_like(count)
        return Terms(zero, count, xp.zeros_like(sim) if want_kernel else None)
    # each row sorted by label distance, the pairs that do not count last
    key = xp.where(valid, lab, xp.full_like(lab, math.inf))
    order = _row_order(xp, key, blk.neighbour_labels)
    key_s = _along(xp, key, order)
    sim_s = _along(xp, sim, order)
    valid_s = _along(xp, valid, order)
    # tie groups: first and last position of each entry's group (running maxima of the
    # group boundaries' positions, forward and backward)
    edge = xp.ones((r, 1), dtype=xp.bool, device=blk.device)
    differs = key_s[:, 1:] != key_s[:, :-1]
    idx = xp.astype(xp.broadcast_to(xp.arange(n, device=blk.device)[None, :], (r, n)), order.dtype)
    zero = xp.zeros_like(idx)
    first = running_max(xp, xp.where(xp.concat([edge, differs], axis=1), idx, zero))
    ends = xp.flip(xp.concat([differs, edge], axis=1), axis=1)
    last = (n - 1) - xp.flip(running_max(xp, xp.where(ends, idx, zero)), axis=1)
    # denominators: the suffix log-sum-exp from the start of k's group
    suffix = cumulative_logsumexp(xp, sim_s, valid_s, reverse=True)
    denom = xp.where(valid_s, _along(xp, suffix, first), 0.0)
    row_loss = xp.sum(denom - sim_s, axis=1)
    if not want_kernel:
        return Terms(row_loss, count, None)
    # ∂S/∂s_j = −1 + Σ_{k: Δ_k ≤ Δ_j} exp(s_j − D_k): a prefix log-sum-exp of −D up to the
    # end of j's group
    upto = _along(xp, cumulative_logsumexp(xp, -denom, valid_s, reverse=False), last)
    # exp of 0 where a pair does not count: no overflow, no 0·inf in a double backward
    grad_s = xp.where(valid_s, xp.exp(xp.where(valid_s, sim_s + upto, 0.0)) - 1.0, 0.0)
    grad = _along(xp, grad_s, inverse_permutation(xp, order))
    # K = 2 ∂S/∂‖f_i − f_j‖² = 2 · ∂S/∂s · (−1 / (2 τ D)): zero for copies
    kernel = xp.where(keep, -grad * inv_tau / xp.where(keep, dist, 1.0), 0.0)
    return Terms(row_loss, count, kernel)
