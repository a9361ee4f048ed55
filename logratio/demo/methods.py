"""The four training objectives the demo compares (Kim et al., CVPR 2019, Sec. 6).

Every method sees the same mini-batches, from :class:`logratio.DenseBatchSampler` (an
anchor, its 5 nearest neighbours in label space, random others, ordered by label distance to
the anchor, anchor first), trains the same network from the same initial weights for the
same number of steps, and differs only in its loss:

1. ``log-ratio, paper``: the log-ratio loss over every triplet ``(0, i, j)`` of the batch's
   anchor, ``(log D_0i/D_0j − log Δ_0i/Δ_0j)²`` (Eq. 4), ``anchors=0``;
2. ``log-ratio, every anchor``: the same loss with every batch member an anchor (the
   library's default, still O(B²) per batch);
3. ``binary triplet``: the paper's baseline with binary supervision: a sample is a positive
   of the anchor when it is among the anchor's 30 nearest labels in the training set,
   otherwise a negative; ``mean over (p, n) of max(0, D_0p − D_0n + 0.2)`` on L2-normalised
   embeddings;
4. ``triplet, dense``: the same margin loss on the paper's dense triplets
   (:func:`logratio.dense_triplets`): ``max(0, D_0i − D_0j + 0.2)`` for every pair with
   ``Δ_0i < Δ_0j``, on L2-normalised embeddings.

``D`` is the squared Euclidean embedding distance and ``Δ`` the angle distance on the circle.
The losses are written once against the Array API (``array_api_compat``), so the same code
runs on PyTorch tensors and JAX arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

import logratio

from .data import circle_distance


@dataclass(frozen=True)
class Method:
    """One training objective."""

    key: str  # identifier in the JSON output
    title: str  # name in the table and the plot
    loss: str  # "log_ratio", "binary_triplet" or "dense_triplet"
    every_anchor: bool  # every batch member an anchor, or only the batch's anchor (element 0)
    normalize: bool  # L2-normalise the embeddings (training and evaluation)


METHODS: tuple[Method, ...] = (
    Method("log_ratio_paper", "log-ratio, paper sampler (1 anchor)", "log_ratio", False, False),
    Method("log_ratio_every_anchor", "log-ratio, every anchor", "log_ratio", True, False),
    Method("binary_triplet", "binary triplet (30-NN positives)", "binary_triplet", False, True),
    Method("dense_triplet", "triplet, dense triplets", "dense_triplet", False, True),
)


@dataclass(frozen=True)
class Batch:
    """What a loss needs of one mini-batch, as NumPy arrays (the backend converts them).

    ``angles`` (B,) are the labels; ``positives`` (B,) marks the binary positives of the
    anchor (``binary_triplet`` only); ``triplets`` holds the (a, i, j) index arrays of
    :func:`logratio.dense_triplets` (``dense_triplet`` only).
    """

    indices: np.ndarray
    angles: np.ndarray
    positives: np.ndarray | None = None
    triplets: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


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
    if method.loss == "dense_triplet":
        anchors = None if method.every_anchor else 0
        trip = logratio.dense_triplets(circle_distance(y, y), anchors=anchors)
        return Batch(idx, y, triplets=tuple(np.asarray(t, dtype=np.int64) for t in trip))
    return Batch(idx, y)


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


def dense_triplet_loss(emb: Any, triplets: tuple[Any, Any, Any], margin: float) -> Any:
    """Mean over the triplets ``(a, i, j)`` (``Δ_ai < Δ_aj``) of ``max(0, D_ai − D_aj + m)``.

    ``D`` (B, B) comes from one Gram product, ``‖f_a‖² + ‖f_b‖² − 2 f_a·f_b``, accurate for
    the normalised embeddings it is used with; the triplets then gather scalars.
    """
    xp = array_api_compat.array_namespace(emb)
    a, i, j = triplets
    n = emb.shape[0]
    sq = xp.sum(emb * emb, axis=1)
    dist = xp.reshape(_hinge(sq[:, None] + sq[None, :] - 2 * (emb @ emb.T)), (-1,))
    if a.shape[0] == 0:
        return xp.sum(dist) * 0
    dai = xp.take(dist, a * n + i)
    daj = xp.take(dist, a * n + j)
    return xp.mean(_hinge(dai - daj + margin))


def method_loss(method: Method, emb: Any, batch: Batch, margin: float) -> Any:
    """The loss of ``method`` on the embeddings ``emb`` (B, d) of ``batch``.

    ``batch`` holds arrays of ``emb``'s framework (converted by the backend).
    """
    if method.loss == "binary_triplet" and method.every_anchor:
        raise ValueError("the binary-triplet baseline uses the batch's anchor only")
    if method.normalize:
        emb = l2_normalize(emb)
    if method.loss == "log_ratio":
        anchors = None if method.every_anchor else 0
        return logratio.log_ratio_loss(
            emb, batch.angles, label_metric=circle_distance, anchors=anchors
        )
    if method.loss == "binary_triplet":
        return binary_triplet_loss(emb, batch.positives, margin)
    if method.loss == "dense_triplet":
        return dense_triplet_loss(emb, batch.triplets, margin)
    raise ValueError(f"unknown loss {method.loss!r}")
