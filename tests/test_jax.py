"""The JAX adapter: custom_jvp rule under grad, jvp, hessian, jit, vmap, float32 and x64.

Values are compared with the float64 reference loops (:mod:`reference`); the cross-backend
properties live in ``test_backends.py``.  Each test compiles a handful of small functions
(about a second each on a CPU), so the problems are fixed, not generated.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference

jax = pytest.importorskip("jax", reason="JAX is not installed")
jnp = jax.numpy

import logratio  # noqa: E402


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def problem(batch=7, dim=3, seed=0):
    """Distinct random embeddings (the loss is smooth there) and scalar labels, float64."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, dim)), rng.normal(size=batch)


def close(got, want, rtol):
    want = np.asarray(want, dtype=np.float64)
    scale = np.max(np.abs(want), initial=0.0)
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64), want, rtol=rtol, atol=rtol * scale
    )


@pytest.mark.parametrize(
    "kw",
    [{}, {"ties": "exclude", "reduction": "sum"}, {"squared": False, "anchors": 2}],
    ids=["mean", "sum-exclude", "euclidean-one-anchor"],
)
def test_jit_grad_matches_reference(x64, kw):
    f, y = problem()
    dl = reference.label_distance_matrix(y)
    rows = [kw["anchors"]] if "anchors" in kw else None
    ref_kw = {"squared": kw.get("squared", True), "ties": kw.get("ties", "include")}
    reduction = kw.get("reduction", "mean")

    def loss(x):
        return logratio.log_ratio_loss(x, y, **kw)

    value, grad = jax.jit(jax.value_and_grad(loss))(jnp.asarray(f))
    close(value, reference.loss(f, dl, anchors=rows, reduction=reduction, **ref_kw), 1e-11)
    close(grad, reference.gradient(f, dl, anchors=rows, reduction=reduction, **ref_kw), 1e-9)
    _, closed = logratio.log_ratio_loss_and_grad(jnp.asarray(f), y, **kw)
    close(closed, grad, 1e-12)


def test_forward_mode_and_unreduced_jacobians(x64):
    """jax.jvp along a tangent is ⟨∇L, T⟩; for reduction="none", jacfwd (the rule itself) and
    jacrev (its transpose) both give the reference's per-anchor gradients."""
    f, y = problem()
    dl = reference.label_distance_matrix(y)
    t = np.random.default_rng(5).normal(size=f.shape)
    _, tangent = jax.jvp(
        lambda x: logratio.log_ratio_loss(x, y), (jnp.asarray(f),), (jnp.asarray(t),)
    )
    close(tangent, np.sum(reference.gradient(f, dl) * t), 1e-9)
    anchors = np.array([3, 0, 3])

    def rows(x):
        return logratio.log_ratio_loss(x, y, anchors=anchors, reduction="none", block_size=2)

    want = np.stack([reference.gradient(f, dl, anchors=[a], reduction="sum") for a in anchors])
    close(jax.jit(jax.jacfwd(rows))(jnp.asarray(f)), want, 1e-9)
    close(jax.jit(jax.jacrev(rows))(jnp.asarray(f)), want, 1e-9)


def test_hessian_matches_finite_differences(x64):
    """jax.hessian (forward over reverse through the rule) against central differences of the
    reference gradient."""
    f, y = problem(batch=5, dim=2)
    dl = reference.label_distance_matrix(y)
    hess = jax.jit(jax.hessian(lambda x: logratio.log_ratio_loss(x, y, ties="exclude")))(
        jnp.asarray(f)
    )
    want = np.zeros(f.shape + f.shape)
    h = 1e-5
    for k in np.ndindex(*f.shape):
        e = np.zeros_like(f)
        e[k] = h
        g_plus = reference.gradient(f + e, dl, ties="exclude")
        g_minus = reference.gradient(f - e, dl, ties="exclude")
        want[(..., *k)] = (g_plus - g_minus) / (2 * h)
    close(hess, want, 1e-6)
    flat = np.asarray(hess).reshape(f.size, f.size)
    np.testing.assert_allclose(flat, flat.T, atol=1e-12 * np.abs(flat).max())


def test_vmap_over_a_batch_of_problems(x64):
    """jax.vmap maps over whole problems (embeddings, labels, label distances, masks)."""
    rng = np.random.default_rng(2)
    fs, ys = rng.normal(size=(4, 6, 2)), rng.normal(size=(4, 6))
    masks = rng.random((4, 6, 6)) < 0.8

    def one(x, y, m):
        return logratio.log_ratio_loss(x, y, mask=m)

    values, grads = jax.jit(jax.vmap(jax.value_and_grad(one)))(
        jnp.asarray(fs), jnp.asarray(ys), jnp.asarray(masks)
    )
    for k in range(4):
        dl = reference.label_distance_matrix(ys[k])
        close(values[k], reference.loss(fs[k], dl, mask=masks[k]), 1e-11)
        close(grads[k], reference.gradient(fs[k], dl, mask=masks[k]), 1e-9)
    dls = np.abs(ys[:, :, None] - ys[:, None, :])
    per_row = jax.vmap(
        lambda x, d: logratio.log_ratio_loss(x, label_distances=d, reduction="none")
    )(jnp.asarray(fs), jnp.asarray(dls))
    for k in range(4):
        close(per_row[k], reference.loss(fs[k], dls[k], reduction="none"), 1e-11)


def test_float32_without_x64_and_half_precision():
    """Default JAX (x64 off): float32 in, float32 loss and gradient; bfloat16 in, float32 loss
    and a bfloat16 gradient."""
    f, y = problem()
    dl = reference.label_distance_matrix(y)
    with jax.enable_x64(False):
        x = jnp.asarray(f, dtype=jnp.float32)
        value, grad = jax.jit(jax.value_and_grad(lambda z: logratio.log_ratio_loss(z, y)))(x)
        assert value.dtype == jnp.float32 and grad.dtype == jnp.float32
        x32 = np.asarray(x, dtype=np.float64)
        close(grad, reference.gradient(x32, dl), 2e-3)
        half = x.astype(jnp.bfloat16)
        loss = logratio.log_ratio_loss(half, y)
        hgrad = jax.grad(lambda z: logratio.log_ratio_loss(z, y))(half)
        assert loss.dtype == jnp.float32 and hgrad.dtype == jnp.bfloat16
        close(hgrad, reference.gradient(np.asarray(half, dtype=np.float64), dl), 2e-2)


def test_options_are_static_and_checked(x64):
    """Options are Python values fixed at trace time; unknown or unhashable ones are refused,
    value checks run on concrete inputs, and labels are constants (zero gradient)."""
    f, y = problem()
    x = jnp.asarray(f)
    with pytest.raises(TypeError, match="unexpected keyword"):
        logratio.log_ratio_loss(x, y, reductions="sum")
    with pytest.raises(TypeError, match="eps"):
        logratio.log_ratio_loss(x, y, eps=[1e-6])

    class Unhashable:
        __hash__ = None

        def __call__(self, a, b):
            return jnp.abs(a[:, None, 0] - b[None, :, 0])

    with pytest.raises(TypeError, match="hashable"):
        logratio.log_ratio_loss(x, y, label_metric=Unhashable())
    with pytest.raises(ValueError, match="non-negative"):
        logratio.log_ratio_loss(x, label_distances=-np.ones((7, 7)))
    with pytest.raises(ValueError, match="out of range"):
        logratio.log_ratio_loss(x, y, anchors=[7])
    with pytest.raises(ValueError, match="ties"):
        logratio.log_ratio_loss(x, y, ties="drop")
    grad_y = jax.grad(lambda lab: logratio.log_ratio_loss(x, lab))(jnp.asarray(y))
    np.testing.assert_array_equal(np.asarray(grad_y), 0.0)
    # a boolean anchors mask is read eagerly; under jit, index arrays are traced
    mask = np.arange(7) % 2 == 0
    idx = np.flatnonzero(mask)
    eager = logratio.log_ratio_loss(x, y, anchors=mask, reduction="none")
    jitted = jax.jit(lambda z, a: logratio.log_ratio_loss(z, y, anchors=a, reduction="none"))(
        x, jnp.asarray(idx)
    )
    close(jitted, eager, 1e-14)
