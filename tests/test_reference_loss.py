"""The loss of queries against a reference set (``reference_log_ratio_loss``), against the
float64 loop reference run on the stacked batch ``[queries; reference]`` with the queries as
anchors and a mask that allows reference neighbours only (an independent restatement)."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from hypothesis import given
from hypothesis import strategies as st

import logratio
from logratio.testing import backends
from logratio.testing import strategies as S

CPU = [b.name for b in backends.discover(("numpy", "array_api_strict", "torch", "jax"))[0]]


def stacked(fq, fr, yq, yr, metric, pair_mask):
    """Embeddings, label distances and the mask of the stacked batch ``[queries; reference]``:
    each query may pair with reference rows only (those ``pair_mask`` allows)."""
    q, n = fq.shape[0], fr.shape[0]
    f = np.concatenate([fq, fr])
    y = np.concatenate([np.reshape(yq, (q, -1)), np.reshape(yr, (n, yq.size // max(q, 1)))])
    dl = reference.label_distance_matrix(y, metric)
    mask = np.zeros((q + n, q + n), dtype=bool)
    mask[:q, q:] = True if pair_mask is None else pair_mask
    return f, dl, mask


def stacked_reference(fq, fr, yq, yr, *, metric="euclidean", pair_mask=None, anchors=None,
                      **options):  # fmt: skip
    """Per-anchor losses and the gradient of the sum, by enumeration on [queries; reference]."""
    q = fq.shape[0]
    f, dl, mask = stacked(fq, fr, yq, yr, metric, pair_mask)
    rows = list(range(q)) if anchors is None else list(anchors)
    per = reference.loss(f, dl, anchors=rows, mask=mask, reduction="none", **options)
    counts = [len(reference.triplets(dl, [a], mask, options.get("ties", "include"))) for a in rows]
    grad_mean = reference.gradient(f, dl, anchors=rows, mask=mask, reduction="mean", **options)
    return np.asarray(per), np.asarray(counts), grad_mean[:q], grad_mean[q:]


def stacked_cancellation_noise(fq, fr, yq, yr, *, metric="euclidean", pair_mask=None,
                               **options) -> float:  # fmt: skip
    """``reference.cancellation_noise`` of the stacked problem in float64: the rounding of
    a gradient whose residuals cancel exactly (a query with equal residuals to all of its
    reference rows has a gradient of exactly 0, up to the rounding of their mean)."""
    q = fq.shape[0]
    f, dl, mask = stacked(fq, fr, yq, yr, metric, pair_mask)
    _, sizes = reference.loss_and_grad(
        f, dl, anchors=list(range(q)), mask=mask, reduction="mean", absolute=True,
        magnitudes=True, **options,
    )  # fmt: skip
    return reference.cancellation_unit(np.float64) * float(np.max(sizes, initial=0.0))


@st.composite
def problems(draw):
    q = draw(st.integers(1, 5))
    n = draw(st.integers(0, 7))
    d = draw(st.integers(1, 3))
    f = draw(S.embedding_arrays(q + n, d))
    y = draw(S.label_arrays(q + n))
    return f[:q], f[q:], y[:q], y[q:]


@given(problems(), st.sampled_from(["include", "exclude"]), st.booleans(), st.data())
def test_matches_the_stacked_reference(problem, ties, squared, data):
    fq, fr, yq, yr = problem
    metric = data.draw(st.sampled_from(["euclidean", "cityblock"]), label="metric")
    root_eps = 0.0 if squared else data.draw(st.sampled_from([0.0, 1e-3]), label="root_eps")
    pair_mask = data.draw(S.masks(max(fq.shape[0], fr.shape[0])), label="mask")
    if pair_mask is not None:
        pair_mask = pair_mask[: fq.shape[0], : fr.shape[0]]
    opts = dict(squared=squared, ties=ties, root_eps=root_eps)
    per, counts, gq, gr = stacked_reference(
        fq, fr, yq, yr, metric=metric, pair_mask=pair_mask, **opts
    )
    kw = dict(label_metric=metric, mask=pair_mask, **opts)
    got = logratio.reference_log_ratio_loss(fq, fr, yq, yr, reduction="none", **kw)
    np.testing.assert_allclose(got, per, rtol=1e-10, atol=1e-12)
    loss, got_q, got_r = logratio.reference_log_ratio_loss_and_grad(fq, fr, yq, yr, **kw)
    total = counts.sum()
    np.testing.assert_allclose(loss, per.sum() / total if total else 0.0, rtol=1e-10, atol=1e-14)
    scale = max(np.abs(gq).max(initial=0), np.abs(gr).max(initial=0), 1e-300)
    noise = stacked_cancellation_noise(fq, fr, yq, yr, metric=metric, pair_mask=pair_mask, **opts)
    np.testing.assert_allclose(got_q, gq, rtol=1e-8, atol=1e-9 * scale + noise)
    np.testing.assert_allclose(got_r, gr, rtol=1e-8, atol=1e-9 * scale + noise)


@pytest.mark.parametrize("name", CPU)
def test_every_backend_and_autodiff(name):
    """Each backend's value, and PyTorch/JAX autodiff through both inputs, equal the reference
    (float64), with given (Q, N) label distances and an anchor subset."""
    b = backends.get(name)
    rng = np.random.default_rng(0)
    fq, fr = rng.normal(size=(4, 3)), rng.normal(size=(6, 3))
    yq, yr = rng.normal(size=4), rng.normal(size=6)
    per, counts, gq, gr = stacked_reference(fq, fr, yq, yr, anchors=[0, 2])
    want = per.sum() / counts.sum()
    dl = np.abs(yq[:, None] - yr[None, :])
    with b.context():
        q, r = b.asarray(fq, "float64"), b.asarray(fr, "float64")
        got = logratio.reference_log_ratio_loss(q, r, label_distances=dl, anchors=[0, 2])
        assert float(b.to_numpy(got)) == pytest.approx(want, rel=1e-10)
        if b.grad is not None:
            got_q = b.grad(
                lambda x: logratio.reference_log_ratio_loss(x, r, yq, yr, anchors=[0, 2]), q
            )
            got_r = b.grad(
                lambda x: logratio.reference_log_ratio_loss(q, x, yq, yr, anchors=[0, 2]), r
            )
            np.testing.assert_allclose(b.to_numpy(got_q), gq, rtol=1e-8, atol=1e-12)
            np.testing.assert_allclose(b.to_numpy(got_r), gr, rtol=1e-8, atol=1e-12)


def test_reference_equal_to_batch_counts_self_pairs():
    """Control: against itself as the reference, each query sees its own row (distance 0,
    label distance 0) as a neighbour, unlike log_ratio_loss, which excludes it."""
    rng = np.random.default_rng(1)
    f, y = rng.normal(size=(6, 2)), rng.normal(size=6)
    own = logratio.reference_log_ratio_loss(f, f, y, y, reduction="none")
    per, _, _, _ = stacked_reference(f, f, y, y)
    np.testing.assert_allclose(own, per, rtol=1e-10)
    assert not np.allclose(own, logratio.log_ratio_loss(f, y, reduction="none"))


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((np.ones((3, 2)), np.ones((4, 3)), np.ones(3), np.ones(4)), {}, ValueError, "columns"),
        ((np.ones((3, 2)), np.ones((4, 2)), np.ones(3)), {}, ValueError, "both"),
        ((np.ones((3, 2)), np.ones((4, 2)), np.ones(3), np.ones(5)), {}, ValueError, "(4,)"),
        ((np.ones((3, 2)), np.ones((4, 2))), {"label_distances": np.ones((4, 3))}, ValueError,
         "label_distances"),
        ((np.ones((3, 2)), np.ones((4, 2)), np.ones(3), np.ones(4)), {"num_queries": 1},
         TypeError, "num_queries"),
    ],
)  # fmt: skip
def test_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        logratio.reference_log_ratio_loss(*args, **kwargs)
