"""The paper's mini-batches for dense triplet mining (Kim et al., CVPR 2019, Sec. 4).

A mini-batch is an anchor, its ``k`` nearest neighbours in label space, and random other
samples, ordered by increasing label distance to the anchor; every training sample is the
anchor once per epoch (the authors used batches of 150 with k = 5).  All triplets of the
batch are then used by the log-ratio loss (docs/design.md §2).

:class:`DenseBatchSampler` yields lists of sample indices and works as a
``torch.utils.data.DataLoader(batch_sampler=...)`` unchanged; it imports no framework.
The neighbour table is built once by :func:`logratio.knn_table` (a sort for scalar labels,
a KD-tree for low-dimensional ones: seconds for N = 10⁶, never O(N²) memory), and the
batches of an epoch are then drawn and ordered thousands at a time with NumPy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import array_api_compat
import numpy as np

from . import _validation as v
from ._knn_host import host_numpy, on_cpu, paired_distances
from .distances import COLUMN_LOOP_MAX, direct_distances
from .knn import knn_table, label_matrix
from .label_metrics import PeriodicMetric

__all__ = ["DenseBatchSampler"]

#: Elements of the (batches, batch_size, ·) work arrays of one chunk of an epoch.
_CHUNK_ELEMENTS = 1 << 21


class DenseBatchSampler:
    """Batches of ``anchor + k nearest label neighbours + random others`` (the paper's sampler).

    **One group** (``anchors_per_batch=1``, the paper): ``batch_size`` indices made of the
    anchor, its ``k`` nearest neighbours in label space (:func:`logratio.knn_table`: nearest
    first, ties by index), and ``batch_size − 1 − k`` other samples drawn uniformly without
    replacement among those that are neither the anchor nor one of its neighbours.  The batch
    is sorted by increasing label distance to the anchor (a stable sort, so equal distances
    keep the order anchor, neighbours, random samples); the anchor always comes first.

    **Several groups** (``anchors_per_batch = m > 1``): a batch is ``m`` such groups, one
    after the other, and ``batch_size`` is shared between them as evenly as possible: the
    first ``batch_size mod m`` groups have ``⌊batch_size / m⌋ + 1`` members, the others
    ``⌊batch_size / m⌋`` (:attr:`group_sizes`); each group needs at least ``k + 1``.
    The random members of a batch are distinct from each other and from every anchor and
    neighbour of the batch; two groups may still share an anchor or a neighbour when their
    label neighbourhoods overlap (that sample then appears twice in the batch, which the
    loss handles: distance 0, residual 0).  :meth:`anchor_positions` gives the anchors'
    positions (for ``log_ratio_loss(..., anchors=...)``) and :meth:`group_mask` the
    (anchor, neighbour) pairs of the same group (for ``mask=...``: the ``m`` paper batches
    exactly, rather than every anchor against the whole batch).

    **Epochs**: the anchors of an epoch are a random permutation of all ``N`` samples, taken
    ``anchors_per_batch`` at a time, so every sample is the anchor exactly once per epoch and
    ``len(sampler) = ⌈N / anchors_per_batch⌉``; when ``N`` is not a multiple of
    ``anchors_per_batch`` the last batch has fewer groups, hence fewer members.  The epoch
    ``e`` is drawn from ``numpy.random.default_rng([seed, e])``: ``set_epoch(e)`` selects the
    next epoch to iterate (as with ``DistributedSampler``), and each complete or partial
    iteration then moves on to ``e + 1``, so that a loop that never calls ``set_epoch``
    still sees a new shuffle every epoch.

    **Precomputed neighbours**: for label distances that are not between vectors (captions,
    graphs), pass ``neighbors``, an (N, K) integer table (row ``a``: the neighbours of ``a``,
    nearest first, ``K ≥ k``, without ``a`` and without repeats), and no ``labels``: the
    first ``k`` columns are used, and a group is ordered as far as it is known: the anchor,
    its neighbours in table order, then the random samples in random order.  With both
    ``labels`` and ``neighbors``, the table gives the neighbours and the labels the order.

    Args:
      labels: (N,) or (N, p) labels (any Array API array, or array-like); the neighbour
        table is computed in their namespace and device, the batches on the CPU.
      neighbors: (N, K) precomputed neighbour table, instead of or with ``labels``.
      batch_size: indices per batch (at most N).
      k: nearest neighbours per group (the paper: 5).
      anchors_per_batch: groups per batch.
      label_metric: as in :func:`logratio.log_ratio_loss`; used for the neighbours and the
        order.
      seed: a non-negative int for reproducible epochs; ``None`` draws one from the OS.

    Yields:
      Lists of Python ints (indices into the dataset).

    Cost: the neighbour table once (:func:`logratio.knn_table`: O(N log N) for scalar or
    low-dimensional labels with a built-in metric or :func:`logratio.periodic`), then
    O(batch_size) per batch; memory O(N·k).  The sampler pickles and deep-copies (for
    ``DataLoader`` workers) when its ``label_metric`` does.
    """

    def __init__(
        self,
        labels: Any = None,
        *,
        neighbors: Any = None,
        batch_size: int = 150,
        k: int = 5,
        anchors_per_batch: int = 1,
        label_metric: Any = "euclidean",
        seed: int | None = None,
    ) -> None:
        if labels is None and neighbors is None:
            raise ValueError("pass labels (N,) / (N, p), a neighbors table (N, K), or both")
        self.label_metric = v.label_metric(label_metric)
        self._labels = self._host_labels = None
        if labels is not None:
            _, self._labels = label_matrix(labels)
            n = int(self._labels.shape[0])
            # a NumPy copy (a view on the CPU) orders the batches with built-in metrics
            y = self._labels
            self._host_labels = host_numpy(y) if on_cpu(y) else _to_numpy(y)
        if neighbors is not None:
            table = _to_numpy(neighbors)
            if labels is not None and table.shape[:1] != (n,):
                raise ValueError(
                    f"neighbors must have {n} rows to match labels; got shape {table.shape}"
                )
            n = table.shape[0] if table.ndim >= 1 else 0
        if n < 1:
            raise ValueError("the dataset must hold at least one sample")
        self.num_samples = n
        self.batch_size = _positive_int("batch_size", batch_size)
        self.anchors_per_batch = _positive_int("anchors_per_batch", anchors_per_batch)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"k must be a non-negative int; got {k!r}")
        self.k = int(k)
        if self.batch_size > n:
            raise ValueError(f"batch_size must be at most the {n} samples; got {batch_size}")
        m = self.anchors_per_batch
        base, extra = divmod(self.batch_size, m)
        self.group_sizes: tuple[int, ...] = (base + 1,) * extra + (base,) * (m - extra)
        if base < self.k + 1:
            raise ValueError(
                f"each group needs at least k + 1 = {self.k + 1} members; batch_size="
                f"{self.batch_size} shared by anchors_per_batch={m} gives groups of {base}"
            )
        if neighbors is not None:
            self.neighbors = _check_table(table, n, self.k)[:, : self.k]
        elif self.k > 0:
            table = knn_table(self._labels, self.k, label_metric=self.label_metric)
            self.neighbors = _to_numpy(table).astype(np.int64)
        else:
            self.neighbors = np.zeros((n, 0), dtype=np.int64)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be None or a non-negative int; got {seed!r}")
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        """Batches per epoch: ``⌈N / anchors_per_batch⌉``."""
        return math.ceil(self.num_samples / self.anchors_per_batch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch that the next iteration yields (reproducible for a given seed)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int; got {epoch!r}")
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        self.epoch = epoch + 1
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.num_samples)
        m = self.anchors_per_batch
        full = self.num_samples // m if self._can_chunk() else 0  # batches of m groups
        per_chunk = max(1, _CHUNK_ELEMENTS // (self.batch_size * max(m * (self.k + 1), 8)))
        for start in range(0, full, per_chunk):
            stop = min(full, start + per_chunk)
            yield from self._chunk(np.reshape(order[start * m : stop * m], (-1, m)), rng)
        for start in range(full * m, self.num_samples, m):
            yield self._batch(order[start : start + m], rng)

    def _can_chunk(self) -> bool:
        """Whether full batches are drawn many at a time: random members are rare draws."""
        fixed = self.anchors_per_batch * (self.k + 1)
        return 4 * (self.batch_size - fixed) < self.num_samples - fixed

    def _vector_order(self) -> bool:
        """Whether a chunk's groups are ordered at once (NumPy, the metric's own arithmetic)."""
        metric = self.label_metric
        if isinstance(metric, PeriodicMetric):
            return True
        return isinstance(metric, str) and self._labels.shape[1] <= COLUMN_LOOP_MAX

    def _chunk(self, anchors: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
        """The batches of the (B, m) ``anchors``, each of ``m`` full groups, drawn together.

        The same batches, in distribution, as :meth:`_batch` one at a time.
        """
        b, m = anchors.shape
        k = self.k
        sizes = self.group_sizes
        # (b, m, k + 1): the anchor and the neighbours of every group
        nbrs = np.take(self.neighbors, anchors, axis=0)
        fixed = np.concatenate([anchors[:, :, None], nbrs], axis=2)
        n_random = self.batch_size - m * (k + 1)
        drawn = _draw_distinct_rows(rng, self.num_samples, np.reshape(fixed, (b, -1)), n_random)
        widest = max(sizes)
        groups = np.full((b, m, widest), -1, dtype=np.int64)
        groups[:, :, : k + 1] = fixed
        offset = 0
        for g, size in enumerate(sizes):
            count = size - 1 - k
            groups[:, g, k + 1 : size] = drawn[:, offset : offset + count]
            offset += count
        groups = np.reshape(groups, (b * m, widest))
        if self._labels is not None and widest > 1:
            if self._vector_order():
                y = self._host_labels
                rest = groups[:, 1:]
                # np.take: several times faster than fancy indexing for these random rows
                ya = np.take(y, groups[:, :1], axis=0)
                d = paired_distances(ya, np.take(y, np.maximum(rest, 0), axis=0), self.label_metric)
                if widest * m != self.batch_size:  # padding: sorted last, tied with nothing
                    d = np.where(rest >= 0, d, np.nan)
                groups[:, 1:] = np.take_along_axis(rest, _stable_argsort_rows(d), axis=1)
            else:
                per_batch = np.reshape(groups, (b, m, widest))
                for i in range(b):
                    parts = [row[row >= 0] for row in per_batch[i]]
                    ordered = self._sorted_by_label_distance(anchors[i], parts)
                    for g, part in enumerate(ordered):
                        per_batch[i, g, : part.size] = part
        flat = groups if widest * m == self.batch_size else groups[groups >= 0]
        return np.reshape(flat, (b, self.batch_size)).tolist()

    def _batch(self, anchors: np.ndarray, rng: np.random.Generator) -> list[int]:
        sizes = self.group_sizes[: len(anchors)]
        fixed = [np.concatenate([[a], self.neighbors[a]]) for a in anchors]
        n_random = [size - 1 - self.k for size in sizes]
        drawn = _draw_distinct(rng, self.num_samples, np.concatenate(fixed), sum(n_random))
        groups = []
        offset = 0
        for part, count in zip(fixed, n_random, strict=True):
            groups.append(np.concatenate([part, drawn[offset : offset + count]]))
            offset += count
        if self._labels is not None:
            groups = self._sorted_by_label_distance(anchors, groups)
        return np.concatenate(groups).tolist()

    def _sorted_by_label_distance(
        self, anchors: np.ndarray, groups: list[np.ndarray]
    ) -> list[np.ndarray]:
        """Each group in increasing label distance to its anchor (stable; anchor first)."""
        y = self._labels
        xp = array_api_compat.array_namespace(y)
        dev = array_api_compat.device(y)
        members = np.concatenate(groups)
        ya = xp.take(y, xp.asarray(anchors, device=dev), axis=0)
        yb = xp.take(y, xp.asarray(members, device=dev), axis=0)
        dist = _to_numpy(direct_distances(xp, ya, yb, self.label_metric))
        out, offset = [], 0
        for g, group in enumerate(groups):
            d = dist[g, offset + 1 : offset + len(group)]
            rest = group[1:][np.argsort(d, kind="stable")]
            out.append(np.concatenate([group[:1], rest]))
            offset += len(group)
        return out

    def anchor_positions(self, batch: Sequence[int] | int) -> np.ndarray:
        """Positions of the group anchors in ``batch`` (a yielded batch, or its length).

        ``[0]`` for the paper's one-anchor batches; pass it as ``anchors=`` to the loss.
        """
        sizes = self._sizes_of(batch)
        return np.cumsum((0, *sizes[:-1]), dtype=np.int64)

    def group_mask(self, batch: Sequence[int] | int) -> np.ndarray:
        """(n, n) boolean: ``True`` where two positions of ``batch`` belong to the same group.

        As ``mask=`` of the loss (with ``anchors=anchor_positions(batch)``), each anchor forms
        triplets only inside its own group: ``anchors_per_batch`` paper batches at once.
        """
        ids = np.repeat(np.arange(len(self._sizes_of(batch))), self._sizes_of(batch))
        return ids[:, None] == ids[None, :]

    def _sizes_of(self, batch: Sequence[int] | int) -> tuple[int, ...]:
        n = batch if isinstance(batch, (int, np.integer)) else len(batch)
        total = 0
        for g, size in enumerate(self.group_sizes):
            total += size
            if total == n:
                return self.group_sizes[: g + 1]
        raise ValueError(
            f"a batch of this sampler has a length that is a sum of the first group sizes "
            f"{self.group_sizes}; got length {n}"
        )

    def __repr__(self) -> str:
        return (
            f"DenseBatchSampler(num_samples={self.num_samples}, batch_size={self.batch_size}, "
            f"k={self.k}, anchors_per_batch={self.anchors_per_batch}, seed={self.seed})"
        )


def _draw_distinct(rng: np.random.Generator, n: int, exclude: np.ndarray, count: int) -> np.ndarray:
    """``count`` distinct indices of ``range(n)`` not in ``exclude``, uniformly, in random order."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    excluded = np.unique(exclude)
    available = n - excluded.size
    if 4 * count >= available:  # dense: draw from the explicit complement
        pool = np.setdiff1d(np.arange(n), excluded, assume_unique=True)
        return rng.choice(pool, size=count, replace=False)
    picked = np.zeros(0, dtype=np.int64)
    while picked.size < count:  # sparse: rejection, each round keeps over half the draws
        draws = rng.integers(0, n, size=2 * (count - picked.size))
        draws = draws[~np.isin(draws, excluded) & ~np.isin(draws, picked)]
        _, first = np.unique(draws, return_index=True)
        picked = np.concatenate([picked, draws[np.sort(first)]])
    return picked[:count]


def _stable_argsort_rows(d: np.ndarray) -> np.ndarray:
    """``np.argsort(d, axis=1, kind="stable")``, faster when few rows hold equal values.

    An unstable sort first; the rows in which it met equal values are sorted again stably.
    """
    order = np.argsort(d, axis=1)
    s = np.take_along_axis(d, order, axis=1)
    tied = np.flatnonzero(np.any(s[:, 1:] == s[:, :-1], axis=1))
    if tied.size:
        order[tied] = np.argsort(d[tied], axis=1, kind="stable")
    return order


def _draw_distinct_rows(
    rng: np.random.Generator, n: int, exclude: np.ndarray, count: int
) -> np.ndarray:
    """Row ``i``: ``count`` distinct indices of ``range(n)`` not in ``exclude[i]``, uniformly.

    :func:`_draw_distinct` for many rows at once: uniform draws with a margin, of which each
    row keeps the first ``count`` that are neither excluded nor repeats; the rare row with
    too few such draws is drawn again on its own.  Returns (rows, count), in random order.
    """
    rows = exclude.shape[0]
    if count == 0:
        return np.zeros((rows, 0), dtype=np.int64)
    # expected rejections per row: about count · (excluded + count / 2) / n
    margin = 8 + int(4 * count * (exclude.shape[1] + count) / n)
    draws = rng.integers(0, n, size=(rows, count + margin))
    ok = np.ones(draws.shape, dtype=bool)
    for j in range(exclude.shape[1]):
        ok &= draws != exclude[:, j : j + 1]
    srt = np.sort(draws, axis=1)
    repeats = np.flatnonzero(np.any(srt[:, 1:] == srt[:, :-1], axis=1))
    if repeats.size:  # keep only the first occurrence of a value within its row
        sub = draws[repeats]
        order = np.argsort(sub, axis=1, kind="stable")
        s = np.take_along_axis(sub, order, axis=1)
        again = np.zeros(sub.shape, dtype=bool)
        again[:, 1:] = s[:, 1:] == s[:, :-1]
        first = np.empty_like(again)
        np.put_along_axis(first, order, ~again, axis=1)
        ok[repeats] &= first
    total = np.cumsum(ok, axis=1)
    keep = ok & (total <= count)
    short = total[:, -1] < count
    if np.any(short):
        keep[short] = False
    out = np.empty((rows, count), dtype=np.int64)
    out[~short] = np.reshape(draws[keep], (-1, count))
    for i in np.flatnonzero(short):
        out[i] = _draw_distinct(rng, n, exclude[i], count)
    return out


def _check_table(table: np.ndarray, n: int, k: int) -> np.ndarray:
    if table.ndim != 2 or table.shape[0] != n:
        raise ValueError(f"neighbors must have shape (N, K) = ({n}, K); got {table.shape}")
    if not np.issubdtype(table.dtype, np.integer):
        raise TypeError(f"neighbors must hold integer indices; got dtype {table.dtype}")
    if table.shape[1] < k:
        raise ValueError(f"neighbors must have at least k = {k} columns; got {table.shape[1]}")
    table = table[:, :k].astype(np.int64)
    if table.size and (table.min() < 0 or table.max() >= n):
        raise ValueError(f"neighbors must hold indices in [0, {n}); got values outside")
    if np.any(table == np.arange(n)[:, None]):
        raise ValueError("neighbors row a must not contain a itself")
    srt = np.sort(table, axis=1)
    if np.any(srt[:, 1:] == srt[:, :-1]):
        raise ValueError("neighbors must not repeat an index within a row")
    return table


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


def _to_numpy(x: Any) -> np.ndarray:
    """A host NumPy copy of any array (CPU or GPU) without importing its framework."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(x):
        return x.get()
    try:
        return np.asarray(x)
    except Exception:  # e.g. an array without __array__: exchange through DLPack
        return np.from_dlpack(x)
