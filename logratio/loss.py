"""The log-ratio loss of Kim et al., *Deep Metric Learning Beyond Binary Supervision*, CVPR 2019.

For embeddings ``F`` (B×d), label distances ``Δ`` (B×B) and embedding distances
``D_ab = ‖f_a − f_b‖²`` (or ``‖f_a − f_b‖`` with ``squared=False``), the residual is

    U_ab = log(D_ab + ε) − log(Δ_ab + ε)

and the loss of a triplet (anchor a, neighbours i ≠ j) is ``l(a, i, j) = (U_ai − U_aj)²``
(paper, Eq. 4), counted once per unordered neighbour pair.  Over every pair of an anchor's
neighbour set N (n = |N|, Ū the mean of ``U_a·`` over N) the identity

    Σ_{i<j ∈ N} (U_ai − U_aj)² = n · Σ_{i∈N} (U_ai − Ū)²

turns the dense loss over all B·(B−1)·(B−2)/2 triplets into a per-row variance: O(B²(d + p))
time and O(block·B) memory, the cost of the distance matrix itself (docs/design.md §1.1).
The gradient is closed form (docs/design.md §1.2).

These are the public entry points.  Each builds one :class:`~logratio.options.LossOptions`
and hands the call to the adapter of the embeddings' framework (:mod:`logratio.backends`):
PyTorch and JAX register the closed-form gradient as their autograd rule, CuPy, NumPy and
other Array API arrays run the core (:mod:`logratio._dense`) directly.
"""

from __future__ import annotations

from typing import Any

from . import _validation as v
from ._problem import Arrays
from ._validation import Array
from .backends import call
from .options import LossOptions, Spec

__all__ = [
    "log_ratio_loss",
    "log_ratio_loss_and_grad",
    "reference_log_ratio_loss",
    "reference_log_ratio_loss_and_grad",
]


def log_ratio_loss(
    embeddings: Array,
    labels: Any = None,
    *,
    label_distances: Any = None,
    anchors: Any = None,
    mask: Any = None,
    squared: bool = True,
    label_metric: Any = "euclidean",
    eps: float = 1e-6,
    root_eps: float = 0.0,
    ties: str = "include",
    reduction: str = "mean",
    block_size: int | None = None,
    compile: bool | None = None,
    axis_name: str | None = None,
) -> Array:
    """Dense log-ratio loss over every triplet of the batch (Kim et al., CVPR 2019, Eq. 4).

    ``L = mean over counted triplets (a, i, j) of (log D_ai/D_aj − log Δ_ai/Δ_aj)²`` with
    ``ε = eps`` added to every distance before the log.

    Args:
      embeddings: (B, d) floating array: NumPy, PyTorch, JAX, CuPy or any Array API array.
      labels: (B,) or (B, p) continuous labels; their distances use ``label_metric``.
      label_distances: (B, B) non-negative label distances, instead of ``labels``.
      anchors: ``None`` (every row is an anchor), an int (``0``: the paper's mini-batch),
        an index array or a boolean mask of shape (B,).  Indices follow Python's rules: a
        negative index counts from the end (``-1`` is the last row); a repeated index makes
        its row an anchor as many times (its loss and its triplets counted each time, as
        for a weighted anchor); out-of-range indices are an error.
      mask: (B, B) boolean, the (anchor, neighbour) pairs that may form triplets.
      squared: squared Euclidean embedding distances (the paper) or Euclidean (the
        authors' released code).
      label_metric: ``"euclidean"``, ``"sqeuclidean"``, ``"cityblock"`` or a callable
        ``metric(labels_a, labels_b) -> (len(labels_a), len(labels_b))``, called with arrays
        of the embeddings' kind.
      eps: added to both distances before the log.
      root_eps: with ``squared=False``, distances ``sqrt(‖f_a − f_b‖² + root_eps)`` for
        a ≠ b, as the released implementations compute them (docs/design.md §6.1).  The
        authors' mini-batch loss is exactly
        ``log_ratio_loss(F, label_distances=L, anchors=0, squared=False, root_eps=1e-4 / d)``
        (d the embedding width); HEBO's ``LogRatioLossTorch`` is exactly
        ``log_ratio_loss(F, Y, squared=False, label_metric="cityblock", ties="exclude",
        root_eps=1e-4 / B)``.
      ties: ``"include"`` counts neighbour pairs with equal label distance once (authors'
        code); ``"exclude"`` drops them (the paper's strict ``Δ_ai < Δ_aj``).
      reduction: ``"mean"`` over counted triplets, ``"sum"``, or ``"none"``: per-anchor sums
        of shape (number of anchors,).
      block_size: anchors per block; memory is O(block_size · B).  Default: about 2²¹ / B, at
        least 256 (under JAX 512 rows; on CUDA with PyTorch as many as a quarter of the free
        memory holds).
      compile: PyTorch only: the core's block kernel compiled with inductor (the default,
        unless the environment variable ``LOGRATIO_COMPILE=0``) or, with ``False``, run
        eagerly; the results are the same (docs/design.md §4).
      axis_name: JAX only: inside ``jax.shard_map`` or ``jax.pmap`` over this mapped axis,
        ``embeddings`` and ``labels`` are this device's shard of a global batch (the shards
        in axis order) and the loss is that of the global batch (docs/design.md §6.2):
        each device evaluates its own anchors against the all-gathered batch, and the sums
        and triplet counts are ``psum``-ed.  ``"mean"`` / ``"sum"`` return the global loss on
        every device; ``"none"`` this device's anchors' losses; ``anchors`` index this
        device's shard.  ``label_distances`` and ``mask`` are not supported here.  The
        gradient of the mapped function (``jax.grad`` outside the map) is that of the
        single-device loss.  For PyTorch across processes see
        :func:`logratio.distributed.log_ratio_loss`.

    Returns:
      The loss in the embeddings' namespace and device, in float32 for half-precision input
      and in the embeddings' dtype otherwise.  A batch without any triplet gives 0.

    Array types: a ``torch.Tensor`` gets a loss whose autograd derivative is the closed-form
    gradient (``loss.backward()``, ``torch.compile``, ``torch.func.grad``); a JAX array gets a
    ``jax.custom_jvp`` rule (``jax.grad``, ``jax.jvp``, ``jax.jit``, ``jax.vmap``); CuPy and
    other Array API arrays run the core on their own device.  Labels, label distances,
    anchors and masks given as NumPy arrays or lists move to the embeddings' namespace and
    device.

    Cost: O(B²(d + p)) time (O(B² log B) more with ``ties="exclude"``), O(block_size · B)
    memory.
    """
    options = LossOptions(
        squared=squared, label_metric=label_metric, eps=eps, root_eps=root_eps, ties=ties,
        reduction=reduction, block_size=block_size, compile=compile,
    )  # fmt: skip
    arrays = Arrays(embeddings, labels, label_distances, anchors, mask)
    return call("loss", arrays, options.spec(), axis_name)


def log_ratio_loss_and_grad(
    embeddings: Array, labels: Any = None, *, label_distances: Any = None, anchors: Any = None,
    mask: Any = None, axis_name: str | None = None, **options: Any,
) -> tuple[Array, Array]:  # fmt: skip
    """The loss of :func:`log_ratio_loss` and its closed-form gradient ``∂L/∂embeddings``.

    The gradient (docs/design.md §1.2) has the embeddings' shape, dtype, namespace and device;
    no autograd graph is recorded.  With ``reduction="none"`` it is the gradient of the sum
    of the per-anchor losses.  Arguments and keyword options (``squared``, ``label_metric``,
    ``eps``, ``root_eps``, ``ties``, ``reduction``, ``block_size``, ``compile``) as in
    :func:`log_ratio_loss`.  With ``axis_name`` (JAX, inside ``shard_map`` / ``pmap``) the
    gradient is that of the global loss with respect to this device's shard: the
    all-gather's transpose, a ``psum_scatter``.  Cost: one more B×B×d matrix product than
    the loss alone.
    """
    spec = LossOptions.from_kwargs(options, "log_ratio_loss_and_grad").spec()
    arrays = Arrays(embeddings, labels, label_distances, anchors, mask)
    return call("loss_and_grad", arrays, spec, axis_name)


def reference_log_ratio_loss(
    queries: Array, reference: Array, query_labels: Any = None, reference_labels: Any = None,
    *, label_distances: Any = None, anchors: Any = None, mask: Any = None, **options: Any,
) -> Array:  # fmt: skip
    """The log-ratio loss of queries against a reference set (a memory bank, another view).

    Every query ``q`` is an anchor and every reference row a neighbour: the loss over the
    triplets ``(q, i, j)`` with ``i ≠ j`` in the reference set, by the same per-row identity
    as :func:`log_ratio_loss` (docs/design.md §1.1), O(Q·N·(d + p)) time.  A reference row
    equal to the query (the same sample in both sets) is an ordinary neighbour at distance 0.

    Args:
      queries: (Q, d) embeddings of the anchors.
      reference: (N, d) embeddings of the neighbours, the same array type.
      query_labels, reference_labels: (Q,) / (Q, p) and (N,) / (N, p) labels; or ``None``
        with ``label_distances`` (Q, N).
      anchors: a subset of the queries (an int, indices or a boolean mask of shape (Q,)).
      mask: (Q, N) boolean, the (query, reference) pairs allowed.
      options: as in :func:`log_ratio_loss` (``squared``, ``label_metric``, ``eps``,
        ``root_eps``, ``ties``, ``reduction``, ``block_size``, ``compile``).

    Returns:
      The loss; differentiable with respect to both ``queries`` and ``reference`` under
      PyTorch and JAX.  ``reduction="none"`` gives one value per query (anchor).
    """
    embeddings, labels, spec = _stack_reference(
        queries, reference, query_labels, reference_labels, options
    )
    arrays = Arrays(embeddings, labels, label_distances, anchors, mask, queries.shape[0])
    return call("loss", arrays, spec)


def reference_log_ratio_loss_and_grad(
    queries: Array, reference: Array, query_labels: Any = None, reference_labels: Any = None,
    *, label_distances: Any = None, anchors: Any = None, mask: Any = None, **options: Any,
) -> tuple[Array, Array, Array]:  # fmt: skip
    """:func:`reference_log_ratio_loss` and its closed-form gradients:
    ``(loss, ∂loss/∂queries, ∂loss/∂reference)``."""
    embeddings, labels, spec = _stack_reference(
        queries, reference, query_labels, reference_labels, options
    )
    arrays = Arrays(embeddings, labels, label_distances, anchors, mask, queries.shape[0])
    loss, grad = call("loss_and_grad", arrays, spec)
    q = queries.shape[0]
    return loss, grad[:q, ...], grad[q:, ...]


def _stack_reference(
    queries: Any, reference: Any, query_labels: Any, reference_labels: Any, options: dict
) -> tuple[Array, Array | None, Spec]:
    """``[queries; reference]``, their labels stacked, and the spec of the options."""
    if "num_queries" in options:
        raise TypeError("num_queries is set by the reference loss itself")
    xp = v.namespace(queries, reference, name="queries and reference")
    for name, x in (("queries", queries), ("reference", reference)):
        v.embeddings_2d(xp, x, name=name)
    if queries.shape[1] != reference.shape[1]:
        raise ValueError(
            f"reference must have {queries.shape[1]} columns like queries; got shape "
            f"{tuple(reference.shape)}"
        )
    if (query_labels is None) != (reference_labels is None):
        raise ValueError("pass both query_labels and reference_labels, or neither")
    labels = None
    if query_labels is not None:
        parts = []
        for name, y, n in (
            ("query_labels", query_labels, queries.shape[0]),
            ("reference_labels", reference_labels, reference.shape[0]),
        ):
            y = v.as_array(xp, y, like=queries, name=name)
            if y.ndim not in (1, 2) or y.shape[0] != n:
                raise ValueError(f"{name} must have shape ({n},) or ({n}, p); got {y.shape}")
            if xp.isdtype(y.dtype, "real floating"):
                v.check_finite(xp, y, name, nonnegative=False)
            parts.append(xp.reshape(y, (n, 1)) if y.ndim == 1 else y)
        if parts[0].shape[1] != parts[1].shape[1]:
            raise ValueError("query_labels and reference_labels must have the same columns")
        labels = xp.concat(parts, axis=0)
    spec = LossOptions.from_kwargs(options, "reference_log_ratio_loss").spec()
    return xp.concat([queries, reference], axis=0), labels, spec
