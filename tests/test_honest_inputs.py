"""Nothing silently wrong: non-finite inputs, ambiguous arguments, higher derivatives.

Non-finite embeddings (a diverged model) must give a non-finite loss and gradient on every
xp, eagerly and under ``jax.jit``; non-finite or negative label data are rejected with
an error naming the argument where values can be read; ambiguous arguments are refused.
"""

from __future__ import annotations

import numpy as np
import pytest

import logratio

pytestmark = pytest.mark.backends("numpy", "array_api_strict", "torch-eager", "jax")


def batch(seed=0, b=7, d=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, d)), rng.normal(size=b)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_non_finite_embeddings_give_non_finite_loss_and_gradient(xp, bad, reduction):
    f, y = batch()
    f[2, 1] = bad
    with xp.context(), np.errstate(invalid="ignore", over="ignore"):
        x = xp.asarray(f, "float64")
        loss, grad = logratio.log_ratio_loss_and_grad(x, y, reduction=reduction)
        assert not np.any(np.isfinite(xp.to_numpy(loss)))
        assert not np.any(np.isfinite(xp.to_numpy(grad)))
        if xp.grad is not None and reduction != "none":
            auto = xp.grad(lambda z: logratio.log_ratio_loss(z, y, reduction=reduction), x)
            assert not np.any(np.isfinite(xp.to_numpy(auto)))


def test_non_finite_embeddings_under_jit():
    jax = pytest.importorskip("jax")
    f, y = batch()
    f[0, 0] = np.nan
    fn = jax.jit(jax.value_and_grad(lambda z: logratio.log_ratio_loss(z, y)))
    loss, grad = fn(jax.numpy.asarray(f, dtype=jax.numpy.float32))
    assert np.isnan(float(loss)) and np.all(np.isnan(np.asarray(grad)))


def test_finite_embeddings_stay_finite_with_duplicates(xp):
    """Control: duplicates (distance 0) are legal and finite."""
    f, y = batch()
    f[3] = f[1]
    y[4] = y[5]
    with xp.context():
        loss, grad = logratio.log_ratio_loss_and_grad(xp.asarray(f, "float64"), y)
        assert np.isfinite(xp.to_numpy(loss)) and np.all(np.isfinite(xp.to_numpy(grad)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_labels_rejected(xp, bad):
    f, y = batch()
    y[3] = bad
    dl = np.abs(y[:, None] - y[None, :])
    with xp.context():
        x = xp.asarray(f, "float64")
        with pytest.raises(ValueError, match="labels must be finite"):
            logratio.log_ratio_loss(x, y)
        with pytest.raises(ValueError, match="label_distances must be finite"):
            logratio.log_ratio_loss(x, label_distances=dl)


@pytest.mark.parametrize("value", [np.nan, -1.0])
def test_callable_metric_values_checked(value):
    f, y = batch()

    def metric(a, b):
        out = np.abs(a[:, None, 0] - b[None, :, 0])
        out[0, 1] = value
        return out

    with pytest.raises(ValueError, match="label_metric metric"):
        logratio.log_ratio_loss(f, y, label_metric=metric)


def test_callable_metric_that_raises_or_returns_another_kind():
    torch = pytest.importorskip("torch")
    f, y = batch()

    def numpy_metric(a, b):
        return np.abs(np.asarray(a)[:, None, 0] - np.asarray(b)[None, :, 0])

    with pytest.raises(TypeError, match="its inputs' kind"):
        logratio.log_ratio_loss(torch.tensor(f), y, label_metric=numpy_metric)

    def broken(a, b):
        raise KeyError("oops")

    with pytest.raises(ValueError, match="raised KeyError"):
        logratio.log_ratio_loss(f, y, label_metric=broken)


def test_dense_triplets_rejects_nan_label_distances():
    dl = np.ones((4, 4))
    dl[1, 2] = np.nan
    with pytest.raises(ValueError, match="label_distances must be finite"):
        logratio.dense_triplets(dl)


def test_triplets_as_rows_or_tuple_never_ambiguous():
    """A (T, 3) array is read as rows; a tuple as (a, i, j); a list is refused."""
    f, y = batch()
    dl = np.abs(y[:, None] - y[None, :])
    rows = np.array([[0, 1, 2], [0, 1, 3], [1, 2, 3]])
    by_rows = logratio.triplet_log_ratio_loss(f, dl, rows, reduction="none")
    by_tuple = logratio.triplet_log_ratio_loss(f, dl, tuple(rows.T), reduction="none")
    np.testing.assert_array_equal(by_rows, by_tuple)
    with pytest.raises(TypeError, match="list"):
        logratio.triplet_log_ratio_loss(f, dl, rows.tolist())
    with pytest.raises(ValueError, match="tuple"):
        logratio.triplet_log_ratio_loss(f, dl, (rows[:, 0], rows[:, 1]))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(eps=True), TypeError, "eps"),
        (dict(eps="1e-6"), TypeError, "eps"),
        (dict(block_size=2.0), ValueError, "block_size"),
        (dict(block_size=True), ValueError, "block_size"),
    ],
)
def test_option_types(kwargs, error, match):
    f, y = batch()
    with pytest.raises(error, match=match):
        logratio.log_ratio_loss(f, y, **kwargs)


def test_numpy_integer_block_size_accepted():
    f, y = batch()
    want = logratio.log_ratio_loss(f, y, block_size=2)
    assert logratio.log_ratio_loss(f, y, block_size=np.int64(2)) == want


def test_zero_width_embeddings_rejected():
    with pytest.raises(ValueError, match="at least one column"):
        logratio.log_ratio_loss(np.zeros((3, 0)), np.arange(3.0))


def test_complex_input_to_pairwise_distances_rejected():
    with pytest.raises(TypeError, match="real"):
        logratio.pairwise_distances(np.ones((3, 2), dtype=complex))


def test_torch_sparse_embeddings_rejected():
    torch = pytest.importorskip("torch")
    f, y = batch()
    with pytest.raises(TypeError, match="dense"):
        logratio.log_ratio_loss(torch.tensor(f).to_sparse(), y)


def test_jax_boolean_anchors_under_jit_explained():
    jax = pytest.importorskip("jax")
    f, y = batch()
    mask = np.arange(7) % 2 == 0
    fn = jax.jit(lambda z, a: logratio.log_ratio_loss(z, y, anchors=a))
    with pytest.raises(TypeError, match="concrete values"):
        fn(jax.numpy.asarray(f, dtype=jax.numpy.float32), jax.numpy.asarray(mask))


# --------------------------------------------------------------------------- torch derivatives


def _torch_problem():
    torch = pytest.importorskip("torch")
    f, y = batch(b=6, d=3)
    return torch, torch.tensor(f, requires_grad=True), torch.tensor(y)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_second_derivatives(reduction):
    """Double backward (gradgradcheck), a gradient penalty, and torch.func.hessian against
    finite differences of the closed-form gradient."""
    torch, f, y = _torch_problem()

    def fn(x):
        return logratio.log_ratio_loss(x, y, reduction=reduction)

    assert torch.autograd.gradgradcheck(fn, (f,))
    g = torch.autograd.grad(fn(f).sum(), f, create_graph=True)[0]
    assert g.requires_grad
    (penalty,) = torch.autograd.grad((g * g).sum(), f)
    assert torch.linalg.norm(penalty) > 0


def test_torch_hessian_matches_finite_differences():
    torch, f, y = _torch_problem()
    x0 = f.detach()

    def loss(x):
        return logratio.log_ratio_loss(x, y)

    hess = torch.func.hessian(loss)(x0).reshape(18, 18).numpy()
    fd = np.zeros((18, 18))
    h = 1e-5
    for k in range(18):
        e = torch.zeros(18, dtype=x0.dtype)
        e[k] = h
        up = logratio.log_ratio_loss_and_grad(x0 + e.reshape(6, 3), y)[1]
        down = logratio.log_ratio_loss_and_grad(x0 - e.reshape(6, 3), y)[1]
        fd[k] = ((up - down) / (2 * h)).reshape(-1).numpy()
    np.testing.assert_allclose(hess, fd, atol=1e-6 * np.abs(fd).max())


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_forward_mode(reduction):
    torch, f, y = _torch_problem()
    x0 = f.detach()
    t = torch.randn(x0.shape, dtype=x0.dtype, generator=torch.Generator().manual_seed(0))

    def fn(x):
        return logratio.log_ratio_loss(x, y, reduction=reduction)

    _, tangent = torch.func.jvp(fn, (x0,), (t,))
    h = 1e-6
    fd = (fn(x0 + h * t) - fn(x0 - h * t)) / (2 * h)
    np.testing.assert_allclose(tangent.numpy(), fd.numpy(), rtol=1e-6, atol=1e-9)


def test_torch_vmap_over_problems():
    torch, f, y = _torch_problem()
    xs = torch.randn((3, *f.shape), dtype=f.dtype, generator=torch.Generator().manual_seed(1))
    got = torch.func.vmap(lambda x: logratio.log_ratio_loss(x, y))(xs)
    want = torch.stack([logratio.log_ratio_loss(x, y) for x in xs])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- untested branches


def test_pairwise_distances_float32_far_from_the_origin():
    """Centring before the Gram identity: a common offset of 1e3 leaves float32 distances
    within float32 accuracy of the float64 explicit differences (the plain Gram identity
    would lose every digit of the unit-scale distances)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 8))
    want = np.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=2)
    got = logratio.pairwise_distances((x + 1e3).astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3 * want.max())


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cityblock"])
def test_labels_with_many_columns(metric):
    """Labels wider than the column loop (p > 16) take the broadcast branch."""
    rng = np.random.default_rng(1)
    f, y = rng.normal(size=(9, 3)), rng.normal(size=(9, 21))
    diff = y[:, None, :] - y[None, :, :]
    dl = {
        "euclidean": np.sqrt(np.sum(diff**2, axis=2)),
        "sqeuclidean": np.sum(diff**2, axis=2),
        "cityblock": np.sum(np.abs(diff), axis=2),
    }[metric]
    got = logratio.log_ratio_loss(f, y, label_metric=metric)
    want = logratio.log_ratio_loss(f, label_distances=dl)
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("block_size", [1, 2, 3, 7])
def test_metrics_exclude_self_with_small_blocks(block_size):
    """The query's own item is found at its global index in every block of queries."""
    from logratio import metrics

    rng = np.random.default_rng(2)
    emb, y = rng.normal(size=(11, 3)), rng.normal(size=11)
    whole = metrics.retrieval_metrics(emb, emb, y, y, exclude_self=True, ks=(1, 3), ndcg_ks=(3,))
    got = metrics.retrieval_metrics(
        emb, emb, y, y, exclude_self=True, ks=(1, 3), ndcg_ks=(3,), block_size=block_size
    )
    for name, value in whole.items():
        assert got[name] == pytest.approx(value, rel=1e-12), name
    # and the own item is really excluded: @1 is never the query itself (label distance 0)
    assert got["mean_label_distance@1"] > 0


@pytest.mark.parametrize("n, batch_size", [(18, 15), (2000, 60)])
def test_sampler_batches_hold_distinct_members(n, batch_size):
    """Random members are drawn without repeats: in a small pool (rejection rounds) and in a
    large one, where many batches draw some index twice before the repeats are dropped."""
    y = np.repeat(np.arange(n / 3), 3)  # many ties
    sampler = logratio.DenseBatchSampler(y, batch_size=batch_size, k=2, seed=3)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert len(set(batch)) == len(batch) == batch_size


def test_num_queries_is_not_a_users_option():
    torch = pytest.importorskip("torch")
    f, y = batch(b=8, d=3)
    with pytest.raises(TypeError, match=r"log_ratio_loss_and_grad got unexpected.*num_queries"):
        logratio.log_ratio_loss_and_grad(f, y, num_queries=3)
    with pytest.raises(TypeError, match="LogRatioLoss got unexpected"):
        logratio.LogRatioLoss(num_queries=3)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        logratio.LogRatioLoss()(f, y)
    del torch


def test_messages_name_what_was_passed():
    f, y = batch(b=8, d=3)
    with pytest.raises(ValueError, match=r"got shape \(5,\)"):
        logratio.log_ratio_loss(f, np.arange(5.0))
    with pytest.raises(ValueError, match="callable"):
        logratio.log_ratio_loss(f, y, label_metric=3)
    bad = y.copy()
    bad[2] = np.nan
    with pytest.raises(ValueError, match="reference_labels must be finite"):
        logratio.reference_log_ratio_loss(f, f, y, bad)


def test_assert_matches_reference_rejects_an_unknown_reduction():
    from logratio.testing import assert_matches_reference

    def loose(embeddings, labels, *, reduction="mean"):
        return logratio.log_ratio_loss(embeddings, labels)  # treats any reduction as mean

    with pytest.raises(AssertionError, match="reduction"):
        assert_matches_reference(loose, options={"reduction": "avg"}, max_examples=3)


def test_negative_and_repeated_anchor_indices_as_documented():
    """A negative anchor index counts from the end; a repeated one counts its anchor (loss
    and triplets) as many times: checked against the loop reference's per-anchor sums."""
    import reference

    rng = np.random.default_rng(5)
    f = rng.standard_normal((7, 3))
    y = rng.integers(0, 4, size=7).astype(float)
    dl = np.abs(y[:, None] - y[None, :])
    per_anchor = [reference.loss(f, dl, anchors=[a], reduction="sum") for a in range(7)]
    last = logratio.log_ratio_loss(f, y, anchors=-1, reduction="sum")
    assert last == pytest.approx(per_anchor[6], rel=1e-12)
    rows = logratio.log_ratio_loss(f, y, anchors=[2, 2, -3], reduction="none")
    np.testing.assert_allclose(rows, [per_anchor[2], per_anchor[2], per_anchor[4]], rtol=1e-12)
    twice = logratio.log_ratio_loss(f, y, anchors=[2, 2, 5], reduction="mean")
    count = [len(reference.triplets(dl, anchors=[a])) for a in (2, 2, 5)]
    want = (2 * per_anchor[2] + per_anchor[5]) / sum(count)
    assert twice == pytest.approx(want, rel=1e-12)
