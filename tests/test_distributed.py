"""The global-batch loss across processes (:mod:`logratio.distributed`), on gloo.

Two and three processes on 127.0.0.1 run ``tests/_dist_worker.py`` (every case on uneven
shards, one shard empty with three ranks; error cases and DDP training with two); this
process compares their values and gradients with the single-process loss of the
concatenated batch.  Each group is started once per module, bounded by a timeout, and
killed if it does not finish.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import _dist_worker as worker  # noqa: E402

import logratio  # noqa: E402
import logratio.distributed as ld  # noqa: E402
import logratio.engine  # noqa: E402
from logratio import LogRatioLoss  # noqa: E402

HERE = Path(__file__).parent
TIMEOUT_S = 150
REL = 1e-8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(world: int, outdir: Path) -> list[subprocess.Popen]:
    env = dict(os.environ)
    root = str(HERE.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.update(MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1")
    port = _free_port()
    return [
        subprocess.Popen(
            [sys.executable, str(HERE / "_dist_worker.py"), str(r), str(world), str(port), outdir],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(world)
    ]


def _collect(procs: list[subprocess.Popen], outdir: Path) -> list[dict]:
    logs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=TIMEOUT_S)
            logs.append(out)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a rank did not finish within {TIMEOUT_S} s")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = []
    for r, (proc, log) in enumerate(zip(procs, logs, strict=True)):
        path = outdir / f"rank{r}.pt"
        assert proc.returncode == 0 and path.exists(), f"rank {r} failed:\n{log}"
        result = torch.load(path, weights_only=False)
        assert "failure" not in result, f"rank {r}:\n{result['failure']}"
        results.append(result)
    return results


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[int, list[dict]]:
    """Both groups, started together (five processes, each a single thread)."""
    dirs = {w: tmp_path_factory.mktemp(f"world{w}") for w in (2, 3)}
    procs = {w: _launch(w, dirs[w]) for w in dirs}
    try:
        return {w: _collect(procs[w], dirs[w]) for w in dirs}
    finally:
        for group in procs.values():
            for proc in group:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def _close(actual, expected, what):
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = expected.abs().max().item() if expected.numel() else 0.0
    err = (actual - expected).abs().max().item() if expected.numel() else 0.0
    assert err <= REL * max(scale, 1e-300), f"{what}: max error {err:.3g}, scale {scale:.3g}"


def _reference(name: str, world: int):
    """Single-process value and gradient of a case on the concatenated batch.

    The ranks weighted their per-anchor losses ("none") by ``weights`` of their rows, so
    the global objective is ``Σ_a w_a S_a``; local anchors "first" are the first row of
    every non-empty shard.
    """
    options, key, _, anchors = worker.CASES[name]
    sizes = worker.SIZES[world]
    f, labels, weights = worker.global_batch(sum(sizes))
    f = f.clone().requires_grad_(True)
    global_anchors = None
    if anchors == "first":
        global_anchors = [sum(sizes[:r]) for r in range(world) if sizes[r] > 0]
    formula, options = worker.plugin_formula(options)
    if formula is None:
        value = logratio.log_ratio_loss(f, labels[key], anchors=global_anchors, **options)
    else:
        value = logratio.engine.loss(formula, f, labels[key], anchors=global_anchors, **options)
    (value * weights).sum().backward() if value.ndim else value.backward()
    return value.detach(), f.grad


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("name", list(worker.CASES))
def test_value_and_gradient_equal_single_process(runs, world, name):
    """Every rank's value is the concatenated batch's loss ("none": its anchors' rows), and
    its embeddings' gradient is ∂L/∂(its rows), times W with gradient="ddp-mean"."""
    _, _, gradient, _ = worker.CASES[name]
    sizes = worker.SIZES[world]
    value, grad = _reference(name, world)
    factor = world if gradient == "ddp-mean" else 1
    start = 0
    for rank, result in enumerate(runs[world]):
        got = result["cases"][name]
        rows = slice(start, start + sizes[rank])
        expected = value if value.ndim == 0 else value[rows]
        _close(got["value"], expected, f"rank {rank} value")
        _close(got["grad"], factor * grad[rows], f"rank {rank} gradient")
        start += sizes[rank]


def test_gradient_modes_differ_by_world_size(runs):
    for result in runs[2]:
        mean, summed = result["cases"]["mean"], result["cases"]["mean-grad-sum"]
        _close(mean["value"], summed["value"], "value")
        _close(mean["grad"], 2 * summed["grad"], "ddp-mean gradient / sum gradient")


def _train_single_process():
    x, y = worker.ddp_data()
    model = worker.ddp_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(worker.DDP_STEPS):
        loss = logratio.log_ratio_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses), [p.detach() for p in model.parameters()]


@pytest.mark.parametrize("mode", ["ddp", "sum"])
def test_training_equals_single_process(runs, mode):
    """DDP (which averages) with the default, and gradient="sum" with summed gradients: the
    logged losses and the parameters after a few SGD steps are those of one process on the
    concatenated batch."""
    losses, params = _train_single_process()
    for rank, result in enumerate(runs[2]):
        _close(result[mode]["losses"], losses, f"rank {rank} losses")
        for k, (got, want) in enumerate(zip(result[mode]["params"], params, strict=True)):
            _close(got, want, f"rank {rank} parameter {k}")
        assert not torch.equal(params[0], worker.ddp_model()[0].weight.detach())  # it trained


def test_inconsistent_shards_raise_on_every_rank(runs):
    r0, r1 = (result["errors"] for result in runs[2])
    assert "width d" in r0["width"] and "[3, 4]" in r1["width"]
    assert "must be finite" in r1["nan-labels"]
    assert "rank(s) [1]" in r0["nan-labels"]
    _close(r0["after"], r1["after"], "a call after the errors")


# --------------------------------------------------------------------------- no processes


def test_refusals_before_any_collective():
    f = torch.randn(4, 3)
    with pytest.raises(ValueError, match="label_distances cannot be sharded"):
        ld.log_ratio_loss(f, label_distances=torch.rand(4, 4))
    with pytest.raises(ValueError, match="mask is not supported"):
        ld.log_ratio_loss(f, torch.rand(4), mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="gradient must be one of"):
        ld.log_ratio_loss(f, torch.rand(4), gradient="mean")
    with pytest.raises(TypeError, match="unexpected keyword"):
        ld.log_ratio_loss(f, torch.rand(4), reduce="mean")
    with pytest.raises(ValueError, match="labels are required"):
        ld.log_ratio_loss(f)
    if not torch.distributed.is_initialized():
        with pytest.raises(RuntimeError, match="not initialized"):
            ld.log_ratio_loss(f, torch.rand(4))


def test_module_options():
    with pytest.raises(ValueError, match="distributed=True"):
        LogRatioLoss(gradient="sum")
    with pytest.raises(ValueError, match="gradient must be one of"):
        LogRatioLoss(distributed=True, gradient="avg")
    assert "gradient='sum'" in repr(LogRatioLoss(distributed=True, gradient="sum"))


def test_axis_name_is_for_jax():
    with pytest.raises(ValueError, match=r"logratio\.distributed"):
        logratio.log_ratio_loss(torch.randn(4, 3), torch.rand(4), axis_name="batch")


def test_import_logratio_does_not_import_torch():
    code = "import sys, logratio; print('torch' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "False", done.stderr
    assert logratio.distributed is ld
