"""knn_table: k nearest neighbours in label space, against a brute-force Python sort."""

from __future__ import annotations

import importlib.util
import math

import array_api_compat
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import logratio
from logratio import _knn_host as knn_host
from logratio import _selection as knn


def brute_force_knn(labels, k, metric="euclidean"):
    """Row a: the k indices b != a with the smallest (distance, index), by Python sorting."""
    y = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    n = y.shape[0]
    rows, dists = [], []
    for a in range(n):
        cand = []
        for b in range(n):
            if b == a:
                continue
            diff = [float(y[a, t] - y[b, t]) for t in range(y.shape[1])]
            if callable(metric):
                d = float(metric(y[a : a + 1], y[b : b + 1])[0, 0])
            elif metric == "cityblock":
                d = sum(abs(x) for x in diff)
            elif metric == "sqeuclidean":
                d = sum(x * x for x in diff)
            else:
                d = math.sqrt(sum(x * x for x in diff))
            cand.append((d, b))
        cand.sort()
        rows.append([b for _, b in cand[:k]])
        dists.append([d for d, _ in cand[:k]])
    return np.asarray(rows, dtype=np.int64).reshape(n, k), np.asarray(dists).reshape(n, k)


# integer-valued labels: exact distances, so ties are exact and the tie order is testable
int_labels = st.integers(1, 30).flatmap(
    lambda n: st.tuples(
        hnp.arrays(
            np.float64,
            st.sampled_from([(n,), (n, 1), (n, 2), (n, 3)]),
            elements=st.integers(-4, 4).map(float),
        ),
        st.integers(0, n - 1),
    )
)


@given(int_labels, st.sampled_from(["euclidean", "sqeuclidean", "cityblock"]), st.data())
def test_matches_brute_force_with_ties(case, metric, data):
    labels, k = case
    block = data.draw(st.one_of(st.none(), st.integers(1, labels.shape[0] + 2)))
    idx, dist = logratio.knn_table(
        labels, k, label_metric=metric, block_size=block, return_distances=True
    )
    ref_idx, ref_dist = brute_force_knn(labels, k, metric)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(dist, ref_dist)


@given(
    hnp.arrays(np.float64, st.tuples(st.integers(2, 25), st.integers(1, 3)),
               elements=st.floats(-1e3, 1e3, allow_subnormal=False)),
    st.data(),
)  # fmt: skip
def test_float_labels_distances_sorted_and_correct(labels, data):
    """Arbitrary floats: the neighbour distances are the k smallest, in increasing order."""
    k = data.draw(st.integers(0, labels.shape[0] - 1))
    idx, dist = logratio.knn_table(labels, k, return_distances=True)
    _, ref_dist = brute_force_knn(labels, k)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=1e-9)
    assert np.all(np.diff(dist, axis=1) >= 0)
    assert not np.any(idx == np.arange(labels.shape[0])[:, None])
    for a in range(labels.shape[0]):
        assert len(set(idx[a].tolist())) == k
        np.testing.assert_allclose(
            dist[a], np.linalg.norm(labels[idx[a]] - labels[a], axis=1), rtol=1e-12, atol=1e-9
        )


def _convert(backend, x):
    if backend == "numpy":
        return x
    if backend == "array_api_strict":
        import array_api_strict as xp

        return xp.asarray(x)
    if backend == "torch":
        import torch

        return torch.asarray(x)
    import jax.numpy as jnp

    return jnp.asarray(x, dtype=jnp.float32)


def _backends(with_numpy=False):
    out = [pytest.param("numpy", id="numpy")] if with_numpy else []
    out.append(pytest.param("array_api_strict", id="array_api_strict"))
    for name in ("torch", "jax"):
        marks = () if importlib.util.find_spec(name) else pytest.mark.skip(f"{name} missing")
        out.append(pytest.param(name, id=name, marks=marks))
    return out


@pytest.mark.parametrize("backend", _backends(with_numpy=True))
@settings(max_examples=25)
@given(
    hnp.arrays(np.float32, (4, 40), elements=st.integers(0, 5).map(float)),
    st.sampled_from([3, 10, 40]),
)  # one shape and a few k: eager JAX compiles once per shape
def test_selection_path_equals_stable_sort(backend, d, k):
    """smallest_k (partition / top-k, then tie fix-up) returns what a stable sort returns."""
    x = _convert(backend, d)
    idx, val = knn.smallest_k(array_api_compat.array_namespace(x), x, k)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(np.from_dlpack(idx), order)
    np.testing.assert_array_equal(np.from_dlpack(val), np.take_along_axis(d, order, axis=1))


def test_duplicates_come_first_self_never():
    labels = np.array([3.0, 3.0, 3.0, 5.0, 3.0])
    idx, dist = logratio.knn_table(labels, 4, return_distances=True)
    np.testing.assert_array_equal(idx[0], [1, 2, 4, 3])
    np.testing.assert_array_equal(idx[4], [0, 1, 2, 3])
    np.testing.assert_array_equal(idx[3], [0, 1, 2, 4])  # ties by index
    np.testing.assert_array_equal(dist[0], [0, 0, 0, 2])


def test_callable_metric_on_the_circle():
    angles = np.array([0.0, 350.0, 20.0, 180.0, 185.0])

    def circle(a, b):
        d = np.abs(a[:, None, 0] - b[None, :, 0]) % 360
        return np.minimum(d, 360 - d)

    idx = logratio.knn_table(angles, 2, label_metric=circle)
    np.testing.assert_array_equal(idx, brute_force_knn(angles, 2, circle)[0])
    np.testing.assert_array_equal(idx[0], [1, 2])  # 350 is 10 away from 0 on the circle


def test_integer_labels_and_edge_sizes():
    idx = logratio.knn_table([1, 2, 4], 2)
    np.testing.assert_array_equal(idx, [[1, 2], [0, 2], [1, 0]])
    assert logratio.knn_table(np.zeros(4), 0).shape == (4, 0)
    assert logratio.knn_table(np.zeros(1), 0).shape == (1, 0)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"labels": np.zeros(3), "k": 3}, ValueError),
        ({"labels": np.zeros(3), "k": -1}, ValueError),
        ({"labels": np.zeros(3), "k": 1.0}, TypeError),
        ({"labels": np.zeros(0), "k": 0}, ValueError),
        ({"labels": np.zeros((2, 2, 2)), "k": 1}, ValueError),
        ({"labels": np.array([0.0, np.nan, 1.0]), "k": 1}, ValueError),
        ({"labels": np.array([0.0, np.inf, 1.0]), "k": 1}, ValueError),
        ({"labels": np.array([[0.0, 0], [1e200, 1e200], [-1e200, 0]]), "k": 1}, ValueError),
        ({"labels": np.zeros(3), "k": 1, "label_metric": "cosine"}, ValueError),
        ({"labels": np.zeros(3), "k": 1, "block_size": 0}, ValueError),
        ({"labels": np.zeros(3), "k": 1, "label_metric": lambda a, b: a - b.T - 1}, ValueError),
        ({"labels": ["a", "b"], "k": 1}, TypeError),
    ],
)
@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_bad_input(kwargs, error):
    with pytest.raises(error):
        logratio.knn_table(**kwargs)


@pytest.mark.parametrize("backend", _backends())
def test_other_namespaces_agree_and_stay_in_namespace(backend):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=(24, 2)).astype(np.float32)
    y = _convert(backend, labels)
    idx = logratio.knn_table(y, 5, block_size=6)
    assert type(idx) is type(y)
    np.testing.assert_array_equal(np.from_dlpack(idx), brute_force_knn(labels, 5)[0])


# --- the sort and tree methods, and the periodic metric ----------------------------------


def reference_knn(labels, k, metric="euclidean"):
    """Plain NumPy float64: every pairwise distance, then each row lexsorted by (distance, index).

    The distance formulas are written out here (the same operations, in the same order, as
    the library's documented ones), so that equal labels gaps give equal distances.
    """
    y = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    n, p = y.shape
    diff = y[:, None, :] - y[None, :, :]
    if isinstance(metric, logratio.PeriodicMetric):
        r = np.abs(diff) % metric.period
        c = np.minimum(r, metric.period - r)
        d = c[:, :, 0] if p == 1 else np.sqrt(sum(c[:, :, j] * c[:, :, j] for j in range(p)))
    elif metric == "cityblock" or (metric == "euclidean" and p == 1):
        d = sum(np.abs(diff[:, :, j]) for j in range(p))
    else:
        d = sum(diff[:, :, j] * diff[:, :, j] for j in range(p))
        d = np.sqrt(d) if metric == "euclidean" else d
    d = np.asarray(d, dtype=np.float64).reshape(n, n)
    d[np.arange(n), np.arange(n)] = np.inf
    order = np.lexsort((np.broadcast_to(np.arange(n), (n, n)), d), axis=-1)[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


def methods_for(labels):
    p = 1 if np.ndim(labels) == 1 else np.shape(labels)[1]
    return ["auto", "blocked", "tree"] + (["sort"] if p == 1 else [])


METRICS = (
    "euclidean", "sqeuclidean", "cityblock",
    logratio.periodic(4.0), logratio.periodic(3.0), logratio.periodic(360.0),
)  # fmt: skip


@st.composite
def tied_cases(draw):
    """Small dyadic grids: exact distances, many exact ties and duplicates, wrap-around."""
    n = draw(st.integers(1, 40))
    p = draw(st.sampled_from([1, 1, 2, 3]))
    grid = draw(st.sampled_from([1.0, 0.5, 0.25]))
    span = draw(st.integers(0, 7))  # 0: every label equal
    values = st.integers(-span, span).map(lambda i: i * grid)
    shape = draw(st.sampled_from([(n,), (n, 1)])) if p == 1 else (n, p)
    labels = draw(hnp.arrays(np.float64, shape, elements=values))
    k = draw(st.one_of(st.integers(0, n - 1), st.sampled_from([n - 1, max(n - 2, 0)])))
    return labels, k


@given(tied_cases(), st.sampled_from(METRICS), st.booleans())
def test_every_method_matches_reference_with_ties(case, metric, small_steps):
    labels, k = case
    ref_idx, ref_dist = reference_knn(labels, k, metric)
    with pytest.MonkeyPatch.context() as mp:
        if small_steps:  # many small steps and the flat re-ranking of many candidates
            mp.setattr(knn_host, "_CANDIDATE_BUDGET", 1)
        for method in methods_for(labels):
            idx, dist = logratio.knn_table(
                labels, k, label_metric=metric, method=method, return_distances=True
            )
            np.testing.assert_array_equal(idx, ref_idx, err_msg=method)
            np.testing.assert_array_equal(dist, ref_dist, err_msg=method)


@st.composite
def float_cases(draw):
    """Arbitrary floats of very different magnitudes, drawn from a small pool: duplicates."""
    n = draw(st.integers(1, 30))
    p = draw(st.sampled_from([1, 2, 3]))
    # ±1e17 next to small values: distinct labels at one rounded distance (ties by rounding)
    value = st.one_of(
        st.floats(-1e6, 1e6, allow_subnormal=False), st.sampled_from([-1e17, 1e17, 3e17])
    )
    pool = draw(st.lists(value, min_size=1, max_size=2 * n))
    picks = draw(st.lists(st.sampled_from(pool), min_size=n * p, max_size=n * p))
    labels = np.asarray(picks, dtype=np.float64).reshape(n, p)
    return labels, draw(st.integers(0, n - 1))


@given(float_cases(), st.sampled_from(METRICS))
def test_every_method_matches_reference_on_floats(case, metric):
    labels, k = case
    ref_idx, ref_dist = reference_knn(labels, k, metric)
    for method in methods_for(labels):
        idx, dist = logratio.knn_table(
            labels, k, label_metric=metric, method=method, return_distances=True
        )
        np.testing.assert_array_equal(idx, ref_idx, err_msg=method)
        np.testing.assert_array_equal(dist, ref_dist, err_msg=method)


@given(float_cases(), st.sampled_from(METRICS))
def test_float32_labels_every_method_equals_blocked(case, metric):
    """float32 distances (in float32, like the blocked path): the same table and distances."""
    labels, k = case
    y = labels.astype(np.float32)
    want = logratio.knn_table(y, k, label_metric=metric, method="blocked", return_distances=True)
    assert want[1].dtype == np.float32
    for method in methods_for(y):
        idx, dist = logratio.knn_table(
            y, k, label_metric=metric, method=method, return_distances=True
        )
        assert dist.dtype == np.float32
        np.testing.assert_array_equal(idx, want[0], err_msg=method)
        np.testing.assert_array_equal(dist, want[1], err_msg=method)


def test_rounding_ties_are_broken_by_index():
    """Distinct labels at one computed distance (0.0 ... 3.0 all 1e17 from -1e17): by index."""
    labels = np.array([-1e17, 3.0, 1.0, 2.0, 0.0, 0.5])
    for method in methods_for(labels):
        idx, dist = logratio.knn_table(labels, 3, method=method, return_distances=True)
        np.testing.assert_array_equal(idx[0], [1, 2, 3], err_msg=method)
        np.testing.assert_array_equal(dist[0], [1e17] * 3)
    y2 = np.stack([labels, np.zeros(6)], axis=1)
    np.testing.assert_array_equal(logratio.knn_table(y2, 3, method="tree")[0], [1, 2, 3])


@pytest.mark.parametrize("metric", ["euclidean", logratio.periodic(10.0)])
@pytest.mark.parametrize("p", [1, 2])
def test_many_duplicates_large_k(metric, p):
    """Thousands of samples on ten values: windows and tree queries must widen a lot."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 10, size=(1500, p)).astype(np.float64)
    for k in (1, 170, 700, 1499):
        ref_idx, ref_dist = reference_knn(labels, k, metric)
        for method in methods_for(labels[:, 0] if p == 1 else labels):
            if method == "blocked":
                continue
            idx, dist = logratio.knn_table(
                labels, k, label_metric=metric, method=method, return_distances=True
            )
            np.testing.assert_array_equal(idx, ref_idx, err_msg=f"{method} k={k}")
            np.testing.assert_array_equal(dist, ref_dist)


def test_periodic_wraps_around():
    angles = np.array([0.0, 350.0, 20.0, 180.0, 185.0, 719.0, -30.0])
    circle = logratio.periodic(360.0)
    d = circle(angles[:, None], angles[:, None])
    assert d[0, 1] == 10 and d[0, 5] == 1 and d[0, 6] == 30 and d[1, 6] == 20
    assert d[3, 0] == 180 and d[2, 6] == 50
    for method in methods_for(angles):
        idx, dist = logratio.knn_table(
            angles, 3, label_metric=circle, method=method, return_distances=True
        )
        np.testing.assert_array_equal(idx[0], [5, 1, 2], err_msg=method)
        np.testing.assert_array_equal(dist[0], [1, 10, 20])
        np.testing.assert_array_equal(idx[6], [1, 5, 0], err_msg=method)  # -30 ≡ 330
        np.testing.assert_array_equal(idx[3], [4, 6, 2], err_msg=method)  # 5, 150, 160


def test_periodic_several_columns_is_the_torus_distance():
    y = np.array([[0.0, 0.0], [350.0, 10.0], [180.0, 0.0], [3.0, 356.0]])
    d = logratio.periodic(360.0)(y, y)
    np.testing.assert_array_equal(d[0], [0, np.sqrt(200.0), 180, 5])
    idx = logratio.knn_table(y, 2, label_metric=logratio.periodic(360.0), method="tree")
    np.testing.assert_array_equal(idx[0], [3, 1])


def test_periodic_metric_object():
    import copy
    import pickle

    m = logratio.periodic(24)
    assert m == logratio.PeriodicMetric(24.0) and hash(m) == hash(logratio.periodic(24.0))
    assert m.period == 24.0 and isinstance(m.period, float)
    assert pickle.loads(pickle.dumps(m)) == m and copy.deepcopy(m) == m
    assert logratio.periodic().period == 360.0
    assert "periodic" in repr(m)
    for bad in (0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="period"):
            logratio.periodic(bad)
    with pytest.raises(TypeError, match="period"):
        logratio.periodic("x")
    a = np.array([[1.0], [23.0]])
    b = np.array([[0.0], [12.0], [47.0]])
    np.testing.assert_array_equal(m(a, b), [[1, 11, 2], [1, 11, 0]])
    np.testing.assert_array_equal(m(np.array([1, 23]), np.array([0, 12, 47])), m(a, b))


@pytest.mark.parametrize("backend", _backends())
def test_periodic_on_other_namespaces(backend):
    a = np.array([[0.0, 10.0], [350.0, 180.0], [90.0, 300.0]], dtype=np.float32)
    want = logratio.periodic(360.0)(a, a[:2])
    got = logratio.periodic(360.0)(_convert(backend, a), _convert(backend, a[:2]))
    assert type(got) is type(_convert(backend, a))
    np.testing.assert_allclose(np.from_dlpack(got), want, rtol=1e-6)
    y = _convert(backend, a[:, 0])
    idx = logratio.knn_table(y, 2, label_metric=logratio.periodic(360.0))
    assert type(idx) is type(y)
    np.testing.assert_array_equal(np.from_dlpack(idx), [[1, 2], [0, 2], [0, 1]])


def test_periodic_in_loss_and_metrics():
    """Accepted as label_metric by the loss and the retrieval metrics: as a plain callable."""
    rng = np.random.default_rng(0)
    emb, angles = rng.normal(size=(12, 3)), rng.uniform(0, 360, size=12)
    circle = logratio.periodic(360.0)
    r = np.abs(angles[:, None] - angles[None, :]) % 360
    dist = np.minimum(r, 360 - r)
    got = logratio.log_ratio_loss(emb, angles, label_metric=circle)
    np.testing.assert_allclose(got, logratio.log_ratio_loss(emb, label_distances=dist))
    m = logratio.metrics.mean_label_distance_at_k(emb, emb, angles, angles, 3, label_metric=circle)
    want = logratio.metrics.mean_label_distance_at_k(emb, emb, k=3, label_distances=dist)
    np.testing.assert_allclose(m, want)


def test_auto_picks_by_labels_and_metric():
    rng = np.random.default_rng(0)
    y1, y3, y17 = rng.normal(size=20), rng.normal(size=(20, 3)), rng.normal(size=(20, 17))
    have_scipy = importlib.util.find_spec("scipy") is not None
    assert logratio.knn_method(y1) == "sort"
    assert logratio.knn_method(y1, label_metric=logratio.periodic(2.0)) == "sort"
    assert logratio.knn_method(y3) == ("tree" if have_scipy else "blocked")
    assert logratio.knn_method(y3, label_metric=logratio.periodic(2.0)) == (
        "tree" if have_scipy else "blocked"
    )
    assert logratio.knn_method(y17) == "blocked"
    assert logratio.knn_method(y1, label_metric=lambda a, b: a - b.T) == "blocked"
    assert logratio.knn_method(y1.astype(np.float16)) == "blocked"
    assert logratio.knn_method(np.array([1e300, -1e300])) == "blocked"  # may overflow
    assert logratio.knn_method(y3, method="blocked") == "blocked"


def test_without_scipy_auto_falls_back_and_tree_refuses(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy.spatial", None)  # import raises ImportError
    labels = np.random.default_rng(1).integers(0, 3, size=(30, 2)).astype(float)
    assert logratio.knn_method(labels) == "blocked"
    np.testing.assert_array_equal(logratio.knn_table(labels, 4), reference_knn(labels, 4)[0])
    with pytest.raises(ValueError, match=r"method='tree'.*scipy"):
        logratio.knn_table(labels, 4, method="tree")
    assert logratio.knn_method(labels[:, 0]) == "sort"  # no scipy needed


@pytest.mark.parametrize(
    "labels, kwargs, match",
    [
        (np.zeros((5, 2)), {"method": "sort"}, r"method='sort'.*p = 1"),
        (np.zeros(5), {"method": "tree", "label_metric": lambda a, b: a - b.T}, "method='tree'"),
        (np.zeros(5), {"method": "sort", "label_metric": lambda a, b: a - b.T}, "method='sort'"),
        (np.zeros(5), {"method": "kdtree"}, "method must be one of"),
        (np.array([1e300, -1e300, 0]), {"method": "sort"}, "overflow"),
    ],
)
def test_method_that_cannot_serve_raises(labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        logratio.knn_table(labels, 1, **kwargs)


def test_progress_argument(capsys):
    pytest.importorskip("tqdm")
    labels = np.arange(10.0)
    with pytest.raises(TypeError, match="progress"):
        logratio.knn_table(labels, 1, progress="yes")
    logratio.knn_table(labels, 1, method="blocked", progress=False)
    assert capsys.readouterr().err == ""
    idx = logratio.knn_table(labels, 1, method="blocked", progress=True, block_size=2)
    assert "knn_table" in capsys.readouterr().err
    np.testing.assert_array_equal(idx, reference_knn(labels, 1)[0])


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("p", [1, 3])
def test_fast_paths_from_other_namespaces(backend, p):
    """CPU arrays of other namespaces take the sort / tree path and come back in kind."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 4, size=(40, p)).astype(np.float32)
    y = _convert(backend, labels)
    idx, dist = logratio.knn_table(y, 6, return_distances=True)
    assert type(idx) is type(y) and type(dist) is type(y)
    ref_idx, ref_dist = reference_knn(labels, 6)
    np.testing.assert_array_equal(np.from_dlpack(idx), ref_idx)
    np.testing.assert_array_equal(np.from_dlpack(dist), ref_dist.astype(np.float32))
    blocked = logratio.knn_table(y, 6, method="blocked")
    assert idx.dtype == blocked.dtype


def test_large_scalar_labels_fast_and_small():
    """N = 2·10⁵ scalar labels (O(N²) would be 320 GB): the sort path in O(N·k) memory."""
    import tracemalloc

    rng = np.random.default_rng(0)
    labels = np.round(rng.normal(size=200_000), 3)  # continuous, with many duplicates
    tracemalloc.start()
    idx, dist = logratio.knn_table(labels, 5, return_distances=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 400e6
    # spot checks against the definition
    for a in rng.integers(0, labels.size, size=20):
        d = np.abs(labels - labels[a])
        d[a] = np.inf
        want = np.lexsort((np.arange(labels.size), d))[:5]
        np.testing.assert_array_equal(idx[a], want)
        np.testing.assert_array_equal(dist[a], d[want])


@given(
    st.integers(2, 80).flatmap(
        lambda n: hnp.arrays(np.float64, (n,), elements=st.integers(-40, 80).map(lambda i: i / 4))
    ),
    st.sampled_from([3.0, 8.0, 10.0]),
    st.integers(0, 4),
)
def test_periodic_scalar_labels_wrap_like_the_reference(labels, period, k):
    """Many labels, few neighbours: the sort path's windows must wrap around the circle."""
    k = min(k, labels.size - 1)
    metric = logratio.periodic(period)
    ref_idx, ref_dist = reference_knn(labels, k, metric)
    for method in ("sort", "tree"):
        idx, dist = logratio.knn_table(
            labels, k, label_metric=metric, method=method, return_distances=True
        )
        np.testing.assert_array_equal(idx, ref_idx, err_msg=method)
        np.testing.assert_array_equal(dist, ref_dist, err_msg=method)


def test_periodic_neighbours_across_zero():
    angles = np.arange(1.0, 359.0, 2.0)  # 1, 3, ..., 357: 0 sits between 359 and 1
    angles = np.concatenate([angles, [359.5, 0.25]])
    idx = logratio.knn_table(angles, 3, label_metric=logratio.periodic(360.0), method="sort")
    last, first = angles.size - 2, angles.size - 1
    np.testing.assert_array_equal(idx[first], [0, last, 1])  # 1 and 359.5 (tie); 3
    np.testing.assert_array_equal(idx[0], [first, last, 1])  # 0.25; 359.5; 3
    np.testing.assert_array_equal(idx, reference_knn(angles, 3, logratio.periodic(360.0))[0])
