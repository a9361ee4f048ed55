"""JAX adapter: the core's closed-form derivative as a ``jax.custom_jvp`` rule.

:func:`log_ratio_loss` on a JAX array (or tracer) evaluates the Array API core
(:mod:`logratio.loss`) and defines its derivative along a tangent ``T`` of the embeddings as

* ``⟨∇_F L, T⟩`` with the closed-form gradient (DESIGN.md §1.2) for ``reduction="mean"`` /
  ``"sum"``;
* ``dS_a = Σ_b K_ab (f_a − f_b)·(t_a − t_b)`` per anchor for ``reduction="none"``
  (:func:`logratio.loss.evaluate_jvp`).

Both are linear in ``T``, so JAX transposes them for reverse mode: ``jax.grad`` returns the
closed-form gradient, ``jax.jvp`` / ``jax.jacfwd`` use the rule directly, and
``jax.hessian`` differentiates the rule's primal computations (the core's own operations).
The options (``squared``, ``ties``, ``reduction``, …, and an ``int`` anchor) are static
Python values; labels, label distances, index anchors and masks are array arguments, so
``jax.vmap`` maps over a batch of whole problems.  They are constants of the loss: their
tangents are ignored (``jax.grad`` with respect to them gives zero).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .. import loss as _core

__all__ = ["log_ratio_loss", "log_ratio_loss_and_grad"]


class _Options(NamedTuple):
    """Static (hashable) options of the loss."""

    squared: bool = True
    label_metric: Any = "euclidean"
    eps: float = 1e-6
    ties: str = "include"
    reduction: str = "mean"
    block_size: int | None = None
    anchor: int | None = None  # a Python int anchor; array anchors are arguments


def _problem(opts: _Options, embeddings, labels, label_distances, anchors, mask) -> _core.Problem:
    return _core.prepare(
        embeddings, labels, label_distances=label_distances,
        anchors=opts.anchor if anchors is None else anchors, mask=mask, squared=opts.squared,
        label_metric=opts.label_metric, eps=opts.eps, ties=opts.ties, reduction=opts.reduction,
        block_size=opts.block_size,
    )  # fmt: skip


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _loss(opts: _Options, embeddings, labels, label_distances, anchors, mask):
    p = _problem(opts, embeddings, labels, label_distances, anchors, mask)
    row_loss, row_count, _ = _core.evaluate(p)
    return _core.reduce_loss(p, row_loss, row_count)[0]


@_loss.defjvp
def _loss_jvp(opts: _Options, primals, tangents):
    p = _problem(opts, *primals)
    t = tangents[0]
    if opts.reduction == "none":
        row_loss, _, row_tangent = _core.evaluate_jvp(p, t)
        return row_loss, row_tangent
    row_loss, row_count, grad = _core.evaluate(p, want_grad=True)
    loss, scale = _core.reduce_loss(p, row_loss, row_count)
    return loss, jnp.sum(grad * t.astype(grad.dtype)) * scale


def _asarray(x: Any, name: str) -> Any:
    """Lists, NumPy arrays and scalars as JAX arrays (one leaf each); None stays None."""
    if x is None or isinstance(x, jax.Array):
        return x
    try:
        return jnp.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} could not be converted to a JAX array: {err}") from err


def _arguments(labels, label_distances, anchors, mask, options) -> tuple[_Options, tuple]:
    unknown = set(options) - set(_Options._fields[:-1])
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    anchor = None
    if isinstance(anchors, int):  # bool too: the core rejects it with a clear message
        anchor, anchors = anchors, None
    opts = _Options(**options, anchor=anchor)
    try:
        hash(opts)
    except TypeError:
        raise TypeError(
            "options (squared, label_metric, eps, ties, reduction, block_size) must be "
            f"hashable Python values under JAX; got {options!r}"
        ) from None
    arrays = (
        jax.lax.stop_gradient(_asarray(labels, "labels")),
        jax.lax.stop_gradient(_asarray(label_distances, "label_distances")),
        _asarray(anchors, "anchors"),
        _asarray(mask, "mask"),
    )
    return opts, arrays


def log_ratio_loss(
    embeddings: jax.Array,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    **options: Any,
) -> jax.Array:
    """:func:`logratio.log_ratio_loss` for a JAX array, with the closed-form derivative.

    Differentiable with respect to ``embeddings`` in forward and reverse mode; works under
    ``jax.jit`` (options static) and ``jax.vmap``.  A boolean ``anchors`` mask needs concrete
    values (outside ``jit``); pass index arrays under ``jit``.
    """
    opts, arrays = _arguments(labels, label_distances, anchors, mask, options)
    return _loss(opts, embeddings, *arrays)


def log_ratio_loss_and_grad(
    embeddings: jax.Array,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    **options: Any,
) -> tuple[jax.Array, jax.Array]:
    """:func:`logratio.log_ratio_loss_and_grad` for a JAX array (the core, one evaluation).

    Equal to ``jax.value_and_grad(log_ratio_loss)`` for the reduced losses; works under
    ``jax.jit`` and ``jax.vmap``.
    """
    opts, arrays = _arguments(labels, label_distances, anchors, mask, options)
    labels, label_distances, anchors, mask = arrays
    return _core.log_ratio_loss_and_grad(
        embeddings, labels, label_distances=label_distances,
        anchors=opts.anchor if anchors is None else anchors, mask=mask,
        **{k: getattr(opts, k) for k in _Options._fields[:-1]},
    )  # fmt: skip
