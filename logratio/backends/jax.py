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

from .. import _validation as v
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


def _problem(opts: _Options, embeddings, labels, label_distances, anchors, mask) -> _core.Problem:
    return _core.prepare(
        embeddings, labels, label_distances=label_distances, anchors=anchors, mask=mask,
        squared=opts.squared, label_metric=opts.label_metric, eps=opts.eps, ties=opts.ties,
        reduction=opts.reduction, block_size=opts.block_size,
    )  # fmt: skip


def _full_precision():
    """Float32 matrix products in full precision (the Gram trick of the distances needs it;
    on GPUs JAX's default would use TF32 or bfloat16 passes)."""
    return jax.default_matmul_precision("highest")


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _loss(opts: _Options, embeddings, labels, label_distances, anchors, mask):
    with _full_precision():
        p = _problem(opts, embeddings, labels, label_distances, anchors, mask)
        row_loss, row_count, _ = _core.evaluate(p)
        return _core.reduce_loss(p, row_loss, row_count)[0]


@_loss.defjvp
def _loss_jvp(opts: _Options, primals, tangents):
    t = tangents[0]
    with _full_precision():
        p = _problem(opts, *primals)
        if opts.reduction == "none":
            row_loss, _, row_tangent = _core.evaluate_jvp(p, t)
            return row_loss, row_tangent
        row_loss, row_count, grad = _core.evaluate(p, want_grad=True)
        loss, scale = _core.reduce_loss(p, row_loss, row_count)
        return loss, jnp.sum(grad * t.astype(grad.dtype)) * scale


def _loss_and_grad(opts: _Options, embeddings, labels, label_distances, anchors, mask):
    with _full_precision():
        p = _problem(opts, embeddings, labels, label_distances, anchors, mask)
        row_loss, row_count, grad = _core.evaluate(p, want_grad=True)
        loss, scale = _core.reduce_loss(p, row_loss, row_count)
        return loss, (grad * scale).astype(embeddings.dtype)


# Compiled once per (options, shapes, dtypes): an eager call then costs one XLA computation,
# not one dispatch (and, for each new shape, one compilation) per operation of the core.
# Inside a caller's jax.jit they are inlined.
_loss_jit = jax.jit(_loss, static_argnums=0)
_loss_and_grad_jit = jax.jit(_loss_and_grad, static_argnums=0)


def _asarray(x: Any, name: str) -> Any:
    """Lists, NumPy arrays and scalars as JAX arrays (one leaf each); None stays None."""
    if x is None or isinstance(x, jax.Array):
        return x
    try:
        return jnp.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} could not be converted to a JAX array: {err}") from err


def _arguments(embeddings, labels, label_distances, anchors, mask, options):
    """Static options and array arguments; value checks run here when values are concrete.

    Inside the compiled function the core cannot read values, so the checks that need them
    (non-negative label distances, anchors in range) run first, and a boolean ``anchors``
    mask becomes an index array (which needs concrete values: pass indices under jit).
    """
    unknown = set(options) - set(_Options._fields)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    opts = _Options(**options)
    try:
        hash(opts)
    except TypeError:
        raise TypeError(
            "options (squared, label_metric, eps, ties, reduction, block_size) must be "
            f"hashable Python values under JAX; got {options!r}"
        ) from None
    xp = v.namespace(embeddings, name="embeddings")
    v.embeddings_2d(xp, embeddings)
    batch = embeddings.shape[0]
    label_distances = _asarray(label_distances, "label_distances")
    if label_distances is not None and not isinstance(label_distances, jax.core.Tracer):
        v.label_distances_for(xp, label_distances, batch, embeddings, label_distances.dtype)
    arrays = (
        jax.lax.stop_gradient(_asarray(labels, "labels")),
        jax.lax.stop_gradient(label_distances),
        v.anchors_for(
            xp,
            anchors if isinstance(anchors, int) else _asarray(anchors, "anchors"),
            batch,
            embeddings,
        ),
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
    opts, arrays = _arguments(embeddings, labels, label_distances, anchors, mask, options)
    return _loss_jit(opts, embeddings, *arrays)


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
    opts, arrays = _arguments(embeddings, labels, label_distances, anchors, mask, options)
    return _loss_and_grad_jit(opts, embeddings, *arrays)
