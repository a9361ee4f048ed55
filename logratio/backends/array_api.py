"""The adapter of NumPy and every other Array API namespace: the core, called directly.

Without automatic differentiation, :func:`loss_and_grad` is the interface for gradients: the
closed-form ``∂L/∂embeddings`` (docs/design.md §1.2) in the embeddings' namespace, device and
dtype.
"""

from __future__ import annotations

from typing import Any

from .. import _dense
from .._problem import prepare
from ..options import LossOptions

__all__ = ["loss", "loss_and_grad"]


def loss(
    embeddings: Any, labels: Any, label_distances: Any, anchors: Any, mask: Any,
    options: LossOptions,
) -> Any:  # fmt: skip
    """The reduced loss (no gradient)."""
    p = prepare(embeddings, labels, label_distances, anchors, mask, options=options)
    return _dense.loss_and_grad(p, want_grad=False)[0]


def loss_and_grad(
    embeddings: Any, labels: Any, label_distances: Any, anchors: Any, mask: Any,
    options: LossOptions,
) -> tuple[Any, Any]:  # fmt: skip
    """The reduced loss and its closed-form gradient."""
    p = prepare(embeddings, labels, label_distances, anchors, mask, options=options)
    return _dense.loss_and_grad(p, want_grad=True)
