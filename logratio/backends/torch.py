"""PyTorch adapter: the engine's closed-form gradient as the autograd rule of a loss.

A loss (:mod:`logratio.engine`, e.g. :func:`logratio.log_ratio_loss`) on a ``torch.Tensor``
runs the Array API core
(:mod:`logratio._dense`) on the tensor's device and registers the closed-form gradient
(docs/design.md §1.2) as its derivative:
autograd records one node for the whole loss, never the core's internal operations.

Two mechanisms, each for what it does well:

* a ``torch.library.custom_op`` (``logratio::loss_and_grad``) wraps the core's evaluation.
  ``torch.compile`` treats it as one opaque call with a fake (shape-only) implementation, so a
  compiled model traces in full (``fullgraph=True`` works) and the argument checks of the core,
  which read values, still run on real tensors;
* a new-style ``torch.autograd.Function`` (forward / setup_context / backward) carries the
  derivative.  Unlike ``custom_op.register_autograd``, it also works under ``torch.func``
  transforms (``torch.func.grad``, ``jacrev``).

The forward computes the gradient together with the loss when it will be needed (the input
requires grad and grad mode is on) and saves it: one more B×B×d product than the loss alone,
where recomputing in the backward would repeat the whole B×B evaluation.  For
``reduction="none"`` the gradient depends on the upstream vector ``w``, so the backward
evaluates ``Σ_a w_a ∇S_a`` then.  Higher derivatives are exact: a recorded backward
(``create_graph=True``, ``torch.func.hessian``) recomputes the gradient with the core's
differentiable operations; forward mode (``torch.func.jvp``) uses the core's JVP, and
``torch.func.vmap`` evaluates one problem at a time.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .. import _dense
from .. import _validation as v
from .._problem import Arrays, prepare
from ..distances import direct_distances
from ..formula import decode, encode
from ..options import RunSettings, Spec
from . import _torch_engine as _engine

__all__ = ["SUPPORTS_AXIS_NAME", "loss", "loss_and_grad"]

SUPPORTS_AXIS_NAME = False


# --------------------------------------------------------------------------- the opaque kernel


def _loss_and_grad_impl(
    embeddings: torch.Tensor,
    labels: torch.Tensor | None,
    label_distances: torch.Tensor | None,
    anchors: torch.Tensor | None,
    mask: torch.Tensor | None,
    num_queries: int | None,
    formula: str,
    words: str,
    numbers: list[int | float | bool],
    reduction: str,
    block_size: int | None,
    compile: bool | None,
    want_grad: bool,
    row_weights: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reduced loss and, if ``want_grad``, its gradient (:func:`logratio._dense.loss_and_grad`).

    The spec arrives as plain values (:func:`_schema`): the formula encoded
    (:func:`logratio.formula.encode`), the reduction and the run settings.  The gradient has
    the embeddings' dtype, and is an empty tensor without ``want_grad``.  ``row_weights``
    (m,) are the upstream weights of ``reduction="none"``.  Each block of anchors runs
    through the engine (:mod:`logratio.backends._torch_engine`) unless it is switched off.
    """
    spec = _spec(formula, words, tuple(numbers), reduction, block_size, compile)
    batch = embeddings.shape[0] if embeddings.ndim == 2 else 0  # else: refused by prepare
    itemsize = 8 if embeddings.dtype == torch.float64 else 4  # the compute dtype's
    block = _engine.block_size_for(embeddings.device, batch, itemsize)
    arrays = Arrays(embeddings, labels, label_distances, anchors, mask, num_queries)
    p = prepare(arrays, spec, default_block=block)
    step = _engine.run_step if _engine.enabled(spec.run, embeddings.device, spec.formula) else None
    loss, grad = _dense.loss_and_grad(p, want_grad=want_grad, row_weights=row_weights, step=step)
    if grad is None:
        grad = embeddings.new_empty((0,))
    if reduction == "none" and loss._base is not None:  # outputs may not be views
        loss = loss.clone()
    return loss, grad


_loss_and_grad_op = torch.library.custom_op("logratio::loss_and_grad", mutates_args=())(
    _loss_and_grad_impl
)


@_loss_and_grad_op.register_fake
def _loss_and_grad_fake(
    embeddings, labels, label_distances, anchors, mask, num_queries, formula, words, numbers,
    reduction, block_size, compile, want_grad, row_weights,
):  # fmt: skip
    dtype = torch.float32 if embeddings.dtype in (torch.float16, torch.bfloat16) else None
    if reduction != "none":
        shape: tuple[Any, ...] = ()
    elif anchors is None:
        shape = (embeddings.shape[0] if num_queries is None else num_queries,)
    elif anchors.dtype == torch.bool:
        shape = (torch.library.get_ctx().new_dynamic_size(),)
    else:
        shape = (anchors.numel(),)
    grad_shape = tuple(embeddings.shape) if want_grad else (0,)
    return embeddings.new_empty(shape, dtype=dtype), embeddings.new_empty(grad_shape)


def _schema(spec: Spec) -> tuple[Any, ...]:
    """The spec as the op's plain arguments (``formula`` … ``compile``)."""
    return (*encode(spec.formula), spec.reduction, spec.run.block_size, spec.run.compile)


@functools.lru_cache(maxsize=256)
def _spec(
    formula: str, words: str, numbers: tuple[Any, ...], reduction: str, block_size: int | None,
    compile: bool | None,
) -> Spec:  # fmt: skip
    """The inverse of :func:`_schema` (cached: a repeated spec is validated once)."""
    return Spec(decode(formula, words, numbers), reduction, RunSettings(block_size, compile))


def _op(arrays: tuple[Any, ...], num_queries: int | None, spec: Spec, want_grad: bool,
        row_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    args = (*arrays, num_queries, *_schema(spec), want_grad, row_weights)
    if _plain_eager(arrays[0]):  # the op's body, without the dispatcher's layers (same results)
        with torch.no_grad():
            return _loss_and_grad_impl(*args)
    return _loss_and_grad_op(*args)


def _plain_eager(embeddings: Any) -> bool:
    """A plain tensor with data, neither compiling nor under a ``torch.func`` transform or a
    dispatch mode (fake or meta tensors need the op's fake implementation): an eager call may
    run the op's body directly (tens of microseconds less per call)."""
    return (
        type(embeddings) is torch.Tensor
        and embeddings.device.type != "meta"
        and not torch.compiler.is_compiling()
        and not torch._C._are_functorch_transforms_active()
        and _get_current_dispatch_mode() is None
    )


# --------------------------------------------------------------------------- the autograd rule


class _EngineLossFn(torch.autograd.Function):
    """``loss = L(embeddings)`` with the closed-form ``∂L/∂embeddings`` as its derivative.

    Reverse mode: the gradient saved by the forward (or, for ``reduction="none"``, evaluated
    with the upstream weights).  When the backward itself is being recorded
    (``create_graph=True``, ``torch.func`` transforms), the gradient is recomputed with the
    engine's own differentiable operations, so that second derivatives (gradient penalties,
    ``torch.func.hessian``, ``gradgradcheck``) are exact.  Forward mode (``torch.func.jvp``,
    ``jacfwd``): :func:`logratio._dense.loss_and_jvp`.
    """

    @staticmethod
    def forward(embeddings, labels, label_distances, anchors, mask, num_queries, spec, want_grad):
        arrays = (embeddings, labels, label_distances, anchors, mask)
        return _op(arrays, num_queries, spec, want_grad)

    @staticmethod
    def setup_context(ctx, inputs, output):
        embeddings, labels, label_distances, anchors, mask, num_queries, spec, want_grad = inputs
        _, grad = output
        ctx.mark_non_differentiable(grad)
        ctx.spec = spec
        ctx.num_queries = num_queries
        ctx.grad_saved = want_grad
        arrays = (embeddings, labels, label_distances, anchors, mask)
        ctx.save_for_backward(*arrays, grad if want_grad else None)
        ctx.save_for_forward(*arrays)

    @staticmethod
    def backward(ctx, grad_loss, _grad_of_grad):
        *arrays, grad = ctx.saved_tensors
        reduction = ctx.spec.reduction
        weights = grad_loss if reduction == "none" else None
        if torch.is_grad_enabled():  # the backward is recorded: keep it differentiable
            p = prepare(Arrays(*arrays, ctx.num_queries), ctx.spec)
            _, grad = _dense.loss_and_grad(p, want_grad=True, row_weights=weights)
        elif not ctx.grad_saved:
            _, grad = _op(tuple(arrays), ctx.num_queries, ctx.spec, True, weights)
        if reduction != "none":
            grad = grad * grad_loss.to(grad.dtype)
        return grad, None, None, None, None, None, None, None

    @staticmethod
    def vmap(info, in_dims, embeddings, labels, label_distances, anchors, mask, num_queries,
             spec, want):  # fmt: skip
        """``torch.func.vmap``: one evaluation per problem of the batch (the engine handles
        one problem at a time); outputs stacked along dimension 0."""
        arrays = (embeddings, labels, label_distances, anchors, mask)
        outs = []
        for k in range(info.batch_size):
            one = [
                x if x is None or d is None else x.select(d, k)
                for x, d in zip(arrays, in_dims[:5], strict=True)
            ]
            outs.append(_EngineLossFnForward.apply(*one, num_queries, spec, want))
        loss = torch.stack([o[0] for o in outs])
        grad = torch.stack([o[1] for o in outs])
        return (loss, grad), (0, 0)


class _EngineLossFnForward(_EngineLossFn):
    """:class:`_EngineLossFn` with forward mode, for eager calls (Dynamo cannot trace an
    ``autograd.Function`` that defines ``jvp``: compiled graphs use the class above)."""

    @classmethod
    def apply(cls, *args: Any) -> Any:  # type: ignore[override]
        """``Function.apply`` without its per-call ``inspect.signature`` binding, which only
        fills defaults: every call here passes all eight arguments."""
        if len(args) != 8 or torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        args = torch._functorch.utils.unwrap_dead_wrappers(args)
        return super(torch.autograd.Function, cls).apply(*args)  # type: ignore[misc]

    @staticmethod
    def jvp(ctx, tangent, *_constant_tangents):
        embeddings, labels, label_distances, anchors, mask = ctx.saved_tensors
        if tangent is None:
            tangent = torch.zeros_like(embeddings)
        arrays = Arrays(embeddings, labels, label_distances, anchors, mask, ctx.num_queries)
        _, out = _dense.loss_and_jvp(prepare(arrays, ctx.spec), tangent)
        return out, None


# --------------------------------------------------------------------------- public functions


def _tensor(x: Any, name: str, device: torch.device) -> torch.Tensor | None:
    """``x`` (tensor, NumPy array, list, …) as a tensor on ``device``; None stays None."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x if x.device == device else x.to(device)
    try:
        return torch.as_tensor(x, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{name} could not be converted to a torch tensor on {device}: {err}"
        ) from err


def _op_arguments(arrays: Arrays, spec: Spec) -> tuple[tuple[torch.Tensor | None, ...], Spec]:
    """The custom op's tensor arguments, and a spec its schema can carry.

    Arrays become tensors on the embeddings' device; the op checks them.  A callable
    ``label_metric`` cannot cross the schema: its label distances are computed here (by the
    engine's helper) and enter the op as ``label_distances``.
    """
    embeddings, labels, label_distances, anchors, mask, q = arrays
    if not isinstance(embeddings, torch.Tensor):
        raise TypeError(
            "embeddings must be a torch.Tensor for the PyTorch loss; got "
            f"{type(embeddings).__module__}.{type(embeddings).__name__} (use the functional "
            "losses, e.g. logratio.log_ratio_loss, for other arrays)"
        )
    if embeddings.layout != torch.strided:
        raise TypeError(
            f"embeddings must be a dense (strided) tensor; got layout {embeddings.layout} "
            "(call .to_dense() first)"
        )
    if isinstance(anchors, bool):
        raise TypeError(
            "anchors must be None, an int, an index array or a boolean mask; got a bool"
        )
    dev = embeddings.device
    labels = _tensor(labels, "labels", dev)
    label_distances = _tensor(label_distances, "label_distances", dev)
    metric = getattr(spec.formula, "label_metric", None)
    if callable(metric):
        if labels is not None and label_distances is None:
            xp = v.namespace(embeddings, name="embeddings")
            v.embeddings_2d(xp, embeddings)
            dtype = v.compute_dtype(xp, embeddings)
            y = v.labels_for(xp, labels, embeddings.shape[0], embeddings, dtype)
            rows, cols = (y, y) if q is None else (y[:q, ...], y[q:, ...])
            label_distances, labels = direct_distances(xp, rows, cols, metric), None
        # unused: the op sees label distances (or reports passing both)
        spec = spec._replace(formula=_named_metric(spec.formula))
    tensors = (
        embeddings,
        labels,
        label_distances,
        _tensor(anchors, "anchors", dev),
        _tensor(mask, "mask", dev),
    )
    return tensors, spec


def _named_metric(formula: Any) -> Any:
    """``formula`` with its callable ``label_metric`` replaced by the field's default."""
    default = next(f.default for f in dataclasses.fields(formula) if f.name == "label_metric")
    return dataclasses.replace(formula, label_metric=default)


def loss(arrays: Arrays, spec: Spec, axis_name: Any = None) -> torch.Tensor:
    """The loss as a differentiable tensor: its backward is the closed-form gradient.

    Labels, label distances, anchors and masks may be tensors, NumPy arrays or lists; they
    move to the embeddings' device and are treated as constants.
    """
    tensors, spec = _op_arguments(arrays, spec)
    embeddings = tensors[0]
    # the gradient of reduction="none" depends on the upstream vector: the backward computes it
    want_grad = torch.is_grad_enabled() and embeddings.requires_grad and spec.reduction != "none"
    fn = _EngineLossFn if torch.compiler.is_compiling() else _EngineLossFnForward
    value, _ = fn.apply(*tensors, arrays.num_queries, spec, want_grad)
    return value


def loss_and_grad(
    arrays: Arrays, spec: Spec, axis_name: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, ∂loss/∂embeddings)`` as plain tensors, without an autograd graph."""
    tensors, spec = _op_arguments(arrays, spec)
    with torch.no_grad():
        return _op(tensors, arrays.num_queries, spec, True)


def __getattr__(name: str) -> Any:
    """``LogRatioLoss`` moved to :mod:`logratio.nn`; the old path still works, and says so."""
    if name == "LogRatioLoss":
        import warnings

        warnings.warn(
            "logratio.backends.torch.LogRatioLoss moved: use logratio.LogRatioLoss "
            "(or logratio.nn.LogRatioLoss)",
            DeprecationWarning,
            stacklevel=2,
        )
        import importlib

        # by name: logratio.nn imports this module, not the other way round
        return importlib.import_module("logratio.nn").LogRatioLoss
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
