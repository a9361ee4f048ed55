"""The in-place evaluation of a block's terms (NumPy, CuPy) equals the general path's.

:mod:`logratio.formulas._log_ratio_inplace` handles the pairs off the formula by position
instead of by mask (docs/design.md §4.1). Every block of a call is evaluated both ways: the
general path runs on the same arrays through ``array_api_strict`` (whose namespace takes no
``out=``), and per-anchor losses, triplet counts and the kernel ``K`` must agree, on batches
with copies of the anchor, near pairs, repeated anchors and reference sets.
"""

from __future__ import annotations

import array_api_compat.numpy as xnp
import numpy as np
import pytest

import logratio
import logratio._block as block
import logratio._dense as dense
import logratio._problem as problem
from logratio._pairs import SqEuclidean
from logratio.formula import Block
from logratio.options import LossOptions

strict = pytest.importorskip("array_api_strict")
pytestmark = pytest.mark.filterwarnings("error")  # no division by zero on the way either


def _batch(seed: int, batch: int = 11, dim: int = 3):
    rng = np.random.default_rng(seed)
    f = rng.integers(-2, 3, size=(batch, dim)).astype(np.float64) / 2
    f[batch - 1] = f[0]  # an exact copy in another block
    f[2] = f[1] + 1e-9  # a near pair: exact differences
    y = rng.integers(0, 4, size=batch).astype(np.float64)
    return f, y


def _strict_blocks(blk: Block) -> Block:
    """The same block with every array an ``array_api_strict`` array."""
    fields = {}
    for name, value in blk._asdict().items():
        if isinstance(value, np.ndarray):
            value = strict.asarray(value)
        elif isinstance(value, tuple) and value and isinstance(value[0], np.ndarray):
            value = tuple(strict.asarray(x) for x in value)
        fields[name] = value
    fields["device"] = strict.asarray(0.0).device
    return Block(**fields)


def _general(formula, blk):
    """The general path's terms of ``blk``, on ``array_api_strict`` arrays."""
    sblk = _strict_blocks(blk)
    return formula.terms(strict, sblk._replace(pairs=SqEuclidean.product(strict, sblk)), True)


def _in_place(formula, blk):
    evaluate = formula.in_place(xnp, None)
    assert evaluate is not None
    return block.in_place_terms(xnp, formula, blk, evaluate)


def _prepare(f, labels, label_distances, anchors, options):
    options = dict(options)
    q = options.pop("num_queries", None)
    arrays = problem.Arrays(f, labels, label_distances, anchors, None, q)
    return problem.prepare(arrays, LossOptions(**options).spec())


def _compare(f, y, options, label_distances=None, anchors=None, *, block_size=4):
    labels = None if label_distances is not None else y
    p = _prepare(f, labels, label_distances, anchors, {**options, "block_size": block_size})
    ops = dense.operands(p)
    checked = 0
    for rows, start in dense._blocks(p):
        blk = dense.block_arrays(p, ops, rows, start, None)
        general = _general(p.formula, blk)
        # the general path read the block's arrays; the in-place one may write its own
        mine = _in_place(p.formula, blk)
        for got, want in zip(mine, general, strict=True):
            np.testing.assert_allclose(got, np.asarray(want), rtol=1e-12, atol=1e-12)
        checked += 1
    assert checked == len(range(0, p.num_anchors, block_size))


FORMS = [
    dict(),
    dict(squared=False),
    dict(squared=False, root_eps=1e-4),
    dict(label_metric="sqeuclidean"),
    dict(eps=0.5),
]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "options", FORMS, ids=["squared", "euclidean", "root-eps", "sq-labels", "big-eps"]
)
def test_dense_blocks_agree(seed, options):
    f, y = _batch(seed)
    _compare(f, y, options)


@pytest.mark.parametrize("options", FORMS[:3], ids=["squared", "euclidean", "root-eps"])
def test_index_anchors_and_reference_sets_agree(options):
    f, y = _batch(7)
    _compare(f, y, options, anchors=np.array([10, 0, 10, 3]))  # repeated, and a copy's twin
    _compare(f, y, {**options, "num_queries": 4})
    _compare(f, y, {**options, "num_queries": 10}, block_size=3)  # one reference row


def test_label_distances_and_callable_metrics_agree():
    f, y = _batch(3)
    given = np.abs(y[:, None] - y[None, :]) + np.eye(len(y))  # a diagonal the loss ignores
    before = given.copy()
    _compare(f, y, {}, label_distances=given)
    np.testing.assert_array_equal(given, before)  # the caller's array is not written

    cache = {}

    def metric(a, b):
        cache["out"] = abs(a - b.T) + 1.0  # a callable that keeps what it returned
        return cache["out"]

    _compare(f, y[:, None], {"label_metric": metric})
    kept = cache["out"].copy()
    f2, y2 = _batch(4)
    _compare(f2, y2[:, None], {"label_metric": metric})
    assert not np.array_equal(cache["out"], kept)  # the metric ran again ...
    np.testing.assert_array_equal(cache["out"], np.abs(y2[-3:, None] - y2[None, :]) + 1.0)


def test_float32_near_pairs_agree():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((40, 16)).astype(np.float32)
    f[1::4] = f[::4] + 1e-6 * rng.standard_normal((10, 16)).astype(np.float32)
    f[2] = f[0]
    y = np.repeat(rng.uniform(0, 5, 10), 4).astype(np.float32)
    for options in FORMS[:3]:
        p = _prepare(f, y, None, None, {**options, "block_size": 16})
        ops = dense.operands(p)
        for rows, start in dense._blocks(p):
            blk = dense.block_arrays(p, ops, rows, start, None)
            general = _general(p.formula, blk)
            mine = _in_place(p.formula, blk)
            for got, want in zip(mine, general, strict=True):
                want = np.asarray(want)
                scale = np.max(np.abs(want)) if want.size else 0.0
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * scale)


def test_masks_and_excluded_ties_take_the_general_path():
    mask = np.ones((4, 4), dtype=bool)
    formula = LossOptions().formula
    assert formula.in_place(xnp, None) is not None
    assert LossOptions(ties="exclude").formula.in_place(xnp, None) is None
    assert formula.in_place(xnp, mask) is None
    assert formula.in_place(strict, None) is None
    assert block.eager_step(xnp, formula, None) is not block.block_step
    assert block.eager_step(xnp, formula, mask) is block.block_step
    assert block.eager_step(strict, formula, None) is block.block_step


def test_a_candidate_that_is_not_near():
    """The one-pass candidate test bounds with the largest neighbour norm: here it flags the
    query's pair with 1.001, which the exact bound does not call near (nothing to recompute)."""
    q = np.array([[1.0]])
    r = np.array([[1e4], [-1e4], [1.001]])
    yq, yr = np.array([0.0]), np.array([1.0, 2.0, 3.0])
    f, y = np.concatenate([q, r]), np.concatenate([yq, yr])
    for options in FORMS[:3]:
        _compare(f, y, {**options, "num_queries": 1}, block_size=1)
    got = logratio.reference_log_ratio_loss_and_grad(q, r, yq, yr)
    want = logratio.reference_log_ratio_loss_and_grad(*(strict.asarray(a) for a in (q, r, yq, yr)))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-12)
