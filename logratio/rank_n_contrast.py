"""Rank-N-Contrast (Zha et al., *Rank-N-Contrast: Learning Continuous Representations for
Regression*, NeurIPS 2023): the public functions.

With ``s_ij = −‖z_i − z_j‖ / τ`` and label distances ``Δ``, an anchor ``i`` and a positive
``k ≠ i`` contribute ``ℓ_ik = −s_ik + log Σ_{j≠i, Δ_ij ≥ Δ_ik} exp(s_ij)``, and the loss is the
mean over the pairs.  It runs on the engine (:mod:`logratio.engine`, formula
:class:`~logratio.formulas.rank_n_contrast.RankNContrast`): each row sorted by label distance,
O(B² (d + log B)) time and O(block · B) memory, where the released loop takes Θ(B³) of both
(docs/design.md §9).
"""

from __future__ import annotations

from typing import Any

from . import engine
from ._validation import Array
from .formulas.rank_n_contrast import RankNContrast

__all__ = ["rank_n_contrast_loss", "rank_n_contrast_loss_and_grad"]


def rank_n_contrast_loss(
    embeddings: Array,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    temperature: float = 2.0,
    label_metric: Any = "cityblock",
    reduction: str = "mean",
    block_size: int | None = None,
    compile: bool | None = None,
    axis_name: str | None = None,
) -> Array:
    """Rank-N-Contrast over the batch (Zha et al., NeurIPS 2023, Eq. 2).

    ``L = mean over pairs (i, k ≠ i) of −log( exp(s_ik) / Σ_{j≠i, Δ_ij ≥ Δ_ik} exp(s_ij) )``
    with ``s_ij = −‖z_i − z_j‖₂ / τ``; the sum includes ``k`` and every ``j`` tied with it.

    Args:
      embeddings: (B, d) floating array (NumPy, PyTorch, JAX, CuPy or any Array API array).
        A caller with two views concatenates them and repeats the labels, as the released
        code does: ``rank_n_contrast_loss(concat([v1, v2]), concat([y, y]))`` equals its
        ``RnCLoss`` on ``stack([v1, v2], 1)`` (tests/test_rank_n_contrast.py).
      labels: (B,) or (B, p) continuous labels; ``label_distances`` (B, B) instead.
      anchors, mask: as in :func:`logratio.log_ratio_loss`; a masked pair is neither a
        positive nor in any denominator of its anchor.
      temperature: τ (the paper: 2).
      label_metric: ``"cityblock"`` (L1, the paper), ``"euclidean"``, ``"sqeuclidean"`` or a
        callable.
      reduction: ``"mean"`` over the (anchor, positive) pairs, ``"sum"``, or ``"none"`` (one
        sum per anchor).
      block_size, compile, axis_name: as in :func:`logratio.log_ratio_loss`.

    Returns:
      The loss; under PyTorch and JAX differentiable through the closed-form gradient.

    Cost: O(B²(d + p + log B)) time, O(block_size · B) memory.
    """
    formula = RankNContrast(temperature, label_metric)
    return engine.loss(
        formula, embeddings, labels, label_distances=label_distances, anchors=anchors,
        mask=mask, reduction=reduction, block_size=block_size, compile=compile,
        axis_name=axis_name,
    )  # fmt: skip


def rank_n_contrast_loss_and_grad(
    embeddings: Array,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    temperature: float = 2.0,
    label_metric: Any = "cityblock",
    reduction: str = "mean",
    block_size: int | None = None,
    compile: bool | None = None,
    axis_name: str | None = None,
) -> tuple[Array, Array]:
    """:func:`rank_n_contrast_loss` and its closed-form gradient ``∂L/∂embeddings`` (for
    ``"none"``: of the sum of the per-anchor losses), without an autograd graph."""
    formula = RankNContrast(temperature, label_metric)
    return engine.loss_and_grad(
        formula, embeddings, labels, label_distances=label_distances, anchors=anchors,
        mask=mask, reduction=reduction, block_size=block_size, compile=compile,
        axis_name=axis_name,
    )  # fmt: skip
