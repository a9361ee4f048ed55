"""The float64 references of Rank-N-Contrast and y-aware InfoNCE, for checking a port.

Explicit loops over every (anchor, positive) pair, from the papers' definitions
(docs/design.md §8, §9); they share no code with the engine.  Arguments as in
:func:`logratio.rank_n_contrast_loss` and :func:`logratio.y_aware_infonce_loss` (NumPy
arrays or anything :func:`numpy.asarray` takes; ``anchors`` a list of row indices).  Each
returns ``(loss, ∂loss/∂embeddings)``, the loss a float (a (number of anchors,) array for
``reduction="none"``, whose gradient is that of the sum).  O(B³) time: for small batches.
"""

from __future__ import annotations

from typing import Any

from .. import _reference_contrastive as _loops

__all__ = ["reference_rank_n_contrast_loss_and_grad", "reference_y_aware_infonce_loss_and_grad"]


def reference_rank_n_contrast_loss_and_grad(
    embeddings: Any, labels: Any = None, *, label_distances: Any = None, anchors: Any = None,
    mask: Any = None, temperature: float = 2.0, label_metric: Any = "cityblock",
    reduction: str = "mean",
) -> tuple[Any, Any]:  # fmt: skip
    """Rank-N-Contrast (Zha et al., NeurIPS 2023) and its gradient, by loops in float64."""
    return _loops.rank_n_contrast(
        embeddings, labels, label_distances_=label_distances, anchors=anchors, mask=mask,
        temperature=temperature, label_metric=label_metric, reduction=reduction,
    )  # fmt: skip


def reference_y_aware_infonce_loss_and_grad(
    embeddings: Any, labels: Any = None, *, label_distances: Any = None, anchors: Any = None,
    mask: Any = None, temperature: float = 0.1, sigma: float = 1.0,
    label_metric: Any = "sqeuclidean", reduction: str = "mean",
) -> tuple[Any, Any]:  # fmt: skip
    """y-aware InfoNCE (Dufumier et al., MICCAI 2021; the paper's weights) and its
    gradient, by loops in float64."""
    return _loops.y_aware_infonce(
        embeddings, labels, label_distances_=label_distances, anchors=anchors, mask=mask,
        temperature=temperature, sigma=sigma, label_metric=label_metric, reduction=reduction,
    )  # fmt: skip
