"""``triplet_log_ratio_loss`` on explicit triplets: per-triplet values from the reference, and
agreement with the dense loss on the dense triplet set."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from hypothesis import given
from hypothesis import strategies as st

import logratio
from logratio.testing import strategies as S

RTOL = {np.float64: 1e-11, np.float32: 2e-4}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=str)
@pytest.mark.parametrize("squared", [True, False], ids=["squared", "euclidean"])
@given(case=S.loss_cases(max_batch=16, coarse=True))
def test_triplet_loss_on_dense_triplets_equals_dense_loss(squared, dtype, case):
    """Mean and sum agree with log_ratio_loss; "none" summed per anchor row agrees with the
    dense per-anchor losses summed per row."""
    case = case.replace(squared=squared)
    f = case.embeddings.astype(dtype)
    dl = case.label_distance_matrix()
    trip = logratio.dense_triplets(dl, anchors=case.anchors, mask=case.mask, ties=case.ties)
    dense_kw = case.replace(labels=None, label_distances=dl)
    # the dense per-row variance may leave squared rounding where the terms are all zero
    floor = (10 * RTOL[dtype] * case.batch) ** 2
    for reduction in ("mean", "sum"):
        kw = dense_kw.replace(reduction=reduction).loss_kwargs()
        dense = logratio.log_ratio_loss(f, **kw)
        got = logratio.triplet_log_ratio_loss(
            f, dl, trip, squared=squared, root_eps=case.root_eps, reduction=reduction
        )
        assert np.asarray(got).dtype == dtype
        np.testing.assert_allclose(got, dense, rtol=50 * RTOL[dtype], atol=floor)
    per_triplet = logratio.triplet_log_ratio_loss(
        f, dl, trip, squared=squared, root_eps=case.root_eps, reduction="none"
    )
    assert np.shape(per_triplet) == np.shape(trip[0])
    dense_rows = logratio.log_ratio_loss(f, **dense_kw.replace(reduction="none").loss_kwargs())
    rows = case.anchor_list()
    rows = np.arange(case.batch) if rows is None else np.asarray(rows, dtype=int)
    by_row = np.bincount(np.asarray(trip[0]), weights=per_triplet, minlength=case.batch)
    want_by_row = np.bincount(rows, weights=dense_rows, minlength=case.batch)
    np.testing.assert_allclose(by_row, want_by_row, rtol=50 * RTOL[dtype], atol=floor)


@given(S.loss_cases(max_batch=12), st.data())
def test_per_triplet_values_match_reference(case, data):
    """Any triplet list (here random, repeats and both orders allowed) term by term."""
    f = case.embeddings
    dl = case.label_distance_matrix()
    b = case.batch
    idx = st.integers(0, b - 1)
    trip = data.draw(
        st.lists(st.tuples(idx, idx, idx), max_size=20).map(
            lambda ts: np.array(ts, dtype=np.int64).reshape(-1, 3)
        ),
        label="triplets",
    )
    got = logratio.triplet_log_ratio_loss(f, dl, trip, squared=case.squared, reduction="none")
    want = [reference.triplet_term(f, dl, *t, squared=case.squared) for t in trip]
    np.testing.assert_allclose(got, np.reshape(want, (-1,)), rtol=1e-11, atol=1e-300)
    as_tuple = (trip[:, 0], trip[:, 1], trip[:, 2])
    total = logratio.triplet_log_ratio_loss(f, dl, as_tuple, squared=case.squared, reduction="sum")
    np.testing.assert_allclose(total, np.sum(want), rtol=1e-11, atol=1e-300)
    mean = logratio.triplet_log_ratio_loss(f, dl, as_tuple, squared=case.squared)
    np.testing.assert_allclose(mean, np.mean(want) if want else 0.0, rtol=1e-11, atol=1e-300)


def test_empty_triplet_list():
    f = np.ones((4, 2))
    dl = np.ones((4, 4))
    empty = np.zeros((0, 3), dtype=np.int64)
    assert logratio.triplet_log_ratio_loss(f, dl, empty) == 0
    assert logratio.triplet_log_ratio_loss(f, dl, empty, reduction="sum") == 0
    assert np.shape(logratio.triplet_log_ratio_loss(f, dl, empty, reduction="none")) == (0,)


def test_triplet_loss_by_hand():
    """One triplet, the paper's Eq. 4 with ε = 1e-6 on both distances."""
    f = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    dl = np.array([[0.0, 2.0, 1.0], [2.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    e = 1e-6
    r = np.log((25 + e) / (1 + e)) - np.log((2 + e) / (1 + e))
    got = logratio.triplet_log_ratio_loss(f, dl, ([0], [1], [2]))
    assert got == pytest.approx(r * r, rel=1e-13)
    r1 = np.log((5 + e) / (1 + e)) - np.log((2 + e) / (1 + e))
    got = logratio.triplet_log_ratio_loss(f, dl, ([0], [1], [2]), squared=False)
    assert got == pytest.approx(r1 * r1, rel=1e-13)
