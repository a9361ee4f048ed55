"""CuPy adapter: the core on the input's GPU, returning CuPy arrays on that device.

CuPy has no automatic differentiation: :func:`log_ratio_loss_and_grad` returns the loss and
the closed-form gradient (DESIGN.md §1.2), to be applied by hand (``f -= lr * grad``) or
handed to another framework through DLPack.  Every array the core allocates (label
distances from NumPy labels, index arrays, temporaries) is placed on the embeddings'
device, not on CuPy's current device.
"""

from __future__ import annotations

from typing import Any

from .. import loss as _core

__all__ = ["log_ratio_loss", "log_ratio_loss_and_grad"]


def log_ratio_loss(embeddings: Any, labels: Any = None, **kwargs: Any) -> Any:
    """:func:`logratio.log_ratio_loss` for a CuPy array, on its device."""
    with embeddings.device:
        return _core.log_ratio_loss(embeddings, labels, **kwargs)


def log_ratio_loss_and_grad(embeddings: Any, labels: Any = None, **kwargs: Any) -> Any:
    """:func:`logratio.log_ratio_loss_and_grad` for a CuPy array: ``(loss, grad)`` on its
    device, the gradient in the embeddings' dtype."""
    with embeddings.device:
        return _core.log_ratio_loss_and_grad(embeddings, labels, **kwargs)
