"""``dense_triplets`` against the reference enumeration: same triplets, same order."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from hypothesis import given

import logratio
from logratio.testing import strategies as S


def as_list(trip) -> list[tuple[int, int, int]]:
    a, i, j = (np.asarray(t) for t in trip)
    assert a.ndim == i.ndim == j.ndim == 1 and a.shape == i.shape == j.shape
    for t in (a, i, j):
        assert np.issubdtype(t.dtype, np.integer)
    return [(int(x), int(y), int(z)) for x, y, z in zip(a, i, j, strict=True)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=str)
@given(S.loss_cases(min_batch=0, max_batch=24))
def test_dense_triplets_match_reference(dtype, case):
    """Every option (anchors in every form, mask, ties): the reference's list, in its order
    (anchor position, then i, then j), hence also the same set."""
    dl = case.label_distance_matrix()
    got = as_list(
        logratio.dense_triplets(
            dl.astype(dtype), anchors=case.anchors, mask=case.mask, ties=case.ties
        )
    )
    want = reference.triplets(dl, case.anchor_list(), case.mask, case.ties)
    # compared as arrays with a short message: a diff of two long lists is slow to print,
    # and Hypothesis prints it on every shrinking step
    g = np.asarray(got, dtype=np.int64).reshape(-1, 3)
    w = np.asarray(want, dtype=np.int64).reshape(-1, 3)
    assert len(g) == len(w), f"{len(g)} triplets, the reference has {len(w)}"
    differ = np.flatnonzero(np.any(g != w, axis=1))
    assert differ.size == 0, f"first difference at {differ[0]}: {g[differ[0]]} vs {w[differ[0]]}"


@given(S.loss_cases(min_batch=0, max_batch=24, anchors=None))
def test_dense_triplets_invariants(case):
    """Distinct indices, Δ_ai ≤ Δ_aj, allowed by the mask; with "include" each unordered
    neighbour pair exactly once, n(n − 1)/2 per anchor; "exclude" drops exactly the ties."""
    dl = case.label_distance_matrix()
    b = case.batch
    allowed = np.ones((b, b), bool) if case.mask is None else case.mask
    inc = as_list(logratio.dense_triplets(dl, mask=case.mask, ties="include"))
    exc = as_list(logratio.dense_triplets(dl, mask=case.mask, ties="exclude"))
    for a, i, j in inc:
        assert len({a, i, j}) == 3
        assert allowed[a, i] and allowed[a, j]
        assert dl[a, i] < dl[a, j] or (dl[a, i] == dl[a, j] and i < j)
    pairs = {(a, min(i, j), max(i, j)) for a, i, j in inc}
    assert len(pairs) == len(inc)
    n = [sum(1 for c in range(b) if c != a and allowed[a, c]) for a in range(b)]
    assert len(inc) == sum(k * (k - 1) // 2 for k in n)
    assert exc == [t for t in inc if dl[t[0], t[1]] != dl[t[0], t[2]]]


def test_dense_triplets_by_hand():
    """Anchor 0 with label distances 2, 1, 1 to rows 1, 2, 3."""
    dl = np.array(
        [[0.0, 2.0, 1.0, 1.0], [2.0, 0.0, 1.0, 3.0], [1.0, 1.0, 0.0, 2.0], [1.0, 3.0, 2.0, 0.0]]
    )
    got = as_list(logratio.dense_triplets(dl, anchors=0))
    assert got == [(0, 2, 1), (0, 2, 3), (0, 3, 1)]
    assert as_list(logratio.dense_triplets(dl, anchors=0, ties="exclude")) == [
        (0, 2, 1),
        (0, 3, 1),
    ]
    mask = np.ones((4, 4), bool)
    mask[0, 3] = False
    assert as_list(logratio.dense_triplets(dl, anchors=[0], mask=mask)) == [(0, 2, 1)]


def test_dense_triplets_of_tiny_batches_are_empty():
    for b in range(3):
        trip = logratio.dense_triplets(np.zeros((b, b)))
        assert as_list(trip) == []
    assert as_list(logratio.dense_triplets(np.zeros((5, 5)), anchors=np.zeros(5, bool))) == []
