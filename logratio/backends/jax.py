"""JAX adapter: the core's closed-form derivative as a ``jax.custom_jvp`` rule.

:func:`logratio.log_ratio_loss` on a JAX array (or tracer) evaluates the Array API core
(:mod:`logratio._dense`) and defines its derivative along a tangent ``T`` of the embeddings as

* ``⟨∇_F L, T⟩`` with the closed-form gradient (docs/design.md §1.2) for ``reduction="mean"`` /
  ``"sum"``;
* ``dS_a = Σ_b K_ab (f_a − f_b)·(t_a − t_b)`` per anchor for ``reduction="none"``
  (:func:`logratio._dense.loss_and_jvp`).

Both are linear in ``T``, so JAX transposes them for reverse mode: ``jax.grad`` returns the
closed-form gradient, ``jax.jvp`` / ``jax.jacfwd`` use the rule directly, and
``jax.hessian`` differentiates the rule's primal computations (the core's own operations).
The options (one :class:`~logratio.options.LossOptions`) are a static argument; labels,
label distances, index anchors and masks are array arguments, so ``jax.vmap`` maps over a
batch of whole problems.  They are constants of the loss: their tangents are ignored
(``jax.grad`` with respect to them gives zero).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from .. import _dense
from .._problem import Inputs, check_inputs, make_problem
from ..options import LossOptions

__all__ = ["loss", "loss_and_grad"]


def _full_precision():
    """Float32 matrix products in full precision (the Gram trick of the distances needs it;
    on GPUs JAX's default would use TF32 or bfloat16 passes)."""
    return jax.default_matmul_precision("highest")


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _loss(options: LossOptions, *arrays):
    with _full_precision():
        return _dense.loss_and_grad(make_problem(Inputs(*arrays), options), want_grad=False)[0]


@_loss.defjvp
def _loss_jvp(options: LossOptions, primals, tangents):
    with _full_precision():
        return _dense.loss_and_jvp(make_problem(Inputs(*primals), options), tangents[0])


def _loss_and_grad(options: LossOptions, *arrays):
    with _full_precision():
        return _dense.loss_and_grad(make_problem(Inputs(*arrays), options))


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


def _checked(embeddings, labels, label_distances, anchors, mask, options) -> Inputs:
    """The checked arrays, before tracing: value checks run here when values are concrete.

    Inside the compiled function the core cannot read values, so the checks that need them
    (non-negative label distances, anchors in range) run first, and a boolean ``anchors``
    mask becomes an index array (which needs concrete values: pass indices under jit).
    """
    try:
        hash(options)
    except TypeError:
        raise TypeError(
            "options must be hashable under JAX (they are static arguments); got an "
            f"unhashable label_metric {options.label_metric!r}"
        ) from None
    return check_inputs(
        embeddings,
        jax.lax.stop_gradient(_asarray(labels, "labels")),
        jax.lax.stop_gradient(_asarray(label_distances, "label_distances")),
        anchors if isinstance(anchors, int) else _asarray(anchors, "anchors"),
        _asarray(mask, "mask"),
        options.num_queries,
    )


def loss(
    embeddings: jax.Array, labels: Any, label_distances: Any, anchors: Any, mask: Any,
    options: LossOptions,
) -> jax.Array:  # fmt: skip
    """The loss with the closed-form derivative: forward and reverse mode, ``jit``, ``vmap``.

    A boolean ``anchors`` mask needs concrete values (outside ``jit``); pass index arrays
    under ``jit``.
    """
    return _loss_jit(
        options, *_checked(embeddings, labels, label_distances, anchors, mask, options)
    )


def loss_and_grad(
    embeddings: jax.Array, labels: Any, label_distances: Any, anchors: Any, mask: Any,
    options: LossOptions,
) -> tuple[jax.Array, jax.Array]:  # fmt: skip
    """``(loss, grad)`` from one evaluation of the core; equal to ``jax.value_and_grad`` of
    :func:`loss` for the reduced losses."""
    arrays = _checked(embeddings, labels, label_distances, anchors, mask, options)
    return _loss_and_grad_jit(options, *arrays)
