"""Numerics that matter (docs/design.md §1.3): far-off embeddings in float32, centred sums,
duplicates, batches without triplets, half precision."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from hypothesis import given
from hypothesis import strategies as st

import logratio
from logratio.testing import strategies as S

# --------------------------------------------------------------------------- far from the origin


def naive_gram_sq(f: np.ndarray) -> np.ndarray:
    """The plain Gram trick ‖a‖² + ‖b‖² − 2a·b, uncentred, in f's dtype (for the control)."""
    n = np.sum(f * f, axis=1)
    return np.maximum(n[:, None] + n[None, :] - 2 * (f @ f.T), 0)


@given(
    S.loss_cases(min_batch=3, max_batch=24, coarse=True, reduction="mean"),
    st.sampled_from([1e3, -1e3]),
)
def test_float32_shift_by_1e3_changes_loss_by_less_than_1e3(case, shift):
    """Every embedding moved by the same vector (1e3, …, 1e3).  The grid values at scale ≤ 1
    stay exact after the shift, so any change comes from the computation alone."""
    size = np.max(np.abs(case.embeddings), initial=0.0)
    f = (case.embeddings / 2.0 ** np.ceil(np.log2(max(size, 1.0)))).astype(np.float32)
    moved = f + np.float32(shift)
    assert np.array_equal(moved - np.float32(shift), f)  # the shift itself is exact
    kw = case.loss_kwargs()
    loss, grad = logratio.log_ratio_loss_and_grad(f, **kw)
    moved_loss, moved_grad = logratio.log_ratio_loss_and_grad(moved, **kw)
    assert abs(float(moved_loss) - float(loss)) <= 1e-3 * abs(float(loss)) + 1e-6
    scale = np.max(np.abs(grad), initial=0.0)
    np.testing.assert_allclose(moved_grad, grad, rtol=1e-2, atol=1e-2 * scale + 1e-30)


@pytest.mark.parametrize("squared", [True, False], ids=["squared", "euclidean"])
@pytest.mark.parametrize("seed", range(4))
def test_float32_far_from_origin_matches_float64(seed, squared):
    """Gaussian float32 embeddings around (1e3, …, 1e3): the float32 loss and gradient agree
    with the float64 reference on the very same (float32) values."""
    rng = np.random.default_rng(seed)
    b, d = 24, 8
    f = (rng.standard_normal((b, d)) + 1e3).astype(np.float32)
    y = rng.standard_normal(b)
    dl = reference.label_distance_matrix(y)
    loss, grad = logratio.log_ratio_loss_and_grad(f, y, squared=squared)
    f64 = f.astype(np.float64)
    want = reference.loss(f64, dl, squared=squared)
    assert loss.dtype == np.float32
    assert abs(float(loss) - want) <= 1e-3 * want
    want_grad = reference.gradient(f64, dl, squared=squared)
    scale = np.max(np.abs(want_grad))
    np.testing.assert_allclose(grad, want_grad, rtol=1e-2, atol=1e-3 * scale)
    # control: the uncentred Gram trick loses these distances entirely in float32
    naive = naive_gram_sq(f)
    exact = naive_gram_sq(f64 - f64.mean(axis=0))
    off = ~np.eye(b, dtype=bool)
    assert np.max(np.abs(naive[off] - exact[off]) / exact[off]) > 1e-2


@pytest.mark.parametrize("batch", [12, 40])
def test_centred_sums_keep_a_tiny_loss_tiny(batch):
    """Embeddings almost proportional to 1-D labels: every residual is ≈ log 2¹² ≈ 8.3 and the
    loss (from eps alone) ≈ 1e-7.  Centred sums get it in float32; n·Σu² − (Σu)² would not."""
    rng = np.random.default_rng(batch)
    y = rng.permutation(batch).astype(np.float64) * 2.0**-10
    f = (y * 2.0**12)[:, None].astype(np.float32)
    dl = reference.label_distance_matrix(y)
    want = reference.loss(f.astype(np.float64), dl, squared=False)
    assert 1e-8 < want < 1e-6
    got = logratio.log_ratio_loss(f, y, squared=False)
    assert abs(float(got) - want) <= 1e-2 * want
    # control: the one-pass formula in float32 on the same residuals is off by far more
    u = np.log(np.abs(f - f.T) + np.float32(1e-6)) - np.log(dl.astype(np.float32) + 1e-6)
    u = np.where(~np.eye(batch, dtype=bool), u, 0).astype(np.float32)
    n = np.float32(batch - 1)
    one_pass = n * np.sum(u * u, axis=1) - np.sum(u, axis=1) ** 2
    one_pass_loss = float(np.sum(one_pass)) / (batch * (batch - 1) * (batch - 2) / 2)
    assert abs(one_pass_loss - want) > 1e-1 * want


# --------------------------------------------------------------------------- duplicates


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16], ids=str)
@given(data=st.data())
def test_duplicates_give_finite_loss_and_gradient(dtype, data):
    """Few distinct embeddings and labels in a batch of up to 40: D = 0 and Δ = 0 happen."""
    batch = data.draw(S.batch_sizes(3, 40), label="batch")
    dim = data.draw(S.dims(), label="dim")
    pool = data.draw(st.integers(1, 3), label="distinct rows")
    rows = data.draw(S.hnp.arrays(np.int64, (batch,), elements=st.integers(0, pool - 1)))
    base = data.draw(S.embedding_arrays(pool, dim, coarse=True, duplicates=False))
    f = base[rows].astype(dtype)
    y = data.draw(S.hnp.arrays(np.int64, (batch,), elements=st.integers(0, 1))).astype(float)
    for squared in (True, False):
        for ties in S.TIES:
            for reduction in S.REDUCTIONS:
                loss, grad = logratio.log_ratio_loss_and_grad(
                    f, y, squared=squared, ties=ties, reduction=reduction
                )
                assert np.all(np.isfinite(loss))
                assert grad.dtype == dtype
                finite = np.isfinite(grad)
                if dtype == np.float16:  # a true gradient beyond 65504 overflows the cast
                    _, grad32 = logratio.log_ratio_loss_and_grad(
                        f.astype(np.float32), y, squared=squared, ties=ties, reduction=reduction
                    )
                    assert np.all(np.isfinite(grad32))
                    finite |= np.abs(grad32) > np.finfo(np.float16).max
                assert np.all(finite)


@pytest.mark.parametrize("squared", [True, False], ids=["squared", "euclidean"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=str)
def test_collapsed_embeddings(dtype, squared):
    """All embeddings equal: D = 0 everywhere.  The loss is that of log-ratios of label
    distances alone and the gradient is exactly zero (∇‖f_a − f_b‖² = 0 at f_a = f_b)."""
    y = np.array([0.0, 1.0, 3.0, 3.0, 7.0, 0.0])
    f = np.full((6, 4), 0.25, dtype=dtype)
    dl = reference.label_distance_matrix(y)
    loss, grad = logratio.log_ratio_loss_and_grad(f, y, squared=squared)
    want = reference.loss(f.astype(np.float64), dl, squared=squared)
    assert float(loss) == pytest.approx(want, rel=1e-5 if dtype == np.float32 else 1e-12)
    assert np.all(grad == 0)
    # every label equal too: nothing to learn, loss 0
    loss, grad = logratio.log_ratio_loss_and_grad(f, np.zeros(6), squared=squared)
    assert float(loss) == 0 and np.all(grad == 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=str)
def test_exact_duplicates_match_reference_far_from_origin(dtype):
    """Duplicate rows far from the origin: their distance is exactly 0 (not Gram rounding
    noise, which sqrt would turn into a distance far above eps)."""
    rng = np.random.default_rng(3)
    f = rng.standard_normal((10, 7)) * 1e3
    f[1], f[3], f[5] = f[0], f[2], f[4]
    f = f.astype(dtype)
    y = rng.standard_normal(10)
    dl = reference.label_distance_matrix(y)
    for squared in (True, False):
        loss, grad = logratio.log_ratio_loss_and_grad(f, y, squared=squared)
        f64 = f.astype(np.float64)
        assert float(loss) == pytest.approx(reference.loss(f64, dl, squared=squared), rel=1e-5)
        want = reference.gradient(f64, dl, squared=squared)
        np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-4 * np.max(np.abs(want)))
    d = logratio.pairwise_distances(f)
    assert d[0, 1] == 0 and d[2, 3] == 0 and d[4, 5] == 0


# --------------------------------------------------------------------------- no triplet


@given(S.loss_cases(min_batch=0, max_batch=2))
def test_fewer_than_three_rows_give_zero(case):
    """B = 0, 1, 2: no triplet; loss 0 (per anchor with "none") and gradient 0, no warning.
    An empty batch is legal: a sampler may produce one."""
    for dtype in (np.float64, np.float32):
        f = case.embeddings.astype(dtype)
        for reduction in S.REDUCTIONS:
            kw = case.replace(reduction=reduction).loss_kwargs()
            loss, grad = logratio.log_ratio_loss_and_grad(f, **kw)
            only = logratio.log_ratio_loss(f, **kw)
            rows = case.anchor_list()
            want_shape = ((case.batch if rows is None else len(rows)),)
            assert np.shape(loss) == (want_shape if reduction == "none" else ())
            assert np.all(np.asarray(loss) == 0) and np.all(np.asarray(only) == 0)
            assert grad.shape == f.shape and grad.dtype == dtype
            assert np.all(grad == 0)


@pytest.mark.parametrize("ties", S.TIES)
def test_no_triplet_anywhere_gives_zero_not_nan(ties):
    """Anchors with fewer than two neighbours (mask), or only tied pairs with "exclude"."""
    rng = np.random.default_rng(0)
    f = rng.standard_normal((5, 3))
    mask = np.eye(5, dtype=bool) | np.eye(5, k=1, dtype=bool)  # one neighbour each at most
    for reduction in S.REDUCTIONS:
        loss, grad = logratio.log_ratio_loss_and_grad(
            f, rng.standard_normal(5), mask=mask, ties=ties, reduction=reduction
        )
        assert np.all(np.asarray(loss) == 0) and np.all(grad == 0)
    loss, grad = logratio.log_ratio_loss_and_grad(f, np.zeros(5), ties="exclude")
    assert loss == 0 and np.all(grad == 0)
    assert logratio.log_ratio_loss(f, np.zeros(5), ties="include") > 0


# --------------------------------------------------------------------------- half precision


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@given(S.loss_cases(max_batch=12, coarse=True))
def test_float16_computes_in_float32(case):
    """float16 input: the loss is float32, the gradient float16, and both are the float32
    computation on the upcast values."""
    f16 = case.embeddings.astype(np.float16)
    f32 = f16.astype(np.float32)
    kw = case.loss_kwargs()
    loss16, grad16 = logratio.log_ratio_loss_and_grad(f16, **kw)
    loss32, grad32 = logratio.log_ratio_loss_and_grad(f32, **kw)
    assert np.asarray(loss16).dtype == np.float32
    assert grad16.dtype == np.float16
    np.testing.assert_array_equal(loss16, loss32)
    np.testing.assert_array_equal(grad16, grad32.astype(np.float16))
    assert np.asarray(logratio.log_ratio_loss(f16, **kw)).dtype == np.float32


def test_float16_in_other_public_functions():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((6, 3)).astype(np.float16)
    dl = reference.label_distance_matrix(rng.standard_normal(6)).astype(np.float16)
    trip = logratio.dense_triplets(dl)
    assert np.asarray(logratio.triplet_log_ratio_loss(f, dl, trip)).dtype == np.float32
    assert logratio.pairwise_distances(f).dtype == np.float32
    # the dense loss on float16 label distances: upcast, not computed in float16
    got = logratio.log_ratio_loss(f, label_distances=dl)
    want = reference.loss(f.astype(np.float64), dl.astype(np.float64))
    assert float(got) == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("scale_exp", [-30, -10, 0, 10, 30])
def test_wide_scales_stay_finite(scale_exp):
    """Embeddings at 1e±30 (squared distances 1e±60) and labels at 1e∓30, in float64."""
    rng = np.random.default_rng(1)
    f = rng.standard_normal((8, 3)) * 10.0**scale_exp
    y = rng.standard_normal(8) * 10.0**-scale_exp
    dl = reference.label_distance_matrix(y)
    for squared in (True, False):
        loss, grad = logratio.log_ratio_loss_and_grad(f, y, squared=squared)
        assert np.isfinite(loss) and np.all(np.isfinite(grad))
        assert float(loss) == pytest.approx(reference.loss(f, dl, squared=squared), rel=1e-9)


def test_pairwise_distances_read_sub_noise_pairs_as_zero_as_documented():
    """The docstring's figure: float32, unit rows, d = 128: a pair 0.001 apart reads 0, a
    pair 0.02 apart keeps its distance (float64 differences are the reference)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(128)
    a /= np.linalg.norm(a)
    step = rng.standard_normal(128)
    step /= np.linalg.norm(step)
    x = np.stack([a, a + 0.001 * step, a + 0.02 * step, -a]).astype(np.float32)
    got = logratio.pairwise_distances(x, metric="euclidean")
    exact = np.linalg.norm(x[:, None, :].astype(np.float64) - x[None, :, :], axis=2)
    assert got[0, 1] == 0 and got[1, 0] == 0
    assert abs(got[0, 2] - exact[0, 2]) < 0.05 * exact[0, 2]
    assert abs(got[0, 3] - exact[0, 3]) < 1e-5 * exact[0, 3]
