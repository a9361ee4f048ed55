"""The log-ratio loss as a formula of the engine (Kim et al., CVPR 2019, Eq. 4).

For an anchor ``a`` with neighbour set ``N`` (n = |N|), embedding distances ``D`` (squared, or
Euclidean with ``squared=False``) and label distances ``Δ``, the residuals are
``U_ab = log(D_ab + ε) − log(Δ_ab + ε)`` and the loss over every triplet of the anchor is

    S_a = Σ_{i<j ∈ N} (U_ai − U_aj)² = n · Σ_{i∈N} (U_ai − Ū_a)²

(docs/design.md §1.1): a row variance, so a block of r anchors costs O(r·n) beyond its
pairwise product.  The kernel is ``K_ab = 2 ∂S_a/∂‖f_a − f_b‖²`` (docs/design.md §1.2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .. import _validation as v
from .._validation import Array
from ..distances import direct_distances
from ..formula import Block, InPlace, PairKind, Terms, register
from ._groups import tie_groups
from ._pairs_of_block import counted

__all__ = ["LogRatio"]

Ties = Literal["include", "exclude"]
LabelMetric = Literal["euclidean", "sqeuclidean", "cityblock"]


@register
@dataclass(frozen=True)
class LogRatio:
    """The options of the log-ratio loss, validated on creation (docs/design.md §1).

    Attributes:
      squared: squared Euclidean embedding distances (the paper) or Euclidean (the authors'
        released code).
      label_metric: ``"euclidean"``, ``"sqeuclidean"``, ``"cityblock"`` or a callable
        ``metric(labels_a, labels_b) -> (len(labels_a), len(labels_b))``.
      eps: ε, added to both distances before the log.
      root_eps: with ``squared=False``, distances ``sqrt(‖f_a − f_b‖² + root_eps)`` for
        a ≠ b (docs/design.md §6.1); must be 0 when ``squared``.
      ties: ``"include"`` counts neighbour pairs of equal label distance once;
        ``"exclude"`` drops them (the paper's strict ``Δ_ai < Δ_aj``).
    """

    name: ClassVar[str] = "log_ratio"
    pairs: ClassVar[PairKind] = "sqeuclidean"

    squared: bool = True
    label_metric: LabelMetric | Callable[..., Any] = "euclidean"
    eps: float = 1e-6
    root_eps: float = 0.0
    ties: Ties = "include"

    def __post_init__(self) -> None:
        if not isinstance(self.squared, bool):
            raise TypeError(f"squared must be a bool; got {self.squared!r}")
        _set(self, "label_metric", v.label_metric(self.label_metric))
        _set(self, "eps", v.positive_float("eps", self.eps))
        _set(self, "root_eps", v.non_negative_float("root_eps", self.root_eps))
        if self.squared and self.root_eps != 0:
            raise ValueError(
                "root_eps applies to plain Euclidean distances: pass squared=False with "
                f"root_eps={self.root_eps!r} (squared distances have no square root)"
            )
        v.choice("ties", self.ties, v.TIES)

    def values(self) -> tuple[float, ...]:
        return (self.eps, self.root_eps)

    def canonical(self) -> LogRatio:
        # root_eps > 0 changes the formula (a distance for copies), not only a value
        return dataclasses.replace(self, eps=1e-6, root_eps=1.0 if self.root_eps > 0 else 0.0)

    def terms(self, xp: Any, blk: Block, want_kernel: bool) -> Terms:
        return _terms(xp, self, blk, want_kernel)

    def in_place(self, xp: Any, mask: Any) -> InPlace | None:
        """NumPy, CuPy and PyTorch outside autograd, without a mask and with ties included: in place
        (:mod:`logratio.formulas._log_ratio_inplace`)."""
        from ._log_ratio_inplace import array_module, terms_in_place

        if mask is None and self.ties == "include" and array_module(xp) is not None:
            return lambda xp, blk, want_kernel: terms_in_place(xp, self, blk, want_kernel)
        return None


def _set(obj: Any, name: str, value: Any) -> None:
    """Store a normalised value on the frozen instance (e.g. ``eps=1`` becomes ``1.0``)."""
    object.__setattr__(obj, name, value)


def _terms(xp: Any, opts: LogRatio, blk: Block, want_kernel: bool) -> Terms:
    """Loss terms (and ``K``) of one block of anchors against every neighbour: O(r·n·p).

    Every (r, n) array is one pass over memory, so the passes are counted: one mask ``keep``
    marks the pairs that count and are not copies, and the residual is zero off ``valid``
    without masking it (``D`` and the label distance both read 0 there).
    """
    eps, root_eps = blk.values
    # D_ab, exact for the pairs near the Gram identity's noise (logratio._near); pairs at
    # D = 0 (copies), the anchor itself and masked-out pairs add no gradient (∇D =
    # 2 (f_a − f_b) = 0 for copies, whereas K·(f_a − f_b) evaluated as rowsum(K)·f_a − K·f
    # would leave noise u·K_ab·‖f‖)
    sq: Array = blk.pairs  # set by the engine before the formula runs
    # valid: the pairs of an anchor with any other row (and allowed by the mask); a
    # reference set (docs/design.md §1) never holds the anchor itself
    valid = counted(xp, blk, sq.shape)
    above = sq > 0  # not a copy (logratio._near sets copies to exactly 0)
    keep = above & valid
    if opts.squared:
        dist = None
        dpe = xp.where(keep, sq, 0.0) + eps  # D + ε
    elif opts.root_eps == 0:
        # mask the input of sqrt: autodiff through sqrt(0) would give inf · 0 = NaN
        dist = xp.where(keep, xp.sqrt(xp.where(keep, sq, 1.0)), 0.0)
        dpe = dist + eps
    else:
        # sqrt(‖f_a − f_b‖² + root_eps) on every pair of distinct rows (docs/design.md §6.1);
        # a copy has distance sqrt(root_eps)
        dist = xp.where(valid, xp.sqrt(xp.where(keep, sq, 0.0) + root_eps), 0.0)
        dpe = dist + eps
    del sq  # (r, n) temporaries are released as soon as they are used up: peak memory
    if blk.label_distances is not None:
        lab = xp.where(valid, blk.label_distances, 0.0)
    else:
        lab = direct_distances(xp, blk.labels, blk.neighbour_labels, opts.label_metric)
        if lab.dtype != dpe.dtype:
            lab = xp.astype(lab, dpe.dtype)
        if blk.mask is not None or callable(opts.label_metric):
            lab = xp.where(valid, lab, 0.0)
        # else: named metrics give Δ_aa = 0 exactly, the only pair off ``valid``
    # U = log((D + ε) / (Δ + ε)): one log; zero off valid, where D = Δ = 0
    u = xp.log(dpe / (lab + eps))
    if blk.mask is None:
        others = blk.cols.shape[0] - 1 if blk.dense else blk.cols.shape[0]
        n = xp.zeros_like(blk.near_row) + max(others, 0)
    else:
        n = xp.sum(xp.astype(valid, u.dtype), axis=1)
    mean = xp.sum(u, axis=1) / xp.where(n > 0, n, 1.0)
    centred = xp.where(valid, u - mean[:, None], 0.0)  # U_ab − Ū_a on the counted pairs
    del u
    row_loss = n * _sum_squares(xp, centred)
    row_count = n * (n - 1) / 2
    # ∂S_a/∂U_ab = 2 c_a g_ab
    g, c = centred, n
    if opts.ties == "exclude":
        zero = xp.zeros_like(centred)
        group_n, group_centred = tie_groups(xp, lab, centred, valid, blk.device)
        # pairs across tie groups only, as a sum of non-negative terms rather than the
        # difference n·Σ(U − Ū)² − Σ_g n_g·Σ_g(U − Ū_g)², which cancels when most pairs tie:
        # Σ_g (n − n_g)·Σ_g (U − Ū_g)² + n·Σ_g n_g·(Ū_g − Ū)²   (docs/design.md §1.1)
        # Ū_g − Ū, zero off valid; exactly zero when every pair of the row ties (no triplet)
        between = xp.where(group_n < n[:, None], centred - group_centred, zero)
        row_loss = xp.sum(
            (n[:, None] - group_n) * group_centred * group_centred + n[:, None] * between * between,
            axis=1,
        )
        row_count = row_count - xp.sum(xp.where(valid, (group_n - 1) / 2, zero), axis=1)
        if want_kernel:
            g = (n[:, None] - group_n) * group_centred + n[:, None] * between
            c = xp.ones_like(n)
    if not want_kernel:
        return Terms(row_loss, row_count, None)
    # K_ab = 2 ∂S_a/∂(squared distance) with the factor 2 of ∂‖f_a − f_b‖²/∂f_a folded in:
    # 4 c_a g_ab / (D + ε) for squared distances, 2 c_a g_ab / ((D + ε) · D) for Euclidean
    # (also with root_eps: ∂D/∂f_a = (f_a − f_b) / D)
    # ``above & valid`` again rather than ``keep``: one more pass when eager, but inductor then
    # recomputes the mask inside its second fused loop instead of storing a boolean (r, n)
    # buffer after the first and reading it back, which measured 6x slower per block
    # (docs/design.md §4.1)
    keep = above & valid
    if opts.squared:
        kernel = xp.where(keep, ((4 * c)[:, None] * g) / dpe, 0.0)
    else:
        kernel = xp.where(keep, ((2 * c)[:, None] * g) / xp.where(keep, dpe * dist, 1.0), 0.0)
    return Terms(row_loss, row_count, kernel)


def _sum_squares(xp: Any, x: Any) -> Any:
    """``Σ_b x_ab²`` per row; ``linalg.vecdot`` where the namespace has it (no temporary)."""
    linalg = getattr(xp, "linalg", None)
    if linalg is not None and hasattr(linalg, "vecdot"):
        return linalg.vecdot(x, x, axis=-1)
    return xp.sum(x * x, axis=1)
