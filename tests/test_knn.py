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
from logratio import knn


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
