"""y-aware InfoNCE (Dufumier et al., MICCAI 2021) against a float64 restatement.

The restatement is a loop over anchors and pairs written from the paper's definition: every
value and gradient of :func:`logratio.y_aware_infonce_loss` is compared with it on every
backend, with masks, anchors, ties, 2-D labels, duplicates and batches of 2 and 3 rows; the
closed-form gradient also against the loop's central differences and PyTorch's autograd of
the loop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import logratio
from logratio._reference import finite_differences


def restated(z, y, *, tau=0.1, sigma=1.0, anchors=None, mask=None, reduction="mean"):
    """The loss as loops (NumPy float64, or torch float64 tensors for autograd)."""
    lib = np if isinstance(z, np.ndarray) else __import__("torch")
    n = z.shape[0]
    unit = [z[i] / lib.sqrt((z[i] ** 2).sum()) for i in range(n)]
    y = np.asarray(y, dtype=np.float64).reshape(n, -1)
    losses, counts = [], []
    for i in range(n) if anchors is None else anchors:
        others = [j for j in range(n) if j != i and (mask is None or mask[i, j])]
        if not others:
            losses.append(0.0 * z.sum())
            counts.append(0)
            continue
        sims = [(unit[i] * unit[j]).sum() / tau for j in others]
        top = max(float(s.detach()) if hasattr(s, "detach") else float(s) for s in sims)
        log_z = top + lib.log(sum(lib.exp(s - top) for s in sims))
        w = [math.exp(-((y[i] - y[j]) ** 2).sum() / (2 * sigma**2)) for j in others]
        total_w = sum(w)
        losses.append(-sum(wj / total_w * (s - log_z) for wj, s in zip(w, sims, strict=True)))
        counts.append(1)
    if reduction == "none":
        return losses
    total = sum(losses)
    return total if reduction == "sum" else total / max(sum(counts), 1)


def _batch(seed, n=7, d=3, p=1):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    if n > 4:
        z[4] = z[1]  # a duplicate view
    y = rng.integers(0, 3, size=(n, p)).astype(np.float64) * 0.7  # ties
    return z, y, rng.random((n, n)) < 0.7


CASES = [  # (reduction, anchors, with a mask, p)
    ("mean", None, False, 1),
    ("sum", [0, 3, 3], False, 2),
    ("mean", None, True, 1),
    ("none", [5, 1], True, 2),
]


def _scalar(z_fn, reduction):
    def total(z):
        out = z_fn(z)
        return sum(out) if reduction == "none" else out

    return total


@pytest.mark.parametrize("case", CASES, ids=str)
def test_value_and_gradient_match_the_restatement(case):
    """NumPy float64 against the loop: the value, the gradient against the loop's central
    differences and PyTorch's autograd of the loop."""
    torch = pytest.importorskip("torch")
    reduction, anchors, masked, p = case
    z, y, mask = _batch(0, p=p)
    m = mask if masked else None
    kw = dict(temperature=0.5, sigma=0.8, anchors=anchors, mask=m, reduction=reduction)
    loss, grad = logratio.y_aware_infonce_loss_and_grad(z, y, **kw)
    ref = dict(tau=0.5, sigma=0.8, anchors=anchors, mask=m)
    want = restated(z, y, **ref, reduction=reduction)
    np.testing.assert_allclose(loss, np.asarray(want, dtype=np.float64), rtol=1e-12)
    fd = finite_differences(_scalar(lambda x: restated(x, y, **ref, reduction=reduction),
                                    reduction), z)  # fmt: skip
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    zt = torch.tensor(z, requires_grad=True)
    out = restated(zt, y, **ref, reduction=reduction)
    (sum(out) if reduction == "none" else out).backward()
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_every_backend(xp):
    """Value and gradient on every backend against the loop; autodiff (the registered rule)
    equals the closed form."""
    z, y, mask = _batch(1, n=9, p=1)
    for reduction, anchors, masked, _ in CASES:
        m = mask if masked else None
        want = np.asarray(
            restated(z, y, tau=0.2, anchors=anchors, mask=m, reduction=reduction), np.float64
        )
        kw = dict(temperature=0.2, anchors=anchors, mask=m, reduction=reduction, block_size=4)
        with xp.context():
            zx = xp.asarray(z, "float64")
            loss, grad = logratio.y_aware_infonce_loss_and_grad(zx, y, **kw)
            np.testing.assert_allclose(xp.to_numpy(loss), want, rtol=1e-10)
            value = logratio.y_aware_infonce_loss(zx, y, **kw)
            np.testing.assert_allclose(xp.to_numpy(value), want, rtol=1e-10)
            if xp.grad is not None and reduction != "none":

                def objective(x, kw=kw):
                    return logratio.y_aware_infonce_loss(x, y, **kw)

                auto = xp.grad(objective, zx)
                np.testing.assert_allclose(xp.to_numpy(auto), xp.to_numpy(grad), rtol=1e-9)
        fd = finite_differences(
            _scalar(lambda x, a=anchors, m=m, r=reduction: restated(
                x, y, tau=0.2, anchors=a, mask=m, reduction=r), reduction), z
        )  # fmt: skip
        np.testing.assert_allclose(xp.to_numpy(grad), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("n", [2, 3])
def test_tiny_batches(n):
    z, y, _ = _batch(2, n=n)
    want = restated(z, y)
    np.testing.assert_allclose(logratio.y_aware_infonce_loss(z, y), want, rtol=1e-12)


def test_extremes_stay_finite():
    """A tiny temperature (similarities of ±1000) and a tiny sigma (every kernel weight
    underflows) keep a finite loss and gradient: both softmaxes subtract their row maximum."""
    z, y, _ = _batch(3, n=8)
    for kw in (dict(temperature=1e-3), dict(sigma=1e-3)):
        loss, grad = logratio.y_aware_infonce_loss_and_grad(z, y * 100, **kw)
        assert np.isfinite(loss) and np.all(np.isfinite(grad))
        want = restated(z, y * 100, tau=kw.get("temperature", 0.1), sigma=kw.get("sigma", 1.0))
        np.testing.assert_allclose(loss, want, rtol=1e-9)


def test_non_finite_embeddings_give_nan():
    z, y, _ = _batch(4)
    z[2, 0] = np.inf
    loss, grad = logratio.y_aware_infonce_loss_and_grad(z, y)
    assert np.isnan(loss) and np.all(np.isnan(grad))


def test_bad_options_name_the_argument():
    z, y, _ = _batch(5)
    with pytest.raises(ValueError, match="temperature"):
        logratio.y_aware_infonce_loss(z, y, temperature=0.0)
    with pytest.raises(ValueError, match="sigma"):
        logratio.y_aware_infonce_loss(z, y, sigma=-1.0)
    with pytest.raises(ValueError, match="labels"):
        logratio.y_aware_infonce_loss(z, y[:3])
    for sigma in (1e-300, 1e160):  # 1/(2σ²) would not be finite
        with pytest.raises(ValueError, match="sigma must lie in"):
            logratio.y_aware_infonce_loss(z, y, sigma=sigma)


def test_torch_module_equals_the_function():
    torch = pytest.importorskip("torch")
    z, y, _ = _batch(6)
    zt = torch.tensor(z, requires_grad=True)
    loss_fn = logratio.YAwareInfoNCELoss(temperature=0.3, sigma=2.0)
    loss = loss_fn(zt, torch.tensor(y))
    loss.backward()
    want, grad = logratio.y_aware_infonce_loss_and_grad(z, y, temperature=0.3, sigma=2.0)
    np.testing.assert_allclose(loss.item(), want, rtol=1e-12)
    np.testing.assert_allclose(zt.grad.numpy(), grad, rtol=1e-10)
    assert "temperature=0.3" in repr(loss_fn)


def released(z1, z2, y, *, tau=0.1, sigma=1.0):
    """A float64 restatement of the released ``GeneralizedSupervisedNTXenLoss`` (two views
    of N samples): the weight matrix over the 2N rows, each column divided by its row's
    sum (the code's ``weights /= weights.sum(axis=1)``), the log-softmax over j ≠ i, and the
    sum divided by N."""
    n = z1.shape[0]
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    labels = np.concatenate([y, y]).reshape(2 * n, -1)
    m = 2 * n
    w = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            if i != j:
                w[i, j] = math.exp(-((labels[i] - labels[j]) ** 2).sum() / (2 * sigma**2))
    row_sums = [w[j].sum() for j in range(m)]
    total = 0.0
    for i in range(m):
        sims = [(z[i] @ z[j]) / tau for j in range(m) if j != i]
        log_z = max(sims) + math.log(sum(math.exp(s - max(sims)) for s in sims))
        for j in range(m):
            if j != i:
                total += w[i, j] / row_sums[j] * ((z[i] @ z[j]) / tau - log_z)
    return -total / n


@pytest.mark.parametrize("seed", range(3))
def test_released_code_exactly(seed):
    """The documented call equals the released loss, value and gradient (the gradient of
    the restatement by central differences)."""
    rng = np.random.default_rng(seed)
    n, d = 5, 3
    z1, z2 = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    y = rng.uniform(20, 80, size=n) / 10
    z = np.concatenate([z1, z2])
    kw = dict(temperature=0.3, sigma=1.5, weights="released", reduction="sum")
    loss, grad = logratio.y_aware_infonce_loss_and_grad(z, np.concatenate([y, y]), **kw)
    want = released(z1, z2, y, tau=0.3, sigma=1.5)
    assert float(loss) / n == pytest.approx(want, rel=1e-12)
    fd = finite_differences(lambda x: released(x[:n], x[n:], y, tau=0.3, sigma=1.5), z)
    np.testing.assert_allclose(grad / n, fd, rtol=1e-6, atol=1e-8)


def test_released_weights_differ_from_the_papers():
    """With unequal label spreads the two normalisations give different losses (the default
    is the paper's)."""
    z, y, _ = _batch(7, n=8)
    paper = logratio.y_aware_infonce_loss(z, y)
    rel = logratio.y_aware_infonce_loss(z, y, weights="released")
    assert paper == pytest.approx(restated(z, y), rel=1e-12)
    assert abs(paper - rel) > 1e-3


def test_released_weights_on_every_backend(xp):
    rng = np.random.default_rng(8)
    n = 5
    z1, z2 = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    y = rng.uniform(0, 3, size=n)
    want = released(z1, z2, y, tau=0.5)
    kw = dict(temperature=0.5, weights="released", reduction="sum", block_size=3)
    with xp.context():
        zx = xp.asarray(np.concatenate([z1, z2]), "float64")
        loss = logratio.y_aware_infonce_loss(zx, np.concatenate([y, y]), **kw)
        assert float(xp.to_numpy(loss)) / n == pytest.approx(want, rel=1e-10)


def test_released_weights_without_neighbours_give_no_nan():
    """A batch of one, and a masked-out neighbour whose kernel underflows every column:
    the pairs that do not count add nothing (no −inf − −inf)."""
    f = np.random.default_rng(0).normal(size=(1, 3))
    assert logratio.y_aware_infonce_loss(f, np.array([0.3]), weights="released") == 0.0
    f = np.random.default_rng(1).normal(size=(5, 3))
    y = np.array([0.0, 0.0, 0.0, 0.0, 2.0])
    m = np.ones((5, 5), dtype=bool)
    m[:, 4] = m[4, :] = False
    tiny = logratio.y_aware_infonce_loss(f, y, sigma=7.07e-20, weights="released", mask=m)
    kept = logratio.y_aware_infonce_loss(f[:4], y[:4], sigma=7.07e-20, weights="released")
    assert np.isfinite(tiny) and abs(tiny - kept) <= 1e-12 * abs(kept)  # row 4 has no pair
