"""CuPy adapter: the engine on the input's GPU, returning CuPy arrays on that device.

CuPy has no automatic differentiation: :func:`loss_and_grad` returns the loss and the
closed-form gradient (docs/design.md §1.2), to be applied by hand (``f -= lr * grad``) or
handed to another framework through DLPack.  Every array the engine allocates (label
distances from NumPy labels, index arrays, temporaries) is placed on the embeddings' device,
not on CuPy's current device.
"""

from __future__ import annotations

from typing import Any

from .._problem import Arrays
from ..options import Spec
from . import array_api

__all__ = ["SUPPORTS_AXIS_NAME", "loss", "loss_and_grad"]

SUPPORTS_AXIS_NAME = False


def loss(arrays: Arrays, spec: Spec, axis_name: Any = None) -> Any:
    """The reduced loss, on the embeddings' device."""
    with arrays.embeddings.device:
        return array_api.loss(arrays, spec)


def loss_and_grad(arrays: Arrays, spec: Spec, axis_name: Any = None) -> tuple[Any, Any]:
    """``(loss, grad)`` on the embeddings' device, the gradient in their dtype."""
    with arrays.embeddings.device:
        return array_api.loss_and_grad(arrays, spec)
