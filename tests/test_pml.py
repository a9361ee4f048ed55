"""``logratio.pml.LogRatioLoss``, the pytorch-metric-learning loss: value and gradient equal to
this project's functions on the same inputs (float64), PML's calling conventions (reducers,
miners' triplets, ``ref_emb``), and a clear error for every unsupported combination."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("pytorch_metric_learning")

import torch
from pytorch_metric_learning import distances, losses, miners, reducers, regularizers
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

import logratio
from logratio.pml import LogRatioLoss

F64 = torch.float64
SQUARED = distances.LpDistance(p=2, power=2, normalize_embeddings=False)
EUCLIDEAN = distances.LpDistance(p=2, power=1, normalize_embeddings=False)


def cityblock_metric(a, b):
    """A callable label metric: the L1 distance, written by hand."""
    return (a[:, None, :] - b[None, :, :]).abs().sum(dim=2)


def batch(b=9, d=4, p=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, d, generator=g, dtype=F64).requires_grad_()
    labels = torch.rand(b, generator=g, dtype=F64) * 5
    if p > 1:
        labels = torch.rand(b, p, generator=g, dtype=F64) * 5
    return emb, labels


def grad_of(value, *inputs):
    return torch.autograd.grad(value, inputs, retain_graph=True)


def close(got, want, rtol=1e-10, atol=1e-12):
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


def label_distances(y, z, metric):
    """Label distances the plain way, for the triplet checks."""
    y, z = y.reshape(len(y), -1), z.reshape(len(z), -1)
    diff = y[:, None, :] - z[None, :, :]
    if callable(metric):
        return metric(y, z)
    if metric == "cityblock":
        return diff.abs().sum(2)
    sq = (diff * diff).sum(2)
    return sq if metric == "sqeuclidean" else sq.sqrt()


# ----------------------------------------------------------------------------- the surface


def test_is_a_pml_loss_and_import_is_lazy():
    assert isinstance(LogRatioLoss(), losses.BaseMetricLossFunction)
    code = (
        "import sys, torch, logratio\n"
        "from logratio import LogRatioLoss\n"
        "logratio.LogRatioLoss()(torch.randn(5, 2), torch.rand(5))\n"
        "assert 'pytorch_metric_learning' not in sys.modules\n"
        "import logratio.pml\n"
        "assert 'pytorch_metric_learning' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_scalar_with_grad_in_float32():
    emb = torch.randn(16, 8, requires_grad=True)
    loss = LogRatioLoss()(emb, torch.rand(16))
    assert loss.ndim == 0 and loss.dtype == torch.float32 and loss.requires_grad
    loss.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()


# ----------------------------------------------------------------------------- dense batch


@pytest.mark.parametrize("p", [1, 3], ids=["labels(B,)", "labels(B,p)"])
@pytest.mark.parametrize(
    "distance, kw",
    [
        (None, {}),
        (SQUARED, {"ties": "exclude", "reduction": "sum"}),
        (EUCLIDEAN, {"root_eps": 1e-4, "eps": 1e-5}),
        (EUCLIDEAN, {"label_metric": "cityblock", "block_size": 2}),
        (SQUARED, {"label_metric": cityblock_metric}),
    ],
    ids=["default", "squared-exclude-sum", "euclidean-root_eps", "cityblock-blocks", "callable"],
)
def test_dense_equals_log_ratio_loss(distance, kw, p):
    emb, y = batch(p=p)
    if p == 1:
        y = torch.round(y)  # repeated label gaps: ties
    loss_fn = LogRatioLoss(distance=distance, **kw)
    got = loss_fn(emb, y)
    options = {**kw, "squared": distance is not EUCLIDEAN}
    want = logratio.log_ratio_loss(emb, y, **options)
    close(got, want)
    close(grad_of(got, emb)[0], grad_of(want, emb)[0])
    _, closed_form = logratio.log_ratio_loss_and_grad(emb.detach(), y, **options)
    close(grad_of(loss_fn(emb, y), emb)[0], closed_form)


def test_dense_integer_and_list_labels():
    emb, y = batch()
    want = logratio.log_ratio_loss(emb, torch.round(y))
    close(LogRatioLoss()(emb, torch.round(y).long()), want)
    close(LogRatioLoss()(emb, torch.round(y).tolist()), want)


def test_ref_emb_identical_to_embeddings_is_the_dense_loss():
    emb, y = batch()
    close(LogRatioLoss()(emb, y, ref_emb=emb, ref_labels=y), logratio.log_ratio_loss(emb, y))
    close(LogRatioLoss()(emb, y, ref_emb=emb), logratio.log_ratio_loss(emb, y))


def test_normalize_embeddings_normalises_first():
    emb, y = batch()
    dist = distances.LpDistance(p=2, power=1, normalize_embeddings=True)
    got = LogRatioLoss(distance=dist)(emb, y)
    want = logratio.log_ratio_loss(torch.nn.functional.normalize(emb, dim=1), y, squared=False)
    close(got, want)
    close(grad_of(got, emb)[0], grad_of(want, emb)[0])


def test_distance_is_read_at_call_time():
    emb, y = batch()
    loss_fn = LogRatioLoss()
    loss_fn.distance = EUCLIDEAN
    close(loss_fn(emb, y), logratio.log_ratio_loss(emb, y, squared=False))


# ----------------------------------------------------------------------------- reducers


def test_reduction_none_reports_per_anchor_elements():
    emb, y = batch()
    want = logratio.log_ratio_loss(emb, y, reduction="none")
    raw = LogRatioLoss(reduction="none", reducer=reducers.DoNothingReducer())(emb, y)
    info = raw["loss"]
    assert info["reduction_type"] == "element"
    close(info["losses"], want)
    torch.testing.assert_close(info["indices"], torch.arange(9))
    got = LogRatioLoss(reduction="none")(emb, y)  # the default MeanReducer
    close(got, want.mean())
    close(grad_of(got, emb)[0], grad_of(want.mean(), emb)[0])
    high = float(want.detach().median())
    got = LogRatioLoss(reduction="none", reducer=reducers.ThresholdReducer(high=high))(emb, y)
    close(got, want[want < high].mean())
    got = LogRatioLoss(reduction="none", reducer=reducers.SumReducer())(emb, y)
    close(got, logratio.log_ratio_loss(emb, y, reduction="sum"))


def test_default_reports_already_reduced_mean():
    emb, y = batch()
    info = LogRatioLoss(reducer=reducers.DoNothingReducer())(emb, y)["loss"]
    assert info["reduction_type"] == "already_reduced" and info["indices"] is None
    close(info["losses"], logratio.log_ratio_loss(emb, y))
    close(LogRatioLoss(reducer=reducers.MeanReducer())(emb, y), logratio.log_ratio_loss(emb, y))


def test_embedding_regularizer_adds_its_loss():
    emb, y = batch()
    reg = regularizers.LpRegularizer()
    got = LogRatioLoss(embedding_regularizer=reg, embedding_reg_weight=0.5)(emb, y)
    close(got, logratio.log_ratio_loss(emb, y) + 0.5 * emb.norm(dim=1).mean())


# ----------------------------------------------------------------------------- reference set


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("distance", [SQUARED, EUCLIDEAN], ids=["squared", "euclidean"])
def test_ref_emb_equals_reference_log_ratio_loss(distance, reduction):
    emb, y = batch(b=5, p=2)
    ref, ry = batch(b=11, p=2, seed=1)
    squared = distance is SQUARED
    got = LogRatioLoss(distance=distance, reduction=reduction)(emb, y, ref_emb=ref, ref_labels=ry)
    want = logratio.reference_log_ratio_loss(emb, ref, y, ry, squared=squared, reduction=reduction)
    if reduction == "none":
        want = want.mean()
    close(got, want)
    for g, w in zip(grad_of(got, emb, ref), grad_of(want, emb, ref), strict=True):
        close(g, w)
    _, gq, gr = logratio.reference_log_ratio_loss_and_grad(
        emb.detach(), ref.detach(), y, ry, squared=squared
    )  # the closed form itself
    if reduction == "mean":
        again = LogRatioLoss(distance=distance)(emb, y, None, ref, ry)
        for g, w in zip(grad_of(again, emb, ref), (gq, gr), strict=True):
            close(g, w)


def test_memory_bank_training_step():
    """A memory bank of past (detached) embeddings as ``ref_emb``, enqueued after the loss."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 4)
    loss_fn = LogRatioLoss()
    bank, bank_y = torch.empty(0, 4), torch.empty(0)
    for _ in range(3):
        x, y = torch.randn(8, 3), torch.rand(8)
        emb = model(x)
        if len(bank) < 2:
            loss = loss_fn(emb, y)
        else:
            loss = loss_fn(emb, y, ref_emb=bank, ref_labels=bank_y)
        loss.backward()
        assert loss.ndim == 0 and torch.isfinite(loss)
        assert model.weight.grad is not None and torch.isfinite(model.weight.grad).all()
        bank, bank_y = torch.cat([bank, emb.detach()])[-32:], torch.cat([bank_y, y])[-32:]


# ----------------------------------------------------------------------------- triplets


@pytest.mark.parametrize(
    "distance, kw",
    [
        (SQUARED, {}),
        (EUCLIDEAN, {"root_eps": 1e-4, "label_metric": "sqeuclidean"}),
        (SQUARED, {"label_metric": cityblock_metric, "eps": 1e-3}),
    ],
    ids=["squared", "euclidean-root_eps", "callable"],
)
def test_triplets_equal_triplet_log_ratio_loss(distance, kw):
    emb, y = batch(p=2)
    a, i, j = (
        torch.tensor([0, 0, 3, 8, 5]),
        torch.tensor([1, 2, 4, 0, 6]),
        torch.tensor([2, 7, 1, 4, 0]),
    )
    squared = distance is SQUARED
    dl = label_distances(y, y, kw.get("label_metric", "euclidean"))
    opts = {"squared": squared, "eps": kw.get("eps", 1e-6), "root_eps": kw.get("root_eps", 0.0)}
    want = logratio.triplet_log_ratio_loss(emb, dl, (a, i, j), **opts)
    loss_fn = LogRatioLoss(distance=distance, **kw)
    for indices in ((a, i, j), [a, i, j], torch.stack([a, i, j], dim=1)):
        got = loss_fn(emb, y, indices)
        close(got, want)
        close(grad_of(got, emb)[0], grad_of(want, emb)[0])
    per = logratio.triplet_log_ratio_loss(emb, dl, (a, i, j), reduction="none", **opts)
    raw = LogRatioLoss(
        distance=distance, reduction="none", reducer=reducers.DoNothingReducer(), **kw
    )
    info = raw(emb, y, (a, i, j))["loss"]
    assert info["reduction_type"] == "triplet"
    close(info["losses"], per)
    assert all(x is y for x, y in zip(info["indices"], (a, i, j), strict=True))
    close(LogRatioLoss(distance=distance, reduction="none", **kw)(emb, y, (a, i, j)), want)


def test_dense_triplets_as_indices_tuple_give_the_dense_loss():
    emb, y = batch(b=7)
    trip = logratio.dense_triplets(label_distances(y, y, "euclidean"))
    got = LogRatioLoss()(emb, y, indices_tuple=trip)
    want = logratio.log_ratio_loss(emb, y)
    close(got, want, rtol=1e-9)
    close(grad_of(got, emb)[0], grad_of(want, emb)[0], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("distance", [SQUARED, EUCLIDEAN], ids=["squared", "euclidean"])
def test_triplets_with_ref_emb(distance):
    """``a`` indexes the queries, ``i`` and ``j`` the reference: against the formula."""
    emb, y = batch(b=4)
    ref, ry = batch(b=6, seed=1)
    a, i, j = torch.tensor([0, 1, 3, 3]), torch.tensor([0, 2, 5, 1]), torch.tensor([1, 4, 0, 2])
    eps = 1e-6

    def d(u, w):
        sq = ((u - w) ** 2).sum(1)
        return sq if distance is SQUARED else sq.sqrt()

    dl = (y[:, None] - ry[None, :]).abs()
    r = torch.log(d(emb[a], ref[i]) + eps) - torch.log(d(emb[a], ref[j]) + eps)
    r = r - (torch.log(dl[a, i] + eps) - torch.log(dl[a, j] + eps))
    want = (r * r).mean()
    got = LogRatioLoss(distance=distance)(emb, y, (a, i, j), ref, ry)
    close(got, want)
    for g, w in zip(grad_of(got, emb, ref), grad_of(want, emb, ref), strict=True):
        close(g, w)


def test_pml_triplet_miner_output():
    """A PML miner's (anchor, positive, negative) triplets, mined on rounded labels."""
    emb, y = batch(b=12)
    classes = torch.round(y / 2)
    trip = miners.TripletMarginMiner(margin=0.5, type_of_triplets="all")(emb, classes)
    assert len(trip) == 3 and len(trip[0]) > 0
    got = LogRatioLoss()(emb, y, trip)
    want = logratio.triplet_log_ratio_loss(emb, label_distances(y, y, "euclidean"), trip)
    close(got, want)
    close(grad_of(got, emb)[0], grad_of(want, emb)[0])


def test_pml_pair_miner_output_needs_conversion():
    emb, y = batch(b=12)
    classes = torch.round(y / 2)
    pairs = miners.BatchEasyHardMiner()(emb, classes)
    assert len(pairs) == 4
    with pytest.raises(ValueError, match=r"pair tuple.*convert_to_triplets"):
        LogRatioLoss()(emb, y, pairs)
    trip = lmu.convert_to_triplets(pairs, classes)
    got = LogRatioLoss()(emb, y, trip)
    close(got, logratio.triplet_log_ratio_loss(emb, label_distances(y, y, "euclidean"), trip))


def test_no_triplets_is_zero_with_grad():
    emb, y = batch()
    none = tuple(torch.zeros(0, dtype=torch.long) for _ in range(3))
    for reduction in ("mean", "none"):
        loss = LogRatioLoss(reduction=reduction)(emb, y, none)
        assert loss.ndim == 0 and float(loss.detach()) == 0.0
        (g,) = grad_of(loss, emb)
        assert (g == 0).all()


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "distance",
    [
        distances.CosineSimilarity(),
        distances.DotProductSimilarity(),
        distances.SNRDistance(),
        distances.LpDistance(p=1, power=1, normalize_embeddings=False),
        distances.LpDistance(p=2, power=3, normalize_embeddings=False),
    ],
    ids=["cosine", "dot", "snr", "p=1", "power=3"],
)
def test_unsupported_distances(distance):
    with pytest.raises(ValueError, match=r"supports LpDistance\(p=2, power=2\)"):
        LogRatioLoss(distance=distance)
    loss_fn = LogRatioLoss()
    loss_fn.distance = distance
    with pytest.raises(ValueError, match=r"supports LpDistance\(p=2, power=2\)"):
        loss_fn(*batch())


def test_unsupported_options():
    with pytest.raises(ValueError, match=r"root_eps.*power=1"):
        LogRatioLoss(root_eps=1e-4)
    with pytest.raises(TypeError, match="squared is set by the distance"):
        LogRatioLoss(squared=False)
    with pytest.raises(ValueError, match="ties"):
        LogRatioLoss(ties="sometimes")
    with pytest.raises(ValueError, match="reduction"):
        LogRatioLoss(reduction="max")
    with pytest.raises(ValueError, match="eps"):
        LogRatioLoss(eps=0)
    with pytest.raises(TypeError):
        LogRatioLoss(margin=0.1)
    loss_fn = LogRatioLoss(root_eps=1e-4, distance=EUCLIDEAN)
    loss_fn.distance = SQUARED
    with pytest.raises(ValueError, match="root_eps"):
        loss_fn(*batch())


@pytest.mark.parametrize(
    "reducer",
    [reducers.ThresholdReducer(high=1.0), reducers.AvgNonZeroReducer(), reducers.SumReducer()],
    ids=["threshold", "avg-non-zero", "sum"],
)
def test_element_reducers_need_reduction_none(reducer):
    with pytest.raises(ValueError, match="reduction='none'"):
        LogRatioLoss(reducer=reducer)
    LogRatioLoss(reducer=reducer, reduction="none")


def test_class_weighted_reducer_is_refused():
    for reduction in ("mean", "none"):
        with pytest.raises(ValueError, match="ClassWeightedReducer"):
            LogRatioLoss(reduction=reduction, reducer=reducers.ClassWeightedReducer(torch.ones(3)))


def test_call_errors():
    emb, y = batch()
    ref, ry = batch(b=5, seed=1)
    loss_fn = LogRatioLoss()
    with pytest.raises(ValueError, match="needs labels"):
        loss_fn(emb)
    with pytest.raises(ValueError, match=r"labels must have shape \(9,\) or \(9, p\)"):
        loss_fn(emb, y[:5])
    with pytest.raises(ValueError, match="labels must have shape"):
        loss_fn(emb, y.reshape(9, 1, 1))
    with pytest.raises(ValueError, match="2-D tensor"):
        loss_fn(emb[0], y[0])
    with pytest.raises(ValueError, match="needs ref_labels"):
        loss_fn(emb, y, ref_emb=ref)
    with pytest.raises(ValueError, match="ref_labels was given without ref_emb"):
        loss_fn(emb, y, ref_labels=ry)
    with pytest.raises(ValueError, match=r"ref_labels must have shape \(5,\)"):
        loss_fn(emb, y, ref_emb=ref, ref_labels=ry[:3])
    with pytest.raises(ValueError, match="same"):
        loss_fn(emb, y, ref_emb=ref, ref_labels=torch.rand(5, 2))
    two = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="same number of columns"):
        loss_fn(emb, y, (two, two, two), ref, torch.rand(5, 2))
    with pytest.raises(ValueError, match="2 entries"):
        loss_fn(emb, y, (two, two))
    with pytest.raises(TypeError, match="integer indices"):
        loss_fn(emb, y, (two, two, two.double()))
    with pytest.raises(ValueError, match="equal length"):
        loss_fn(emb, y, (two, two, two[:1]))
    with pytest.raises(ValueError, match=r"shape \(T, 3\)"):
        loss_fn(emb, y, torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="triplet tuple"):
        loss_fn(emb, y, {"a": two})
    with pytest.raises(ValueError, match=r"anchors out of range for embeddings \(9 rows\)"):
        loss_fn(emb, y, (two + 8, two, two))
    with pytest.raises(ValueError, match=r"neighbours out of range for ref_emb \(5 rows\)"):
        loss_fn(emb, y, (two, two + 4, two), ref, ry)
    with pytest.raises(ValueError, match=r"neighbours out of range for embeddings"):
        loss_fn(emb, y, (two, two, two - 1))


@pytest.mark.parametrize("name", ["RankNContrastLoss", "YAwareInfoNCELoss"])
def test_contrastive_losses_in_pmls_idiom(name):
    """logratio.pml.RankNContrastLoss and YAwareInfoNCELoss: the functional loss and its
    gradient through PML's call; "none" hands per-anchor losses to a reducer; what they
    cannot do is refused by name."""
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.reducers import ClassWeightedReducer, MeanReducer

    import logratio.pml as lp

    cls = getattr(lp, name)
    fn = (
        logratio.rank_n_contrast_loss
        if name == "RankNContrastLoss"
        else logratio.y_aware_infonce_loss
    )
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(9, generator=g, dtype=torch.float64) * 3
    loss = cls(temperature=0.7)(emb, y)
    loss.backward()
    ref = emb.detach().clone().requires_grad_(True)
    want = fn(ref, y, temperature=0.7)
    want.backward()
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    torch.testing.assert_close(emb.grad, ref.grad)
    per = fn(emb.detach(), y, temperature=0.7, reduction="none")
    reduced = cls(temperature=0.7, reduction="none", reducer=MeanReducer())(emb, y)
    assert reduced.item() == pytest.approx(per.mean().item(), rel=1e-12)
    with pytest.raises(ValueError, match="indices_tuple"):
        cls()(emb, y, indices_tuple=(torch.tensor([0]), torch.tensor([1]), torch.tensor([2])))
    with pytest.raises(ValueError, match="ref_emb"):
        cls()(emb, y, ref_emb=emb, ref_labels=y)
    with pytest.raises(TypeError, match="distance"):
        cls(distance=LpDistance())
    with pytest.raises(ValueError, match="ClassWeightedReducer"):
        cls(reducer=ClassWeightedReducer(weights=torch.ones(2)))
    with pytest.raises(ValueError, match="temperature"):
        cls(temperature=0.0)
