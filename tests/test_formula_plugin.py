"""A loss plugs into the engine from outside the package (docs/design.md §7.4).

Two toy formulas live here and nowhere in ``logratio/``: a stress between squared distances
and label distances, and a cosine-similarity regression.  Each runs on every backend through
:mod:`logratio.engine` (PyTorch with the compiled engine on and off, JAX under ``jit``,
NumPy, ``array_api_strict``, CuPy), and its value and closed-form gradient are checked
against a float64 brute force: a loop over pairs, its central differences, and PyTorch's
autograd of the same loop.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest

import logratio.backends
import logratio.engine
from logratio._reference import finite_differences as central_differences
from logratio.distances import direct_distances
from logratio.formula import Block, Terms, decode, encode, register
from logratio.options import LossOptions


def _valid(xp: Any, blk: Block) -> Any:
    """The pairs that count: every neighbour but the anchor itself, within the mask."""
    if blk.dense:
        valid = blk.ids[:, None] != blk.cols[None, :]
    else:
        valid = xp.ones(blk.pairs.shape, dtype=xp.bool, device=blk.device)
    return valid if blk.mask is None else valid & blk.mask


def _label_distances(xp: Any, blk: Block, metric: Any, like: Any) -> Any:
    if blk.label_distances is not None:
        return blk.label_distances
    lab = direct_distances(xp, blk.labels, blk.neighbour_labels, metric)
    return lab if lab.dtype == like.dtype else xp.astype(lab, like.dtype)


@register
@dataclass(frozen=True)
class Stress:
    """``S_a = Σ_b (‖f_a − f_b‖² − scale·Δ_ab)²``, ``T_a = n``; ``K = 2 ∂S/∂P = 4 (P − sΔ)``."""

    name: ClassVar[str] = "test_stress"
    pairs: ClassVar[str] = "sqeuclidean"

    scale: float = 1.0
    label_metric: Any = "euclidean"

    def values(self) -> tuple[float, ...]:
        return (self.scale,)

    def canonical(self) -> Stress:
        return dataclasses.replace(self, scale=1.0)

    def in_place(self, xp: Any, mask: Any) -> None:
        return None

    def terms(self, xp: Any, blk: Block, want_kernel: bool) -> Terms:
        (scale,) = blk.values
        valid = _valid(xp, blk)
        lab = _label_distances(xp, blk, self.label_metric, blk.pairs)
        r = xp.where(valid, blk.pairs - scale * lab, 0.0)
        count = xp.sum(xp.astype(valid, r.dtype), axis=1)
        return Terms(xp.sum(r * r, axis=1), count, 4 * r if want_kernel else None)


@register
@dataclass(frozen=True)
class CosineFit:
    """``S_a = τ Σ_b (⟨ẑ_a, ẑ_b⟩ − exp(−Δ_ab))²``, ``T_a = n``; ``K = ∂S/∂P``."""

    name: ClassVar[str] = "test_cosine_fit"
    pairs: ClassVar[str] = "cosine"

    temperature: float = 1.0
    label_metric: Any = "euclidean"

    def values(self) -> tuple[float, ...]:
        return (self.temperature,)

    def canonical(self) -> CosineFit:
        return dataclasses.replace(self, temperature=1.0)

    def in_place(self, xp: Any, mask: Any) -> None:
        return None

    def terms(self, xp: Any, blk: Block, want_kernel: bool) -> Terms:
        (tau,) = blk.values
        valid = _valid(xp, blk)
        lab = _label_distances(xp, blk, self.label_metric, blk.pairs)
        r = xp.where(valid, blk.pairs - xp.exp(-lab), 0.0)
        count = xp.sum(xp.astype(valid, r.dtype), axis=1)
        return Terms(tau * xp.sum(r * r, axis=1), count, 2 * tau * r if want_kernel else None)


# --------------------------------------------------------------------------- the brute force


def brute_force(formula: Any, f: np.ndarray, y: np.ndarray, anchors, mask, reduction: str):
    """The formula's loss as a float64 loop over (anchor, neighbour) pairs (any array type
    with NumPy-style indexing: NumPy, or torch tensors for autograd)."""
    lib = np if isinstance(f, np.ndarray) else __import__("torch")
    batch = f.shape[0]
    rows = range(batch) if anchors is None else anchors
    losses, counts = [], []
    for a in rows:
        s, n = 0.0, 0
        for b in range(batch):
            if b == a or (mask is not None and not mask[a, b]):
                continue
            lab = abs(float(y[a]) - float(y[b]))
            if isinstance(formula, Stress):
                p = ((f[a] - f[b]) ** 2).sum()
                s = s + (p - formula.scale * lab) ** 2
            else:
                za = f[a] / lib.sqrt((f[a] ** 2).sum())
                zb = f[b] / lib.sqrt((f[b] ** 2).sum())
                s = s + formula.temperature * ((za * zb).sum() - math.exp(-lab)) ** 2
            n += 1
        losses.append(s)
        counts.append(n)
    if reduction == "none":
        return losses
    total = sum(losses)
    if reduction == "sum":
        return total
    return total / sum(counts) if sum(counts) else 0.0 * total


def _scalar(formula, y, anchors, mask, reduction):
    """The brute force as a scalar function of the embeddings (for ``"none"``: the sum)."""

    def total(f):
        out = brute_force(formula, f, y, anchors, mask, reduction)
        return sum(out) if reduction == "none" else out

    return total


FORMULAS = [Stress(scale=0.7), CosineFit(temperature=0.3)]
CASES = [  # (reduction, anchors, with a mask)
    ("mean", None, False),
    ("sum", [0, 3, 3], False),
    ("mean", None, True),
    ("none", [4, 1], True),
]


def _problem(seed: int, batch: int = 7, dim: int = 3):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(batch, dim))
    f[5] = f[2]  # an exact copy
    y = rng.integers(0, 4, size=batch).astype(np.float64)
    mask = rng.random((batch, batch)) < 0.7
    return f, y, mask


@pytest.mark.parametrize("formula", FORMULAS, ids=lambda x: type(x).name)
def test_closed_form_gradient_matches_finite_differences_and_autograd(formula):
    """The engine's closed-form gradient (NumPy, float64) against central differences of the
    loop, and against PyTorch's autograd of the same loop."""
    torch = pytest.importorskip("torch")
    f, y, mask = _problem(0)
    for reduction, anchors, masked in CASES:
        m = mask if masked else None
        kw = dict(anchors=anchors, mask=m, reduction=reduction)
        loss, grad = logratio.engine.loss_and_grad(formula, f, y, **kw)
        want = brute_force(formula, f, y, anchors, m, reduction)
        np.testing.assert_allclose(loss, np.asarray(want, dtype=np.float64), rtol=1e-12)
        total = _scalar(formula, y, anchors, m, reduction)
        np.testing.assert_allclose(grad, central_differences(total, f), rtol=1e-6, atol=1e-7)
        ft = torch.tensor(f, requires_grad=True)
        out = brute_force(formula, ft, torch.tensor(y), anchors, m, reduction)
        (sum(out) if reduction == "none" else out).backward()
        np.testing.assert_allclose(grad, ft.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("formula", FORMULAS, ids=lambda x: type(x).name)
def test_every_backend_runs_the_formula(xp, formula):
    """Value and gradient on every backend equal the float64 brute force; where the backend
    differentiates, its autodiff of the loss (the engine's registered rule) equals the closed
    form."""
    f, y, mask = _problem(1)
    for reduction, anchors, masked in CASES:
        m = mask if masked else None
        want = np.asarray(brute_force(formula, f, y, anchors, m, reduction), dtype=np.float64)
        with xp.context():
            fx = xp.asarray(f, "float64")
            kw = dict(anchors=anchors, mask=m, reduction=reduction, block_size=3)
            loss, grad = logratio.engine.loss_and_grad(formula, fx, y, **kw)
            assert xp.is_native(loss) and xp.is_native(grad)
            np.testing.assert_allclose(xp.to_numpy(loss), want, rtol=1e-10)
            value = logratio.engine.loss(formula, fx, y, **kw)
            np.testing.assert_allclose(xp.to_numpy(value), want, rtol=1e-10)
            if xp.grad is not None and reduction != "none":
                scalar = functools.partial(_engine_loss, formula, y, kw)
                auto = xp.grad(scalar, fx)
                np.testing.assert_allclose(xp.to_numpy(auto), xp.to_numpy(grad), rtol=1e-10)
            if xp.grad is not None and reduction == "none":
                # Σ_a w_a S_a: PyTorch's backward with upstream weights, JAX's transpose of
                # the per-anchor forward-mode rule
                w = np.arange(1.0, len(want) + 1.0)
                scalar = functools.partial(_weighted_loss, formula, y, kw, xp.asarray(w, "float64"))
                auto = xp.to_numpy(xp.grad(scalar, fx))
                weighted = _scalar_weighted(formula, y, anchors, m, w)
                np.testing.assert_allclose(
                    auto, central_differences(weighted, f), rtol=1e-6, atol=1e-7
                )
        total = _scalar(formula, y, anchors, m, reduction)
        np.testing.assert_allclose(
            xp.to_numpy(grad), central_differences(total, f), rtol=1e-6, atol=1e-7
        )


def _engine_loss(formula, y, kw, x):
    return logratio.engine.loss(formula, x, y, **kw)


def _weighted_loss(formula, y, kw, w, x):
    return (logratio.engine.loss(formula, x, y, **kw) * w).sum()


def _scalar_weighted(formula, y, anchors, mask, w):
    def total(f):
        losses = brute_force(formula, f, y, anchors, mask, "none")
        return sum(wi * s for wi, s in zip(w, losses, strict=True))

    return total


def test_a_formula_crosses_an_encoding_unchanged():
    """What a PyTorch custom op's schema carries gives back an equal formula."""
    for formula in [*FORMULAS, LossOptions(squared=False, eps=0.5, root_eps=0.01).formula]:
        assert decode(*encode(formula)) == formula


def test_an_object_that_is_no_formula_is_refused():
    with pytest.raises(TypeError, match=r"formula must be a logratio\.formula\.Formula"):
        logratio.engine.loss(object(), np.zeros((3, 2)), np.zeros(3))


def test_declared_capabilities_match_the_backends(xp):
    """What the registry declares (the markers' source) is what the backend has."""
    assert ("grad" in xp.capabilities) == (xp.grad is not None)
    assert ("axis_name" in xp.capabilities) == logratio.backends.adapter_for(
        xp.asarray(np.zeros((2, 2)))
    ).SUPPORTS_AXIS_NAME


@pytest.mark.parametrize("scale", [1e20, 1e-24])
def test_cosine_rows_at_extreme_scales(scale):
    """Cosine similarity ignores a row's scale: a float32 row scaled by 1e20 or 1e-24 leaves
    the loss unchanged and its gradient scaled by 1/scale; a zero row has a zero gradient;
    a NaN row makes the loss NaN."""
    rng = np.random.default_rng(0)
    f = rng.normal(size=(6, 3)).astype(np.float32)
    y = np.arange(6.0)
    base_loss, base_grad = logratio.engine.loss_and_grad(CosineFit(), f, y)
    g = f.copy()
    g[2] *= np.float32(scale)
    loss, grad = logratio.engine.loss_and_grad(CosineFit(), g, y)
    np.testing.assert_allclose(loss, base_loss, rtol=1e-6)
    np.testing.assert_allclose(grad[2] * scale, base_grad[2], rtol=1e-5, atol=1e-7)
    others = [0, 1, 3, 4, 5]
    np.testing.assert_allclose(grad[others], base_grad[others], rtol=1e-5, atol=1e-7)
    z = f.copy()
    z[1] = 0
    loss, grad = logratio.engine.loss_and_grad(CosineFit(), z, y)
    assert np.isfinite(loss) and np.all(grad[1] == 0)
    z[1, 0] = np.nan
    assert np.isnan(logratio.engine.loss(CosineFit(), z, y))


def test_formulas_that_cannot_cross_a_graph_are_refused():
    """A field without a scalar default, a word with the separator, an unregistered class:
    clear errors instead of a failure inside the PyTorch op."""

    @dataclass(frozen=True)
    class NoDefault:
        name: ClassVar[str] = "test_no_default"
        pairs: ClassVar[str] = "cosine"
        width: Any = None

    with pytest.raises(TypeError, match=r"NoDefault\.width must have a default"):
        register(NoDefault)
    with pytest.raises(TypeError, match="cannot be encoded"):
        encode(Stress(label_metric="a\x1fb"))
    unregistered = dataclasses.make_dataclass(
        "Unregistered", [], bases=(Stress,), frozen=True, namespace={"name": "test_stress"}
    )
    with pytest.raises(TypeError, match=r"registered with logratio\.formula\.register"):
        logratio.engine.loss(unregistered(), np.zeros((3, 2)), np.zeros(3))
