"""float32 pairs below the Gram identity's noise, and embeddings at tiny scales.

The loss pulls pairs with equal labels to ``D ≈ ε·D_other/Δ_other``, far below the rounding
noise of ``‖a‖² + ‖b‖² − 2a·b`` in float32 (about ``1e-6·(‖a‖² + ‖b‖²)`` at d = 128).  Such
pairs get exact differences (``logratio._near``, docs/design.md §1.3); these tests compare
float32 against the float64 loss on every backend, engine and JAX scan included.
"""

from __future__ import annotations

import functools
import pickle

import numpy as np
import pytest

import logratio
from logratio import _near, _reference

pytestmark = pytest.mark.backends("numpy", "array_api_strict", "torch-eager", "jax")


NEAR_RELS = tuple(np.logspace(-9, -3, 13))


def near_batch(seed=0, b=48, d=128, rel=NEAR_RELS, normalise=True):
    """Unit rows (or N(0, 1) rows) with pairs (2k, 2k + 1) at ``D = rel[k]·(‖f_a‖² + ‖f_b‖²)``
    (equal labels, as the loss makes them), one exact copy, and random 2-d labels."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(b, d))
    if normalise:
        f /= np.linalg.norm(f, axis=1, keepdims=True)
    y = rng.normal(size=(b, 2))
    for k, r in enumerate(rel):
        a = 2 * k
        # within the centred frame the loss works in: the pair's D relative to its norms
        delta = rng.normal(size=d)
        delta *= np.sqrt(r * 2 * np.sum(f[a] ** 2)) / np.linalg.norm(delta)
        f[a + 1] = f[a] + delta
        y[a + 1] = y[a]
    f[-1], y[-1] = f[-2], y[-2]  # a copy: no gradient between the two
    return f, y, 2 * len(rel)


@functools.cache
def _reference_cached(key):
    f, y, kwargs = pickle.loads(key)
    dl = np.sqrt(((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)) if y.ndim == 2 else None
    if dl is None:
        dl = np.abs(y[:, None] - y[None, :])
    return _reference.loss_and_grad(f, dl, **kwargs)


def reference(f, y, **kwargs):
    """The float64 loss and gradient by enumerating every triplet (independent of the core)."""
    kwargs.pop("block_size", None)
    return _reference_cached(pickle.dumps((f, y, kwargs)))


def relative_rows(got, want, rows):
    return max(np.linalg.norm(got[k] - want[k]) / np.linalg.norm(want[k]) for k in rows)


@pytest.mark.parametrize(
    "kwargs", [{}, {"squared": False}, {"block_size": 5}, {"squared": False, "root_eps": 1e-6}]
)
def test_float32_near_pairs_within_one_percent_of_float64(xp, kwargs):
    """Pairs from D = 1e-9 to 1e-3 of (‖f_a‖² + ‖f_b‖²): each row's gradient within 1 % of
    float64's (the issue's target is 1e-6; it holds three decades further down), the loss
    within 1e-4.  Fails on the Gram identity alone: pairs below its noise read as D = 0."""
    f, y, m = near_batch()
    want_loss, want = reference(f, y, **kwargs)
    with xp.context():
        x = xp.asarray(f, "float32")
        loss, grad = logratio.log_ratio_loss_and_grad(x, xp.asarray(y, "float32"), **kwargs)
        loss, grad = float(xp.to_numpy(loss)), xp.to_numpy(grad).astype(np.float64)
    assert abs(loss - want_loss) <= 1e-4 * abs(want_loss)
    assert relative_rows(grad, want, range(m)) <= 1e-2
    assert np.linalg.norm(grad - want) <= 1e-2 * np.linalg.norm(want)


def test_issue_examples_near_pairs():
    """The two cases reported: ‖f‖ ≈ 1, d = 8, a pair 1e-3 apart (loss was 12 % off, gradient
    100 %); L2-normalised, d = 128, a same-label pair at D = 9e-6 (gradient 99.8 % off)."""
    rng = np.random.default_rng(3)
    for d, dist in ((8, 1e-3), (128, 3e-3)):
        f = rng.normal(size=(12, d))
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        step = rng.normal(size=d)
        f[1] = f[0] + dist * step / np.linalg.norm(step)
        y = rng.normal(size=12)
        y[1] = y[0]
        want_loss, want = reference(f, y)
        loss, grad = logratio.log_ratio_loss_and_grad(f.astype(np.float32), y.astype(np.float32))
        assert abs(float(loss) - want_loss) <= 1e-4 * abs(want_loss)
        assert relative_rows(grad.astype(np.float64), want, (0, 1)) <= 1e-2


def test_torch_engine_near_pairs(monkeypatch):
    """The compiled engine refines outside its kernel: the same accuracy, and the eager core's
    values up to float32 rounding."""
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("LOGRATIO_COMPILE", "1")
    f, y, m = near_batch(b=40)
    want_loss, want = reference(f, y)
    for block in (None, 7):
        x = torch.tensor(f, dtype=torch.float32, requires_grad=True)
        loss = logratio.log_ratio_loss(x, torch.tensor(y, dtype=torch.float32), block_size=block)
        loss.backward()
        grad = x.grad.double().numpy()
        assert abs(loss.item() - want_loss) <= 1e-4 * abs(want_loss)
        assert relative_rows(grad, want, range(m)) <= 1e-2
        eager = logratio.log_ratio_loss_and_grad(
            x.detach(), torch.tensor(y, dtype=torch.float32), block_size=block, compile=False
        )[1]
        # near pairs carry large terms that cancel: the two differ by float32 rounding only
        assert np.linalg.norm(grad - eager.double().numpy()) <= 1e-3 * np.linalg.norm(want)


def test_clusters_refined_in_chunks(xp, monkeypatch):
    """Tight clusters put most pairs of a block below the noise: the refinement takes them in
    several chunks (``_chunk`` lowered to force it) and still matches float64."""
    monkeypatch.setattr(_near, "_chunk", lambda blk: 37)
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(6, 16))
    f = np.repeat(centres, 10, axis=0) + 1e-4 * rng.normal(size=(60, 16))
    y = np.repeat(rng.normal(size=6), 10) + 0.1 * rng.normal(size=60)
    want_loss, want = reference(f, y, block_size=16)
    with xp.context():
        loss, grad = logratio.log_ratio_loss_and_grad(
            xp.asarray(f, "float32"), xp.asarray(y, "float32"), block_size=16
        )
        loss, grad = float(xp.to_numpy(loss)), xp.to_numpy(grad).astype(np.float64)
    assert abs(loss - want_loss) <= 1e-4 * abs(want_loss)
    assert np.linalg.norm(grad - want) <= 1e-2 * np.linalg.norm(want)


@pytest.mark.parametrize("scale", [1e-7, 1e-10, 1e-15])
def test_float32_small_scales_keep_their_gradient(xp, scale):
    """Embeddings of norm 1e-7 … 1e-15 (D ≪ ε): the gradient is 1/ε-scaled, not zero.  Fails
    when ε is added before the noise test (D + ε rounds to ε)."""
    f, y, _ = near_batch(b=10, d=8, rel=[])
    f = f * scale
    want_loss, want = reference(f, y)
    with xp.context():
        loss, grad = logratio.log_ratio_loss_and_grad(
            xp.asarray(f, "float32"), xp.asarray(y, "float32")
        )
        loss, grad = float(xp.to_numpy(loss)), xp.to_numpy(grad).astype(np.float64)
    assert abs(loss - want_loss) <= 1e-5 * abs(want_loss)
    assert np.linalg.norm(grad - want) <= 1e-3 * np.linalg.norm(want)


def test_copies_get_no_gradient_from_each_other(xp):
    """A copy reads as D = 0 exactly: the two rows' gradients are those of a batch in which
    the pair's term is dropped, i.e. both rows get the same gradient as one another would
    from the rest (their pair adds nothing).  Checked against float64 (exact copies there)."""
    f, y, _ = near_batch(b=12, d=8, rel=[])
    f[5], y[5] = f[4], y[4]
    want = reference(f, y)[1]
    with xp.context():
        grad = logratio.log_ratio_loss_and_grad(xp.asarray(f, "float32"), xp.asarray(y, "float32"))[
            1
        ]
        grad = xp.to_numpy(grad).astype(np.float64)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_jax_derivatives_through_near_pairs():
    """Under JAX the refinement is a while_loop on stopped gradients: jit, hessian (forward
    over reverse) and a gradient penalty (reverse over reverse) all run with near pairs and
    give finite values (reverse mode through a while_loop would raise); the Hessian is
    symmetric."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    f, y, _ = near_batch(b=10, d=6, rel=[1e-8])
    yj = jnp.asarray(y, dtype=jnp.float32)

    def loss(x):
        return logratio.log_ratio_loss(x, yj, block_size=4)

    x = jnp.asarray(f, dtype=jnp.float32)
    hess = jax.jit(jax.hessian(loss))(x)
    hess = np.asarray(hess, dtype=np.float64).reshape(60, 60)
    assert np.all(np.isfinite(hess))
    np.testing.assert_allclose(hess, hess.T, rtol=1e-3, atol=1e-3 * np.abs(hess).max())

    def penalty(x):
        return jnp.sum(jax.grad(loss)(x) ** 2)

    g = np.asarray(jax.jit(jax.grad(penalty))(x), dtype=np.float64)
    assert np.all(np.isfinite(g)) and np.any(g != 0)
