"""The adapter of NumPy and every other Array API namespace: the engine, called directly.

Without automatic differentiation, :func:`loss_and_grad` is the interface for gradients: the
closed-form ``∂L/∂embeddings`` (docs/design.md §1.2) in the embeddings' namespace, device and
dtype.
"""

from __future__ import annotations

from typing import Any

from .. import _dense
from .._problem import Arrays, prepare
from ..options import Spec

__all__ = ["SUPPORTS_AXIS_NAME", "loss", "loss_and_grad"]

SUPPORTS_AXIS_NAME = False


def loss(arrays: Arrays, spec: Spec, axis_name: Any = None) -> Any:
    """The reduced loss (no gradient)."""
    return _dense.loss_and_grad(prepare(arrays, spec), want_grad=False)[0]


def loss_and_grad(arrays: Arrays, spec: Spec, axis_name: Any = None) -> tuple[Any, Any]:
    """The reduced loss and its closed-form gradient."""
    return _dense.loss_and_grad(prepare(arrays, spec), want_grad=True)
