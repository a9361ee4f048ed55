"""One set of test bodies for every array backend: NumPy, array-api-strict, PyTorch, JAX, CuPy.

The ``xp`` fixture (``conftest.py``) yields a :class:`~logratio.testing.backends.Backend` of
the shared registry; a backend whose package is missing (or, for CuPy, a machine without a
CUDA device) is skipped with the registry's reason.  Every test converts
float64 NumPy problems from :mod:`strategies` to the backend, calls the public
``logratio.log_ratio_loss`` / ``log_ratio_loss_and_grad`` and compares with the float64
reference loops of :mod:`reference` (or, for batches above ``REFERENCE_MAX_BATCH``, where the
loops take seconds, with the core's own float64 NumPy result, itself checked against the loops
by the core suite).

Tolerances, per dtype, relative to the quantity's own scale (see ``strategies.Expected``):

* loss: an error ``rtol`` per log-distance, ``LOSS_RTOL`` = 1e-11 (float64), 2e-4 (float32);
* gradient: ``GRAD_RTOL`` × the largest reference component, 1e-9 (float64), 2e-3 (float32);
* half precision (computed in float32, gradient rounded to the input dtype): the float32
  tolerances plus the rounding of the output, 2⁻¹¹ (float16) or 2⁻⁸ (bfloat16) relative.

float32 problems sit on the coarse grid of :mod:`strategies`, where float32 resolves every
distance: a disagreement is then a bug, not a rounding artefact.  JAX compiles the loss once
per shape and option set (about a second on a CPU), so JAX runs fewer examples
(``Backend.cost``).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import core
import numpy as np
import pytest
import reference
from assertions import assert_close, check_gradient, check_loss
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import logratio
from logratio.testing import strategies as S
from logratio.testing.backends import Backend

LOSS_RTOL = {"float64": 1e-11, "float32": 2e-4}
GRAD_RTOL = {"float64": 1e-9, "float32": 2e-3}
HALF_ROUNDING = {"float16": 2.0**-11, "bfloat16": 2.0**-8}
HALF_MAX = {"float16": 65504.0, "bfloat16": 3.38e38}
#: Largest batch compared with the reference loops (O(B³) Python, about 0.1 s at B = 20).
REFERENCE_MAX_BATCH = 20


# --------------------------------------------------------------------------- helpers


def require(backend: Backend, dtype: str) -> None:
    """Skip the test where the backend has no ``dtype`` (e.g. bfloat16 in NumPy)."""
    if dtype not in backend.dtypes:
        pytest.skip(f"{backend.label} has no {dtype}")


def examples(backend: Backend) -> settings:
    """The loaded Hypothesis profile, with fewer examples for slow-to-compile backends."""
    base = settings()
    return settings(base, max_examples=max(3, base.max_examples // backend.cost))


def converter(backend: Backend, how: str) -> Callable[[np.ndarray], Any]:
    """How labels, label distances, anchors and masks reach the loss: as the backend's arrays,
    as NumPy arrays or as (nested) lists; the loss moves them to the embeddings' namespace."""
    if how == "native":
        return backend.asarray
    if how == "list":
        return lambda a: a.tolist()
    return lambda a: a


def expected_values(backend: Backend, case: S.LossCase, f: np.ndarray) -> S.Expected:
    """Reference values of ``case`` at embeddings ``f`` (float64)."""
    f = np.asarray(f, dtype=np.float64)
    if case.batch <= REFERENCE_MAX_BATCH or backend.name == "numpy":
        return S.expected(case, f, gradient=True)
    kw = case.replace(reduction="none").loss_kwargs()
    p = core.prepare(f, **kw)
    per_anchor, counts, grad = core.anchor_terms(p, want_grad=True)
    return S.Expected(
        per_anchor=np.asarray(per_anchor),
        counts=np.asarray(counts),
        gradient_sum=np.asarray(grad),
        batch=case.batch,
    )


def anchor_rows(case: S.LossCase) -> list[int]:
    """The anchors' row indices, in output order (every row when anchors is None)."""
    rows = case.anchor_list()
    return list(range(case.batch)) if rows is None else rows


def unreduced(backend: Backend, case: S.LossCase, f: Any):
    """Per-anchor losses and the gradient of their sum, as float64 NumPy arrays."""
    kw = case.replace(reduction="none").loss_kwargs(convert=backend.asarray)
    loss, grad = logratio.log_ratio_loss_and_grad(f, **kw)
    return backend.to_numpy(loss).astype(np.float64), backend.to_numpy(grad).astype(np.float64)


# --------------------------------------------------------------------------- tests

DTYPES = pytest.mark.parametrize("dtype", ["float64", "float32"])


def float_cases(dtype: str, **kw: Any) -> st.SearchStrategy[S.LossCase]:
    """Fine-grid problems up to 40 rows in float64; the coarse grid up to 12 rows in float32."""
    if dtype == "float32":
        kw.setdefault("max_batch", 12)
        return S.loss_cases(coarse=True, **kw)
    return S.loss_cases(**kw)


@DTYPES
def test_value_and_gradient_match_reference(xp, dtype):
    """Every reduction, label source, anchors form and mask; outputs native, on the input's
    device, loss in the compute dtype and gradient in the input dtype; gradient rows sum to
    zero (translation invariance); log_ratio_loss equals the loss of log_ratio_loss_and_grad."""
    require(xp, dtype)

    @examples(xp)
    @given(data=st.data())
    def run(data):
        case = data.draw(float_cases(dtype), label="case")
        how = data.draw(st.sampled_from(["native", "numpy", "list"]), label="aux as")
        f64 = case.embeddings.astype(np.dtype(dtype)).astype(np.float64)
        exp = expected_values(xp, case, f64)
        noise = {r: reference.cancellation_noise(case, f64, r, dtype) for r in ("sum", "mean")}
        noise["none"] = noise["sum"]  # the gradient of the per-anchor sums
        with xp.context():
            f = xp.asarray(f64, dtype)
            for reduction in S.REDUCTIONS:
                kw = case.replace(reduction=reduction).loss_kwargs(convert=converter(xp, how))
                loss, grad = logratio.log_ratio_loss_and_grad(f, **kw)
                check_loss(loss, exp, reduction, LOSS_RTOL[dtype], backend=xp, dtype=dtype)
                g = check_gradient(
                    grad,
                    exp.gradient(reduction),
                    GRAD_RTOL[dtype],
                    backend=xp,
                    dtype=dtype,
                    noise=noise[reduction],
                )
                total = np.abs(np.sum(g, axis=0))
                bound = (1e-12 if dtype == "float64" else 1e-5) * np.max(
                    np.sum(np.abs(g), axis=0)
                )  # the gradient's scale
                assert np.all(total <= bound + 1e-300), (total, bound)
            reduction = data.draw(st.sampled_from(S.REDUCTIONS), label="reduction")
            kw = case.replace(reduction=reduction).loss_kwargs(convert=converter(xp, how))
            alone = logratio.log_ratio_loss(f, **kw)
            with_grad = xp.to_numpy(logratio.log_ratio_loss_and_grad(f, **kw)[0])
            # the same formula; a compiler (XLA, inductor) may fuse the two programs
            # differently: a few units of rounding apart in float32
            same = 1e-12 if dtype == "float64" else 8 * 2.0**-24
            assert_close(alone, with_grad, rtol=same, atol=1e-300, backend=xp, dtype=dtype)

    run()


def _grid_step(f: np.ndarray) -> float:
    """The largest power of two dividing every entry of ``f`` (the strategies' grid step)."""
    nonzero = np.abs(f[f != 0])
    if nonzero.size == 0:
        return 1.0
    k = int(np.floor(np.log2(np.max(nonzero))))
    while not np.all(np.mod(nonzero, 2.0**k) == 0):
        k -= 1
    return 2.0**k


@DTYPES
def test_translation_invariance(xp, dtype):
    """Shifting every embedding by the same vector (up to 2¹⁸ grid steps, exact in float32)
    changes neither the per-anchor losses nor the gradient (docs/design.md §1.3: no Gram trick on
    uncentred data)."""
    require(xp, dtype)

    @examples(xp)
    @given(data=st.data())
    def run(data):
        case = data.draw(float_cases(dtype, max_batch=24 if dtype == "float64" else 12))
        f = case.embeddings
        step = _grid_step(f)
        ints = st.integers(-(2**12), 2**12)
        shift = data.draw(S.hnp.arrays(np.int64, (case.dim,), elements=ints), label="shift")
        shift = shift * step * 2.0 ** data.draw(st.integers(0, 6), label="log2 factor")
        with xp.context():
            loss, grad = unreduced(xp, case, xp.asarray(f, dtype))
            moved_loss, moved_grad = unreduced(xp, case, xp.asarray(f + shift, dtype))
        rtol = LOSS_RTOL[dtype]
        assert np.all(np.abs(moved_loss - loss) <= 4 * rtol * (np.abs(loss) + case.batch**2))
        check_gradient(moved_grad, grad, GRAD_RTOL[dtype])

    run()


@DTYPES
def test_permutation_equivariance(xp, dtype):
    """Reordering the rows (embeddings, labels, label distances, mask; anchors follow their
    rows) permutes the per-anchor losses and the gradient rows."""
    require(xp, dtype)

    @examples(xp)
    @given(data=st.data())
    def run(data):
        case = data.draw(float_cases(dtype, max_batch=24 if dtype == "float64" else 12))
        perm = np.array(data.draw(st.permutations(range(case.batch)), label="perm"), dtype=int)
        moved = case.permuted(perm)
        with xp.context():
            loss, grad = unreduced(xp, case, xp.asarray(case.embeddings, dtype))
            moved_loss, moved_grad = unreduced(xp, moved, xp.asarray(moved.embeddings, dtype))
        if case.anchors is None or np.asarray(case.anchors).dtype == np.bool_:
            # one output per anchor row, in row order: new row k is old row perm[k]
            old_rows, new_rows = anchor_rows(case), anchor_rows(moved)
            loss = loss[[old_rows.index(perm[k]) for k in new_rows]]
        rtol = LOSS_RTOL[dtype]
        assert moved_loss.shape == loss.shape
        assert np.all(np.abs(moved_loss - loss) <= 4 * rtol * (np.abs(loss) + case.batch**2))
        check_gradient(moved_grad, grad[perm], GRAD_RTOL[dtype])

    run()


@DTYPES
@pytest.mark.requires("grad")
def test_autodiff_matches_closed_form(xp, dtype):
    """The framework's own autodiff of log_ratio_loss (its registered rule) equals
    log_ratio_loss_and_grad, through a chain ``c · L(a · F)``; for reduction="none" the
    gradient of ``Σ_a w_a S_a`` equals the core's weighted closed form (float64 NumPy)."""
    require(xp, dtype)

    @examples(xp)
    @given(data=st.data())
    def run(data):
        case = data.draw(float_cases(dtype, max_batch=16), label="case")
        a = data.draw(st.sampled_from([0.5, 1.0, 3.0]), label="a")
        c = data.draw(st.sampled_from([-2.0, 1.0, 0.25]), label="c")
        f64 = case.embeddings
        rtol = GRAD_RTOL[dtype]
        # residuals that cancel exactly (equal within a row) leave rounding noise of the size of
        # the logs they are differences of, in either evaluation (seen: a zero float32 gradient
        # against float64's 8e-15)
        unit = reference.cancellation_unit(dtype)
        with xp.context():
            f = xp.asarray(f64, dtype)
            reduction = data.draw(st.sampled_from(["mean", "sum"]), label="reduction")
            kw = case.replace(reduction=reduction).loss_kwargs(convert=xp.asarray)
            auto = xp.grad(lambda x: c * logratio.log_ratio_loss(a * x, **kw), f)
            _, closed = logratio.log_ratio_loss_and_grad(a * f, **kw)
            want = c * a * xp.to_numpy(closed).astype(np.float64)
            tol = 1e-12 if dtype == "float64" else 1e-5
            terms = abs(c * a) * reference.gradient_terms_scale(case, a * f64, reduction)
            sizes = reference.gradient_terms_scale(case, a * f64, reduction, magnitudes=True)
            noise = unit * abs(c * a) * sizes
            check_gradient(auto, want, tol, backend=xp, dtype=dtype, term_scale=terms, noise=noise)
            kw = case.replace(reduction="none").loss_kwargs(convert=xp.asarray)
            m = len(anchor_rows(case))
            w = np.asarray(
                data.draw(S.hnp.arrays(np.float64, (m,), elements=st.integers(-3, 3)), label="w")
            )
            wx = xp.asarray(w, dtype)
            auto = xp.grad(lambda x: (logratio.log_ratio_loss(x, **kw) * wx).sum(), f)
        p = core.prepare(f64, **case.replace(reduction="none").loss_kwargs())
        want = np.asarray(core.anchor_terms(p, want_grad=True, row_weights=w)[2])
        w_max = np.max(np.abs(w), initial=0)
        terms = reference.gradient_terms_scale(case, f64, "sum") * w_max
        noise = unit * reference.gradient_terms_scale(case, f64, "sum", magnitudes=True) * w_max
        check_gradient(auto, want, rtol, backend=xp, term_scale=terms, noise=noise)

    run()


@DTYPES
def test_row_tangents_match_reference(xp, dtype):
    """``loss.evaluate_jvp`` (the forward-mode rule of the unreduced loss) on every backend:
    ``dS_a = ⟨∇S_a, T⟩`` with the reference's per-anchor gradient."""
    require(xp, dtype)

    @examples(xp)
    @given(data=st.data())
    def run(data):
        case = data.draw(float_cases(dtype, max_batch=12), label="case")
        block = data.draw(S.block_sizes(case.batch), label="block_size")
        t = data.draw(
            S.hnp.arrays(np.float64, case.embeddings.shape, elements=st.integers(-4, 4)),
            label="tangent",
        )
        dl = case.label_distance_matrix()
        kw = case.reference_kwargs()
        kw.pop("anchors")
        rows = anchor_rows(case)
        grads = [
            reference.gradient(case.embeddings, dl, anchors=[r], reduction="sum", **kw)
            for r in rows
        ]
        want = np.array([np.sum(g * t) for g in grads])
        scale = np.array([np.sum(np.abs(g) * np.abs(t)) for g in grads])
        # residuals that cancel exactly (equal within a row) leave rounding noise of the size
        # of the logs they are differences of
        sizes = [
            reference.loss_and_grad(
                case.embeddings, dl, anchors=[r], reduction="sum", absolute=True,
                magnitudes=True, **kw,
            )[1]
            for r in rows
        ]  # fmt: skip
        noise = reference.cancellation_unit(dtype) * np.array(
            [np.sum(g * np.abs(t)) for g in sizes]
        )
        # and each pair product's rounding in the matrix form (equal tangents give exactly 0)
        ref_kw = {k: kw[k] for k in ("squared", "eps", "root_eps", "mask", "ties") if k in kw}
        noise = noise + 4 * float(np.finfo(dtype).eps) * np.array(
            [reference.tangent_rounding(case.embeddings, dl, t, r, **ref_kw) for r in rows]
        )

        def jvp(f, tangent):
            kwargs = case.replace(reduction="none").loss_kwargs(convert=xp.asarray)
            p = core.prepare(f, block_size=block, **kwargs)
            return core.anchor_tangents(p, tangent)[2]

        with xp.context():
            f = xp.asarray(case.embeddings, dtype)
            tangent = xp.asarray(t, dtype)
            if case.anchors is None or np.asarray(case.anchors).dtype != np.bool_:
                got = xp.compile(jvp)(f, tangent)  # eager JAX compiles every operation
            else:  # a boolean anchor mask has a data-dependent number of anchors: no jit
                got = jvp(f, tangent)
            got = xp.to_numpy(got).astype(np.float64)
        rtol = GRAD_RTOL[dtype]
        assert got.shape == want.shape
        allowed = rtol * (scale + np.max(scale, initial=0.0)) + noise + 1e-300
        assert np.all(np.abs(got - want) <= allowed)

    run()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision(xp, dtype):
    """Half-precision embeddings: the loss is computed (and returned) in float32, finite; the
    gradient comes back in the input dtype, equal to the reference up to its rounding."""
    require(xp, dtype)

    @examples(xp)
    @given(data=st.data())
    def run(data):
        case = data.draw(S.loss_cases(coarse=True, max_batch=12), label="case")
        exp = S.expected(case, gradient=True)  # coarse grid values are exact in half precision
        # a gradient beyond the dtype's range rounds to ±inf, as autograd's would (AMP's
        # gradient scaling is the user's remedy): only representable ones are compared
        assume(np.max(np.abs(exp.gradient(case.reduction)), initial=0.0) < HALF_MAX[dtype] / 2)
        with xp.context():
            f = xp.asarray(case.embeddings, dtype)
            kw = case.loss_kwargs(convert=xp.asarray)
            loss, grad = logratio.log_ratio_loss_and_grad(f, **kw)
            loss_rtol = LOSS_RTOL["float32"]
            check_loss(loss, exp, case.reduction, loss_rtol, backend=xp, dtype="float32")
            rtol = GRAD_RTOL["float32"] + HALF_ROUNDING[dtype]
            want = exp.gradient(case.reduction)
            # residuals that cancel exactly (equal within a row) leave float32 rounding noise
            f64 = np.asarray(case.embeddings, dtype=np.float64)
            sizes = reference.gradient_terms_scale(case, f64, case.reduction, magnitudes=True)
            noise = 16 * 2.0**-24 * sizes
            check_gradient(grad, want, rtol, backend=xp, dtype=dtype, noise=noise)
            if xp.grad is not None and case.reduction != "none":
                auto = xp.grad(lambda x: logratio.log_ratio_loss(x, **kw), f)
                check_gradient(auto, want, rtol, backend=xp, dtype=dtype, noise=noise)

    run()


def test_registry_conversions_keep_shape_dtype_and_values(xp):
    """``Backend.asarray`` / ``to_numpy`` of the shared registry (also behind ``logratio
    check`` and the benchmarks): every dtype of the backend, 0-d to 2-d and reversed strides,
    there and back without change (the values are exact in bfloat16); a NumPy array is not
    another backend's native array."""
    values = (np.float64(0.375), np.array([1.5, -2.0]), np.arange(6.0).reshape(2, 3)[:, ::-1])
    with xp.context():
        for dtype in xp.dtypes:
            for x in values:
                a = xp.asarray(x, dtype)
                assert tuple(a.shape) == np.shape(x), (dtype, a.shape)
                assert_close(a, x, rtol=0, backend=xp, dtype=dtype)
    assert xp.name == "numpy" or not xp.is_native(np.zeros(2))


def test_importing_logratio_imports_no_framework():
    """``import logratio`` and a NumPy call load neither torch, jax nor cupy."""
    code = (
        "import sys, numpy as np, logratio\n"
        "logratio.log_ratio_loss_and_grad(np.eye(4), [0.0, 1.0, 2.0, 4.0])\n"
        "loaded = [m for m in ('torch', 'jax', 'cupy') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
