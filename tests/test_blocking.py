"""Blocks of anchors: the same loss and gradient as one block, and O(block·B) working memory.

``block_size`` splits the anchors into blocks whose (block, B) matrices are the only large
arrays alive (docs/design.md §1.1); every block size must give the result of the unblocked path,
for every option and array library, and the default must split large batches.  Correctness
only: speed lives in ``benchmarks/``.
"""

from __future__ import annotations

import tracemalloc

import core
import numpy as np
import pytest
import reference
from assertions import assert_close

import logratio
import logratio._problem as problem_module
import logratio.loss as public

#: Block sizes tried per backend (13 rows): eager JAX compiles every operation per shape.
BLOCKS = {"numpy": (1, 2, 3, 5, 12), "torch": (1, 2, 3, 5, 12), "array_api_strict": (1, 5)}


def case(batch: int, dim: int = 3, seed: int = 0, duplicates: bool = True):
    """Embeddings on a coarse grid (so that some rows coincide) and labels with ties."""
    rng = np.random.default_rng(seed)
    f = rng.integers(-3, 4, size=(batch, dim)).astype(np.float64) / 2
    if duplicates and batch > 3:
        f[batch - 1] = f[0]  # a duplicate in another block than its twin
    y = rng.integers(0, 5, size=batch).astype(np.float64)
    return f, y


OPTIONS = [
    dict(),
    dict(squared=False),
    dict(ties="exclude"),
    dict(ties="exclude", squared=False, reduction="sum"),
    dict(reduction="none"),
    dict(anchors=[5, 0, 5, 11]),  # repeated anchors, out of order
    dict(anchors=0),
    dict(mask="random"),
    dict(label_distances=True),
    dict(label_metric="cityblock", labels_2d=True),
]
OPTION_IDS = [
    "default",
    "euclidean",
    "exclude",
    "exclude-euclidean-sum",
    "none",
    "index-anchors",
    "paper-anchor",
    "mask",
    "label-distances",
    "cityblock-2d",
]


def arguments(opts: dict, f: np.ndarray, y: np.ndarray, to):
    """Keyword arguments of the loss for one option set, as arrays of the backend."""
    opts = dict(opts)
    batch = f.shape[0]
    kw: dict = {}
    labels = y
    if opts.pop("labels_2d", False):
        labels = np.stack([y, np.round(np.sin(y))], axis=1)
    if opts.pop("label_distances", False):
        kw["label_distances"] = to(np.abs(y[:, None] - y[None, :]))
        labels = None
    if opts.get("mask") == "random":
        rng = np.random.default_rng(1)
        opts["mask"] = to(rng.random((batch, batch)) < 0.7)
    if isinstance(opts.get("anchors"), list):
        opts["anchors"] = to(np.asarray(opts["anchors"]))
    kw.update(opts)
    return (None if labels is None else to(labels)), kw


@pytest.mark.parametrize("opts", OPTIONS, ids=OPTION_IDS)
def test_every_block_size_gives_the_unblocked_result(xp, opts):
    f, y = case(13)
    with xp.context():
        labels, kw = arguments(opts, f, y, xp.asarray)
        emb = xp.asarray(f, "float64")
        loss1, grad1 = public.log_ratio_loss_and_grad(emb, labels, block_size=10_000, **kw)
        loss1, grad1 = xp.to_numpy(loss1), xp.to_numpy(grad1)
        assert np.all(np.isfinite(loss1)) and np.all(np.isfinite(grad1))
        gscale = np.max(np.abs(grad1)) + 1e-300
        same = dict(backend=xp, dtype="float64")  # the backend's arrays, in the input dtype
        for block in BLOCKS.get(xp.name, (1, 5)):
            loss_b, grad_b = public.log_ratio_loss_and_grad(emb, labels, block_size=block, **kw)
            only = public.log_ratio_loss(emb, labels, block_size=block, **kw)
            assert_close(loss_b, loss1, rtol=1e-12, atol=1e-12, **same)
            assert_close(only, loss1, rtol=1e-12, atol=1e-12, **same)
            assert_close(grad_b, grad1, rtol=1e-10, atol=1e-12 * gscale, **same)


@pytest.mark.parametrize("opts", OPTIONS, ids=OPTION_IDS)
def test_blocked_result_matches_the_reference(opts):
    """Blocks of 4 (the last one short) against the brute-force float64 enumeration."""
    f, y = case(13, seed=2)
    labels, kw = arguments(opts, f, y, np.asarray)
    if labels is None:
        dl = kw["label_distances"]
    else:
        dl = reference.label_distance_matrix(labels, kw.get("label_metric", "euclidean"))
    ref_kw = {k: kw[k] for k in ("squared", "ties", "reduction", "mask") if k in kw}
    anchors = kw.get("anchors")
    if anchors is not None:
        ref_kw["anchors"] = np.atleast_1d(anchors).tolist()
    want = reference.loss(f, dl, **ref_kw)
    want_grad = reference.gradient(f, dl, **ref_kw)
    got, grad = public.log_ratio_loss_and_grad(f, labels, block_size=4, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-8, atol=1e-10 * np.max(np.abs(want_grad)))


def test_default_block_size_splits_large_batches(monkeypatch):
    """With a small element budget the default block holds a few anchors, same result."""
    f, y = case(24, seed=3)
    whole = public.log_ratio_loss_and_grad(f, y, block_size=24)
    monkeypatch.setattr(problem_module, "DEFAULT_BLOCK_ELEMENTS", 5 * 24)
    monkeypatch.setattr(problem_module, "MIN_BLOCK_ROWS", 2)
    assert core.prepare(f, y).block_size == 5
    split = public.log_ratio_loss_and_grad(f, y)
    np.testing.assert_allclose(split[0], whole[0], rtol=1e-12)
    np.testing.assert_allclose(split[1], whole[1], rtol=1e-10, atol=1e-14)


def test_default_block_size_bounds_the_block(monkeypatch):
    """The default block has about DEFAULT_BLOCK_ELEMENTS entries, and at least MIN_BLOCK_ROWS
    rows (or the whole batch)."""
    monkeypatch.setattr(problem_module, "DEFAULT_BLOCK_ELEMENTS", 4096)
    monkeypatch.setattr(problem_module, "MIN_BLOCK_ROWS", 3)
    for batch in (1, 2, 7, 64, 1000, 5000):
        f = np.zeros((batch, 1), dtype=np.float32)
        block = core.prepare(f, np.zeros(batch, dtype=np.float32)).block_size
        assert 1 <= block <= max(batch, 1)
        assert block * batch <= max(problem_module.DEFAULT_BLOCK_ELEMENTS, 3 * batch)
        assert block >= min(batch, 3)


def test_blocked_jvp_matches_unblocked():
    """The forward-mode derivative per anchor (used by the JAX adapter) is blocked alike."""
    f, y = case(13, seed=4, duplicates=False)
    f = f + np.random.default_rng(7).uniform(-0.1, 0.1, f.shape)  # no two rows coincide
    t = np.random.default_rng(5).standard_normal(f.shape)
    p1 = core.prepare(f, y, reduction="none", block_size=13)
    p2 = core.prepare(f, y, reduction="none", block_size=4)
    for a, b in zip(core.anchor_tangents(p1, t), core.anchor_tangents(p2, t), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    # and it is the directional derivative of the per-anchor losses: central differences
    step = 1e-6
    plus = logratio.log_ratio_loss(f + step * t, y, reduction="none")
    minus = logratio.log_ratio_loss(f - step * t, y, reduction="none")
    np.testing.assert_allclose(
        core.anchor_tangents(p2, t)[2], (plus - minus) / (2 * step), rtol=1e-5
    )


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_working_memory_is_order_block_times_batch():
    """NumPy allocations (``tracemalloc``) of loss + gradient grow with block·B, not B².

    At B = 1024 one B×B float32 matrix is 4 MiB; with blocks of 16 anchors the peak must stay
    within a few dozen (16, B) arrays plus O(B·d), far below a single B×B matrix.
    """
    batch, dim, block = 1024, 16, 16
    rng = np.random.default_rng(6)
    f = rng.standard_normal((batch, dim)).astype(np.float32)
    y = rng.standard_normal(batch).astype(np.float32)
    logratio.log_ratio_loss_and_grad(f, y, block_size=block)  # warm any one-off allocations
    blocked = _peak_bytes(lambda: logratio.log_ratio_loss_and_grad(f, y, block_size=block))
    whole = _peak_bytes(lambda: logratio.log_ratio_loss_and_grad(f, y, block_size=batch))
    block_bytes = block * batch * 4
    matrix_bytes = batch * batch * 4
    assert blocked <= 40 * block_bytes + 16 * batch * (dim + 2) * 4, blocked
    assert blocked < matrix_bytes / 2
    # the unblocked path does hold B×B arrays: the in-place terms' two buffers
    assert whole > 2 * matrix_bytes


@pytest.mark.parametrize(
    "opts", [{}, {"squared": False, "ties": "exclude"}, {"reduction": "none"}], ids=str
)
@pytest.mark.parametrize("rows", [range(0, 13), range(4, 11), range(12, 13), range(5, 5)])
def test_contiguous_anchor_range_equals_its_indices(opts, rows):
    """A ``range`` of anchors (a shard's rows in a gathered batch, logratio.distributed) is
    sliced, not gathered: per-anchor losses, counts and gradient equal those of the same
    anchors as an index array, for every block size."""
    from logratio import _dense
    from logratio.options import LossOptions

    f, y = case(13)
    for block in (1, 3, 13):
        options = LossOptions(**opts, block_size=block).spec()
        inputs = problem_module.check_inputs(problem_module.Arrays(f, y))
        indices = inputs._replace(anchors=np.arange(rows.start, rows.stop))
        sliced = _dense.anchor_terms(
            problem_module.make_problem(inputs._replace(anchors=rows), options), want_grad=True
        )
        gathered = _dense.anchor_terms(
            problem_module.make_problem(indices, options), want_grad=True
        )
        for a, b in zip(sliced, gathered, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
