"""The dense log-ratio loss against the float64 brute-force reference, for every option."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference
from assertions import check_loss
from hypothesis import given
from hypothesis import strategies as st

import logratio
from logratio.testing import strategies as S

#: (label source, label metric): every way of giving label distances.
SOURCES = [("labels", m) for m in S.LABEL_METRICS] + [("label_distances", None)]
SOURCE_IDS = ["labels-" + getattr(m, "name", m) for m in S.LABEL_METRICS] + ["label_distances"]

#: Relative accuracy of each log-distance: float64 on the fine grid, float32 on the coarse one.
RTOL = {np.float64: 1e-11, np.float32: 2e-4}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("squared", [True, False], ids=["squared", "euclidean"])
@pytest.mark.parametrize("ties", S.TIES)
@pytest.mark.parametrize(("source", "metric"), SOURCES, ids=SOURCE_IDS)
@given(data=st.data())
def test_loss_matches_reference(source, metric, ties, squared, dtype, data):
    """Every reduction, anchors form and mask, in float64 and float32."""
    case = data.draw(
        S.loss_cases(
            source=source,
            label_metric=metric,
            ties=ties,
            squared=squared,
            coarse=dtype == np.float32,
            max_batch=S.MAX_BATCH if dtype == np.float64 else 12,
        )
    )
    f = case.embeddings.astype(dtype)
    exp = S.expected(case, f)
    for reduction in S.REDUCTIONS:
        got = logratio.log_ratio_loss(f, **case.replace(reduction=reduction).loss_kwargs())
        assert np.asarray(got).dtype == dtype
        check_loss(got, exp, reduction, RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@given(data=st.data())
def test_block_size_does_not_change_the_result(dtype, data):
    """Blocks of anchors (memory O(block·B)) give the loss and gradient of one block."""
    case = data.draw(S.loss_cases(max_batch=24, coarse=dtype == np.float32))
    block = data.draw(st.integers(1, max(case.batch, 1)), label="block_size")
    f = case.embeddings.astype(dtype)
    kw = case.loss_kwargs()
    whole_loss, whole_grad = logratio.log_ratio_loss_and_grad(f, **kw)
    block_loss, block_grad = logratio.log_ratio_loss_and_grad(f, block_size=block, **kw)
    only_loss = logratio.log_ratio_loss(f, block_size=block, **kw)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    scale = 1 + np.max(np.abs(whole_loss), initial=0)
    np.testing.assert_allclose(block_loss, whole_loss, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(only_loss, whole_loss, rtol=rtol, atol=rtol * scale)
    gscale = np.max(np.abs(whole_grad), initial=0) + 1e-300
    np.testing.assert_allclose(block_grad, whole_grad, rtol=rtol, atol=10 * rtol * gscale)


@pytest.mark.parametrize(
    "metric", S.LABEL_METRICS, ids=[getattr(m, "name", m) for m in S.LABEL_METRICS]
)
@given(data=st.data())
def test_labels_equal_their_label_distances(metric, data):
    """``labels`` with a metric is ``label_distances`` of that metric, ties included."""
    case = data.draw(S.loss_cases(source="labels", label_metric=metric, max_batch=16))
    dl = S.reference_label_distances(case.labels, metric)
    by_labels = case.loss_kwargs()
    by_dists = case.replace(labels=None, label_distances=dl).loss_kwargs()
    f = case.embeddings
    np.testing.assert_allclose(
        logratio.log_ratio_loss(f, **by_labels),
        logratio.log_ratio_loss(f, **by_dists),
        rtol=1e-13,
        atol=1e-300,
    )


@given(S.loss_cases(max_batch=16))
def test_reductions_are_consistent(case):
    """ "none" sums to "sum", and "mean" is "sum" over the reference's number of triplets."""
    f = case.embeddings
    none = logratio.log_ratio_loss(f, **case.replace(reduction="none").loss_kwargs())
    total = logratio.log_ratio_loss(f, **case.replace(reduction="sum").loss_kwargs())
    mean = logratio.log_ratio_loss(f, **case.replace(reduction="mean").loss_kwargs())
    rows = case.anchor_list()
    m = case.batch if rows is None else len(rows)
    assert np.shape(none) == (m,)
    assert np.all(np.asarray(none) >= 0)
    np.testing.assert_allclose(np.sum(none), total, rtol=1e-12, atol=1e-300)
    count = len(reference.triplets(case.label_distance_matrix(), rows, case.mask, case.ties))
    want_mean = total / count if count else 0.0
    np.testing.assert_allclose(mean, want_mean, rtol=1e-12, atol=1e-300)


@given(S.loss_cases(max_batch=12, anchors=None), st.data())
def test_anchor_forms_agree(case, data):
    """An int, a negative int, a one-element index array and a one-hot boolean mask agree;
    an index array equals the boolean mask of the same (sorted, distinct) rows."""
    f, b = case.embeddings, case.batch
    a = data.draw(st.integers(0, b - 1), label="anchor")
    one_hot = np.zeros(b, dtype=bool)
    one_hot[a] = True
    forms = [a, a - b, np.array([a]), np.array([a - b]), one_hot]
    values = [logratio.log_ratio_loss(f, **case.replace(anchors=x).loss_kwargs()) for x in forms]
    for value in values[1:]:
        np.testing.assert_allclose(value, values[0], rtol=1e-14, atol=1e-300)
    chosen = data.draw(S.hnp.arrays(np.bool_, (b,)), label="mask")
    by_mask = logratio.log_ratio_loss(f, **case.replace(anchors=chosen).loss_kwargs())
    by_index = logratio.log_ratio_loss(
        f, **case.replace(anchors=np.flatnonzero(chosen)).loss_kwargs()
    )
    np.testing.assert_allclose(by_mask, by_index, rtol=1e-14, atol=1e-300)


@given(S.loss_cases(max_batch=12, mask=None))
def test_all_true_mask_is_no_mask(case):
    f = case.embeddings
    full = np.ones((case.batch, case.batch), dtype=bool)
    np.testing.assert_allclose(
        logratio.log_ratio_loss(f, **case.replace(mask=full).loss_kwargs()),
        logratio.log_ratio_loss(f, **case.loss_kwargs()),
        rtol=1e-14,
        atol=1e-300,
    )


def test_one_triplet_by_hand():
    """The paper's mini-batch: anchor 0, Euclidean distances, labels 0, 1, 3 at 0, 1, 2."""
    f = np.array([[0.0], [1.0], [2.0]])
    y = np.array([0.0, 1.0, 3.0])
    e = 1e-6
    r = math.log((1 + e) / (2 + e)) - math.log((1 + e) / (3 + e))
    got = logratio.log_ratio_loss(f, y, anchors=0, squared=False)
    assert got == pytest.approx(r * r, rel=1e-14)
    # squared distances 1 and 4 against label distances 1 and 3
    r2 = math.log((1 + e) / (4 + e)) - math.log((1 + e) / (3 + e))
    assert logratio.log_ratio_loss(f, y, anchors=0) == pytest.approx(r2 * r2, rel=1e-14)
    # every anchor: anchor 1 has neighbours 0 (Δ=1) and 2 (Δ=2), anchor 2 has 1 (Δ=2), 0 (Δ=3)
    terms = [
        r * r,
        (math.log((1 + e) / (1 + e)) - math.log((1 + e) / (2 + e))) ** 2,
        (math.log((1 + e) / (2 + e)) - math.log((2 + e) / (3 + e))) ** 2,
    ]
    none = logratio.log_ratio_loss(f, y, squared=False, reduction="none")
    np.testing.assert_allclose(none, terms, rtol=1e-13)
    assert logratio.log_ratio_loss(f, y, squared=False) == pytest.approx(sum(terms) / 3, rel=1e-13)


def test_ties_exclude_drops_equal_label_distances():
    """Anchor 0 with neighbours at label distance 1, 1 and 2: three pairs, one of them tied."""
    f = np.array([[0.0], [1.0], [-3.0], [2.0]])
    y = np.array([0.0, 1.0, -1.0, 2.0])
    inc = logratio.log_ratio_loss(f, y, anchors=0, reduction="none", ties="include")
    exc = logratio.log_ratio_loss(f, y, anchors=0, reduction="none", ties="exclude")
    e = 1e-6
    u = [math.log(d + e) - math.log(t + e) for d, t in [(1, 1), (9, 1), (4, 2)]]
    tied = (u[0] - u[1]) ** 2
    others = (u[0] - u[2]) ** 2 + (u[1] - u[2]) ** 2
    np.testing.assert_allclose(inc, [tied + others], rtol=1e-13)
    np.testing.assert_allclose(exc, [others], rtol=1e-13)
    assert logratio.log_ratio_loss(f, y, anchors=0, ties="exclude") == pytest.approx(others / 2)


def test_callable_label_metric_gets_label_rows():
    """A callable metric is called with (r, p) and (B, p) label arrays and its result used."""
    calls = []

    def metric(a, b):
        calls.append((a.shape, b.shape))
        return np.abs(a[:, None, 0] - b[None, :, 0]) ** 0.5

    rng = np.random.default_rng(0)
    f = rng.standard_normal((7, 3))
    y = rng.standard_normal(7)
    got = logratio.log_ratio_loss(f, y, label_metric=metric, block_size=3)
    dl = np.abs(y[:, None] - y[None, :]) ** 0.5
    assert got == pytest.approx(reference.loss(f, dl), rel=1e-12)
    assert calls and all(a[1] == 1 and b == (7, 1) and a[0] <= 3 for a, b in calls)


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cityblock"])
@given(data=st.data())
def test_pairwise_distances_match_loops(metric, data):
    """``pairwise_distances(x)`` and ``pairwise_distances(x, y)`` against explicit loops; the
    diagonal and duplicate rows give exactly 0."""
    n = data.draw(S.batch_sizes(0, 12), label="n")
    dim = data.draw(S.dims(), label="dim")
    x = data.draw(S.embedding_arrays(n, dim), label="x")
    got = logratio.pairwise_distances(x, metric=metric)
    want = reference.label_distance_matrix(x, metric) if n else np.zeros((0, 0))
    scale = np.max(want, initial=0.0)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * scale + 1e-300)
    assert np.all(got[want == 0] == 0)
    m = data.draw(st.integers(0, 5), label="m")
    y = data.draw(S.embedding_arrays(m, dim), label="y")
    got = logratio.pairwise_distances(x, y, metric=metric)
    both = reference.label_distance_matrix(np.concatenate([x, y]), metric) if n + m else None
    want = both[:n, n:] if both is not None else np.zeros((0, 0))
    scale = np.max(want, initial=0.0)
    assert got.shape == (n, m)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * scale + 1e-300)
