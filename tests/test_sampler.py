"""DenseBatchSampler: the paper's mini-batches, checked batch by batch against their definition."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_knn import brute_force_knn

import logratio
from logratio.sampler import _draw_distinct, _draw_distinct_rows


def label_dist(labels, a, b):
    y = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    return float(np.sqrt(np.sum((y[a] - y[b]) ** 2)))


def check_epoch(sampler, labels, table, batches):
    """Every property the docstring promises, for one epoch of batches."""
    n = len(table)
    k = sampler.k
    assert len(batches) == len(sampler)
    anchors = []
    for batch in batches:
        assert all(type(i) is int for i in batch)
        starts = sampler.anchor_positions(batch)
        sizes = sampler.group_sizes[: len(starts)]
        assert len(batch) == sum(sizes)
        groups = [batch[s : s + size] for s, size in zip(starts, sizes, strict=True)]
        fixed = {i for g in groups for i in [g[0], *table[g[0]][:k]]}
        randoms = []
        for group in groups:
            a = group[0]
            anchors.append(a)
            nn = list(table[a][:k])
            assert a not in group[1:]
            assert sorted(i for i in group[1:] if i in nn) == sorted(nn)  # each one exactly once
            rest = [i for i in group[1:] if i not in nn]
            assert len(rest) == len(group) - 1 - k
            randoms += rest
            if labels is not None:
                d = [label_dist(labels, a, i) for i in group[1:]]
                assert d == sorted(d)  # increasing label distance, anchor first
                # equal distances keep the order: neighbours (table order), then random ones
                for x, y, dx, dy in zip(group[1:], group[2:], d, d[1:], strict=False):
                    if dx == dy and x not in nn:
                        assert y not in nn
                    if dx == dy and x in nn and y in nn:
                        assert nn.index(x) < nn.index(y)
            else:
                assert group[1 : 1 + k] == nn  # table order, then the random samples
        assert len(set(randoms)) == len(randoms)
        assert not set(randoms) & fixed
        assert all(0 <= i < n for i in batch)
    assert sorted(anchors) == list(range(n))


@st.composite
def sampler_cases(draw):
    n = draw(st.integers(1, 40))
    shape = draw(st.sampled_from([(n,), (n, 2)]))
    labels = draw(hnp.arrays(np.float64, shape, elements=st.integers(-3, 3).map(float)))
    batch_size = draw(st.integers(1, n))
    apb = draw(st.integers(1, batch_size))
    k = draw(st.integers(0, batch_size // apb - 1))
    seed = draw(st.integers(0, 2**32))
    return labels, batch_size, apb, k, seed


@given(sampler_cases(), st.integers(0, 3))
def test_batches_follow_the_definition(case, epoch):
    labels, batch_size, apb, k, seed = case
    s = logratio.DenseBatchSampler(
        labels, batch_size=batch_size, k=k, anchors_per_batch=apb, seed=seed
    )
    s.set_epoch(epoch)
    table = brute_force_knn(labels, k)[0].tolist()
    check_epoch(s, labels, table, list(s))


@given(sampler_cases())
def test_precomputed_table_orders_by_table(case):
    labels, batch_size, apb, k, seed = case
    n = len(labels)
    rng = np.random.default_rng(seed)
    # any table will do: a random one, wider than k, without self and without repeats
    table = np.stack([rng.permutation(np.delete(np.arange(n), a)) for a in range(n)])
    s = logratio.DenseBatchSampler(
        neighbors=table, batch_size=batch_size, k=k, anchors_per_batch=apb, seed=seed
    )
    check_epoch(s, None, table.tolist(), list(s))
    # labels and table together: the table's neighbours, the labels' order
    s = logratio.DenseBatchSampler(
        labels, neighbors=table, batch_size=batch_size, k=k, anchors_per_batch=apb, seed=seed
    )
    check_epoch(s, labels, table.tolist(), list(s))


def test_paper_configuration():
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 10, size=(1000, 3))
    s = logratio.DenseBatchSampler(labels, seed=0)  # batch 150, k = 5, one anchor
    batches = list(s)
    assert len(s) == 1000 and all(len(b) == 150 for b in batches)
    np.testing.assert_array_equal(s.anchor_positions(batches[0]), [0])
    table = logratio.knn_table(labels, 5)
    for b in batches[:20]:
        assert set(table[b[0]].tolist()) == set(b[1:6])  # continuous labels: NN are nearest
    check_epoch(s, labels, table.tolist(), batches)


def test_group_sizes_anchor_positions_and_mask():
    s = logratio.DenseBatchSampler(np.arange(30.0), batch_size=17, k=2, anchors_per_batch=4, seed=1)
    assert s.group_sizes == (5, 4, 4, 4)
    assert len(s) == 8  # 30 anchors, 4 per batch: the last batch has 2 groups
    batches = list(s)
    assert [len(b) for b in batches] == [17] * 7 + [9]
    np.testing.assert_array_equal(s.anchor_positions(batches[0]), [0, 5, 9, 13])
    np.testing.assert_array_equal(s.anchor_positions(batches[-1]), [0, 5])
    mask = s.group_mask(9)
    assert mask.shape == (9, 9) and mask[0, 4] and not mask[4, 5] and mask[5, 8]
    with pytest.raises(ValueError, match="length"):
        s.anchor_positions(7)


def test_group_mask_gives_independent_paper_batches():
    """Loss with anchors/mask from the sampler = the sum of each group's own paper loss."""
    rng = np.random.default_rng(2)
    labels = rng.normal(size=(50, 2))
    emb = rng.normal(size=(50, 4))
    s = logratio.DenseBatchSampler(labels, batch_size=24, k=3, anchors_per_batch=3, seed=5)
    batch = next(iter(s))
    got = logratio.log_ratio_loss(
        emb[batch], labels[batch], anchors=s.anchor_positions(batch),
        mask=s.group_mask(batch), reduction="sum",
    )  # fmt: skip
    want = sum(
        logratio.log_ratio_loss(emb[g], labels[g], anchors=0, reduction="sum")
        for g in (batch[0:8], batch[8:16], batch[16:24])
    )
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_epochs_are_reproducible_and_advance():
    labels = np.random.default_rng(0).normal(size=40)
    a = logratio.DenseBatchSampler(labels, batch_size=10, k=2, seed=7)
    b = logratio.DenseBatchSampler(labels, batch_size=10, k=2, seed=7)
    first, second = list(a), list(a)  # iteration advances the epoch
    assert first != second
    assert list(b) == first and list(b) == second
    b.set_epoch(1)
    assert list(b) == second
    b.set_epoch(0)
    assert list(b) == first
    c = logratio.DenseBatchSampler(labels, batch_size=10, k=2, seed=8)
    assert list(c) != first
    assert logratio.DenseBatchSampler(labels, batch_size=10, k=2).seed >= 0


@pytest.mark.parametrize("count, n_excluded", [(3, 5), (40, 10)])  # sparse, dense paths
def test_random_members_are_uniform(count, n_excluded):
    n = 50
    rng = np.random.default_rng(0)
    exclude = np.arange(n_excluded)
    trials = 4000
    counts = np.zeros(n)
    for _ in range(trials):
        drawn = _draw_distinct(rng, n, exclude, count)
        assert len(set(drawn.tolist())) == count and drawn.min() >= n_excluded
        counts[drawn] += 1
    assert np.all(counts[:n_excluded] == 0)
    p = count / (n - n_excluded)
    expected = trials * p
    sigma = np.sqrt(trials * p * (1 - p)) + 1e-9
    assert np.max(np.abs(counts[n_excluded:] - expected)) < 5 * sigma


def test_dataloader_batch_sampler():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    labels = torch.linspace(0, 1, 12)
    data = TensorDataset(torch.arange(12), labels)
    s = logratio.DenseBatchSampler(labels, batch_size=5, k=2, seed=0)
    loader = DataLoader(data, batch_sampler=s)
    assert len(loader) == 12
    s.set_epoch(3)
    got = [idx.tolist() for idx, _ in loader]
    s.set_epoch(3)
    assert got == list(s)


@pytest.mark.parametrize("backend", ["array_api_strict", "torch", "jax"])
def test_labels_from_other_namespaces(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} missing")
    labels = np.random.default_rng(1).integers(0, 5, size=(25, 2)).astype(np.float32)
    if backend == "array_api_strict":
        import array_api_strict as xp

        y = xp.asarray(labels)
    elif backend == "torch":
        import torch

        y = torch.asarray(labels)
    else:
        import jax.numpy as jnp

        y = jnp.asarray(labels)
    kwargs = {"batch_size": 8, "k": 3, "anchors_per_batch": 2, "seed": 4}
    assert list(logratio.DenseBatchSampler(y, **kwargs)) == list(
        logratio.DenseBatchSampler(labels, **kwargs)
    )


def test_callable_metric_orders_batches():
    angles = np.linspace(0, 350, 36)

    def circle(a, b):
        d = np.abs(a[:, None, 0] - b[None, :, 0]) % 360
        return np.minimum(d, 360 - d)

    s = logratio.DenseBatchSampler(angles, batch_size=6, k=2, label_metric=circle, seed=0)
    for batch in s:
        a = batch[0]
        d = circle(angles[[a]][:, None], angles[batch][:, None])[0]
        assert list(d) == sorted(d)
        assert set(batch[1:3]) == {(a + 1) % 36, (a - 1) % 36}


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({}, ValueError),
        ({"labels": np.zeros(5), "batch_size": 6}, ValueError),
        ({"labels": np.zeros(5), "batch_size": 0}, ValueError),
        ({"labels": np.zeros(5), "batch_size": 4, "k": 4}, ValueError),
        ({"labels": np.zeros(10), "batch_size": 6, "k": 2, "anchors_per_batch": 3}, ValueError),
        ({"labels": np.zeros(5), "batch_size": 4, "k": -1}, ValueError),
        ({"labels": np.zeros(5), "batch_size": 4, "seed": -1}, ValueError),
        ({"labels": np.zeros(5), "batch_size": 4, "label_metric": "cos"}, ValueError),
        ({"neighbors": np.array([[0], [0]]), "batch_size": 2, "k": 1}, ValueError),
        ({"neighbors": np.array([[1, 1], [0, 0]]), "batch_size": 2, "k": 2}, ValueError),
        ({"neighbors": np.array([[2], [0]]), "batch_size": 2, "k": 1}, ValueError),
        ({"neighbors": np.array([[1.0], [0.0]]), "batch_size": 2, "k": 1}, TypeError),
        ({"neighbors": np.array([[1], [0]]), "batch_size": 2, "k": 2}, ValueError),
        ({"labels": np.zeros(3), "neighbors": np.array([[1], [0]]), "batch_size": 2}, ValueError),
    ],
)
def test_bad_input(kwargs, error):
    with pytest.raises(error):
        logratio.DenseBatchSampler(**kwargs)


def reference_table(labels, k):
    """The k nearest by (Euclidean distance, index), vectorised NumPy for a few thousand labels."""
    y = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    n = len(y)
    d = (
        np.sqrt(np.sum((y[:, None, :] - y[None, :, :]) ** 2, axis=2))
        if y.shape[1] > 1
        else (np.abs(y[:, None, 0] - y[None, :, 0]))
    )
    d[np.arange(n), np.arange(n)] = np.inf
    return np.lexsort((np.broadcast_to(np.arange(n), (n, n)), d), axis=-1)[:, :k]


@pytest.mark.parametrize(
    "p, batch_size, k, apb", [(1, 20, 3, 1), (2, 23, 2, 3), (2, 150, 5, 1), (3, 40, 0, 4)]
)
def test_many_batches_at_once_follow_the_definition(p, batch_size, k, apb):
    """Large N: batches drawn thousands at a time, with ties (integer labels), uneven groups."""
    rng = np.random.default_rng(p + k)
    labels = rng.integers(0, 12, size=(1200, p)).astype(np.float64)
    s = logratio.DenseBatchSampler(
        labels, batch_size=batch_size, k=k, anchors_per_batch=apb, seed=3
    )
    assert s._can_chunk()
    table = reference_table(labels, k)
    np.testing.assert_array_equal(s.neighbors, table)
    check_epoch(s, labels, table.tolist(), list(s))
    s.set_epoch(0)
    first = list(s)
    assert list(s) != first  # epoch 1
    s.set_epoch(0)
    assert list(s) == first


def test_periodic_metric_orders_batches():
    angles = np.linspace(0, 350, 36) - 180.0
    circle = logratio.periodic(360.0)
    s = logratio.DenseBatchSampler(angles, batch_size=6, k=2, label_metric=circle, seed=0)
    for batch in s:
        a = batch[0]
        r = np.abs(angles[a] - angles[batch]) % 360
        d = np.minimum(r, 360 - r)
        assert list(d) == sorted(d)
        assert set(batch[1:3]) == {(a + 1) % 36, (a - 1) % 36}


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("metric", ["euclidean", logratio.periodic(5.0)])
def test_sampler_pickles_and_deep_copies(backend, metric):
    import copy
    import pickle

    labels = np.random.default_rng(0).integers(0, 5, size=(300, 2)).astype(np.float32)
    if backend == "torch":
        torch = pytest.importorskip("torch")
        labels = torch.asarray(labels)
    s = logratio.DenseBatchSampler(labels, batch_size=10, k=2, label_metric=metric, seed=1)
    for clone in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s)):
        assert clone.label_metric == metric
        clone.set_epoch(2)
        s.set_epoch(2)
        assert list(clone) == list(s)


@pytest.mark.parametrize("count, n_excluded, n", [(3, 5, 50), (30, 10, 50), (6, 4, 14)])
def test_rows_of_random_members_are_uniform(count, n_excluded, n):
    """The many-rows draw: distinct, never excluded, uniform (the last case: many retries)."""
    rng = np.random.default_rng(0)
    rows = 4000
    exclude = np.tile(np.arange(n_excluded), (rows, 1))
    drawn = _draw_distinct_rows(rng, n, exclude, count)
    assert drawn.shape == (rows, count)
    srt = np.sort(drawn, axis=1)
    assert np.all(srt[:, 1:] != srt[:, :-1]) and drawn.min() >= n_excluded
    counts = np.bincount(drawn.ravel(), minlength=n)
    p = count / (n - n_excluded)
    sigma = np.sqrt(rows * p * (1 - p)) + 1e-9
    assert np.max(np.abs(counts[n_excluded:] - rows * p)) < 5 * sigma
    first = np.bincount(drawn[:, 0], minlength=n)[n_excluded:]  # the order is random too
    q = 1 / (n - n_excluded)
    assert np.max(np.abs(first - rows * q)) < 5 * np.sqrt(rows * q * (1 - q))


def test_large_epoch_is_fast_and_small():
    """N = 2·10⁵: the table without O(N²) memory, and a full epoch of batches."""
    import time
    import tracemalloc

    labels = np.random.default_rng(0).uniform(0, 10, size=(200_000, 2))
    tracemalloc.start()
    s = logratio.DenseBatchSampler(labels, batch_size=150, k=5, seed=0)
    it = iter(s)
    batches = [next(it) for _ in range(3000)]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 500e6  # an (N, N) float64 matrix would be 320 GB
    start = time.perf_counter()
    rest = sum(1 for _ in it)
    assert rest + len(batches) == 200_000
    assert time.perf_counter() - start < 120  # about 10 s on 2 CPU cores
    table = s.neighbors
    for batch in batches[:200]:
        a = batch[0]
        assert sorted(batch[1:6]) == sorted(table[a].tolist())  # continuous: NN are nearest
        d = np.linalg.norm(labels[batch] - labels[a], axis=1)
        assert np.all(np.diff(d) >= 0)
        assert len(set(batch)) == 150
