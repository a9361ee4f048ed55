"""The PyTorch engine (``logratio/backends/_torch_engine.py``): the core's block kernel compiled
with inductor.

Its results must equal the eager core's (the property suite runs every backend test on
``torch`` with the engine and on ``torch-eager`` without it; here each formula of the kernel
is compared directly), a training loop over changing batch sizes must not recompile, the
switches must work, and a machine where compiling fails must get the eager results with one
warning.
"""

import warnings

import numpy as np
import pytest

import logratio

torch = pytest.importorskip("torch")
from torch._dynamo.utils import counters  # noqa: E402

from logratio.backends import _torch_engine as engine  # noqa: E402

OPTION_SETS = [
    {},
    {"squared": False},
    {"squared": False, "root_eps": 1e-3},
    {"ties": "exclude"},
    {"reduction": "none"},
    {"reduction": "sum", "label_metric": "cityblock", "eps": 1e-3},
]


def _problem(batch=40, dim=5, dtype=torch.float64, seed=0, label_dims=1):
    rng = np.random.default_rng(seed)
    f = torch.tensor(rng.standard_normal((batch, dim)), dtype=dtype)
    y = torch.tensor(rng.integers(0, 6, size=(batch, label_dims)).astype(float), dtype=dtype)
    return f, y


def _value_and_grad(f, compile, **kw):
    x = f.detach().clone().requires_grad_(True)
    loss = logratio.log_ratio_loss(x, compile=compile, **kw)
    loss.sum().backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(map(str, o.items())))
def test_engine_equals_the_eager_core(options):
    """Every formula of the kernel (squared, Euclidean, root_eps, tie exclusion, per-anchor
    weights, another metric and ε), with labels, label distances, a mask and index anchors
    (gathered rows), in float64 (to rounding) and float32; block sizes that leave a short
    last block."""
    f, y = _problem()
    dl = torch.cdist(y, y)
    mask = torch.tensor(np.random.default_rng(1).random((40, 40)) < 0.7)
    inputs = [
        {"labels": y},
        {"label_distances": dl, "mask": mask},
        {"labels": y, "anchors": torch.tensor([3, 17, 17, 39, 0])},
    ]
    for kw in inputs:
        for dtype, rtol in ((torch.float64, 1e-11), (torch.float32, 2e-4)):
            args = {**kw, **options, "block_size": 7}
            args = {k: (v.to(dtype) if k == "labels" else v) for k, v in args.items()}
            got = _value_and_grad(f.to(dtype), True, **args)
            want = _value_and_grad(f.to(dtype), False, **args)
            for g, w in zip(got, want, strict=True):
                scale = float(w.abs().max()) or 1.0
                assert g.dtype == w.dtype and g.shape == w.shape
                assert float((g - w).abs().max()) <= rtol * scale, (kw.keys(), dtype)


def test_engine_is_off_by_default_and_switched_on(monkeypatch):
    """Calls run eagerly unless ``compile=True`` or ``LOGRATIO_COMPILE=1``; ``compile=False``
    overrides the variable; a formula may compile by default (y-aware InfoNCE)."""
    calls = []
    real = engine.run_step

    def spy(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(engine, "run_step", spy)
    f, y = _problem(batch=12)
    monkeypatch.delenv(engine.ENV_VAR, raising=False)
    logratio.log_ratio_loss(f, y)
    logratio.rank_n_contrast_loss(f, y)
    logratio.LogRatioLoss()(f, y)
    assert not calls, "a default call compiled"
    logratio.y_aware_infonce_loss(f, y, compile=False)
    assert not calls
    logratio.y_aware_infonce_loss(f, y)  # compile_by_default: its eager passes are slower
    assert calls
    calls.clear()
    logratio.log_ratio_loss(f, y, compile=True)
    assert calls
    calls.clear()
    monkeypatch.setenv(engine.ENV_VAR, "1")
    logratio.log_ratio_loss(f, y)
    assert calls
    calls.clear()
    logratio.rank_n_contrast_loss(f, y)
    assert calls
    calls.clear()
    logratio.LogRatioLoss(compile=False)(f, y)
    logratio.log_ratio_loss(f, y, compile=False)
    assert not calls
    monkeypatch.setenv(engine.ENV_VAR, "0")
    logratio.log_ratio_loss(f, y)
    assert not calls
    with pytest.raises(TypeError, match="compile must be None or a bool"):
        logratio.LogRatioLoss(compile="yes")
    assert logratio.LogRatioLoss(compile=False).options.compile is False


def test_no_recompilation_across_batch_sizes():
    """A training loop whose batch size changes (the last batch of an epoch, a sampler with
    varying batches): one compiled graph per compiled function (the kernel and the near-pair
    test) serves five batch sizes, single and several blocks, and new values of ε; the
    results equal the eager core's."""
    engine.reset()
    torch._dynamo.reset()
    counters.clear()
    for i, batch in enumerate((40, 300, 777, 1300, 2100)):
        f, y = _problem(batch=batch, dim=8, dtype=torch.float32, seed=i)
        eps = 10.0 ** -(3 + i)
        got = _value_and_grad(f, True, labels=y[:, 0], eps=eps)
        want = _value_and_grad(f, False, labels=y[:, 0], eps=eps)
        for g, w in zip(got, want, strict=True):
            assert float((g - w).abs().max()) <= 1e-4 * float(w.abs().max())
    assert len(engine._compiled) == 2  # the kernel and the near-pair count
    assert counters["stats"]["unique_graphs"] == 2, dict(counters["stats"])


def test_a_failed_compilation_warns_once_and_runs_the_eager_core(monkeypatch):
    """No C++ compiler, an unsupported device: the first failure warns (naming the switch),
    later calls are silent, and the results are the eager core's."""

    def broken(key):
        def fail(*args):
            raise RuntimeError("no working C++ compiler found")

        return fail

    engine.reset()
    monkeypatch.setattr(engine, "_compile", broken)
    f, y = _problem(batch=15)
    with pytest.warns(engine.CompileFallbackWarning, match="LOGRATIO_COMPILE=0"):
        got = _value_and_grad(f, True, labels=y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = _value_and_grad(f, True, labels=y, ties="exclude")
    want = _value_and_grad(f, False, labels=y)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert torch.isfinite(again[0])
    engine.reset()


def test_engine_inside_a_compiled_training_step():
    """``torch.compile(fullgraph=True)`` of model + loss: the loss is one opaque op in the
    graph, whose implementation runs the compiled kernel; gradients equal eager ones."""
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 4).double()
    x = torch.randn(30, 6, dtype=torch.float64)
    y = torch.rand(30, dtype=torch.float64)

    def forward(inp):
        return logratio.log_ratio_loss(model(inp), y, compile=True)

    def grads(fn):
        model.zero_grad()
        loss = fn(x)
        loss.backward()
        return loss.detach(), model.weight.grad.clone()

    got = grads(torch.compile(forward, fullgraph=True))
    want = grads(lambda inp: logratio.log_ratio_loss(model(inp), y, compile=False))
    assert torch.allclose(got[0], want[0], rtol=1e-12)
    assert torch.allclose(got[1], want[1], rtol=1e-10, atol=1e-14)


def test_engine_under_torch_func_transforms():
    """``torch.func.grad``, ``vmap`` over problems and a recorded double backward with the
    engine on: the same values as with it off."""
    f, y = _problem(batch=16, dim=3)
    y = y[:, 0]

    def loss(x, compile):
        return logratio.log_ratio_loss(x, y, compile=compile)

    g_on = torch.func.grad(lambda x: loss(x, True))(f)
    g_off = torch.func.grad(lambda x: loss(x, False))(f)
    assert torch.allclose(g_on, g_off, rtol=1e-11, atol=1e-14)
    stack = torch.stack([f, 2 * f, f.flip(0)])
    v_on = torch.func.vmap(lambda x: loss(x, True))(stack)
    v_off = torch.func.vmap(lambda x: loss(x, False))(stack)
    assert torch.allclose(v_on, v_off, rtol=1e-12)
    penalties = []
    for c in (True, False):
        x = f.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(x, c), x, create_graph=True)
        (h,) = torch.autograd.grad(g.square().sum(), x)
        penalties.append(h)
    assert torch.allclose(penalties[0], penalties[1], rtol=1e-9, atol=1e-12)


def test_cuda_default_block_fills_a_fraction_of_free_memory():
    """On a GPU the default block is as large as a quarter of the free memory holds at a dozen
    (block, B) temporaries, never below the CPU default nor above the batch; on a CPU the
    core's default applies (None)."""
    from logratio._problem import default_block_size

    gib = 1 << 30
    assert engine.cuda_rows(8 * gib, 16384, 4) == int(0.25 * 8 * gib) // (12 * 4 * 16384)
    assert engine.cuda_rows(80 * gib, 16384, 4) == 16384  # the whole batch fits
    assert engine.cuda_rows(80 * gib, 1000, 4) == 1000  # the whole batch in one block
    assert engine.cuda_rows(1 << 20, 16384, 4) == default_block_size(16384)
    assert engine.block_size_for(torch.device("cpu"), 4096, 4) is None
