"""Any loss of the engine over the global batch of data-parallel PyTorch training.

:func:`global_batch_loss` serves every formula (docs/design.md §7); :func:`log_ratio_loss`
is the log-ratio loss's entry point.

Under ``DistributedDataParallel`` (or FSDP) each process holds a shard of the batch.  Every
anchor's term ``S_a`` depends only on its row against the whole batch (docs/design.md §6.2),
so each process gathers the embeddings and labels of all ranks, evaluates its **own** anchors
against the gathered batch (O(B_local · B_global) memory and time) and all-reduces the sum of
its anchors' losses and counts (triplet counts for the log-ratio loss).  The value on every
rank is the loss of the concatenated batch (the shards in rank order), and the mean's
denominator is the global count.

The gradient goes through a differentiable all-gather: rank ``r``'s closed-form gradient of
its anchors' part, ``∂(S_r / T)/∂F`` over the whole gathered batch (docs/design.md §1.2), is
reduce-scattered in the backward, so that the owner of row ``a`` receives
``Σ_r ∂(S_r / T)/∂f_a = ∂L/∂f_a``, exactly the single-process gradient of its rows.

**Gradient scaling.**  DDP averages parameter gradients over the ``W`` ranks.  With the
default ``gradient="ddp-mean"`` the backward hands the embeddings ``W · ∂L/∂f_a``, so that
after DDP's average the parameter gradients equal those of single-process training on the
concatenated batch; the **reported loss is not scaled**, it is the true global loss.  With
``gradient="sum"`` the embeddings receive ``∂L/∂f_a`` itself, for training loops that sum
the ranks' parameter gradients (``all_reduce`` with ``SUM``) or need the exact local part.
With ``reduction="none"`` each rank gets its own anchors' losses, and the gradient is that of
the sum over the ranks of what each builds from them (``Σ_r Σ_{a∈R_r} w_a S_a`` for
upstream weights ``w``), scaled in the same way.

Every rank must call ``backward`` on the loss (the backward is a collective, as DDP's is);
the loss's backward runs before any parameter gradient is ready, so its collective precedes
DDP's gradient buckets on every rank.  Eager mode only: not under ``torch.compile`` or
``torch.func`` transforms, and not twice differentiable.

Collectives per call, for a global batch of B rows of width d and p label columns (W ranks,
``B_max`` the largest shard): forward, one all-gather of W·5 int64 (shard sizes, widths,
dtype, input status), one all-gather of W·B_max·d embeddings and W·B_max·p labels, one
all-reduce of 2 scalars; backward, one reduce-scatter of W·B_max·d gradient values (an
all-reduce of B·d where the backend has no reduce-scatter).

This module imports PyTorch; ``import logratio`` does not import it.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable

from . import _dense
from . import _validation as v
from ._problem import Inputs, make_problem
from .formulas.rank_n_contrast import RankNContrast
from .formulas.y_aware import YAwareInfoNCE
from .options import LossOptions, Spec

__all__ = [
    "GRADIENT_MODES",
    "global_batch_loss",
    "log_ratio_loss",
    "rank_n_contrast_loss",
    "y_aware_infonce_loss",
]

Gradient = Literal["ddp-mean", "sum"]
#: ``gradient=`` choices: how the caller combines the ranks' parameter gradients afterwards.
GRADIENT_MODES = ("ddp-mean", "sum")

#: reduce-scatter the backward where the backend supports it (else all-reduce, then slice);
#: a switch for the tests, which check both paths on gloo
_USE_REDUCE_SCATTER = True

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def log_ratio_loss(
    embeddings: torch.Tensor,
    labels: Any = None,
    *,
    group: Any = None,
    gradient: Gradient = "ddp-mean",
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    **options: Any,
) -> torch.Tensor:
    """The dense log-ratio loss of the global batch, from this rank's shard.

    Every rank of ``group`` must call it (a collective), with the same options, and every
    rank that calls ``backward`` on a result must be matched by all the others, as under DDP.

    Args:
      embeddings: (B_r, d) floating tensor, this rank's shard; shard sizes may differ between
        ranks (a rank may hold none), ``d`` and the dtype may not.
      labels: (B_r,) or (B_r, p) continuous labels of this shard (tensor, NumPy array or
        list); their distances use ``label_metric`` (a callable metric receives tensors).
      group: the process group (default: the world).  The global batch is the ranks' shards
        concatenated in the group's rank order.
      gradient: ``"ddp-mean"`` (default) scales the backward by the group size ``W``, so that
        DDP's (or FSDP's) averaging of parameter gradients over the ranks gives the gradient
        of single-process training on the global batch; ``"sum"`` leaves the embeddings'
        gradient unscaled, ``∂L/∂embeddings``, for callers that sum the ranks' gradients.
        The returned value is never scaled.
      label_distances: not supported: a (B, B) matrix belongs to one batch and cannot be
        sharded; pass labels (with a callable ``label_metric`` for a custom distance).
      anchors: ``None`` (every row is an anchor), or this rank's anchors as an int, index
        array or boolean mask into its own shard.
      mask: not supported (a ``ValueError``).
      **options: ``squared``, ``label_metric``, ``eps``, ``root_eps``, ``ties``,
        ``reduction``, ``block_size`` as in :func:`logratio.log_ratio_loss`.

    Returns:
      ``"mean"`` / ``"sum"``: the 0-d loss of the global batch, equal on every rank (the
      single-process loss of the concatenated batch).  ``"none"``: this rank's anchors'
      per-anchor losses ``S_a`` against the global batch.

    Memory and time per rank: O(B_r · B · (d + p)) for the loss, plus the gathered (B, d)
    batch and a (B, d) gradient buffer.
    """
    spec = LossOptions.from_kwargs(options, "logratio.distributed.log_ratio_loss").spec()
    return global_batch_loss(
        embeddings, labels, spec, group=group, gradient=gradient,
        label_distances=label_distances, anchors=anchors, mask=mask,
    )  # fmt: skip


def y_aware_infonce_loss(
    embeddings: torch.Tensor,
    labels: Any = None,
    *,
    group: Any = None,
    gradient: Gradient = "ddp-mean",
    anchors: Any = None,
    temperature: float = 0.1,
    sigma: float = 1.0,
    label_metric: Any = "sqeuclidean",
    weights: str = "paper",
    reduction: str = "mean",
    block_size: int | None = None,
) -> torch.Tensor:
    """y-aware InfoNCE (:func:`logratio.y_aware_infonce_loss`) of the global batch, from this
    rank's shard; ``group`` and ``gradient`` as in :func:`log_ratio_loss`.  With
    ``weights="released"`` every neighbour's row sum runs over the global batch."""
    formula = YAwareInfoNCE(temperature, sigma, label_metric, weights)
    spec = Spec.of(formula, reduction, block_size=block_size)
    return global_batch_loss(
        embeddings, labels, spec, group=group, gradient=gradient, anchors=anchors
    )


def rank_n_contrast_loss(
    embeddings: torch.Tensor,
    labels: Any = None,
    *,
    group: Any = None,
    gradient: Gradient = "ddp-mean",
    anchors: Any = None,
    temperature: float = 2.0,
    label_metric: Any = "cityblock",
    reduction: str = "mean",
    block_size: int | None = None,
) -> torch.Tensor:
    """Rank-N-Contrast (:func:`logratio.rank_n_contrast_loss`) of the global batch, from
    this rank's shard; ``group`` and ``gradient`` as in :func:`log_ratio_loss`."""
    spec = Spec.of(RankNContrast(temperature, label_metric), reduction, block_size=block_size)
    return global_batch_loss(
        embeddings, labels, spec, group=group, gradient=gradient, anchors=anchors
    )


def global_batch_loss(
    embeddings: torch.Tensor,
    labels: Any,
    spec: Spec,
    *,
    group: Any = None,
    gradient: str = "ddp-mean",
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
) -> torch.Tensor:
    """The loss of any formula (``spec``) over the global batch, from this rank's shard:
    every loss's distributed entry point calls it.  Arguments as in :func:`log_ratio_loss`."""
    if gradient not in GRADIENT_MODES:
        raise ValueError(f"gradient must be one of {GRADIENT_MODES}; got {gradient!r}")
    if label_distances is not None:
        raise ValueError(
            "label_distances cannot be sharded: a (B, B) matrix describes one whole batch. "
            "Pass this rank's labels (B_r,) or (B_r, p) instead, with a callable "
            "label_metric for a custom label distance"
        )
    if mask is not None:
        raise ValueError(
            "mask is not supported by the global-batch loss; use anchors= (this rank's "
            "anchors, as indices into its shard) or the single-process loss"
        )
    if labels is None:
        raise ValueError("labels are required: pass this rank's labels (B_r,) or (B_r, p)")
    if not isinstance(embeddings, torch.Tensor):
        raise TypeError(f"embeddings must be a torch.Tensor; got {type(embeddings).__name__}")
    if isinstance(anchors, bool):
        raise TypeError(
            "anchors must be None, an int, an index array or a boolean mask; got a bool"
        )
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "torch.distributed is not initialized: call torch.distributed.init_process_group "
            "first, or use the single-process loss for the batch of one process"
        )
    want_grad = torch.is_grad_enabled() and embeddings.requires_grad
    return _GlobalBatchLoss.apply(embeddings, labels, anchors, spec, group, gradient, want_grad)


class _GlobalBatchLoss(torch.autograd.Function):
    """Gather, evaluate this rank's anchors with the core, all-reduce; reduce-scatter back.

    The forward saves this rank's part of the gradient over the gathered batch, already in
    closed form (:func:`logratio._dense.anchor_terms`); for ``reduction="none"`` it depends on
    the upstream weights and is evaluated in the backward.
    """

    @staticmethod
    def forward(ctx, embeddings, labels, anchors, spec, group, gradient, want_grad):
        shard = _Shard.gather(embeddings, labels, anchors, group)
        inputs, shard.inputs = shard.inputs, None  # the backward keeps only what it saves
        p = make_problem(inputs, spec)
        ctx.shard, ctx.spec, ctx.gradient = shard, spec, gradient
        ctx.dtype = embeddings.dtype
        if spec.reduction == "none":
            row_loss, _, _ = _dense.anchor_terms(p)
            if want_grad:
                ctx.save_for_backward(inputs.embeddings, inputs.labels)
                ctx.anchors = inputs.anchors  # a range, or this rank's index tensor
            return row_loss + p.nonfinite
        row_loss, row_count, grad = _dense.anchor_terms(p, want_grad=want_grad)
        totals = torch.stack([row_loss.sum(), row_count.sum()])
        shard.all_reduce(totals)
        value, scale = _dense.reduce_totals(torch, spec.reduction, totals[0], totals[1])
        if want_grad:
            ctx.save_for_backward(_dense.finish_grad(p, grad, scale))
        return value + p.nonfinite

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_value):
        shard = ctx.shard
        if ctx.spec.reduction == "none":
            f, y = ctx.saved_tensors
            p = make_problem(Inputs(f, y, None, ctx.anchors, None), ctx.spec)
            _, grad = _dense.loss_and_grad(p, row_weights=grad_value.to(p.features.dtype))
        else:
            (grad,) = ctx.saved_tensors
            grad = grad * grad_value.to(grad.dtype)
        grad = shard.reduce_scatter(grad)
        if ctx.gradient == "ddp-mean":
            grad = grad * shard.world
        return grad.to(ctx.dtype), None, None, None, None, None, None


class _Shard:
    """This rank's place in the global batch, and the collectives over it."""

    def __init__(self, group, rank, world, sizes, inputs, pad_to):
        self.group = group
        self.rank = rank
        self.world = world
        self.sizes = sizes  # shard sizes in rank order
        self.offset = sum(sizes[:rank])
        self.inputs = inputs  # the gathered batch, with this rank's anchors
        self.pad_to = pad_to  # rows per rank in the padded collectives

    @classmethod
    def gather(cls, embeddings, labels, anchors, group) -> _Shard:
        """Check the local shard, exchange shapes (every rank learns of a bad shard, so none
        waits in a collective that another skipped), then gather the batch."""
        rank, world = dist.get_rank(group), dist.get_world_size(group)
        dev = embeddings.device
        error = None
        y = local_anchors = None
        try:
            xp = v.namespace(embeddings, name="embeddings")
            v.embeddings_2d(xp, embeddings)
            dtype = v.compute_dtype(xp, embeddings)
            y = v.labels_for(
                xp, _tensor(labels, "labels", dev), embeddings.shape[0], embeddings, dtype
            )
            local_anchors = v.anchors_for(
                xp, _tensor(anchors, "anchors", dev), embeddings.shape[0], embeddings
            )
        except (TypeError, ValueError) as err:
            error = err
        width = embeddings.shape[-1] if embeddings.ndim == 2 else -1
        header = torch.tensor(
            [
                int(error is not None),
                embeddings.shape[0] if embeddings.ndim == 2 else 0,
                width,
                -1 if y is None else y.shape[1],
                _DTYPES.index(embeddings.dtype) if embeddings.dtype in _DTYPES else -1,
            ],
            dtype=torch.int64,
            device=dev,
        )
        headers = torch.empty(world * header.numel(), dtype=torch.int64, device=dev)
        _all_gather_single(headers, header, group)
        status, sizes, widths, columns, dtypes = headers.view(world, -1).T.tolist()
        if error is not None:
            raise error
        bad = [r for r in range(world) if status[r]]
        if bad:
            raise ValueError(
                f"rank(s) {bad} of the process group rejected their inputs (see the error "
                "raised there); the global-batch loss needs every rank's shard"
            )
        for name, values in (("width d", widths), ("label columns p", columns), ("dtype", dtypes)):
            if len(set(values)) > 1:
                shown = [str(_DTYPES[k]) for k in values] if name == "dtype" else values
                raise ValueError(
                    f"the embeddings' shards must agree in {name} across ranks; got {shown} "
                    "in rank order"
                )
        pad_to = max(sizes)
        f = cls._gather_rows(embeddings.detach(), sizes, pad_to, group)
        y = cls._gather_rows(y, sizes, pad_to, group)
        offset = sum(sizes[:rank])
        if local_anchors is None:  # a contiguous run: the core slices it
            rows = range(offset, offset + sizes[rank])
        else:
            rows = local_anchors.to(torch.int64) + offset
        return cls(group, rank, world, sizes, Inputs(f, y, None, rows, None), pad_to)

    @staticmethod
    def _gather_rows(x, sizes, pad_to, group):
        """All shards of ``x`` concatenated in rank order (padded to ``pad_to`` rows each)."""
        world = len(sizes)
        if pad_to == 0:
            return x.new_empty((0, *x.shape[1:]))
        if x.shape[0] < pad_to:
            x = torch.cat([x, x.new_zeros((pad_to - x.shape[0], *x.shape[1:]))])
        out = x.new_empty((world * pad_to, *x.shape[1:]))
        _all_gather_single(out, x.contiguous(), group)
        return _unpad(out, sizes, pad_to)

    def all_reduce(self, x: torch.Tensor) -> None:
        dist.all_reduce(x, op=dist.ReduceOp.SUM, group=self.group)

    def reduce_scatter(self, grad: torch.Tensor) -> torch.Tensor:
        """Sum the ranks' (B, d) gradients over the gathered batch; this rank's rows of it."""
        size, pad_to, world = self.sizes[self.rank], self.pad_to, self.world
        if pad_to == 0:
            return grad
        if not _USE_REDUCE_SCATTER:
            grad = grad.contiguous()
            self.all_reduce(grad)
            return grad[self.offset : self.offset + size]
        if any(s != pad_to for s in self.sizes):
            padded = grad.new_zeros((world * pad_to, grad.shape[1]))
            for r, s in enumerate(self.sizes):
                start = sum(self.sizes[:r])
                padded[r * pad_to : r * pad_to + s] = grad[start : start + s]
            grad = padded
        out = grad.new_empty((pad_to, grad.shape[1]))
        try:
            _reduce_scatter_single(out, grad.contiguous(), self.group)
        except (RuntimeError, NotImplementedError) as err:
            # a backend without reduce-scatter (older gloo) refuses it on every rank alike
            # before communicating: all-reduce instead, from now on
            if "support" not in str(err).lower():
                raise
            _disable_reduce_scatter()
            return self.reduce_scatter(_unpad(grad, self.sizes, pad_to))
        return out[:size]


def _disable_reduce_scatter() -> None:
    global _USE_REDUCE_SCATTER
    _USE_REDUCE_SCATTER = False


def _unpad(x, sizes, pad_to):
    """The rows of a padded (W·pad_to, ...) buffer that hold data, in rank order."""
    if all(s == pad_to for s in sizes):
        return x
    return torch.cat([x[r * pad_to : r * pad_to + s] for r, s in enumerate(sizes)])


def _all_gather_single(out, x, group):
    fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    fn(out, x, group=group)


def _reduce_scatter_single(out, x, group):
    fn = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    fn(out, x, op=dist.ReduceOp.SUM, group=group)


def _tensor(x: Any, name: str, device: torch.device) -> torch.Tensor | None:
    """``x`` (tensor, NumPy array, list, int) as a tensor on ``device``; None stays None."""
    if x is None or isinstance(x, int):
        return x
    if isinstance(x, torch.Tensor):
        return x.detach().to(device)
    try:
        return torch.as_tensor(x, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} could not be converted to a torch tensor: {err}") from err
