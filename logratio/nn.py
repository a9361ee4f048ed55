"""PyTorch modules of the library's losses, in the idiom of ``torch.nn`` and
pytorch-metric-learning: options stored once, arrays passed per call.

Importing this module imports PyTorch; ``logratio.LogRatioLoss`` reaches it lazily.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ._problem import Arrays
from .backends.torch import loss
from .formulas.rank_n_contrast import RankNContrast
from .formulas.y_aware import YAwareInfoNCE
from .options import LossOptions, Spec

__all__ = ["LogRatioLoss", "RankNContrastLoss", "YAwareInfoNCELoss"]


_UNSET: Any = object()


class LogRatioLoss(torch.nn.Module):
    """The dense log-ratio loss (Kim et al., CVPR 2019) as a ``torch.nn.Module``.

    ``loss_fn = LogRatioLoss(reduction="mean", ties="include", squared=True, ...)`` then
    ``loss_fn(embeddings, labels)`` or ``loss_fn(embeddings, label_distances=D)``, in the
    idiom of pytorch-metric-learning's losses.  The keyword options are those of
    :func:`logratio.log_ratio_loss`, stored as one :class:`~logratio.options.LossOptions`
    (``loss_fn.options``); ``anchors`` given here is the default of every call, and a call may
    override it.  The module holds no parameters.

    ``LogRatioLoss(distributed=True)`` is the loss of the global batch of data-parallel
    training (:func:`logratio.distributed.log_ratio_loss`): each rank passes its shard of
    embeddings and labels, every rank gets the loss of the concatenated batch, and under DDP
    the parameter gradients equal those of single-process training on it.  ``group`` is the
    process group (default: the world) and ``gradient`` (``"ddp-mean"``, the default, or
    ``"sum"``) says how the ranks' parameter gradients are combined afterwards.
    """

    def __init__(
        self,
        *,
        anchors: Any = None,
        distributed: bool = False,
        group: Any = None,
        gradient: str = "ddp-mean",
        **options: Any,
    ) -> None:
        super().__init__()
        self.options = LossOptions.from_kwargs(options, "LogRatioLoss")
        self.anchors = anchors
        if not isinstance(distributed, bool):
            raise TypeError(f"distributed must be a bool; got {distributed!r}")
        if not distributed and (group is not None or gradient != "ddp-mean"):
            raise ValueError("group and gradient apply to LogRatioLoss(distributed=True)")
        if distributed:
            from . import distributed as _distributed

            if gradient not in _distributed.GRADIENT_MODES:
                raise ValueError(
                    f"gradient must be one of {_distributed.GRADIENT_MODES}; got {gradient!r}"
                )
        self.distributed = distributed
        self.group = group
        self.gradient = gradient

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: Any = None,
        *,
        label_distances: Any = None,
        anchors: Any = _UNSET,
        mask: Any = None,
    ) -> torch.Tensor:
        anchors = self.anchors if anchors is _UNSET else anchors
        if self.distributed:
            from . import distributed as _distributed

            return _distributed.log_ratio_loss(
                embeddings,
                labels,
                group=self.group,
                gradient=self.gradient,
                label_distances=label_distances,
                anchors=anchors,
                mask=mask,
                **self.options.user_options(),
            )
        arrays = Arrays(embeddings, labels, label_distances, anchors, mask)
        return loss(arrays, self.options.spec())

    def extra_repr(self) -> str:
        o = self.options
        metric = getattr(o.label_metric, "__name__", repr(o.label_metric))
        text = (
            f"squared={o.squared}, label_metric={metric}, eps={o.eps}, root_eps={o.root_eps}, "
            f"ties={o.ties!r}, reduction={o.reduction!r}, block_size={o.block_size}"
        )
        if self.distributed:
            text += f", distributed=True, gradient={self.gradient!r}"
        return text


class _FormulaLoss(torch.nn.Module):
    """A loss of the engine as a module: the spec built once, the arrays per call."""

    def __init__(self, formula: Any, reduction: str, block_size: Any, compile: Any) -> None:
        super().__init__()
        self.spec = Spec.of(formula, reduction, block_size=block_size, compile=compile)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: Any = None,
        *,
        label_distances: Any = None,
        anchors: Any = None,
        mask: Any = None,
    ) -> torch.Tensor:
        return loss(Arrays(embeddings, labels, label_distances, anchors, mask), self.spec)

    def extra_repr(self) -> str:
        f = self.spec.formula
        shown = {
            k: getattr(v, "__name__", v) for k, v in dataclasses.asdict(f).items()
        }  # a callable label metric by its name
        options = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return (
            f"{options}, reduction={self.spec.reduction!r}, block_size={self.spec.run.block_size}"
        )


class YAwareInfoNCELoss(_FormulaLoss):
    """y-aware InfoNCE (Dufumier et al., MICCAI 2021) as a ``torch.nn.Module``:
    ``loss_fn = YAwareInfoNCELoss(temperature=0.1, sigma=1.0)`` then
    ``loss_fn(embeddings, labels)``.  Options and arguments as in
    :func:`logratio.y_aware_infonce_loss`; the module holds no parameters."""

    def __init__(
        self,
        *,
        temperature: float = 0.1,
        sigma: float = 1.0,
        label_metric: Any = "sqeuclidean",
        weights: str = "paper",
        reduction: str = "mean",
        block_size: int | None = None,
        compile: bool | None = None,
    ) -> None:
        formula = YAwareInfoNCE(temperature, sigma, label_metric, weights)
        super().__init__(formula, reduction, block_size, compile)


class RankNContrastLoss(_FormulaLoss):
    """Rank-N-Contrast (Zha et al., NeurIPS 2023) as a ``torch.nn.Module``:
    ``loss_fn = RankNContrastLoss(temperature=2.0)`` then ``loss_fn(embeddings, labels)``.
    Options and arguments as in :func:`logratio.rank_n_contrast_loss`; no parameters."""

    def __init__(
        self,
        *,
        temperature: float = 2.0,
        label_metric: Any = "cityblock",
        reduction: str = "mean",
        block_size: int | None = None,
        compile: bool | None = None,
    ) -> None:
        formula = RankNContrast(temperature, label_metric)
        super().__init__(formula, reduction, block_size, compile)
