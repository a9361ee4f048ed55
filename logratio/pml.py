"""The log-ratio loss as a pytorch-metric-learning loss (``pip install logratio[pml]``).

:class:`LogRatioLoss` is a ``pytorch_metric_learning.losses.BaseMetricLossFunction``: it is
called like every loss of that library, ``loss_fn(embeddings, labels, indices_tuple=None,
ref_emb=None, ref_labels=None)``, returns a scalar through a PML reducer, and accepts a
miner's triplets.  Underneath it calls this project's functions, whose PyTorch derivative is
the closed-form gradient (docs/design.md §1.2):

* ``loss_fn(emb, labels)``: :func:`logratio.log_ratio_loss`, every triplet of the batch;
* ``loss_fn(emb, labels, ref_emb=R, ref_labels=RL)``: :func:`logratio.reference_log_ratio_loss`,
  every row of ``emb`` an anchor and every row of ``R`` a neighbour (a memory bank);
* ``loss_fn(emb, labels, indices_tuple=(a, i, j))``: :func:`logratio.triplet_log_ratio_loss`
  on those triplets, label distances from ``labels`` with ``label_metric``; with ``ref_emb``,
  ``a`` indexes ``emb`` and ``i``, ``j`` index ``ref_emb`` (PML's convention).

``labels`` are continuous, (B,) or (B, p); PML's own shape check, which requires (B,), is not
applied. :class:`RankNContrastLoss` and :class:`YAwareInfoNCELoss`
(:mod:`logratio._pml_contrastive`) are the other losses of the engine in the same idiom.
Importing this module imports pytorch-metric-learning; ``import logratio`` does not.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import BaseMetricLossFunction

from . import _validation as v
from ._pml_common import check_2d, check_reducer, label_tensor, loss_dict
from ._pml_contrastive import RankNContrastLoss, YAwareInfoNCELoss
from .distances import direct_distances
from .loss import log_ratio_loss, reference_log_ratio_loss
from .options import LossOptions
from .triplets import triplet_log_ratio_loss

__all__ = ["LogRatioLoss", "RankNContrastLoss", "YAwareInfoNCELoss"]

_SUPPORTED_DISTANCES = (
    "LpDistance(p=2, power=2) (squared Euclidean, the paper; the default, with "
    "normalize_embeddings=False) or LpDistance(p=2, power=1) (Euclidean), each with "
    "normalize_embeddings=False or True"
)


class LogRatioLoss(BaseMetricLossFunction):
    """The log-ratio loss of Kim et al., CVPR 2019, for continuous labels, in PML's idiom.

    Args:
      label_metric: how labels are compared: ``"euclidean"`` (default), ``"sqeuclidean"``,
        ``"cityblock"`` or a callable ``metric(labels_a, labels_b) -> (len(a), len(b))``
        tensor of non-negative distances.
      ties, eps, root_eps, block_size, compile: the options of
        :func:`logratio.log_ratio_loss`.
        ``ties`` and ``block_size`` concern the dense loss (without ``indices_tuple``).
      reduction: ``"mean"`` (default) over the counted triplets, or ``"sum"``: the loss
        reduces itself and reports ``reduction_type="already_reduced"``, which every PML
        reducer passes through.  ``"none"``: per-element losses for a PML reducer to act on:
        per-anchor sums over the anchor's triplets (``reduction_type="element"``, indices the
        anchor rows) for the dense and reference losses, per-triplet values
        (``reduction_type="triplet"``, indices the triplets) with an ``indices_tuple``.  The
        default ``MeanReducer`` then gives the mean over triplets with an ``indices_tuple``,
        and the mean over anchors of their sums (not the mean over triplets) otherwise.
      distance: the embedding distance, a PML ``LpDistance`` with ``p=2``: ``power=2`` is the
        squared Euclidean distance of the paper (``squared=True``, the default
        ``LpDistance(p=2, power=2, normalize_embeddings=False)``), ``power=1`` the Euclidean
        distance (``squared=False``, needed for ``root_eps``).  ``normalize_embeddings=True``
        L2-normalises the embeddings (and ``ref_emb``) first, differentiably.  Any other
        distance raises ``ValueError``.
      reducer: a PML reducer.  With ``reduction="mean"``/``"sum"`` only ``None``,
        ``MeanReducer`` or ``DoNothingReducer`` (a reducer would have nothing to act on);
        with ``reduction="none"`` any reducer except ``ClassWeightedReducer`` (it reads labels
        as class indices).
      kwargs: passed to ``BaseMetricLossFunction`` (``embedding_regularizer``,
        ``embedding_reg_weight``, ``collect_stats``).

    Call: ``loss_fn(embeddings, labels, indices_tuple=None, ref_emb=None, ref_labels=None)``
    with ``labels`` (B,) or (B, p) continuous (float or integer) and ``ref_labels`` (N,) or
    (N, p) with ``ref_emb`` (N, d).  ``indices_tuple``: ``None``, a triplet tuple ``(a, i, j)``
    (PML's ``(anchors, positives, negatives)``; the loss is symmetric in ``i`` and ``j``) or a
    (T, 3) index tensor.  A pair tuple ``(a1, p, a2, n)`` raises ``ValueError``: its
    positive/negative split comes from label equality, which continuous labels lack.

    ``ref_emb=None`` (or ``ref_emb`` the very tensor ``embeddings`` with ``ref_labels`` None or
    ``labels``, PML's "no reference" convention) is the dense loss of the batch; any other
    ``ref_emb`` is a reference set in which a copy of an anchor is an ordinary neighbour at
    distance 0, so keep the current batch out of a memory bank (enqueue it after the loss).
    """

    def __init__(
        self,
        *,
        label_metric: Any = "euclidean",
        ties: str = "include",
        eps: float = 1e-6,
        root_eps: float = 0.0,
        reduction: str = "mean",
        block_size: int | None = None,
        compile: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if "squared" in kwargs:
            raise TypeError(
                "squared is set by the distance: distance=LpDistance(p=2, power=2, "
                "normalize_embeddings=False) for squared=True, power=1 for squared=False"
            )
        reducer = kwargs.get("reducer")
        check_reducer(reducer, reduction)
        super().__init__(**kwargs)
        squared, _ = _distance_mode(self.distance)
        if root_eps and squared:
            raise ValueError(
                "root_eps applies to Euclidean distances: pass "
                "distance=LpDistance(p=2, power=1, normalize_embeddings=False) with "
                f"root_eps={root_eps!r}"
            )
        self.options = LossOptions(
            squared=squared, label_metric=label_metric, eps=eps, root_eps=root_eps, ties=ties,
            reduction=reduction, block_size=block_size, compile=compile,
        )  # fmt: skip

    def get_default_distance(self) -> LpDistance:
        return LpDistance(p=2, power=2, normalize_embeddings=False)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: Any = None,
        indices_tuple: Any = None,
        ref_emb: torch.Tensor | None = None,
        ref_labels: Any = None,
    ) -> torch.Tensor:
        """The loss, reduced by ``self.reducer``; ``BaseMetricLossFunction.forward`` without
        its check that labels are (B,) class labels."""
        self.reset_stats()
        check_2d(embeddings, "embeddings", "(batch_size, embedding_size)")
        if labels is None:
            raise ValueError(
                "LogRatioLoss needs labels: continuous labels of shape (batch_size,) or "
                "(batch_size, p)"
            )
        labels = label_tensor(labels, embeddings, "labels")
        if ref_emb is embeddings and (ref_labels is None or ref_labels is labels):
            ref_emb, ref_labels = None, None
        if ref_emb is None:
            if ref_labels is not None:
                raise ValueError("ref_labels was given without ref_emb")
        else:
            check_2d(ref_emb, "ref_emb", "(num_ref, embedding_size)")
            if ref_labels is None:
                raise ValueError(
                    "ref_emb needs ref_labels: the continuous labels of the reference rows"
                )
            ref_labels = label_tensor(ref_labels, ref_emb, "ref_labels")
        loss_dict = self.compute_loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        self.add_embedding_regularization_to_loss_dict(loss_dict, embeddings)
        return self.reducer(loss_dict, embeddings, labels)

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices_tuple: Any,
        ref_emb: torch.Tensor | None,
        ref_labels: torch.Tensor | None,
    ) -> dict[str, dict[str, Any]]:
        """``{"loss": {"losses", "indices", "reduction_type"}}``; ``ref_emb=None`` is the
        dense loss of the batch."""
        squared, normalize = _distance_mode(self.distance)  # read per call, like PML's losses
        o = self.options
        if squared != o.squared:
            o = o.replace(squared=squared)
        if normalize:
            embeddings = self.distance.normalize(embeddings)
            ref_emb = None if ref_emb is None else self.distance.normalize(ref_emb)
        if indices_tuple is None:
            return self._dense(o, embeddings, labels, ref_emb, ref_labels)
        triplets = _triplet_tuple(indices_tuple)
        return self._triplets(o, embeddings, labels, triplets, ref_emb, ref_labels)

    def _dense(self, o, embeddings, labels, ref_emb, ref_labels):
        kw = {
            "squared": o.squared, "label_metric": o.label_metric, "eps": o.eps,
            "root_eps": o.root_eps, "ties": o.ties, "reduction": o.reduction,
            "block_size": o.block_size, "compile": o.compile,
        }  # fmt: skip
        if ref_emb is None:
            losses = log_ratio_loss(embeddings, labels, **kw)
        else:
            losses = reference_log_ratio_loss(embeddings, ref_emb, labels, ref_labels, **kw)
        if o.reduction != "none":
            return loss_dict(losses, None, "already_reduced")
        if losses.shape[0] == 0:
            return self.zero_losses()
        anchors = torch.arange(losses.shape[0], device=embeddings.device)
        return loss_dict(losses, anchors, "element")

    def _triplets(self, o, embeddings, labels, triplets, ref_emb, ref_labels):
        a, i, j = triplets
        q = embeddings.shape[0]
        n = q if ref_emb is None else ref_emb.shape[0]
        where = "embeddings" if ref_emb is None else "ref_emb"
        for name, idx, size, of in (("anchors", a, q, "embeddings"), ("neighbours", i, n, where),
                                    ("neighbours", j, n, where)):  # fmt: skip
            if idx.numel() and (bool((idx < 0).any()) or bool((idx >= size).any())):
                raise ValueError(f"indices_tuple holds {name} out of range for {of} ({size} rows)")
        if ref_emb is None:
            f = embeddings
            dl = self._label_distances(embeddings, labels, labels)
        else:  # [queries; reference], neighbour indices shifted past the queries
            f = torch.cat([embeddings, ref_emb], dim=0)
            block = self._label_distances(embeddings, labels, ref_labels)
            dl = block.new_zeros((q + n, q + n))
            dl[:q, q:] = block
            i, j = i + q, j + q
        per = triplet_log_ratio_loss(
            f, dl, (a, i, j), squared=o.squared, eps=o.eps, root_eps=o.root_eps,
            reduction=o.reduction,
        )  # fmt: skip
        if o.reduction != "none":
            return loss_dict(per, None, "already_reduced")
        if per.shape[0] == 0:
            return self.zero_losses()
        return loss_dict(per, triplets, "triplet")

    def _label_distances(self, like, rows, cols):
        """(len(rows), len(cols)) label distances with ``label_metric``, computed the way the
        dense loss computes them (explicit differences, so equal gaps tie exactly)."""
        xp = v.namespace(like, name="embeddings")
        dtype = v.compute_dtype(xp, like)
        y = v.labels_for(xp, rows, rows.shape[0], like, dtype)
        z = v.labels_for(xp, cols, cols.shape[0], like, dtype)
        if y.shape[1] != z.shape[1]:
            raise ValueError("labels and ref_labels must have the same number of columns")
        return direct_distances(xp, y, z, self.options.label_metric)

    def extra_repr(self) -> str:
        o = self.options
        metric = getattr(o.label_metric, "__name__", repr(o.label_metric))
        return (
            f"squared={o.squared}, label_metric={metric}, eps={o.eps}, root_eps={o.root_eps}, "
            f"ties={o.ties!r}, reduction={o.reduction!r}, block_size={o.block_size}"
        )


def _distance_mode(distance: Any) -> tuple[bool, bool]:
    """``(squared, normalize)`` for a supported PML distance; ``ValueError`` otherwise."""
    if type(distance) is not LpDistance:
        raise ValueError(
            f"LogRatioLoss supports {_SUPPORTED_DISTANCES}; got {type(distance).__name__}"
        )
    if distance.p != 2 or distance.power not in (1, 2):
        raise ValueError(
            f"LogRatioLoss supports {_SUPPORTED_DISTANCES}; got "
            f"LpDistance(p={distance.p}, power={distance.power})"
        )
    return distance.power == 2, bool(distance.normalize_embeddings)


def _triplet_tuple(indices_tuple: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PML's ``(anchors, positives, negatives)``, or a (T, 3) tensor, as three index tensors."""
    if isinstance(indices_tuple, torch.Tensor):
        if indices_tuple.ndim != 2 or indices_tuple.shape[1] != 3:
            raise ValueError(
                "indices_tuple as a tensor must have shape (T, 3), rows (anchor, i, j); got "
                f"shape {tuple(indices_tuple.shape)}"
            )
        return indices_tuple[:, 0], indices_tuple[:, 1], indices_tuple[:, 2]
    if not isinstance(indices_tuple, (tuple, list)):
        raise TypeError(
            "indices_tuple must be a triplet tuple (anchors, i, j) of index tensors or a "
            f"(T, 3) tensor; got {type(indices_tuple).__name__}"
        )
    if len(indices_tuple) == 4:
        raise ValueError(
            "indices_tuple is a pair tuple (a1, p, a2, n): its positives and negatives come "
            "from label equality, which continuous labels do not have; pass triplets "
            "(anchors, i, j) (e.g. pytorch_metric_learning.utils.loss_and_miner_utils."
            "convert_to_triplets(pairs, labels), or logratio.dense_triplets) or no "
            "indices_tuple for the dense loss over every triplet"
        )
    if len(indices_tuple) != 3:
        raise ValueError(
            f"indices_tuple must be a triplet tuple (anchors, i, j); got {len(indices_tuple)} "
            "entries"
        )
    parts = tuple(torch.as_tensor(t) for t in indices_tuple)
    for t in parts:
        if t.ndim != 1 or t.shape[0] != parts[0].shape[0]:
            raise ValueError("indices_tuple must hold three 1-D index tensors of equal length")
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise TypeError(f"indices_tuple must hold integer indices; got dtype {t.dtype}")
    return parts
