"""y-aware InfoNCE as a formula of the engine (Dufumier et al., MICCAI 2021).

"Contrastive learning with continuous proxy meta-data for 3D MRI classification": rows are
L2-normalised and compared by cosine similarity, ``s_ij = ⟨ẑ_i, ẑ_j⟩ / τ`` for ``j ≠ i``, and
every other sample is a positive with the weight of a kernel on the labels,
``w_ij = exp(−d_ij / (2σ²))`` (``d`` the squared Euclidean label distance by default: the RBF
kernel), normalised per anchor, ``ŵ_ij = w_ij / Σ_k w_ik``.  The loss of an anchor is

    S_i = −Σ_j ŵ_ij log softmax_{j ≠ i}(s_i·)_j

and the loss is the mean over anchors (docs/design.md §8).  A block of r anchors costs three
row reductions over its (r, n) similarities beyond the product: O(r·n) time and memory.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import array_api_compat

from .. import _validation as v
from ..distances import direct_distances
from ..formula import Block, PairKind, Terms, register
from ._pairs_of_block import counted, label_distances

__all__ = ["WEIGHTS", "YAwareInfoNCE"]

#: ``weights=``: the paper's per-anchor normalisation, or the released code's
WEIGHTS = ("paper", "released")


@register
@dataclass(frozen=True)
class YAwareInfoNCE:
    """The options of y-aware InfoNCE, validated on creation.

    Attributes:
      temperature: τ > 0, dividing the cosine similarities (the paper: 0.1).
      sigma: σ > 0, the width of the label kernel ``exp(−d / (2σ²))``.
      label_metric: the label distance ``d`` in the kernel: ``"sqeuclidean"`` (the RBF
        kernel of the paper), ``"euclidean"``, ``"cityblock"`` or a callable.
      weights: ``"paper"`` normalises each anchor's weights by its own sum,
        ``ŵ_ij = w_ij / Σ_k w_ik``; ``"released"`` as the authors' code does, by the sum of
        the neighbour's row, ``ŵ_ij = w_ij / Σ_{k≠j} w_jk`` over the whole batch, a mask
        notwithstanding (the released code has none; docs/design.md §8).
    """

    name: ClassVar[str] = "y_aware_infonce"
    pairs: ClassVar[PairKind] = "cosine"
    #: PyTorch compiles its block kernel unless ``compile=False``: the eager passes measured
    #: 1.5× the compiled kernel at B = 4096, 3.9× torch.cdist (docs/design.md §8)
    compile_by_default: ClassVar[bool] = True

    temperature: float = 0.1
    sigma: float = 1.0
    label_metric: str | Callable[..., Any] = "sqeuclidean"
    weights: str = "paper"

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperature", v.positive_float("temperature", self.temperature))
        object.__setattr__(self, "sigma", v.positive_float("sigma", self.sigma))
        if not (1e-150 <= self.sigma <= 1e150 and self.temperature >= 1e-300):
            raise ValueError(
                "sigma must lie in [1e-150, 1e150] and temperature be at least 1e-300 (the "
                f"kernel's 1/(2σ²) and 1/τ must be finite); got sigma={self.sigma!r}, "
                f"temperature={self.temperature!r}"
            )
        object.__setattr__(self, "label_metric", v.label_metric(self.label_metric))
        v.choice("weights", self.weights, WEIGHTS)

    def values(self) -> tuple[float, ...]:
        return (1.0 / self.temperature, 1.0 / (2.0 * self.sigma**2))

    def canonical(self) -> YAwareInfoNCE:
        return dataclasses.replace(self, temperature=1.0, sigma=1.0)

    def in_place(self, xp: Any, mask: Any) -> None:
        return None

    def columns(
        self, xp: Any, labels: Any, label_distances: Any, neighbours: Any, block_size: int
    ) -> Any:
        """``weights="released"``: ``log Σ_{k≠j} w_jk`` for every row ``j`` of the batch, a
        log-sum-exp over its label pairs, ``block_size`` rows at a time (O(block · B))."""
        if self.weights != "released":
            return None
        if neighbours is not None:
            raise ValueError('weights="released" applies to the loss of one batch')
        source = labels if labels is not None else label_distances
        batch = source.shape[0]
        gamma = 1.0 / (2.0 * self.sigma**2)
        dev = array_api_compat.device(source)
        parts = []
        for s in range(0, batch, max(block_size, 1)):
            e = min(s + max(block_size, 1), batch)
            if labels is not None:
                d = direct_distances(xp, labels[s:e, ...], labels, self.label_metric)
            else:
                d = label_distances[s:e, ...]
            others = xp.arange(s, e, device=dev)[:, None] != xp.arange(batch, device=dev)[None, :]
            parts.append(_log_sum_exp(xp, -gamma * d, others))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else xp.concat(parts)

    def terms(self, xp: Any, blk: Block, want_kernel: bool) -> Terms:
        return _terms(xp, self, blk, want_kernel)


def _terms(xp: Any, opts: YAwareInfoNCE, blk: Block, want_kernel: bool) -> Terms:
    """``S_i``, ``T_i = 1`` for an anchor with a neighbour (else 0), and
    ``K_ij = ∂S_i/∂P_ij = (p_ij Σ_k ŵ_ik − ŵ_ij) / τ = (p_ij − ŵ_ij) / τ`` with ``p`` the
    softmax of the similarities (both ``p`` and ``ŵ`` are zero on a row without
    neighbours).  Both softmaxes subtract their row's maximum over the counted pairs, so
    neither underflows to an empty row."""
    inv_tau, gamma = blk.values
    pairs: Any = blk.pairs
    valid = counted(xp, blk, pairs.shape)
    low = -math.inf
    # log-softmax of the similarities: the pairs that do not count enter as −inf (exp: 0)
    sim = pairs * inv_tau
    top = _row_top(xp, xp.where(valid, sim, low))
    centred = sim - top[:, None]
    e_sim = xp.exp(xp.where(valid, centred, low))
    z_sim = xp.sum(e_sim, axis=1)
    log_z = xp.log(xp.where(z_sim > 0, z_sim, xp.ones_like(z_sim)))
    # the weights: an RBF kernel of the label distances, normalised per anchor (the paper)
    # or by the neighbour's row sum (released)
    lab = label_distances(xp, blk, opts.label_metric, sim.dtype)
    kernel_log = xp.where(valid, -gamma * lab, low)
    if blk.columns is None:
        e_w = xp.exp(kernel_log - _row_top(xp, kernel_log)[:, None])
        z_w = xp.sum(e_w, axis=1)
        w = e_w * (1 / xp.where(z_w > 0, z_w, xp.ones_like(z_w)))[:, None]
    else:  # ≤ 1: the neighbour's row sum holds w_ij
        cols = xp.where(xp.isfinite(blk.columns), blk.columns, xp.zeros_like(blk.columns))
        w = xp.where(valid, xp.exp(kernel_log - cols[None, :]), 0.0)  # no −inf − −inf
    w_sum = xp.sum(w, axis=1)
    # S_i = −Σ_j ŵ_ij (s_ij − top_i − log Z_i); w is 0 where a pair does not count
    row_loss = log_z * w_sum - xp.sum(w * centred, axis=1)
    row_count = xp.astype(xp.any(valid, axis=1), sim.dtype)
    if not want_kernel:
        return Terms(row_loss, row_count, None)
    p = e_sim * (1 / xp.where(z_sim > 0, z_sim, xp.ones_like(z_sim)))[:, None]
    # Σ_k ŵ_ik is 1 with the paper's weights (0 without neighbours), any value when released
    kernel = (w_sum[:, None] * p - w) * inv_tau
    return Terms(row_loss, row_count, kernel)


def _row_top(xp: Any, x: Any) -> Any:
    """Each row's maximum, 0 for a row without a finite one (so that ``x − top`` stays
    ``−inf`` where ``x`` is, and finite elsewhere)."""
    if x.shape[1] == 0:
        return xp.zeros((x.shape[0],), dtype=x.dtype, device=array_api_compat.device(x))
    top = xp.max(x, axis=1)
    return xp.where(xp.isfinite(top), top, xp.zeros_like(top))


def _log_sum_exp(xp: Any, x: Any, valid: Any) -> Any:
    """``log Σ_{k valid} exp(x_ik)`` per row (−inf for a row without a valid entry)."""
    low = xp.full_like(x, -math.inf)
    top = xp.max(xp.where(valid, x, low), axis=1) if x.shape[1] > 0 else xp.sum(low, axis=1)
    safe = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    total = xp.sum(xp.where(valid, xp.exp(x - safe[:, None]), 0.0), axis=1)
    return safe + xp.log(total)
