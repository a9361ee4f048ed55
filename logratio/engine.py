"""Any formula's loss on any framework: the engine's public entry points.

A loss written as a :class:`~logratio.formula.Formula` runs everywhere through these two
functions, with the arguments and rules of every loss of the library: the adapter
of the embeddings' framework (:mod:`logratio.backends`) registers the formula's closed-form
gradient as PyTorch's or JAX's derivative, and NumPy, CuPy and other Array API arrays get the
value and the gradient directly.  A loss's own public function builds its formula and calls
:func:`loss` (docs/design.md §7.4).
"""

from __future__ import annotations

from typing import Any

from ._problem import Arrays
from ._validation import Array
from .backends import call
from .options import Spec

__all__ = ["loss", "loss_and_grad"]


def loss(
    formula: Any,
    embeddings: Array,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    reduction: str = "mean",
    block_size: int | None = None,
    compile: bool | None = None,
    axis_name: Any = None,
) -> Array:
    """The loss of ``formula`` over the batch: ``Σ_a S_a / Σ_a T_a`` for ``"mean"`` (0 when
    the counts sum to 0), ``Σ_a S_a`` for ``"sum"``, the per-anchor ``S_a`` for ``"none"``.

    Args:
      formula: a registered :class:`~logratio.formula.Formula`.
      embeddings: (B, d) floating array: NumPy, PyTorch, JAX, CuPy or any Array API array.
      labels: (B,) or (B, p) labels, or ``label_distances`` (B, B) instead.
      anchors: ``None`` (every row), an int, an index array or a boolean mask of shape (B,).
      mask: (B, B) boolean, the (anchor, neighbour) pairs allowed.
      reduction, block_size, compile: the reduction and the run settings
        (:class:`~logratio.options.RunSettings`).
      axis_name: JAX only, inside ``shard_map`` / ``pmap``: the loss of the global batch
        sharded over that axis (docs/design.md §6.2).

    Cost: that of the formula's terms over (block, B) pairs, O(block · B) memory.
    """
    spec = Spec.of(formula, reduction, block_size=block_size, compile=compile)
    arrays = Arrays(embeddings, labels, label_distances, anchors, mask)
    return call("loss", arrays, spec, axis_name)


def loss_and_grad(
    formula: Any,
    embeddings: Array,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    reduction: str = "mean",
    block_size: int | None = None,
    compile: bool | None = None,
    axis_name: Any = None,
) -> tuple[Array, Array]:
    """:func:`loss` and its closed-form gradient ``∂L/∂embeddings`` (for ``"none"``: of the
    sum of the per-anchor losses), without an autograd graph."""
    spec = Spec.of(formula, reduction, block_size=block_size, compile=compile)
    arrays = Arrays(embeddings, labels, label_distances, anchors, mask)
    return call("loss_and_grad", arrays, spec, axis_name)
