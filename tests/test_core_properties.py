"""Invariances of the log-ratio loss and its gradient (docs/design.md §1).

The loss depends on embeddings only through their pairwise distances, and on the order of
the rows only through which rows are anchors: translations, rotations and permutations must
leave it unchanged (the gradient translates, rotates and permutes accordingly), the gradient
rows sum to zero, and embeddings whose distances are proportional to the label distances
cost nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference
from hypothesis import given
from hypothesis import strategies as st

import logratio
from logratio.testing import strategies as S


def unreduced(case: S.LossCase, f: np.ndarray, **extra):
    """Per-anchor losses and the gradient of their sum."""
    kw = case.replace(reduction="none").loss_kwargs()
    kw.update(extra)
    return logratio.log_ratio_loss_and_grad(f, **kw)


def assert_same_loss(got, want, batch: int, rtol: float) -> None:
    """Per-anchor losses equal up to ``rtol`` per term (an anchor has < B²/2 terms)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    tol = rtol * (np.abs(want) + batch * batch)
    assert np.all(np.abs(got - want) <= tol), (got, want)


def assert_same_grad(got, want, rtol: float, case: S.LossCase | None = None) -> None:
    """Gradients equal up to ``rtol`` of the largest component or, with ``case``, of the size
    of the terms that cancel in a component: a gradient that is exactly 0 by symmetry (copies
    with equal labels) is rounding noise of that size once the rows are moved."""
    scale = np.max(np.abs(want), initial=0.0)
    if case is not None:
        f = np.asarray(case.embeddings, dtype=np.float64)
        scale = max(scale, reference.gradient_terms_scale(case, f, "none", magnitudes=True))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale + 1e-300)


@given(S.loss_cases(max_batch=24), st.data())
def test_translation_invariance(case, data):
    f = case.embeddings
    size = max(np.max(np.abs(f), initial=0.0), 2.0**-10)
    shift = data.draw(
        S.hnp.arrays(np.float64, (case.dim,), elements=st.floats(-1e3, 1e3)), label="shift"
    )
    loss, grad = unreduced(case, f)
    moved_loss, moved_grad = unreduced(case, f + shift * size)
    assert_same_loss(moved_loss, loss, case.batch, 1e-9)
    assert_same_grad(moved_grad, grad, 1e-7, case)


@given(S.loss_cases(max_batch=24), st.data())
def test_rotation_invariance(case, data):
    """Loss(F·Q) = Loss(F) and ∇Loss(F·Q) = ∇Loss(F)·Q for orthogonal Q."""
    q = data.draw(S.orthogonal_matrices(case.dim), label="Q")
    f = case.embeddings
    loss, grad = unreduced(case, f)
    # copies must stay copies: F·Q can turn two equal rows into rows an ulp apart, across the
    # Euclidean distance's kink at 0, so each distinct row is turned once and scattered back
    rows, where = np.unique(f, axis=0, return_inverse=True)
    turned_loss, turned_grad = unreduced(case, (rows @ q)[where.reshape(-1)])
    assert_same_loss(turned_loss, loss, case.batch, 1e-9)
    assert_same_grad(turned_grad, grad @ q, 1e-7, case)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@given(data=st.data())
def test_gradient_rows_sum_to_zero(dtype, data):
    """Translation invariance: Σ_a ∂L/∂f_a = 0, for every option."""
    case = data.draw(S.loss_cases(max_batch=24, coarse=dtype == np.float32))
    f = case.embeddings.astype(dtype)
    _, grad = logratio.log_ratio_loss_and_grad(f, **case.loss_kwargs())
    g = np.asarray(grad, dtype=np.float64)
    total = np.abs(np.sum(g, axis=0))
    bound = (1e-12 if dtype == np.float64 else 1e-5) * np.max(
        np.sum(np.abs(g), axis=0)
    )  # the gradient's scale
    assert np.all(total <= bound + 1e-300), (total, bound)


@given(S.loss_cases(max_batch=24), st.data())
def test_permutation_equivariance(case, data):
    """Reordering rows (embeddings, labels, label distances, mask; anchors follow their rows)
    leaves the loss unchanged and reorders the gradient."""
    perm = np.array(data.draw(st.permutations(range(case.batch)), label="perm"), dtype=int)
    moved = case.permuted(perm)
    loss, grad = unreduced(case, case.embeddings)
    moved_loss, moved_grad = unreduced(moved, moved.embeddings)
    if case.anchors is None or np.asarray(case.anchors).dtype == np.bool_:
        # one output per anchor row, in row order: new row k is old row perm[k]
        old_rows, new_rows = case.anchor_list(), moved.anchor_list()
        if case.anchors is None:
            old_rows = new_rows = list(range(case.batch))
        loss = np.asarray(loss)[[old_rows.index(perm[k]) for k in new_rows]]
    assert_same_loss(moved_loss, loss, case.batch, 1e-11)
    assert_same_grad(moved_grad, np.asarray(grad)[perm], 1e-9)
    for reduction in ("mean", "sum"):
        a = logratio.log_ratio_loss(
            case.embeddings, **case.replace(reduction=reduction).loss_kwargs()
        )
        b = logratio.log_ratio_loss(
            moved.embeddings, **moved.replace(reduction=reduction).loss_kwargs()
        )
        np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-11 * case.batch**3)


# --------------------------------------------------------------------------- proportional


@st.composite
def distinct_labels(draw, batch: int, vector: bool) -> np.ndarray:
    """Labels with distinct rows on an integer grid times 2⁻⁴ … 2⁸."""
    p = draw(st.integers(1, 3)) if vector else 1
    cell = st.tuples(*[st.integers(-20, 20)] * p)
    rows = draw(st.lists(cell, min_size=batch, max_size=batch, unique=True))
    y = np.array(rows, dtype=np.float64) * 2.0 ** draw(st.integers(-4, 8))
    return y if vector else y[:, 0]


@pytest.mark.parametrize(
    ("squared", "metric"),
    [(False, "euclidean"), (True, "sqeuclidean")],
    ids=["euclidean-euclidean", "squared-sqeuclidean"],
)
@given(data=st.data())
def test_zero_loss_when_distances_are_proportional(squared, metric, data):
    """Embeddings c·Y·Q (Y: labels with distinct rows, padded to d columns; Q orthogonal):
    Euclidean distances are c·‖y_a − y_b‖ and squared ones c²·‖y_a − y_b‖², so every
    log-ratio of embedding distances equals that of label distances.  ``eps`` shifts both
    logs by different amounts unless c = 1, so it is made negligible here (1e-30)."""
    batch = data.draw(S.batch_sizes(3, 16), label="batch")
    y = data.draw(distinct_labels(batch, vector=data.draw(st.booleans())), label="labels")
    y2 = y.reshape(batch, -1)
    dim = data.draw(st.integers(y2.shape[1], y2.shape[1] + 3), label="dim")
    q = data.draw(S.orthogonal_matrices(dim), label="Q")
    c = 2.0 ** data.draw(st.integers(-6, 6), label="log2 c")
    f = c * np.pad(y2, ((0, 0), (0, dim - y2.shape[1]))) @ q
    anchors = data.draw(S.anchor_specs(batch), label="anchors")
    mask = data.draw(S.masks(batch), label="mask")
    ties = data.draw(st.sampled_from(S.TIES), label="ties")
    kw = dict(squared=squared, label_metric=metric, anchors=anchors, mask=mask, ties=ties)
    loss, grad = logratio.log_ratio_loss_and_grad(f, y, eps=1e-30, **kw)
    assert 0 <= loss <= 1e-20
    # a single term's gradient is about 4|r| / ‖f_a − f_b‖: r is rounding noise here
    gaps = [np.linalg.norm(f[a] - f[b]) for a in range(batch) for b in range(a)]
    assert np.max(np.abs(grad), initial=0.0) * min(gaps) <= 1e-10
    # with the default eps, c = 1 makes D + ε equal Δ + ε: zero again
    f1 = np.pad(y2, ((0, 0), (0, dim - y2.shape[1]))) @ q
    assert 0 <= logratio.log_ratio_loss(f1, y, **kw) <= 1e-20


@given(S.loss_cases(max_batch=16, duplicates=False), st.data())
def test_zero_loss_for_proportional_label_distances(case, data):
    """``label_distances = c·D(F)`` computed independently (loops) gives zero loss."""
    if case.batch < 3:
        return
    f = case.embeddings
    c = 2.0 ** data.draw(st.integers(-8, 8), label="log2 c")
    d = np.array(
        [[np.sum((f[a] - f[b]) ** 2) for b in range(case.batch)] for a in range(case.batch)]
    )
    dl = c * (d if case.squared else np.sqrt(d))
    kw = case.replace(labels=None, label_distances=dl, reduction="mean", root_eps=0.0)
    assert 0 <= logratio.log_ratio_loss(f, eps=1e-30, **kw.loss_kwargs()) <= 1e-18


def test_not_proportional_is_not_zero():
    """Control: with squared distances against Euclidean label distances (labels 0, 1, 3)
    the ratios differ (log 3 for anchor 0), so the loss is far from zero."""
    y = np.array([0.0, 1.0, 3.0])
    f = 5.0 * y[:, None]
    assert logratio.log_ratio_loss(f, y, squared=False, eps=1e-30) < 1e-20
    assert logratio.log_ratio_loss(f, y, squared=True, eps=1e-30) > 0.1
    assert logratio.log_ratio_loss(f, y, label_metric="sqeuclidean", eps=1e-30) < 1e-20


@given(S.loss_cases(max_batch=16, duplicates=False), st.data())
def test_scale_invariance(case, data):
    """Scaling embeddings (or label distances) by c shifts every residual of a row by the same
    log c, which the pairwise differences cancel (when eps is negligible)."""
    c = 2.0 ** data.draw(st.integers(-8, 8), label="log2 c")
    f = case.embeddings
    # root_eps is a fixed length under the square root: it does not scale
    kw = case.replace(reduction="none", root_eps=0.0).loss_kwargs()
    base = logratio.log_ratio_loss(f, eps=1e-30, **kw)
    assert_same_loss(logratio.log_ratio_loss(c * f, eps=1e-30, **kw), base, case.batch, 1e-12)
