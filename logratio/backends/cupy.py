"""CuPy adapter: the core on the input's GPU, returning CuPy arrays on that device.

CuPy has no automatic differentiation: :func:`loss_and_grad` returns the loss and the
closed-form gradient (docs/design.md §1.2), to be applied by hand (``f -= lr * grad``) or
handed to another framework through DLPack.  Every array the core allocates (label distances
from NumPy labels, index arrays, temporaries) is placed on the embeddings' device, not on
CuPy's current device.
"""

from __future__ import annotations

from typing import Any

from ..options import LossOptions
from . import array_api

__all__ = ["loss", "loss_and_grad"]


def loss(
    embeddings: Any, labels: Any, label_distances: Any, anchors: Any, mask: Any,
    options: LossOptions,
) -> Any:  # fmt: skip
    """The reduced loss, on the embeddings' device."""
    with embeddings.device:
        return array_api.loss(embeddings, labels, label_distances, anchors, mask, options)


def loss_and_grad(
    embeddings: Any, labels: Any, label_distances: Any, anchors: Any, mask: Any,
    options: LossOptions,
) -> tuple[Any, Any]:  # fmt: skip
    """``(loss, grad)`` on the embeddings' device, the gradient in their dtype."""
    with embeddings.device:
        return array_api.loss_and_grad(embeddings, labels, label_distances, anchors, mask, options)
