"""y-aware InfoNCE (Dufumier et al., *Contrastive learning with continuous proxy meta-data
for 3D MRI classification*, MICCAI 2021): the public functions.

For L2-normalised rows, ``s_ij = ⟨ẑ_i, ẑ_j⟩ / τ`` (j ≠ i) and label-kernel weights
``ŵ_ij = w_ij / Σ_k w_ik`` with ``w_ij = exp(−‖y_i − y_j‖² / (2σ²))``, the loss of an anchor is
``S_i = −Σ_j ŵ_ij log softmax_{j≠i}(s_i·)_j`` and the loss is the mean over anchors.  It runs
on the engine (:mod:`logratio.engine`, formula
:class:`~logratio.formulas.y_aware.YAwareInfoNCE`): closed-form gradient, every framework,
O(block · B) memory (docs/design.md §8).
"""

from __future__ import annotations

from typing import Any

from . import engine
from ._validation import Array
from .formulas.y_aware import YAwareInfoNCE

__all__ = ["y_aware_infonce_loss", "y_aware_infonce_loss_and_grad"]


def y_aware_infonce_loss(
    embeddings: Array,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    temperature: float = 0.1,
    sigma: float = 1.0,
    label_metric: Any = "sqeuclidean",
    weights: str = "paper",
    reduction: str = "mean",
    block_size: int | None = None,
    compile: bool | None = None,
    axis_name: str | None = None,
) -> Array:
    """y-aware InfoNCE over the batch (Dufumier et al., MICCAI 2021, Eq. 3).

    ``L = mean_i −Σ_{j≠i} ŵ_ij log( exp(s_ij) / Σ_{k≠i} exp(s_ik) )`` with
    ``s = cos(z_i, z_j) / τ`` and ``ŵ_ij = w_ij / Σ_k w_ik``, ``w_ij = exp(−d_ij / (2σ²))``.

    Args:
      embeddings: (B, d) floating array (NumPy, PyTorch, JAX, CuPy or any Array API array);
        a caller with two views concatenates them and repeats the labels.  Rows are
        L2-normalised by the loss; a zero row has a zero gradient.
      labels: (B,) or (B, p) continuous labels (the proxy meta-data, e.g. age).
      label_distances: (B, B) label distances ``d`` instead of labels.
      anchors, mask: as in :func:`logratio.log_ratio_loss`; masked pairs leave both the
        softmax and the weights.
      temperature: τ (the paper: 0.1).
      sigma: σ of the label kernel (the paper: 1 to 5 years of age).
      label_metric: ``d``: ``"sqeuclidean"`` (the paper's RBF kernel), ``"euclidean"``,
        ``"cityblock"`` or a callable.
      weights: ``"paper"`` (``ŵ_ij = w_ij / Σ_k w_ik``) or ``"released"``, the normalisation
        of the authors' ``GeneralizedSupervisedNTXenLoss``: ``ŵ_ij = w_ij / Σ_{k≠j} w_jk``.
        Their loss, for two views ``z1``, ``z2`` (N, d) of N samples, is exactly
        ``y_aware_infonce_loss(concat([z1, z2]), concat([y, y]), weights="released",
        reduction="sum") / N`` (docs/design.md §8).
      reduction: ``"mean"`` over anchors (with at least one neighbour), ``"sum"``, or
        ``"none"`` (one loss per anchor).
      block_size, compile, axis_name: as in :func:`logratio.log_ratio_loss`.

    Returns:
      The loss; under PyTorch and JAX differentiable through the closed-form gradient.

    Cost: O(B²(d + p)) time, O(block_size · B) memory.
    """
    formula = YAwareInfoNCE(temperature, sigma, label_metric, weights)
    return engine.loss(
        formula, embeddings, labels, label_distances=label_distances, anchors=anchors,
        mask=mask, reduction=reduction, block_size=block_size, compile=compile,
        axis_name=axis_name,
    )  # fmt: skip


def y_aware_infonce_loss_and_grad(
    embeddings: Array,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    temperature: float = 0.1,
    sigma: float = 1.0,
    label_metric: Any = "sqeuclidean",
    weights: str = "paper",
    reduction: str = "mean",
    block_size: int | None = None,
    compile: bool | None = None,
    axis_name: str | None = None,
) -> tuple[Array, Array]:
    """:func:`y_aware_infonce_loss` and its closed-form gradient ``∂L/∂embeddings`` (for
    ``"none"``: of the sum of the per-anchor losses), without an autograd graph."""
    formula = YAwareInfoNCE(temperature, sigma, label_metric, weights)
    return engine.loss_and_grad(
        formula, embeddings, labels, label_distances=label_distances, anchors=anchors,
        mask=mask, reduction=reduction, block_size=block_size, compile=compile,
        axis_name=axis_name,
    )  # fmt: skip
