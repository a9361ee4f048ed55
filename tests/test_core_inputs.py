"""Bad input: a ValueError or TypeError that names the argument and what was expected."""

from __future__ import annotations

import numpy as np
import pytest

import logratio

RNG = np.random.default_rng(0)
F = RNG.standard_normal((5, 3))
Y = np.arange(5.0)
DL = np.abs(Y[:, None] - Y[None, :])
TRIP = logratio.dense_triplets(DL)


def loss(*args, **kwargs):
    return logratio.log_ratio_loss(*args, **kwargs)


def loss_and_grad(*args, **kwargs):
    return logratio.log_ratio_loss_and_grad(*args, **kwargs)


#: (id, call, exception, pattern that must appear in the message)
CASES = [
    # embeddings
    ("embeddings-1d", lambda: loss(np.ones(5), Y), ValueError, r"embeddings.*2-D.*\(5,\)"),
    ("embeddings-3d", lambda: loss(np.ones((5, 2, 1)), Y), ValueError, r"embeddings.*2-D"),
    ("embeddings-int", lambda: loss(np.ones((5, 2), int), Y), TypeError, r"embeddings.*float"),
    ("embeddings-list", lambda: loss([[1.0, 2.0]] * 5, Y), TypeError, r"embeddings.*array"),
    # labels / label_distances: exactly one of them
    (
        "both",
        lambda: loss(F, Y, label_distances=DL),
        ValueError,
        r"exactly one of labels.*label_distances.*both",
    ),
    ("neither", lambda: loss(F), ValueError, r"exactly one of labels.*label_distances.*neither"),
    ("labels-rows", lambda: loss(F, np.arange(4.0)), ValueError, r"labels.*\(5,\).*\(4,\)"),
    ("labels-3d", lambda: loss(F, np.ones((5, 1, 1))), ValueError, r"labels.*shape"),
    ("labels-str", lambda: loss(F, ["a"] * 5), TypeError, r"labels.*real numbers"),
    (
        "label_distances-not-square",
        lambda: loss(F, label_distances=np.ones((5, 4))),
        ValueError,
        r"label_distances.*square.*\(5, 4\)",
    ),
    (
        "label_distances-1d",
        lambda: loss(F, label_distances=np.ones(5)),
        ValueError,
        r"label_distances.*square",
    ),
    (
        "label_distances-rows",
        lambda: loss(F, label_distances=np.ones((4, 4))),
        ValueError,
        r"label_distances.*\(5, 5\).*\(4, 4\)",
    ),
    (
        "label_distances-negative",
        lambda: loss(F, label_distances=-DL),
        ValueError,
        r"label_distances.*non-negative",
    ),
    # option names
    ("reduction", lambda: loss(F, Y, reduction="avg"), ValueError, r"reduction.*'mean'.*'avg'"),
    ("ties", lambda: loss(F, Y, ties="drop"), ValueError, r"ties.*'include'.*'drop'"),
    (
        "label_metric",
        lambda: loss(F, Y, label_metric="cosine"),
        ValueError,
        r"label_metric.*'euclidean'.*'cosine'",
    ),
    ("label_metric-int", lambda: loss(F, Y, label_metric=3), ValueError, r"label_metric"),
    (
        "label_metric-callable-shape",
        lambda: loss(F, Y, label_metric=lambda a, b: a),
        ValueError,
        r"label_metric.*\(5, 5\)",
    ),
    (
        "metric",
        lambda: logratio.pairwise_distances(F, metric="cosine"),
        ValueError,
        r"metric.*'sqeuclidean'.*'cosine'",
    ),
    ("squared", lambda: loss(F, Y, squared="yes"), TypeError, r"squared.*bool"),
    ("eps-zero", lambda: loss(F, Y, eps=0), ValueError, r"eps.*positive"),
    ("eps-nan", lambda: loss(F, Y, eps=float("nan")), ValueError, r"eps.*positive"),
    ("eps-inf", lambda: loss(F, Y, eps=float("inf")), ValueError, r"eps.*finite"),
    ("eps-str", lambda: loss(F, Y, eps="a"), TypeError, r"eps.*float"),
    ("block_size-0", lambda: loss(F, Y, block_size=0), ValueError, r"block_size.*positive int"),
    ("block_size-float", lambda: loss(F, Y, block_size=2.0), ValueError, r"block_size"),
    # anchors
    ("anchors-int", lambda: loss(F, Y, anchors=5), ValueError, r"anchors.*out of range.*5"),
    ("anchors-negative", lambda: loss(F, Y, anchors=-6), ValueError, r"anchors.*out of range"),
    ("anchors-array", lambda: loss(F, Y, anchors=[0, 7]), ValueError, r"anchors.*out of range"),
    (
        "anchors-array-negative",
        lambda: loss(F, Y, anchors=np.array([-6])),
        ValueError,
        r"anchors.*out of range",
    ),
    (
        "anchors-bool-shape",
        lambda: loss(F, Y, anchors=np.ones(4, bool)),
        ValueError,
        r"anchors.*\(5,\).*\(4,\)",
    ),
    ("anchors-float", lambda: loss(F, Y, anchors=[0.5]), TypeError, r"anchors.*integers"),
    ("anchors-2d", lambda: loss(F, Y, anchors=[[0]]), ValueError, r"anchors.*1-D"),
    ("anchors-bool", lambda: loss(F, Y, anchors=True), TypeError, r"anchors.*bool"),
    # mask
    (
        "mask-shape",
        lambda: loss(F, Y, mask=np.ones((5, 4), bool)),
        ValueError,
        r"mask.*\(5, 5\).*\(5, 4\)",
    ),
    ("mask-1d", lambda: loss(F, Y, mask=np.ones(5, bool)), ValueError, r"mask.*\(5, 5\)"),
    ("mask-float", lambda: loss(F, Y, mask=np.ones((5, 5))), TypeError, r"mask.*boolean"),
    # the same checks behind log_ratio_loss_and_grad
    ("grad-both", lambda: loss_and_grad(F, Y, label_distances=DL), ValueError, r"exactly one"),
    ("grad-anchors", lambda: loss_and_grad(F, Y, anchors=9), ValueError, r"anchors"),
    ("grad-mask", lambda: loss_and_grad(F, Y, mask=np.ones((4, 4), bool)), ValueError, r"mask"),
    ("grad-reduction", lambda: loss_and_grad(F, Y, reduction="x"), ValueError, r"reduction"),
    # pairwise_distances
    (
        "pairwise-3d",
        lambda: logratio.pairwise_distances(np.ones((2, 2, 2))),
        ValueError,
        r"x.*1-D or 2-D",
    ),
    (
        "pairwise-y-columns",
        lambda: logratio.pairwise_distances(F, np.ones((2, 2))),
        ValueError,
        r"y.*3 columns",
    ),
    ("pairwise-list", lambda: logratio.pairwise_distances([1.0, 2.0]), TypeError, r"x.*array"),
    # dense_triplets
    (
        "triplets-not-square",
        lambda: logratio.dense_triplets(np.ones((3, 4))),
        ValueError,
        r"label_distances.*square",
    ),
    (
        "triplets-list",
        lambda: logratio.dense_triplets([[0.0, 1.0], [1.0, 0.0]]),
        TypeError,
        r"label_distances.*array",
    ),
    ("triplets-anchors", lambda: logratio.dense_triplets(DL, anchors=9), ValueError, r"anchors"),
    (
        "triplets-mask",
        lambda: logratio.dense_triplets(DL, mask=np.ones((4, 4), bool)),
        ValueError,
        r"mask.*\(5, 5\)",
    ),
    ("triplets-ties", lambda: logratio.dense_triplets(DL, ties="x"), ValueError, r"ties"),
    # triplet_log_ratio_loss
    (
        "tl-label_distances",
        lambda: logratio.triplet_log_ratio_loss(F, np.ones((4, 4)), TRIP),
        ValueError,
        r"label_distances.*\(5, 5\)",
    ),
    (
        "tl-range",
        lambda: logratio.triplet_log_ratio_loss(F, DL, ([0], [1], [7])),
        ValueError,
        r"triplets.*out of range",
    ),
    (
        "tl-negative-index",
        lambda: logratio.triplet_log_ratio_loss(F, DL, ([0], [-1], [2])),
        ValueError,
        r"triplets.*out of range",
    ),
    (
        "tl-shape",
        lambda: logratio.triplet_log_ratio_loss(F, DL, np.zeros((3, 2), int)),
        ValueError,
        r"triplets.*\(T, 3\)",
    ),
    (
        "tl-lengths",
        lambda: logratio.triplet_log_ratio_loss(F, DL, ([0], [1, 2], [3])),
        ValueError,
        r"triplets.*equal length",
    ),
    (
        "tl-float",
        lambda: logratio.triplet_log_ratio_loss(F, DL, np.zeros((3, 3))),
        TypeError,
        r"triplets.*integers",
    ),
    (
        "tl-reduction",
        lambda: logratio.triplet_log_ratio_loss(F, DL, TRIP, reduction="x"),
        ValueError,
        r"reduction",
    ),
    (
        "tl-embeddings",
        lambda: logratio.triplet_log_ratio_loss(np.ones(5), DL, TRIP),
        ValueError,
        r"embeddings.*2-D",
    ),
    (
        "tl-negative",
        lambda: logratio.triplet_log_ratio_loss(F, -DL, TRIP),
        ValueError,
        r"label_distances.*non-negative",
    ),
    (
        "tl-squared",
        lambda: logratio.triplet_log_ratio_loss(F, DL, TRIP, squared=1),
        TypeError,
        r"squared",
    ),
    ("tl-eps", lambda: logratio.triplet_log_ratio_loss(F, DL, TRIP, eps=-1.0), ValueError, r"eps"),
]


@pytest.mark.parametrize(
    ("call", "error", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_names_the_argument(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_bad_input_errors_are_value_or_type_errors():
    """Every case above raises exactly ValueError or TypeError (not a subclass surprise from
    NumPy such as an IndexError or an AxisError)."""
    for name, call, _, _ in CASES:
        try:
            call()
        except (ValueError, TypeError) as err:
            assert type(err) in (ValueError, TypeError), name
        else:
            pytest.fail(f"{name}: no error")


@pytest.mark.parametrize(
    "anchors",
    [0, -1, 4, np.int64(2), [0, 0, 4], np.array([], dtype=np.int64), [], np.zeros(5, bool)],
    ids=["0", "-1", "4", "np.int64", "repeats", "empty-array", "empty-list", "no-row"],
)
def test_legal_anchor_forms_are_accepted(anchors):
    loss, grad = logratio.log_ratio_loss_and_grad(F, Y, anchors=anchors, reduction="none")
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    rows = np.flatnonzero(anchors) if np.asarray(anchors).dtype == bool else np.atleast_1d(anchors)
    assert np.shape(loss) == (len(rows),)


def test_other_array_like_inputs_are_accepted():
    """Labels, label distances, anchors and mask may be lists or integer arrays."""
    want = logratio.log_ratio_loss(F, Y)
    assert logratio.log_ratio_loss(F, list(Y)) == pytest.approx(want, rel=1e-14)
    assert logratio.log_ratio_loss(F, np.arange(5)) == pytest.approx(want, rel=1e-14)
    assert logratio.log_ratio_loss(F, label_distances=DL.astype(int)) == pytest.approx(
        logratio.log_ratio_loss(F, label_distances=DL), rel=1e-14
    )
    mask = np.ones((5, 5), bool)
    assert logratio.log_ratio_loss(F, Y, mask=mask.tolist()) == pytest.approx(want, rel=1e-14)
    assert logratio.log_ratio_loss(F, Y, anchors=[0, 1, 2, 3, 4]) == pytest.approx(want, rel=1e-14)
