"""The scans under Rank-N-Contrast: cumulative log-sum-exp (fast shifted path and exact
fallback), running maxima and per-row inverse permutations, against float64 loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from logratio.formulas._cumulative import cumulative_logsumexp, inverse_permutation, running_max


def lse_loop(x: np.ndarray, valid: np.ndarray, reverse: bool) -> np.ndarray:
    """Each row's prefix (or suffix) log-sum-exp of the valid entries, one term at a time."""
    out = np.full(x.shape, -math.inf)
    for i in range(x.shape[0]):
        for q in range(x.shape[1]):
            span = range(q, x.shape[1]) if reverse else range(q + 1)
            terms = [x[i, j] for j in span if valid[i, j]]
            if terms:
                top = max(terms)
                out[i, q] = top + math.log(sum(math.exp(t - top) for t in terms))
    return out


@pytest.mark.parametrize("spread", [1.0, 50.0, 2000.0], ids=["narrow", "f32-wide", "wide"])
@pytest.mark.parametrize("reverse", [False, True])
def test_cumulative_logsumexp_matches_a_loop(xp, spread, reverse):
    rng = np.random.default_rng(7)
    x = rng.uniform(-spread, 0.0, size=(5, 9))
    valid = rng.random((5, 9)) < 0.7
    valid[1] = False  # an empty row: −inf throughout
    want = lse_loop(x, valid, reverse)
    with xp.context():
        got = cumulative_logsumexp(
            xp.namespace, xp.asarray(x, "float64"), xp.asarray(valid), reverse=reverse
        )
        got = xp.to_numpy(got)
    assert np.array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    assert np.isfinite(got[finite]).all()
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-12)


def test_wide_float32_rows_stay_finite(xp):
    """A far suffix (beyond float32's exp range of the row maximum) is not log 0."""
    x = np.array([[0.0, -200.0, -201.0, -5000.0]], dtype=np.float32)
    valid = np.ones_like(x, dtype=bool)
    want = lse_loop(x.astype(np.float64), valid, reverse=True)
    got = xp.to_numpy(
        cumulative_logsumexp(
            xp.namespace, xp.asarray(x, "float32"), xp.asarray(valid), reverse=True
        )
    )
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_running_max_and_inverse_permutation(xp):
    rng = np.random.default_rng(3)
    v = rng.integers(0, 50, size=(4, 11))
    order = np.argsort(rng.random((4, 11)), axis=1)
    with xp.context():
        got_max = xp.to_numpy(running_max(xp.namespace, xp.asarray(v)))
        got_inv = xp.to_numpy(inverse_permutation(xp.namespace, xp.asarray(order)))
    np.testing.assert_array_equal(got_max, np.maximum.accumulate(v, axis=1))
    for i in range(4):
        np.testing.assert_array_equal(got_inv[i][order[i]], np.arange(11))
