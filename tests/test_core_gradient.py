"""The closed-form gradient against the reference's per-triplet sums and finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference
from assertions import check_gradient
from hypothesis import assume, given
from hypothesis import strategies as st

import logratio
from logratio.testing import strategies as S

RTOL = {np.float64: 1e-9, np.float32: 2e-3}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("squared", [True, False], ids=["squared", "euclidean"])
@pytest.mark.parametrize("ties", S.TIES)
@given(data=st.data())
def test_gradient_matches_reference(ties, squared, dtype, data):
    """Every reduction, label source, anchors form and mask; gradient in the input dtype."""
    case = data.draw(
        S.loss_cases(
            ties=ties,
            squared=squared,
            coarse=dtype == np.float32,
            max_batch=S.MAX_BATCH if dtype == np.float64 else 12,
        )
    )
    f = case.embeddings.astype(dtype)
    exp = S.expected(case, f, gradient=True)
    for reduction in S.REDUCTIONS:
        kw = case.replace(reduction=reduction).loss_kwargs()
        loss, grad = logratio.log_ratio_loss_and_grad(f, **kw)
        assert grad.dtype == dtype
        assert grad.shape == f.shape
        noise = reference.cancellation_noise(case, case.embeddings, reduction, dtype)
        check_gradient(grad, exp.gradient(reduction), RTOL[dtype], noise=noise)
        # the loss that comes with the gradient is the loss of log_ratio_loss
        np.testing.assert_array_equal(loss, logratio.log_ratio_loss(f, **kw))


@pytest.mark.parametrize("squared", [True, False], ids=["squared", "euclidean"])
@given(S.loss_cases(max_batch=7, max_dim=3), st.data())
def test_gradient_matches_finite_differences(squared, case, data):
    """Central differences of log_ratio_loss itself (float64), away from D = 0 for Euclidean
    distances, where the loss has a kink (the closed form then gives the zero subgradient)."""
    case = case.replace(squared=squared)
    f0 = case.embeddings
    kw = case.loss_kwargs()
    size = max(np.max(np.abs(f0), initial=0.0), 2.0**-10)
    unit = math.ldexp(1.0, math.frexp(size)[1] - 6)
    # a generic shift of each row, in a different interval for each row: no duplicates
    jitter = data.draw(S.hnp.arrays(np.float64, f0.shape, elements=st.floats(0.05, 0.45)))
    jitter += 0.5 * np.arange(case.batch)[:, None]
    f = f0 + jitter * unit
    # the shifts can still cancel a difference of f0 (rows 256 and 247 both become 257.65625):
    # at a coincidence, central differences carry an error of order step²/ε
    gaps = np.sqrt(np.sum((f[:, None, :] - f[None, :, :]) ** 2, axis=-1))
    assume(np.all(gaps[~np.eye(case.batch, dtype=bool)] >= 0.01 * unit))
    _, grad = logratio.log_ratio_loss_and_grad(f, **kw)

    def loss(x):
        return float(np.sum(logratio.log_ratio_loss(x, **kw)))

    step = 1e-5 * unit
    numeric = reference.finite_difference_gradient(loss, f, step=step)
    # central differences carry the loss's own rounding, ~1e-15·L, divided by the step:
    # it matters near a stationary point, where the gradient is small but the loss is not
    noise = 1e-12 * (1 + abs(loss(f))) / step
    np.testing.assert_allclose(
        grad, numeric, rtol=1e-5, atol=1e-5 * np.max(np.abs(numeric), initial=0.0) + noise
    )


@pytest.mark.parametrize("squared", [True, False], ids=["squared", "euclidean"])
def test_reference_gradient_matches_finite_differences(squared):
    """The reference's own gradient, checked once against finite differences of its loss."""
    rng = np.random.default_rng(7)
    f = rng.standard_normal((6, 3))
    dl = reference.label_distance_matrix(rng.integers(0, 3, size=(6, 2)))
    for ties in S.TIES:
        fd = reference.finite_difference_gradient(
            lambda x, t=ties: reference.loss(x, dl, squared=squared, ties=t), f
        )
        g = reference.gradient(f, dl, squared=squared, ties=ties)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7 * np.max(np.abs(fd)))


def test_single_triplet_closed_form():
    """docs/design.md §1.2 for one triplet: ∂l/∂f_i = 4r(f_i − f_a)/(D_ai + ε),
    ∂l/∂f_j = 4r(f_a − f_j)/(D_aj + ε), ∂l/∂f_a = −(∂l/∂f_i + ∂l/∂f_j) — not the widely
    copied ∂l/∂f_i − ∂l/∂f_j."""
    e = 1e-6
    f = np.array([[0.0, 0.0], [1.0, 0.5], [-2.0, 1.0]])
    dl = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]])
    d_ai, d_aj = 1.25, 5.0
    r = math.log((d_ai + e) / (d_aj + e)) - math.log((1 + e) / (2 + e))
    gi = 4 * r * (f[1] - f[0]) / (d_ai + e)
    gj = 4 * r * (f[0] - f[2]) / (d_aj + e)
    loss, grad = logratio.log_ratio_loss_and_grad(f, label_distances=dl, anchors=0)
    assert loss == pytest.approx(r * r, rel=1e-13)
    np.testing.assert_allclose(grad, [-(gi + gj), gi, gj], rtol=1e-12)
    assert not np.allclose(grad[0], gi - gj)


@given(S.loss_cases(max_batch=12))
def test_gradient_of_each_reduction(case):
    """ "none" differentiates the sum of the per-anchor losses; "mean" is "sum" / count."""
    f = case.embeddings
    grads = {
        r: logratio.log_ratio_loss_and_grad(f, **case.replace(reduction=r).loss_kwargs())[1]
        for r in S.REDUCTIONS
    }
    np.testing.assert_array_equal(grads["none"], grads["sum"])
    count = len(
        reference.triplets(case.label_distance_matrix(), case.anchor_list(), case.mask, case.ties)
    )
    want = grads["sum"] / count if count else np.zeros_like(f)
    scale = np.max(np.abs(want), initial=0.0)
    np.testing.assert_allclose(grads["mean"], want, rtol=1e-12, atol=1e-12 * scale + 1e-300)
