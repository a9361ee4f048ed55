"""What the pytorch-metric-learning losses share: reducer checks, label tensors, loss dicts."""

from __future__ import annotations

from typing import Any

import torch
from pytorch_metric_learning.reducers import ClassWeightedReducer, DoNothingReducer, MeanReducer

__all__ = ["check_2d", "check_reducer", "label_tensor", "loss_dict"]


def check_reducer(reducer: Any, reduction: str, loss: str = "LogRatioLoss") -> None:
    if isinstance(reducer, ClassWeightedReducer):
        raise ValueError(
            f"ClassWeightedReducer weights integer class labels; {loss} has continuous "
            "labels: use reduction='none' with another reducer"
        )
    if reduction == "none" or reducer is None:
        return
    if type(reducer) is not MeanReducer and not isinstance(reducer, DoNothingReducer):
        raise ValueError(
            f"{type(reducer).__name__} acts on per-element losses, and with "
            f"reduction={reduction!r} the loss is already reduced: pass reduction='none' for "
            "the reducer to act on per-anchor (or, with indices_tuple, per-triplet) losses"
        )


def label_tensor(labels: Any, like: torch.Tensor, name: str) -> torch.Tensor:
    """Labels as a tensor on ``like``'s device, (n,) or (n, p) with n = len(like)."""
    if not isinstance(labels, torch.Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} could not be converted to a tensor: {err}") from err
    if labels.ndim not in (1, 2) or labels.shape[0] != like.shape[0]:
        rows = like.shape[0]
        raise ValueError(
            f"{name} must have shape ({rows},) or ({rows}, p), one row per embedding; got "
            f"shape {tuple(labels.shape)}"
        )
    return labels if labels.device == like.device else labels.to(like.device)


def loss_dict(losses: Any, indices: Any, reduction_type: str) -> dict[str, dict[str, Any]]:
    return {"loss": {"losses": losses, "indices": indices, "reduction_type": reduction_type}}


def check_2d(x: Any, name: str, shape: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D tensor of shape {shape}; got {_describe(x)}")


def _describe(x: Any) -> str:
    shape = getattr(x, "shape", None)
    return f"shape {tuple(shape)}" if shape is not None else type(x).__name__
