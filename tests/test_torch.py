"""The PyTorch adapter: autograd rule, torch.compile, torch.func, devices, dtypes, nn.Module.

Values are compared with the float64 reference loops (:mod:`reference`); the cross-backend
properties (translation, permutation, reference values for every option) live in
``test_backends.py``.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import reference

from logratio.testing import strategies as S

torch = pytest.importorskip("torch", reason="PyTorch is not installed")

import logratio  # noqa: E402
from logratio import LogRatioLoss  # noqa: E402
from logratio import _dense as core  # noqa: E402

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def problem(batch=7, dim=3, seed=0, dtype=torch.float64):
    """Distinct random embeddings (the loss is smooth there) and scalar labels."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(batch, dim))
    y = rng.normal(size=batch)
    return torch.tensor(f, dtype=dtype), y


OPTIONS = [
    {},
    {"reduction": "sum", "ties": "exclude"},
    {"reduction": "none", "squared": False},
    {"reduction": "none", "anchors": [4, 0, 4], "block_size": 2},
    {"anchors": np.array([True, False, True, True, False, False, True]), "mask": "random"},
    {"label_metric": S.CHEBYSHEV, "vector_labels": True},
    {"label_distances": True, "reduction": "sum"},
]
OPTION_IDS = ["default", "sum-exclude", "none-euclidean", "none-index-anchors", "bool-anchors-mask",
              "callable-metric", "label-distances"]  # fmt: skip


def arguments(opts: dict, y: np.ndarray, batch: int) -> tuple[tuple, dict]:
    """(positional, keyword) arguments of the loss for one OPTIONS entry."""
    kw = dict(opts)
    rng = np.random.default_rng(1)
    if kw.pop("vector_labels", False):
        y = np.stack([y, rng.normal(size=batch)], axis=1)
    if kw.get("mask") == "random":
        kw["mask"] = rng.random((batch, batch)) < 0.8
    if kw.pop("label_distances", False):
        return (), {**kw, "label_distances": np.abs(y[:, None] - y[None, :])}
    return (y,), kw


@pytest.mark.parametrize("opts", OPTIONS, ids=OPTION_IDS)
def test_gradcheck(opts):
    """torch.autograd.gradcheck (float64): the registered rule is the loss's derivative,
    including the vector-Jacobian product of reduction="none"."""
    f, y = problem()
    args, kw = arguments(opts, y, f.shape[0])
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: logratio.log_ratio_loss(x, *args, **kw), (f,))


@pytest.mark.parametrize("opts", OPTIONS, ids=OPTION_IDS)
def test_backward_matches_reference(opts):
    """loss.backward(w) gives Σ_a w_a ∇S_a (reference loops, per anchor) for "none", and the
    reference gradient otherwise; the loss is the reference loss."""
    f, y = problem()
    args, kw = arguments(opts, y, f.shape[0])
    y_used = args[0] if args else None
    dl = kw.get("label_distances")
    if dl is None:
        dl = S.reference_label_distances(y_used, kw.get("label_metric", "euclidean"))
    ref_kw = {
        "mask": kw.get("mask"),
        "squared": kw.get("squared", True),
        "ties": kw.get("ties", "include"),
    }
    anchors = kw.get("anchors")
    rows = (
        list(range(f.shape[0]))
        if anchors is None
        else [
            int(i)
            for i in (np.flatnonzero(anchors) if np.asarray(anchors).dtype == bool else anchors)
        ]
    )
    reduction = kw.get("reduction", "mean")
    x = f.clone().requires_grad_(True)
    loss = logratio.log_ratio_loss(x, *args, **kw)
    f64 = f.numpy()
    if reduction == "none":
        w = torch.linspace(-1.0, 2.0, len(rows), dtype=torch.float64)
        loss.backward(w)
        want = sum(
            float(wk) * reference.gradient(f64, dl, anchors=[r], reduction="sum", **ref_kw)
            for wk, r in zip(w, rows, strict=True)
        )
        want_loss = reference.loss(f64, dl, anchors=rows, reduction="none", **ref_kw)
    else:
        loss.backward()
        want = reference.gradient(f64, dl, anchors=rows, reduction=reduction, **ref_kw)
        want_loss = reference.loss(f64, dl, anchors=rows, reduction=reduction, **ref_kw)
    np.testing.assert_allclose(loss.detach().numpy(), want_loss, rtol=1e-10)
    scale = np.max(np.abs(want))
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-9, atol=1e-9 * scale)


def test_autograd_records_one_node():
    """The graph of the loss is one node (the closed-form rule) above the leaf: autograd
    records none of the core's internal operations."""
    f, y = problem()
    f.requires_grad_(True)
    loss = logratio.log_ratio_loss(f, y)
    node = loss.grad_fn
    assert type(node).__name__ == "_EngineLossFnForwardBackward"
    parents = [fn for fn, _ in node.next_functions if fn is not None]
    assert len(parents) == 1
    assert type(parents[0]).__name__ == "AccumulateGrad"
    assert parents[0].variable is f


def _spy(monkeypatch):
    calls = []
    evaluate = core.anchor_terms

    def spy(p, *, want_grad=False, row_weights=None, step=None):
        calls.append((want_grad, row_weights is not None))
        return evaluate(p, want_grad=want_grad, row_weights=row_weights, step=step)

    monkeypatch.setattr(core, "anchor_terms", spy)
    return calls


def test_gradient_computed_once_and_only_when_needed(monkeypatch):
    """The forward computes the gradient only when the input requires grad and grad mode is
    on, and the backward reuses it (one evaluation in all); for reduction="none" the backward
    evaluates Σ w_a ∇S_a with the upstream vector."""
    calls = _spy(monkeypatch)
    f, y = problem()
    logratio.log_ratio_loss(f, y)
    assert calls == [(False, False)]
    calls.clear()
    x = f.clone().requires_grad_(True)
    with torch.no_grad():
        logratio.log_ratio_loss(x, y)
    assert calls == [(False, False)]
    calls.clear()
    logratio.log_ratio_loss(x, y).backward()
    assert calls == [(True, False)]
    calls.clear()
    logratio.log_ratio_loss(x, y, reduction="none").sum().backward()
    assert calls == [(False, False), (True, True)]


def test_second_derivative_is_exact():
    """A double backward is the derivative of the closed-form gradient, never a silent zero:
    ``d/dε Σ g(f + ε·1)`` is 0 (translation invariance), and along a random direction it
    matches central differences of the gradient."""
    f, y = problem()
    f.requires_grad_(True)
    (g,) = torch.autograd.grad(logratio.log_ratio_loss(f, y), f, create_graph=True)
    t = torch.randn(f.shape, dtype=f.dtype, generator=torch.Generator().manual_seed(0))
    (hvp,) = torch.autograd.grad((g * t).sum(), f)
    h = 1e-6
    up = logratio.log_ratio_loss_and_grad(f.detach() + h * t, y)[1]
    down = logratio.log_ratio_loss_and_grad(f.detach() - h * t, y)[1]
    np.testing.assert_allclose(hvp.numpy(), ((up - down) / (2 * h)).numpy(), atol=1e-6)
    assert torch.linalg.norm(hvp) > 0


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")
def test_torch_func_grad_and_jacrev():
    """torch.func.grad and torch.func.jacrev (reduction="none") use the registered rule."""
    f, y = problem()
    x = f.clone().requires_grad_(True)
    logratio.log_ratio_loss(x, y).backward()
    got = torch.func.grad(lambda z: logratio.log_ratio_loss(z, y))(f)
    torch.testing.assert_close(got, x.grad, rtol=1e-12, atol=1e-12)
    jac = torch.func.jacrev(lambda z: logratio.log_ratio_loss(z, y, reduction="none"))(f)
    assert jac.shape == (f.shape[0], *f.shape)
    for a in range(f.shape[0]):
        want = reference.gradient(
            f.numpy(), reference.label_distance_matrix(y), anchors=[a], reduction="sum"
        )
        np.testing.assert_allclose(jac[a].numpy(), want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


HAS_CXX = any(shutil.which(c) for c in ("g++", "c++", "clang++"))


@pytest.mark.parametrize(
    "backend",
    [
        "aot_eager",
        pytest.param(
            "inductor",
            marks=pytest.mark.skipif(not HAS_CXX, reason="inductor on CPU needs a C++ compiler"),
        ),
    ],
)
def test_torch_compile_fullgraph(backend):
    """A compiled function calling the loss compiles in one graph (the core is an opaque
    custom op: even its value checks, which read data, run inside it) and gives the eager
    value and gradient.  ``aot_eager`` traces forward and backward like ``inductor`` does,
    without generating code."""
    f, y = problem(batch=9, dim=4, dtype=torch.float32)
    dl = torch.as_tensor(np.abs(y[:, None] - y[None, :]), dtype=torch.float32)
    weight = torch.linspace(0.5, 1.5, 4).reshape(4, 1) * torch.eye(4)

    def step(x, w, d):
        emb = x @ w
        return logratio.log_ratio_loss(emb, label_distances=d, ties="exclude") + 0.5 * (
            logratio.log_ratio_loss(emb, label_distances=d, reduction="none").mean()
        )

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, dynamic=False, backend=backend)
    results = []
    for fn in (step, compiled):
        w = weight.clone().requires_grad_(True)
        x = f.clone().requires_grad_(True)
        loss = fn(x, w, dl)
        loss.backward()
        results.append((loss.detach(), x.grad, w.grad))
    for eager, comp in zip(*results, strict=True):
        torch.testing.assert_close(comp, eager, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        compiled(f, weight, -dl)


def test_half_precision_backward():
    """float16 / bfloat16 parameters: float32 loss, gradient in the parameter's dtype, close
    to the float32 gradient of the same (rounded) values."""
    f, y = problem(dtype=torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        x = f.to(dtype).requires_grad_(True)
        loss = logratio.log_ratio_loss(x, y)
        assert loss.dtype == torch.float32
        assert torch.isfinite(loss)
        loss.backward()
        assert x.grad.dtype == dtype
        ref = x.detach().float().requires_grad_(True)
        logratio.log_ratio_loss(ref, y).backward()
        torch.testing.assert_close(
            x.grad.float(), ref.grad, rtol=1e-2, atol=1e-2 * ref.grad.abs().max().item()
        )


def test_loss_and_grad_are_plain_values():
    """log_ratio_loss_and_grad returns tensors without a graph, gradient in the input dtype."""
    f, y = problem(dtype=torch.float32)
    x = f.clone().requires_grad_(True)
    loss, grad = logratio.log_ratio_loss_and_grad(x, y)
    assert loss.grad_fn is None and grad.grad_fn is None
    assert grad.dtype == torch.float32 and grad.shape == x.shape
    logratio.log_ratio_loss(x, y).backward()
    torch.testing.assert_close(grad, x.grad)


def test_module():
    """LogRatioLoss(options)(embeddings, labels) and (embeddings, label_distances=D) equal the
    function; anchors given to the module are a default that a call may override."""
    f, y = problem()
    dl = torch.as_tensor(np.abs(y[:, None] - y[None, :]))
    loss_fn = LogRatioLoss(ties="exclude", squared=False, anchors=0)
    assert list(loss_fn.parameters()) == []
    assert "ties='exclude'" in repr(loss_fn)
    want = logratio.log_ratio_loss(f, y, ties="exclude", squared=False, anchors=0)
    torch.testing.assert_close(loss_fn(f, y), want)
    torch.testing.assert_close(loss_fn(f, label_distances=dl), want)
    every = logratio.log_ratio_loss(f, y, ties="exclude", squared=False)
    torch.testing.assert_close(loss_fn(f, y, anchors=None), every)
    with pytest.raises(ValueError, match="reduction"):
        LogRatioLoss(reduction="average")
    with pytest.raises(ValueError, match="eps"):
        LogRatioLoss(eps=0.0)


def test_errors_name_the_argument():
    f, y = problem()
    with pytest.raises(TypeError, match="real floating"):
        logratio.log_ratio_loss(torch.ones(4, 2, dtype=torch.int64), [0.0, 1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="unexpected keyword"):
        logratio.log_ratio_loss(f, y, reductions="sum")
    with pytest.raises(TypeError, match="labels"):
        logratio.log_ratio_loss(f, ["a"] * f.shape[0])
    with pytest.raises(ValueError, match="labels must have shape"):
        logratio.log_ratio_loss(f, y[:3])
    with pytest.raises(TypeError, match="anchors"):
        logratio.log_ratio_loss(f, y, anchors=True)
    with pytest.raises(ValueError, match="out of range"):
        logratio.log_ratio_loss(f, y, anchors=[f.shape[0]])
    with pytest.raises(TypeError, match="squared"):
        logratio.log_ratio_loss(f, y, squared="yes")


@CUDA
def test_cuda_keeps_device():
    """CUDA embeddings with NumPy labels: loss and gradient on the embeddings' device, equal
    to the CPU result."""
    f, y = problem(dtype=torch.float32)
    x = f.cuda().requires_grad_(True)
    loss = logratio.log_ratio_loss(x, y, mask=np.ones((7, 7), bool), anchors=[1, 2])
    loss.backward()
    assert loss.device == x.device and x.grad.device == x.device
    cpu = f.clone().requires_grad_(True)
    logratio.log_ratio_loss(cpu, y, mask=np.ones((7, 7), bool), anchors=[1, 2]).backward()
    torch.testing.assert_close(x.grad.cpu(), cpu.grad, rtol=1e-4, atol=1e-5)
    l2, g2 = logratio.log_ratio_loss_and_grad(x.detach(), torch.as_tensor(y), reduction="none")
    assert l2.device == x.device and g2.device == x.device


def test_top_level_module_alias_is_the_torch_module():
    """``logratio.LogRatioLoss`` is the adapter's module, imported on first access."""
    from logratio import LogRatioLoss

    assert logratio.LogRatioLoss is LogRatioLoss
    with pytest.raises(AttributeError, match="no_such_name"):
        logratio.no_such_name  # noqa: B018


def test_the_modules_old_path_warns():
    """``LogRatioLoss`` moved to logratio.nn; its old path still works and says so."""
    import logratio.backends.torch as adapter
    import logratio.nn

    with pytest.warns(DeprecationWarning, match=r"use logratio\.LogRatioLoss"):
        moved = adapter.LogRatioLoss
    assert moved is logratio.nn.LogRatioLoss is logratio.LogRatioLoss


def test_the_benchmarks_peer_is_the_same_loss(monkeypatch):
    """The peers suite's ten lines compute the default loss (ties included, every anchor)."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    cases = pytest.importorskip("cases")
    rng = np.random.default_rng(5)
    f = torch.tensor(rng.normal(size=(9, 4)), requires_grad=True)
    y = torch.tensor(rng.integers(0, 4, size=9).astype(np.float64))  # ties
    peer = cases.peer_loss(f, y)
    (g_peer,) = torch.autograd.grad(peer, f)
    ours = logratio.log_ratio_loss(f, y, compile=False)
    (g_ours,) = torch.autograd.grad(ours, f)
    assert abs(peer.item() - ours.item()) <= 1e-10 * abs(ours.item())
    assert torch.allclose(g_peer, g_ours, rtol=1e-8, atol=1e-10)


def test_meta_tensors_take_the_ops_fake_implementation():
    """Meta (and fake) tensors go through the custom op, whose fake implementation gives
    the shape; only plain tensors with data run the op's body directly."""
    f = torch.randn(8, 3, device="meta", requires_grad=True)
    y = torch.randn(8, device="meta")
    for fn in (logratio.log_ratio_loss, logratio.rank_n_contrast_loss):
        out = fn(f, y)
        assert out.device.type == "meta" and out.shape == ()
