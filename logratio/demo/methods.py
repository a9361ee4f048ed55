"""The training objectives the demo compares (Kim et al., CVPR 2019, Sec. 6).

Every method trains the same network from the same initial weights for the same number of
steps, with the same anchor at every step, and differs in its loss and, for the binary
baseline, in how the rest of the batch is drawn.  The baselines are those of the authors'
released code (tjddus9597/Beyond-Binary-Supervision-CVPR19):

1. ``log-ratio, 1 anchor, released distance``: the log-ratio loss of the batch's anchor over
   every pair ``i < j`` of the other members, ``(log D_0i/D_0j − log Δ_0i/Δ_0j)²``, with the
   released code's distance ``D = sqrt(‖f_a − f_b‖² + 1e-4/d)`` (``squared=False,
   root_eps=1e-4/d``, d the embedding width; docs/design.md §6.1);
2. ``log-ratio, 1 anchor, squared``: the same with the paper's squared distance (Eq. 4);
3. ``log-ratio, every anchor``: the squared form with every batch member an anchor (the
   library's default, still O(B²) per batch);
4. ``binary triplet``: the authors' naive baseline.  Its batch is the anchor, 5 positives
   drawn at random from the anchor's 30 nearest labels in the training set, and negatives
   drawn at random from the samples outside them (:class:`NaiveBatchSampler`); the loss is
   the mean over every (positive, negative) pair of ``max(0, D_0p − D_0n + 0.2)``;
5. ``triplet, dense by position``: the authors' dense-triplet baseline on the dense batch:
   the mean over every pair of positions ``0 < i < j`` of ``max(0, D_0i − D_0j + 0.03)``.
   The batch is sorted by label distance to the anchor, so ``i < j`` means
   ``Δ_0i ≤ Δ_0j``; pairs of equal label distance are kept.

Methods 1–3 and 5 share the batches of :class:`logratio.DenseBatchSampler` (an anchor, its 5
nearest neighbours in label space, random others, ordered by label distance to the anchor,
anchor first).  In both triplet losses ``D`` is the squared Euclidean distance of
L2-normalised embeddings (the released code adds ``1e-4/d`` to it, which cancels in
``D_0i − D_0j``, and clamps the hinge at 1e-12 instead of 0, which changes no gradient);
``Δ`` is the angle distance on the circle.  The losses are written once against the Array API
(``array_api_compat``), so the same code runs on PyTorch tensors and JAX arrays.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

import logratio

from .data import circle_distance

__all__ = [
    "METHODS",
    "RELEASED_ROOT_EPS",
    "Batch",
    "Method",
    "NaiveBatchSampler",
    "binary_triplet_loss",
    "dense_triplet_loss",
    "l2_normalize",
    "make_batch",
    "method_loss",
    "methods_named",
]

#: The released code's constant under the square root, divided by the embedding width.
RELEASED_ROOT_EPS = 1e-4


@dataclass(frozen=True)
class Method:
    """One training objective."""

    key: str  # identifier in the JSON output
    title: str  # name in the table and the plot
    loss: str  # "log_ratio", "binary_triplet", "dense_triplet", "rank_n_contrast", "y_aware"
    every_anchor: bool  # every batch member an anchor, or only the batch's anchor (element 0)
    normalize: bool  # L2-normalise the embeddings (training and evaluation)
    margin: float = 0.0  # of the triplet losses
    squared: bool = True  # log-ratio: ‖f_a − f_b‖², else sqrt(‖f_a − f_b‖² + 1e-4/d)


METHODS: tuple[Method, ...] = (
    Method(
        "log_ratio_released",
        "log-ratio, 1 anchor, released distance (√(D²+1e-4/d))",
        "log_ratio",
        every_anchor=False,
        normalize=False,
        squared=False,
    ),
    Method(
        "log_ratio_squared",
        "log-ratio, 1 anchor, squared (paper Eq. 4)",
        "log_ratio",
        every_anchor=False,
        normalize=False,
    ),
    Method("log_ratio_every_anchor", "log-ratio, every anchor", "log_ratio", True, False),
    Method(
        "binary_triplet",
        "binary triplet, 5 of 30-NN positives",
        "binary_triplet",
        every_anchor=False,
        normalize=True,
        margin=0.2,
    ),
    Method(
        "dense_triplet",
        "triplet margin 0.03, dense triplets by position",
        "dense_triplet",
        every_anchor=False,
        normalize=True,
        margin=0.03,
    ),
    Method("rank_n_contrast", "Rank-N-Contrast, every anchor", "rank_n_contrast", True, False),
    Method("y_aware", "y-aware InfoNCE, every anchor", "y_aware", True, True),
)

#: The methods of ``logratio demo --long``: one anchor per batch under the same dense mining.
LONG_METHODS: tuple[str, ...] = ("log_ratio_released", "log_ratio_squared", "dense_triplet")


def methods_named(keys: tuple[str, ...]) -> tuple[Method, ...]:
    """The methods with these keys, in the order of ``keys``."""
    by_key = {m.key: m for m in METHODS}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; the methods are {tuple(by_key)}")
    return tuple(by_key[k] for k in keys)


@dataclass(frozen=True)
class Batch:
    """What a loss needs of one mini-batch, as NumPy arrays (the backend converts them).

    ``angles`` (B,) are the labels; ``positives`` (B,) marks the binary positives of the
    anchor (``binary_triplet`` only).
    """

    indices: np.ndarray
    angles: np.ndarray
    positives: np.ndarray | None = None


class NaiveBatchSampler:
    """The authors' naive batches for the binary-triplet baseline, one per anchor.

    For each batch of ``dense`` (a :class:`logratio.DenseBatchSampler`; only its anchor,
    element 0, is used, so every step has the same anchor as the dense methods), the batch is
    the anchor, ``positives`` samples drawn without replacement from the first ``pool``
    columns of ``neighbors[anchor]`` (the anchor's nearest labels in the training set), and
    ``len(batch) − 1 − positives`` samples drawn without replacement from the samples that
    are neither the anchor nor in that pool: anchor, positives, negatives, in that order.

    An iteration is one epoch of ``dense``; epoch ``e`` (``dense.epoch`` when it starts) draws
    from ``numpy.random.default_rng([seed, e, 1])``, so the batches are reproducible and
    independent of the dense sampler's own draws.
    """

    def __init__(
        self,
        dense: logratio.DenseBatchSampler,
        neighbors: np.ndarray,
        *,
        positives: int = 5,
        pool: int = 30,
    ) -> None:
        neighbors = np.asarray(neighbors)
        if neighbors.ndim != 2 or neighbors.shape[1] < pool:
            raise ValueError(f"neighbors must have at least pool = {pool} columns")
        if not 0 < positives <= pool:
            raise ValueError(f"positives must be in [1, pool = {pool}]; got {positives}")
        if dense.batch_size - 1 - positives > dense.num_samples - 1 - pool:
            raise ValueError("too few samples outside the pool for the negatives of a batch")
        self.dense = dense
        self.neighbors = neighbors[:, :pool].astype(np.int64)
        self.positives = positives
        self.seed = dense.seed

    def __len__(self) -> int:
        return len(self.dense)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.dense.epoch, 1])
        n = self.dense.num_samples
        for batch in self.dense:
            anchor = batch[0]
            pool = self.neighbors[anchor]
            pos = rng.choice(pool, size=self.positives, replace=False)
            outside = np.ones(n, dtype=bool)
            outside[pool] = False
            outside[anchor] = False
            neg = rng.choice(
                np.flatnonzero(outside), size=len(batch) - 1 - self.positives, replace=False
            )
            yield [anchor, *pos.tolist(), *neg.tolist()]


def make_batch(
    method: Method, indices: list[int], angles: np.ndarray, binary_neighbors: np.ndarray
) -> Batch:
    """The NumPy inputs of ``method``'s loss for the batch ``indices`` (anchor first).

    ``binary_neighbors`` (N, 30) is the training set's label-space neighbour table
    (:func:`logratio.knn_table`), which defines the binary positives.
    """
    idx = np.asarray(indices, dtype=np.int64)
    y = angles[idx]
    if method.loss == "binary_triplet":
        positives = np.isin(idx, binary_neighbors[idx[0]])
        positives[0] = False
        return Batch(idx, y, positives=positives)
    return Batch(idx, y)


def squared_circle_distance(a: Any, b: Any) -> Any:
    """The squared angle distance: y-aware InfoNCE's RBF kernel on the circle."""
    d = circle_distance(a, b)
    return d * d


def l2_normalize(emb: Any) -> Any:
    """``f / ‖f‖`` row by row (a tiny constant keeps the zero vector finite)."""
    xp = array_api_compat.array_namespace(emb)
    return emb / xp.sqrt(xp.sum(emb * emb, axis=1, keepdims=True) + 1e-12)


def _hinge(x: Any) -> Any:
    xp = array_api_compat.array_namespace(x)
    return xp.where(x > 0, x, xp.zeros_like(x))


def _sq_distances_to(xp: Any, emb: Any, anchor: int) -> Any:
    diff = emb - emb[anchor : anchor + 1, :]
    return xp.sum(diff * diff, axis=1)


def binary_triplet_loss(emb: Any, positives: Any, margin: float) -> Any:
    """Mean over positives ``p`` and negatives ``n`` of ``max(0, D_0p − D_0n + margin)``.

    ``emb`` (B, d), already normalised; element 0 is the anchor; ``positives`` (B,) bool.
    Negatives are the other members except the anchor.
    """
    xp = array_api_compat.array_namespace(emb)
    d = _sq_distances_to(xp, emb, 0)
    not_anchor = xp.arange(emb.shape[0], device=array_api_compat.device(emb)) != 0
    negatives = not_anchor & ~positives
    pair = xp.astype(positives[:, None] & negatives[None, :], emb.dtype)
    terms = _hinge(d[:, None] - d[None, :] + margin) * pair
    return xp.sum(terms) / xp.maximum(xp.sum(pair), xp.ones_like(xp.sum(pair)))


def dense_triplet_loss(emb: Any, margin: float) -> Any:
    """Mean over the positions ``0 < i < j`` of ``max(0, D_0i − D_0j + margin)``.

    ``emb`` (B, d), already normalised and sorted by label distance to the anchor (element
    0), so every pair ``i < j`` has ``Δ_0i ≤ Δ_0j`` (the released code's pairing, ties kept).
    """
    xp = array_api_compat.array_namespace(emb)
    n = emb.shape[0]
    if n < 3:
        return xp.sum(emb) * 0
    d = _sq_distances_to(xp, emb, 0)
    pos = xp.arange(n, device=array_api_compat.device(emb))
    pair = xp.astype((pos[:, None] < pos[None, :]) & (pos[:, None] > 0), emb.dtype)
    terms = _hinge(d[:, None] - d[None, :] + margin) * pair
    return xp.sum(terms) / ((n - 1) * (n - 2) / 2)


def method_loss(method: Method, emb: Any, batch: Batch) -> Any:
    """The loss of ``method`` on the embeddings ``emb`` (B, d) of ``batch``.

    ``batch`` holds arrays of ``emb``'s framework (converted by the backend).
    """
    if method.loss in ("binary_triplet", "dense_triplet") and method.every_anchor:
        raise ValueError(f"the {method.loss} baseline uses the batch's anchor only")
    if method.normalize:
        emb = l2_normalize(emb)
    if method.loss == "log_ratio":
        anchors = None if method.every_anchor else 0
        root_eps = 0.0 if method.squared else RELEASED_ROOT_EPS / emb.shape[1]
        return logratio.log_ratio_loss(
            emb,
            batch.angles,
            label_metric=circle_distance,
            anchors=anchors,
            squared=method.squared,
            root_eps=root_eps,
        )
    if method.loss == "rank_n_contrast":
        return logratio.rank_n_contrast_loss(emb, batch.angles, label_metric=circle_distance)
    if method.loss == "y_aware":
        return logratio.y_aware_infonce_loss(
            emb, batch.angles, label_metric=squared_circle_distance
        )
    if method.loss == "binary_triplet":
        return binary_triplet_loss(emb, batch.positives, method.margin)
    if method.loss == "dense_triplet":
        return dense_triplet_loss(emb, method.margin)
    raise ValueError(f"unknown loss {method.loss!r}")
