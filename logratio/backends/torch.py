"""PyTorch adapter: the core's closed-form gradient as the autograd rule of the loss.

:func:`log_ratio_loss` on a ``torch.Tensor`` runs the Array API core (:mod:`logratio.loss`) on
the tensor's device and registers the closed-form gradient (DESIGN.md §1.2) as its derivative:
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
evaluates ``Σ_a w_a ∇S_a`` then.  The backward is first-order only: a second derivative raises
an error instead of silently returning zero.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch.autograd.function import once_differentiable

from .. import _validation as v
from .. import loss as _core
from ..distances import direct_distances

__all__ = ["LogRatioLoss", "log_ratio_loss", "log_ratio_loss_and_grad"]


class _Options(NamedTuple):
    """The non-tensor arguments of the custom op, in its schema's order."""

    squared: bool = True
    label_metric: str = "euclidean"
    eps: float = 1e-6
    ties: str = "include"
    reduction: str = "mean"
    block_size: int | None = None


_HALF = (torch.float16, torch.bfloat16)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _HALF else dtype


# --------------------------------------------------------------------------- the opaque kernel


@torch.library.custom_op("logratio::loss_and_grad", mutates_args=())
def _loss_and_grad(
    embeddings: torch.Tensor,
    labels: torch.Tensor | None,
    label_distances: torch.Tensor | None,
    anchors: torch.Tensor | None,
    mask: torch.Tensor | None,
    squared: bool,
    label_metric: str,
    eps: float,
    ties: str,
    reduction: str,
    block_size: int | None,
    want_grad: bool,
    row_weights: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reduced loss and, if ``want_grad``, ``Σ_a w_a ∇S_a`` times the reduction's scale.

    The gradient is in the compute dtype (float32 for half precision); without ``want_grad``
    it is an empty tensor.  ``row_weights`` (m,) are the ``w_a`` (default ones).
    """
    p = _core.prepare(
        embeddings, labels, label_distances=label_distances, anchors=anchors, mask=mask,
        squared=squared, label_metric=label_metric, eps=eps, ties=ties, reduction=reduction,
        block_size=block_size,
    )  # fmt: skip
    row_loss, row_count, grad = _core.evaluate(p, want_grad=want_grad, row_weights=row_weights)
    loss, scale = _core.reduce_loss(p, row_loss, row_count)
    if grad is None:
        grad = embeddings.new_empty((0,), dtype=_compute_dtype(embeddings.dtype))
    elif reduction != "none":
        grad = grad * scale
    if reduction == "none" and loss._base is not None:  # outputs may not be views
        loss = loss.clone()
    return loss, grad


@_loss_and_grad.register_fake
def _loss_and_grad_fake(
    embeddings, labels, label_distances, anchors, mask, squared, label_metric, eps, ties,
    reduction, block_size, want_grad, row_weights,
):  # fmt: skip
    dtype = _compute_dtype(embeddings.dtype)
    if reduction != "none":
        shape: tuple[Any, ...] = ()
    elif anchors is None:
        shape = (embeddings.shape[0],)
    elif anchors.dtype == torch.bool:
        shape = (torch.library.get_ctx().new_dynamic_size(),)
    else:
        shape = (anchors.numel(),)
    grad_shape = tuple(embeddings.shape) if want_grad else (0,)
    return embeddings.new_empty(shape, dtype=dtype), embeddings.new_empty(grad_shape, dtype=dtype)


# --------------------------------------------------------------------------- the autograd rule


class _LogRatioLossFn(torch.autograd.Function):
    """``loss = L(embeddings)`` with the closed-form ``∂L/∂embeddings`` as its derivative."""

    @staticmethod
    def forward(embeddings, labels, label_distances, anchors, mask, options, want_grad):
        return _loss_and_grad(
            embeddings, labels, label_distances, anchors, mask, *options, want_grad, None
        )

    @staticmethod
    def setup_context(ctx, inputs, output):
        embeddings, labels, label_distances, anchors, mask, options, want_grad = inputs
        _, grad = output
        ctx.mark_non_differentiable(grad)
        ctx.options = options
        ctx.out_dtype = embeddings.dtype
        ctx.grad_saved = want_grad
        if ctx.grad_saved:
            ctx.save_for_backward(grad)
        else:
            ctx.save_for_backward(embeddings, labels, label_distances, anchors, mask)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, _grad_of_grad):
        reduction = ctx.options.reduction
        if ctx.grad_saved:
            (grad,) = ctx.saved_tensors
        else:
            embeddings, labels, label_distances, anchors, mask = ctx.saved_tensors
            weights = grad_loss if reduction == "none" else None
            _, grad = _loss_and_grad(
                embeddings, labels, label_distances, anchors, mask, *ctx.options, True, weights
            )
        if reduction != "none":
            grad = grad * grad_loss.to(grad.dtype)
        return grad.to(ctx.out_dtype), None, None, None, None, None, None


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


def _arguments(
    embeddings: torch.Tensor,
    labels: Any,
    label_distances: Any,
    anchors: Any,
    mask: Any,
    options: dict[str, Any],
) -> tuple[tuple[torch.Tensor | None, ...], _Options]:
    """Tensor arguments and the options of the custom op, checked."""
    unknown = set(options) - set(_Options._fields)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    opts = _Options(**options)
    squared = opts.squared
    if not isinstance(squared, bool):
        raise TypeError(f"squared must be a bool; got {squared!r}")
    if isinstance(anchors, bool):
        raise TypeError(
            "anchors must be None, an int, an index array or a boolean mask; got a bool"
        )
    dev = embeddings.device
    labels = _tensor(labels, "labels", dev)
    label_distances = _tensor(label_distances, "label_distances", dev)
    metric = v.label_metric(opts.label_metric)
    if callable(metric):
        if labels is not None and label_distances is None:
            # a callable cannot cross the custom op's schema: the core's helper computes the
            # label distances here, and they enter the op as label_distances
            xp = v.namespace(embeddings, name="embeddings")
            dtype = v.compute_dtype(xp, embeddings)
            y = v.labels_for(xp, labels, embeddings.shape[0], embeddings, dtype)
            label_distances, labels = direct_distances(xp, y, y, metric), None
        metric = "euclidean"  # unused: the op sees label distances (or the core's error)
    tensors = (
        labels,
        label_distances,
        _tensor(anchors, "anchors", dev),
        _tensor(mask, "mask", dev),
    )
    return tensors, _Options(
        squared=squared,
        label_metric=metric,
        eps=v.positive_float("eps", opts.eps),
        ties=v.choice("ties", opts.ties, v.TIES),
        reduction=v.choice("reduction", opts.reduction, v.REDUCTIONS),
        block_size=v.optional_block_size(opts.block_size),
    )


def log_ratio_loss(
    embeddings: torch.Tensor,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    **options: Any,
) -> torch.Tensor:
    """:func:`logratio.log_ratio_loss` for a ``torch.Tensor``, differentiable by autograd.

    The backward is the core's closed-form gradient (first order).  Labels, label distances,
    anchors and masks may be tensors, NumPy arrays or lists; they move to the embeddings'
    device and are treated as constants.  Options: ``squared``, ``label_metric``, ``eps``,
    ``ties``, ``reduction``, ``block_size``, as in the core.
    """
    tensors, opts = _arguments(embeddings, labels, label_distances, anchors, mask, options)
    # the gradient of reduction="none" depends on the upstream vector: the backward computes it
    want_grad = torch.is_grad_enabled() and embeddings.requires_grad and opts.reduction != "none"
    loss, _ = _LogRatioLossFn.apply(embeddings, *tensors, opts, want_grad)
    return loss


def log_ratio_loss_and_grad(
    embeddings: torch.Tensor,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    **options: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`logratio.log_ratio_loss_and_grad` for a ``torch.Tensor``: plain values.

    Returns ``(loss, ∂loss/∂embeddings)`` without an autograd graph; the gradient has the
    embeddings' dtype and device.
    """
    tensors, opts = _arguments(embeddings, labels, label_distances, anchors, mask, options)
    with torch.no_grad():
        loss, grad = _loss_and_grad(embeddings, *tensors, *opts, True, None)
    return loss, grad.to(embeddings.dtype)


_UNSET: Any = object()


class LogRatioLoss(torch.nn.Module):
    """The dense log-ratio loss (Kim et al., CVPR 2019) as a ``torch.nn.Module``.

    ``loss_fn = LogRatioLoss(reduction="mean", ties="include", squared=True, ...)`` then
    ``loss_fn(embeddings, labels)`` or ``loss_fn(embeddings, label_distances=D)``, in the
    idiom of pytorch-metric-learning's losses.  The keyword options are those of
    :func:`logratio.log_ratio_loss`; ``anchors`` given here is the default of every call,
    and a call may override it.  The module holds no parameters.
    """

    def __init__(
        self,
        *,
        squared: bool = True,
        label_metric: Any = "euclidean",
        eps: float = 1e-6,
        ties: str = "include",
        reduction: str = "mean",
        block_size: int | None = None,
        anchors: Any = None,
    ) -> None:
        super().__init__()
        if not isinstance(squared, bool):
            raise TypeError(f"squared must be a bool; got {squared!r}")
        self.squared = squared
        self.label_metric = v.label_metric(label_metric)
        self.eps = v.positive_float("eps", eps)
        self.ties = v.choice("ties", ties, v.TIES)
        self.reduction = v.choice("reduction", reduction, v.REDUCTIONS)
        self.block_size = v.optional_block_size(block_size)
        self.anchors = anchors

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: Any = None,
        *,
        label_distances: Any = None,
        anchors: Any = _UNSET,
        mask: Any = None,
    ) -> torch.Tensor:
        return log_ratio_loss(
            embeddings, labels, label_distances=label_distances,
            anchors=self.anchors if anchors is _UNSET else anchors, mask=mask,
            squared=self.squared, label_metric=self.label_metric, eps=self.eps,
            ties=self.ties, reduction=self.reduction, block_size=self.block_size,
        )  # fmt: skip

    def extra_repr(self) -> str:
        metric = getattr(self.label_metric, "__name__", repr(self.label_metric))
        return (
            f"squared={self.squared}, label_metric={metric}, eps={self.eps}, "
            f"ties={self.ties!r}, reduction={self.reduction!r}, block_size={self.block_size}"
        )
