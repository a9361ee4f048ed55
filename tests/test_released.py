"""Exact reproduction of the two released implementations (docs/design.md §6.1).

Each is restated here, independently of :mod:`logratio`, as float64 loops over its own
definition:

* the authors' code (Kim et al., CVPR 2019): anchor = row 0, distance
  ``sqrt(‖f_0 − f_i‖² + 1e-4/d)``, ``log(dist + 1e-6) − log(Δ + 1e-6)``, mean over all pairs
  i < j of the other rows (ties kept), label distances as given;
* HEBO's ``LogRatioLossTorch``: every row an anchor, ``sqrt(‖f_a − f_b‖² + 1e-4/B)``, L1 label
  distance, pairs of equal label distance dropped, sum over anchors / number of triplets.

and compared with the documented ``log_ratio_loss`` calls on every CPU backend, with a copy of
the anchor and duplicate labels in the batch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference

import logratio
from logratio.testing import backends

EPS = 1e-6


def authors_loss(f: np.ndarray, dl: np.ndarray) -> float:
    """The authors' mini-batch loss, restated: one anchor (row 0), every pair i < j."""
    b, d = f.shape
    dist = [math.sqrt(sum((f[0, t] - f[i, t]) ** 2 for t in range(d)) + 1e-4 / d) for i in range(b)]
    terms = []
    for i in range(1, b):
        for j in range(i + 1, b):
            r = (math.log(dist[i] + EPS) - math.log(dist[j] + EPS)) - (
                math.log(dl[0, i] + EPS) - math.log(dl[0, j] + EPS)
            )
            terms.append(r * r)
    return sum(terms) / len(terms)


def hebo_loss(f: np.ndarray, y: np.ndarray) -> float:
    """HEBO's loss, restated: every anchor, L1 label distances, ties dropped."""
    b, d = f.shape
    y = y.reshape(b, -1)
    lab = [
        [sum(abs(y[a, t] - y[c, t]) for t in range(y.shape[1])) for c in range(b)] for a in range(b)
    ]

    def dist(a: int, c: int) -> float:
        return math.sqrt(sum((f[a, t] - f[c, t]) ** 2 for t in range(d)) + 1e-4 / b)

    total, count = 0.0, 0
    for a in range(b):
        others = [i for i in range(b) if i != a]
        for n, i in enumerate(others):
            for j in others[n + 1 :]:
                if lab[a][i] == lab[a][j]:
                    continue
                r = (math.log(dist(a, i) + EPS) - math.log(dist(a, j) + EPS)) - (
                    math.log(lab[a][i] + EPS) - math.log(lab[a][j] + EPS)
                )
                total += r * r
                count += 1
    return total / count


def authors_call(f, dl, d):
    return dict(label_distances=dl, anchors=0, squared=False, root_eps=1e-4 / d)


def hebo_call(batch):
    return dict(squared=False, label_metric="cityblock", ties="exclude", root_eps=1e-4 / batch)


def problem(seed: int, batch: int = 9, dim: int = 3):
    """Random embeddings with a copy of the anchor (row 0) and a duplicate pair, integer labels
    (exact ties), the label distances of the labels."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(batch, dim))
    f[3] = f[0]  # a copy of the anchor: distance sqrt(root_eps), not 0
    f[5] = f[6]
    y = rng.integers(0, 4, size=(batch, 2)).astype(np.float64)
    dl = np.abs(y[:, None, 0] - y[None, :, 0]) + 0.5  # given label distances, ties included
    return f, y, dl


pytestmark = pytest.mark.backends("numpy", "torch-eager", "jax")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dim", [1, 2, 8])
def test_authors_loss_exactly(xp, seed, dim):
    f, _, dl = problem(seed, dim=dim)
    want = authors_loss(f, dl)
    with xp.context():
        got = logratio.log_ratio_loss(xp.asarray(f, "float64"), **authors_call(f, dl, dim))
        got = float(xp.to_numpy(got))
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dim", [1, 3])
def test_hebo_loss_exactly(xp, seed, dim):
    f, y, _ = problem(seed, dim=dim)
    want = hebo_loss(f, y)
    with xp.context():
        got = logratio.log_ratio_loss(xp.asarray(f, "float64"), y, **hebo_call(f.shape[0]))
        got = float(xp.to_numpy(got))
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("which", ["authors", "hebo"])
def test_gradients_match_finite_differences_of_the_restated_losses(xp, which):
    """The closed-form gradient (and each framework's autograd rule) against central
    differences of the independent restatement, a copy of the anchor included."""
    f, y, dl = problem(7, dim=3)
    if which == "authors":
        fun, kw = (lambda x: authors_loss(x, dl)), authors_call(f, dl, 3)
        args = ()
    else:
        fun, kw = (lambda x: hebo_loss(x, y)), hebo_call(f.shape[0])
        args = (y,)
    want = reference.finite_difference_gradient(fun, f, step=1e-6)
    with xp.context():
        x = xp.asarray(f, "float64")
        _, grad = logratio.log_ratio_loss_and_grad(x, *args, **kw)
        np.testing.assert_allclose(xp.to_numpy(grad), want, rtol=1e-6, atol=1e-7)
        if xp.grad is not None:
            auto = xp.grad(lambda z: logratio.log_ratio_loss(z, *args, **kw), x)
            np.testing.assert_allclose(xp.to_numpy(auto), want, rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(want))


def test_plain_call_is_not_the_released_loss():
    """Control: without root_eps, the copy of the anchor has distance 0, and the loss is far
    from the authors' (the reason the option exists)."""
    f, _, dl = problem(0, dim=2)
    plain = logratio.log_ratio_loss(f, label_distances=dl, anchors=0, squared=False)
    assert abs(plain - authors_loss(f, dl)) > 0.05 * authors_loss(f, dl)


def test_root_eps_jvp_matches_finite_differences():
    """Forward mode (JAX's rule, reduction="none" included) with root_eps, against central
    differences of the loop reference (explicit differences: no Gram rounding to amplify)."""
    jax = pytest.importorskip("jax")
    b = backends.get("jax")
    f, y, _ = problem(3, dim=2)
    t = np.random.default_rng(1).normal(size=f.shape)
    kw = hebo_call(f.shape[0])
    dl = reference.label_distance_matrix(y, "cityblock")
    ref_kw = dict(squared=False, ties="exclude", root_eps=kw["root_eps"])
    h = 1e-6
    with b.context():
        for reduction in ("mean", "none"):

            def fun(x, reduction=reduction):
                return logratio.log_ratio_loss(x, y, reduction=reduction, **kw)

            _, tangent = jax.jvp(fun, (b.asarray(f, "float64"),), (b.asarray(t, "float64"),))
            plus = reference.loss(f + h * t, dl, reduction=reduction, **ref_kw)
            minus = reference.loss(f - h * t, dl, reduction=reduction, **ref_kw)
            want = (np.asarray(plus) - np.asarray(minus)) / (2 * h)
            np.testing.assert_allclose(np.asarray(tangent), want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(root_eps=1e-4), ValueError, "squared=False"),
        (dict(squared=False, root_eps=-1.0), ValueError, "root_eps"),
        (dict(squared=False, root_eps=float("nan")), ValueError, "root_eps"),
        (dict(squared=False, root_eps="1e-4"), TypeError, "root_eps"),
        (dict(squared=False, root_eps=True), TypeError, "root_eps"),
    ],
)
def test_root_eps_checked(kwargs, error, match):
    f, y, _ = problem(0)
    with pytest.raises(error, match=match):
        logratio.log_ratio_loss(f, y, **kwargs)
