"""Rank-N-Contrast and y-aware InfoNCE as pytorch-metric-learning losses.

Each is a ``BaseMetricLossFunction`` called like every loss of that library,
``loss_fn(embeddings, labels)``, whose PyTorch derivative is the engine's closed-form
gradient (:func:`logratio.rank_n_contrast_loss`, :func:`logratio.y_aware_infonce_loss`).
Both losses compare the batch with itself: ``indices_tuple`` (a miner's tuples) and
``ref_emb`` are refused with an error saying so.  Their similarity is part of the loss
(Euclidean for Rank-N-Contrast, cosine for y-aware InfoNCE), so ``distance=`` is refused too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.losses import BaseMetricLossFunction

from ._pml_common import check_2d, check_reducer, label_tensor, loss_dict
from .rank_n_contrast import rank_n_contrast_loss
from .y_aware import y_aware_infonce_loss

__all__ = ["RankNContrastLoss", "YAwareInfoNCELoss"]


class _EngineLoss(BaseMetricLossFunction):
    """A loss of the engine over the batch, reduced by itself or (``"none"``) by a reducer."""

    _fn: Callable[..., torch.Tensor]

    def __init__(self, options: dict[str, Any], reduction: str, kwargs: dict[str, Any]):
        if "distance" in kwargs:
            raise TypeError(f"{type(self).__name__} sets its own similarity; it takes no distance=")
        check_reducer(kwargs.get("reducer"), reduction, type(self).__name__)
        super().__init__(**kwargs)
        self.options = {**options, "reduction": reduction}
        type(self)._fn(torch.zeros((3, 2)), torch.zeros(3), **self.options)  # checks options

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: Any = None,
        indices_tuple: Any = None,
        ref_emb: Any = None,
        ref_labels: Any = None,
    ) -> torch.Tensor:
        """The loss, reduced by ``self.reducer``; PML's check of (B,) class labels is not
        applied (labels are continuous, (B,) or (B, p))."""
        self.reset_stats()
        name = type(self).__name__
        check_2d(embeddings, "embeddings", "(batch_size, embedding_size)")
        if labels is None:
            raise ValueError(f"{name} needs labels: continuous labels (batch_size,) or (…, p)")
        if indices_tuple is not None:
            raise ValueError(f"{name} uses every pair of the batch; indices_tuple is not supported")
        if ref_emb is not None or ref_labels is not None:
            raise ValueError(f"{name} compares the batch with itself; ref_emb is not supported")
        labels = label_tensor(labels, embeddings, "labels")
        result = self.compute_loss(embeddings, labels, None, None, None)
        self.add_embedding_regularization_to_loss_dict(result, embeddings)
        return self.reducer(result, embeddings, labels)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        losses = type(self)._fn(embeddings, labels, **self.options)
        if self.options["reduction"] != "none":
            return loss_dict(losses, None, "already_reduced")
        if losses.shape[0] == 0:
            return self.zero_losses()
        return loss_dict(losses, torch.arange(losses.shape[0], device=losses.device), "element")


class RankNContrastLoss(_EngineLoss):
    """Rank-N-Contrast (Zha et al., NeurIPS 2023) in PML's idiom.

    Args:
      temperature, label_metric, block_size, compile: as in
        :func:`logratio.rank_n_contrast_loss`.
      reduction: ``"mean"`` over the (anchor, positive) pairs or ``"sum"``, reduced by the
        loss (``"already_reduced"``); ``"none"``: per-anchor sums for a PML reducer
        (``"element"``).
      kwargs: ``reducer``, ``embedding_regularizer`` … of ``BaseMetricLossFunction``.
    """

    _fn = staticmethod(rank_n_contrast_loss)

    def __init__(
        self,
        temperature: float = 2.0,
        label_metric: Any = "cityblock",
        reduction: str = "mean",
        block_size: int | None = None,
        compile: bool | None = None,
        **kwargs: Any,
    ) -> None:
        options = dict(
            temperature=temperature, label_metric=label_metric, block_size=block_size,
            compile=compile,
        )  # fmt: skip
        super().__init__(options, reduction, kwargs)

    def get_default_distance(self) -> LpDistance:
        return LpDistance(p=2, power=1, normalize_embeddings=False)


class YAwareInfoNCELoss(_EngineLoss):
    """y-aware InfoNCE (Dufumier et al., MICCAI 2021) in PML's idiom.

    Args:
      temperature, sigma, label_metric, weights, block_size, compile: as in
        :func:`logratio.y_aware_infonce_loss`.
      reduction: ``"mean"`` over anchors or ``"sum"`` (``"already_reduced"``); ``"none"``:
        per-anchor losses for a PML reducer (``"element"``).
      kwargs: ``reducer``, ``embedding_regularizer`` … of ``BaseMetricLossFunction``.
    """

    _fn = staticmethod(y_aware_infonce_loss)

    def __init__(
        self,
        temperature: float = 0.1,
        sigma: float = 1.0,
        label_metric: Any = "sqeuclidean",
        weights: str = "paper",
        reduction: str = "mean",
        block_size: int | None = None,
        compile: bool | None = None,
        **kwargs: Any,
    ) -> None:
        options = dict(
            temperature=temperature, sigma=sigma, label_metric=label_metric, weights=weights,
            block_size=block_size, compile=compile,
        )  # fmt: skip
        super().__init__(options, reduction, kwargs)

    def get_default_distance(self) -> CosineSimilarity:
        return CosineSimilarity()
