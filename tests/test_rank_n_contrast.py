"""Rank-N-Contrast (Zha et al., NeurIPS 2023) against float64 restatements.

``pairs_loss`` restates the definition as a loop over (anchor, positive) pairs with masks
and anchors; ``released_loss`` restates the released ``RnCLoss`` (two views, labels repeated,
L1 label distances, ``−‖·‖/τ`` similarities, the mean over the n(n−1) pairs) as a loop in
PyTorch's float64, so that its autograd gives the released gradient.  Every denominator of
the loops subtracts its own maximum: exact wherever the value is finite.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import logratio
from logratio._reference import finite_differences


def pairs_loss(z, y, *, tau=2.0, anchors=None, mask=None, reduction="mean"):
    """The loss as a loop over (i, k): NumPy float64, or torch tensors for autograd."""
    lib = np if isinstance(z, np.ndarray) else __import__("torch")
    n = z.shape[0]
    y = np.asarray(y, dtype=np.float64).reshape(n, -1)

    def sim(i, j):
        d = z[i] - z[j]
        sq = (d * d).sum()
        return -(lib.sqrt(sq) if float(sq) > 0 else 0.0 * sq) / tau

    losses, counts = [], []
    for i in range(n) if anchors is None else anchors:
        allowed = [j for j in range(n) if j != i and (mask is None or mask[i, j])]
        total = 0.0 * z.sum()
        for k in allowed:
            gap = np.abs(y[i] - y[k]).sum()
            den = [sim(i, j) for j in allowed if np.abs(y[i] - y[j]).sum() >= gap]
            top = max(float(d) for d in den)
            total = total - sim(i, k) + top + lib.log(sum(lib.exp(d - top) for d in den))
        losses.append(total)
        counts.append(len(allowed))
    if reduction == "none":
        return losses
    s = sum(losses)
    return s if reduction == "sum" else s / max(sum(counts), 1)


def released_loss(features, labels, tau=2.0):
    """The released RnCLoss restated: ``features`` (bs, 2, d) and ``labels`` (bs, p) as torch
    float64 tensors; views concatenated, labels repeated, mean over the n(n−1) pairs."""
    import torch

    z = torch.cat([features[:, 0], features[:, 1]], dim=0)
    y = labels.repeat(2, 1)
    n = z.shape[0]
    total = 0.0
    for i in range(n):
        for k in range(n):
            if k == i:
                continue
            gap = (y[i] - y[k]).abs().sum()
            den = [
                -(z[i] - z[j]).norm() / tau
                for j in range(n)
                if j != i and (y[i] - y[j]).abs().sum() >= gap
            ]
            den = torch.stack(den)
            total = total - (-(z[i] - z[k]).norm() / tau - torch.logsumexp(den, 0))
    return total / (n * (n - 1))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("p", [1, 2])
def test_released_code_exactly(seed, p):
    """``rank_n_contrast_loss(concat([v1, v2]), concat([y, y]))`` is the released loss on
    ``stack([v1, v2], 1)``: value within 1e-12 and gradient within 1e-10 of the
    restatement's autograd (integer labels: ties in every row; a duplicate row)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    bs, d = 4, 3
    v1, v2 = rng.normal(size=(bs, d)), rng.normal(size=(bs, d))
    v2[1] = v1[1]  # the two views of a sample coincide: distance 0
    y = rng.integers(0, 3, size=(bs, p)).astype(np.float64)
    feats = torch.tensor(np.stack([v1, v2], axis=1), requires_grad=True)
    want = released_loss(feats, torch.tensor(y))
    want.backward()
    z = np.concatenate([v1, v2])
    loss, grad = logratio.rank_n_contrast_loss_and_grad(z, np.concatenate([y, y]))
    assert float(loss) == pytest.approx(want.item(), rel=1e-12)
    want_grad = torch.cat([feats.grad[:, 0], feats.grad[:, 1]]).numpy()
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)


CASES = [  # (reduction, anchors, with a mask, p)
    ("mean", None, False, 1),
    ("sum", [0, 3, 3], False, 2),
    ("mean", None, True, 1),
    ("none", [5, 1], True, 2),
]


def _batch(seed, n=7, d=3, p=1):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    if n > 4:
        z[4] = z[1]
    y = rng.integers(0, 3, size=(n, p)).astype(np.float64) * 0.5
    return z, y, rng.random((n, n)) < 0.7


def _scalar(fn, reduction):
    def total(z):
        out = fn(z)
        return sum(out) if reduction == "none" else out

    return total


@pytest.mark.parametrize("case", CASES, ids=str)
def test_value_and_gradient_match_the_loop(case):
    """NumPy float64 against the pair loop, with masks and anchors: the value, and the
    gradient against the loop's central differences."""
    reduction, anchors, masked, p = case
    z, y, mask = _batch(0, p=p)
    m = mask if masked else None
    kw = dict(temperature=1.5, anchors=anchors, mask=m, reduction=reduction, block_size=3)
    loss, grad = logratio.rank_n_contrast_loss_and_grad(z, y, **kw)
    ref = dict(tau=1.5, anchors=anchors, mask=m)
    want = pairs_loss(z, y, **ref, reduction=reduction)
    np.testing.assert_allclose(loss, np.asarray(want, dtype=np.float64), rtol=1e-12)
    fd = finite_differences(_scalar(lambda x: pairs_loss(x, y, **ref, reduction=reduction),
                                    reduction), z)  # fmt: skip
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_every_backend(xp):
    """Value and gradient on every backend against the loop; autodiff (the registered rule)
    equals the closed form."""
    z, y, mask = _batch(1, n=9)
    for reduction, anchors, masked, _ in CASES:
        m = mask if masked else None
        want = np.asarray(
            pairs_loss(z, y, anchors=anchors, mask=m, reduction=reduction), np.float64
        )
        kw = dict(anchors=anchors, mask=m, reduction=reduction, block_size=4)
        with xp.context():
            zx = xp.asarray(z, "float64")
            loss, grad = logratio.rank_n_contrast_loss_and_grad(zx, y, **kw)
            np.testing.assert_allclose(xp.to_numpy(loss), want, rtol=1e-10)
            value = logratio.rank_n_contrast_loss(zx, y, **kw)
            np.testing.assert_allclose(xp.to_numpy(value), want, rtol=1e-10)
            if xp.grad is not None and reduction != "none":

                def objective(x, kw=kw):
                    return logratio.rank_n_contrast_loss(x, y, **kw)

                auto = xp.grad(objective, zx)
                np.testing.assert_allclose(xp.to_numpy(auto), xp.to_numpy(grad), rtol=1e-9)
        fd = finite_differences(
            _scalar(lambda x, a=anchors, m=m, r=reduction: pairs_loss(
                x, y, anchors=a, mask=m, reduction=r), reduction), z
        )  # fmt: skip
        np.testing.assert_allclose(xp.to_numpy(grad), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("n", [2, 3])
def test_tiny_batches(n):
    z, y, _ = _batch(2, n=n)
    want = pairs_loss(z, y)
    np.testing.assert_allclose(logratio.rank_n_contrast_loss(z, y), want, rtol=1e-12)


def test_far_suffixes_stay_finite_in_float32():
    """Embeddings far apart: similarities spread over about 150 nats.  Subtracting only the
    row maximum (the released code) makes a far suffix's sum underflow to log 0 (an infinite
    loss) in float32; ours stays within float32 rounding of the float64 loop."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(10, 2)) * 60
    y = np.arange(10.0)
    want = pairs_loss(z, y)
    loss, grad = logratio.rank_n_contrast_loss_and_grad(z.astype(np.float32), y)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert float(loss) == pytest.approx(want, rel=1e-4)
    # the released form in float32 overflows here
    sims = -np.linalg.norm(z[:, None] - z[None], axis=-1).astype(np.float32) / 2
    shifted = np.exp(sims - sims.max(axis=1, keepdims=True))
    assert np.any(shifted[np.triu_indices(10, 1)] == 0)


def test_non_finite_embeddings_give_nan():
    z, y, _ = _batch(4)
    z[2, 0] = np.nan
    loss, grad = logratio.rank_n_contrast_loss_and_grad(z, y)
    assert np.isnan(loss) and np.all(np.isnan(grad))


def test_bad_options_name_the_argument():
    z, y, _ = _batch(5)
    with pytest.raises(ValueError, match="temperature"):
        logratio.rank_n_contrast_loss(z, y, temperature=-2.0)
    with pytest.raises(ValueError, match="label_metric"):
        logratio.rank_n_contrast_loss(z, y, label_metric="l7")


def test_torch_module_equals_the_function():
    torch = pytest.importorskip("torch")
    z, y, _ = _batch(6)
    zt = torch.tensor(z, requires_grad=True)
    loss_fn = logratio.RankNContrastLoss(temperature=1.0)
    loss = loss_fn(zt, torch.tensor(y))
    loss.backward()
    want, grad = logratio.rank_n_contrast_loss_and_grad(z, y, temperature=1.0)
    np.testing.assert_allclose(loss.item(), want, rtol=1e-12)
    np.testing.assert_allclose(zt.grad.numpy(), grad, rtol=1e-10)
    assert "temperature=1.0" in repr(loss_fn)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_any_spread_of_similarities(xp, dtype):
    """Similarities spread over hundreds (float32) or thousands (float64) of nats: the tie of
    rows 4 and 5 gives anchor 0's last positive ``log 2`` exactly, and a scattered batch
    agrees with the float64 loop; the gradient stays finite (every backend's exact scan)."""
    tau = 0.003 if dtype == "float32" else 2e-4
    line = np.array([[0.0], [0.2], [0.4], [0.6], [0.8], [0.8]])
    y = np.arange(6.0)
    scattered = np.array([[1.8, -0.7], [-1.1, -0.4], [-1.2, 1.5], [0.9, 0.6], [1.4, -0.6],
                          [-1.3, 0.3]])  # fmt: skip
    y2 = np.array([1.0, 5, 3, 2, 0, 4])
    with xp.context():
        per = logratio.rank_n_contrast_loss(
            xp.asarray(line, dtype), y, temperature=tau, reduction="none"
        )
        assert float(xp.to_numpy(per)[0]) == pytest.approx(math.log(2), rel=1e-5)
        loss, grad = logratio.rank_n_contrast_loss_and_grad(
            xp.asarray(scattered, dtype), y2, temperature=0.01
        )
        assert float(xp.to_numpy(loss)) == pytest.approx(
            pairs_loss(scattered, y2, tau=0.01), rel=1e-5
        )
        assert np.all(np.isfinite(xp.to_numpy(grad)))


def test_bad_labels_under_jit_give_nan():
    """Traced labels cannot be refused: NaN or infinite labels and negative label distances
    make the loss NaN under ``jax.jit`` for every loss (a sort alone would hide them)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(7)
    z, y = rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=6).astype(np.float32)
    dist = np.abs(y[:, None] - y[None, :])
    for fn in (logratio.rank_n_contrast_loss, logratio.y_aware_infonce_loss,
               logratio.log_ratio_loss):  # fmt: skip
        for bad in (np.nan, np.inf):
            labels = y.copy()
            labels[0] = bad
            assert np.isnan(jax.jit(lambda q, lab, fn=fn: fn(q, lab))(z, jnp.asarray(labels)))
        neg = jnp.asarray(-dist)
        assert np.isnan(jax.jit(lambda q, d, fn=fn: fn(q, label_distances=d))(z, neg))
        ok = jax.jit(lambda q, lab, fn=fn: fn(q, lab))(z, jnp.asarray(y * 1e30))
        assert np.isfinite(ok)


def test_double_backward_stays_finite_far_from_the_origin():
    """The pairs that do not count take exp(0) in the gradient's kernel, not the exp of a
    large prefix: a recorded backward (create_graph=True) differentiates through it."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    f = (torch.randn(12, 3) * 300).requires_grad_()
    y = torch.randn(12)
    (g,) = torch.autograd.grad(logratio.rank_n_contrast_loss(f, y), f, create_graph=True)
    (h,) = torch.autograd.grad((g * g).sum(), f)
    assert torch.isfinite(h).all()
