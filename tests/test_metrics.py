"""Retrieval metrics against brute-force Python loops (and SciPy for Spearman)."""

from __future__ import annotations

import math

import array_api_compat
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from logratio import metrics


def label_distance(u, v, metric="euclidean"):
    diff = [float(a) - float(b) for a, b in zip(u, v, strict=True)]
    if metric == "cityblock":
        return sum(abs(x) for x in diff)
    if metric == "sqeuclidean":
        return sum(x * x for x in diff)
    return math.sqrt(sum(x * x for x in diff))


def average_ranks(values):
    """0-based ranks, ties sharing the mean of their positions: plain Python."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2
        i = j + 1
    return ranks


def pearson(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    vx = sum((a - mx) ** 2 for a in x)
    vy = sum((b - my) ** 2 for b in y)
    return cov / math.sqrt(vx * vy) if vx > 0 and vy > 0 else 0.0


def reference(q, db, lq=None, ldb=None, *, dl=None, ks=(), ndcg_ks=(), exclude_self=False,
              metric="euclidean"):  # fmt: skip
    """Every metric by the definition, query by query, in float64 Python."""
    q, db = np.asarray(q, np.float64), np.asarray(db, np.float64)
    out = {f"mean_label_distance@{k}": [] for k in ks}
    out.update({f"ndcg@{k}": [] for k in ndcg_ks})
    out["spearman"] = []
    for i in range(len(q)):
        cand = [b for b in range(len(db)) if not (exclude_self and b == i)]
        emb = {b: sum((float(q[i, t]) - float(db[b, t])) ** 2 for t in range(q.shape[1]))
               for b in cand}  # fmt: skip
        if dl is not None:
            lab = {b: float(dl[i][b]) for b in cand}
        else:
            yq = np.reshape(lq, (len(q), -1))[i]
            ydb = np.reshape(ldb, (len(db), -1))
            lab = {b: label_distance(yq, ydb[b], metric) for b in cand}
        ranked = sorted(cand, key=lambda b: (emb[b], b))
        ideal = sorted(lab[b] for b in cand)
        for k in ks:
            out[f"mean_label_distance@{k}"].append(sum(lab[b] for b in ranked[:k]) / k)
        for k in ndcg_ks:
            dcg = sum(1 / (1 + lab[b]) / math.log2(r + 2) for r, b in enumerate(ranked[:k]))
            idcg = sum(1 / (1 + d) / math.log2(r + 2) for r, d in enumerate(ideal[:k]))
            out[f"ndcg@{k}"].append(dcg / idcg)
        out["spearman"].append(
            pearson(average_ranks([emb[b] for b in cand]), average_ranks([lab[b] for b in cand]))
        )
    return {name: sum(v) / len(v) for name, v in out.items()}


@st.composite
def retrieval_cases(draw, *, same_set=False, symmetric=None):
    """Integer embeddings: every distance is an exact integer, equal distances are exactly
    equal, and the tie order (database index) is testable.

    With ``symmetric``, the database is ``X ∪ −X`` (shuffled), whose mean is exactly 0;
    otherwise any integer grid (mean not 0, where a centred Gram identity would round
    distances apart).
    """
    d = draw(st.integers(1, 3))
    half = draw(st.integers(1, 8))
    x = draw(hnp.arrays(np.float64, (half, d), elements=st.integers(-6, 6).map(float)))
    perm = draw(st.permutations(range(2 * half)))
    if symmetric is None:
        symmetric = draw(st.booleans())
    if symmetric:
        db = np.concatenate([x, -x])[list(perm)]
    else:
        db = draw(hnp.arrays(np.float64, (2 * half, d), elements=st.integers(-6, 9).map(float)))
    same_set = same_set or draw(st.booleans())
    q = db if same_set else draw(
        hnp.arrays(np.float64, (draw(st.integers(1, 7)), d), elements=st.integers(-8, 8).map(float))
    )  # fmt: skip
    p = draw(st.integers(1, 2))
    lab = st.integers(-3, 3).map(float)
    ldb = draw(hnp.arrays(np.float64, (len(db), p), elements=lab))
    lq = ldb if same_set else draw(hnp.arrays(np.float64, (len(q), p), elements=lab))
    return q, db, lq, ldb


@given(retrieval_cases(), st.booleans(), st.data())
def test_all_metrics_match_brute_force(case, as_distances, data):
    q, db, lq, ldb = case
    exclude = data.draw(st.booleans()) if q is db else False
    n = len(db) - exclude
    if n < 1:
        return
    ks = tuple(data.draw(st.lists(st.integers(1, n), min_size=1, max_size=3, unique=True)))
    nks = tuple(data.draw(st.lists(st.integers(1, n), min_size=1, max_size=3, unique=True)))
    metric = data.draw(st.sampled_from(["euclidean", "sqeuclidean", "cityblock"]))
    block = data.draw(st.one_of(st.none(), st.integers(1, 4)))
    want = reference(q, db, lq, ldb, ks=ks, ndcg_ks=nks, exclude_self=exclude, metric=metric)
    if as_distances:
        dl = [[label_distance(a, b, metric) for b in ldb] for a in lq]
        args = {"label_distances": np.asarray(dl)}
    else:
        args = {"query_labels": lq, "db_labels": ldb, "label_metric": metric}
    got = metrics.retrieval_metrics(
        q, db, ks=ks, ndcg_ks=nks, exclude_self=exclude, block_size=block, **args
    )
    assert set(got) == set(want)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-12), name


@given(retrieval_cases(same_set=True), st.integers(1, 3))
def test_single_metric_functions_agree_with_the_combined_one(case, k):
    q, db, lq, ldb = case
    k = min(k, len(db) - 1)
    ks = sorted({1, k})
    combined = metrics.retrieval_metrics(q, db, lq, ldb, ks=ks, ndcg_ks=ks, exclude_self=True)
    mld = metrics.mean_label_distance_at_k(q, db, lq, ldb, ks, exclude_self=True)
    ndcg = metrics.ndcg_at_k(q, db, lq, ldb, k=ks, exclude_self=True)
    assert mld == {kk: combined[f"mean_label_distance@{kk}"] for kk in ks}
    assert ndcg == {kk: combined[f"ndcg@{kk}"] for kk in ks}
    assert metrics.ndcg_at_k(q, db, lq, ldb, k, exclude_self=True) == ndcg[k]
    rho = metrics.spearman_correlation(q, db, lq, ldb, exclude_self=True)
    assert rho == combined["spearman"]


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    q = rng.normal(size=(6, 3))
    db = rng.normal(size=(40, 3))
    lq = rng.integers(0, 3, size=6).astype(float)
    ldb = rng.integers(0, 3, size=40).astype(float)  # many tied label distances
    emb = ((q[:, None, :] - db[None, :, :]) ** 2).sum(-1)
    lab = np.abs(lq[:, None] - ldb[None, :])
    want = np.mean([stats.spearmanr(emb[i], lab[i]).statistic for i in range(6)])
    got = metrics.spearman_correlation(q, db, lq, ldb, block_size=4)
    assert got == pytest.approx(want, rel=1e-10)


def test_average_ranks_match_python():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(5, 17)).astype(float)
    got = metrics.average_ranks(array_api_compat.array_namespace(x), x)
    np.testing.assert_array_equal(got, [average_ranks(list(row)) for row in x])


def test_perfect_and_collapsed_embeddings():
    labels = np.array([0.0, 1.0, 3.0, 7.0, 12.0, 20.0])
    emb = labels[:, None]  # embedding distance = label distance squared: same ranking
    got = metrics.retrieval_metrics(emb, emb, labels, labels, ks=(1, 2), ndcg_ks=(1, 5),
                                    exclude_self=True)  # fmt: skip
    assert got["ndcg@1"] == pytest.approx(1) and got["ndcg@5"] == pytest.approx(1)
    assert got["spearman"] == pytest.approx(1)
    nearest = [1, 0, 1, 2, 3, 4]
    assert got["mean_label_distance@1"] == pytest.approx(np.mean(np.abs(labels - labels[nearest])))
    collapsed = np.zeros((6, 2))
    rho = metrics.spearman_correlation(collapsed, collapsed, labels, labels, exclude_self=True)
    assert rho == 0.0  # constant embedding distances: no correlation, not NaN
    same = np.zeros(6)
    got = metrics.retrieval_metrics(emb, emb, same, same, ks=(3,), ndcg_ks=(3,),
                                    exclude_self=True)  # fmt: skip
    assert got == {"mean_label_distance@3": 0.0, "ndcg@3": 1.0, "spearman": 0.0}


def test_without_exclude_self_a_query_finds_itself():
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(10, 3))
    labels = rng.normal(size=10)
    assert metrics.mean_label_distance_at_k(emb, emb, labels, labels, 1) == 0.0
    assert metrics.mean_label_distance_at_k(emb, emb, labels, labels, 1, exclude_self=True) > 0


@given(retrieval_cases(same_set=True, symmetric=False), st.integers(1, 3))
def test_exact_ties_on_integer_grids(case, k):
    """Leave-one-out on grids whose mean is not 0 (quantised codes): equal distances stay
    equal, so average ranks (Spearman) and ties by index (top-k, nDCG) match brute force."""
    q, db, lq, ldb = case
    k = min(k, len(db) - 1)
    if k < 1:
        return
    want = reference(q, db, lq, ldb, ks=(k,), ndcg_ks=(k,), exclude_self=True)
    got = metrics.retrieval_metrics(q, db, lq, ldb, ks=(k,), ndcg_ks=(k,), exclude_self=True)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-12), name


def test_spearman_tie_example_matches_scipy():
    """Q = [[1, 0], [1, −1], [2, 0]]: the distances from row 0 to rows 1 and 2 are both 1."""
    stats = pytest.importorskip("scipy.stats")
    q = np.array([[1.0, 0.0], [1.0, -1.0], [2.0, 0.0]])
    y = np.array([2.0, 0.0, 2.0])
    want = []
    for i in range(3):
        others = [j for j in range(3) if j != i]
        emb = [float(np.sum((q[i] - q[j]) ** 2)) for j in others]
        lab = [abs(y[i] - y[j]) for j in others]
        rho = stats.spearmanr(emb, lab).statistic
        want.append(0.0 if np.isnan(rho) else rho)
    got = metrics.spearman_correlation(q, q, y, y, exclude_self=True)
    assert got == pytest.approx(np.mean(want), rel=1e-12)


def test_large_offset_does_not_change_the_ranking():
    rng = np.random.default_rng(3)
    q, db = rng.normal(size=(5, 4)), rng.normal(size=(30, 4))
    lq, ldb = rng.normal(size=5), rng.normal(size=30)
    base = metrics.retrieval_metrics(q, db, lq, ldb, ndcg_ks=(10, 30))
    shifted = metrics.retrieval_metrics(q + 1e4, db + 1e4, lq, ldb, ndcg_ks=(10, 30))
    assert shifted["ndcg@10"] == pytest.approx(base["ndcg@10"], rel=1e-9)


def test_other_namespaces_agree(xp):
    """float32 arrays of every backend, in blocks of 3, give the float64 NumPy metrics."""
    rng = np.random.default_rng(4)
    arrays = [rng.normal(size=(9, 3)), rng.normal(size=(25, 3)), rng.normal(size=9),
              rng.normal(size=25)]  # fmt: skip
    conv = [xp.asarray(a, "float32") for a in arrays]
    want = metrics.retrieval_metrics(*arrays, ks=(1, 5), ndcg_ks=(5, 20))
    got = metrics.retrieval_metrics(*conv, ks=(1, 5), ndcg_ks=(5, 20), block_size=3)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-5, abs=1e-6), name


@pytest.mark.parametrize(
    "args, kwargs, error",
    [
        ((np.zeros((3, 2)), np.zeros((4, 2)), np.zeros(3), np.zeros(4), 5), {}, ValueError),
        ((np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3), np.zeros(3), 3),
         {"exclude_self": True}, ValueError),
        ((np.zeros((3, 2)), np.zeros((4, 2)), np.zeros(3), np.zeros(4), 1),
         {"exclude_self": True}, ValueError),
        ((np.zeros((3, 2)), np.zeros((4, 3)), np.zeros(3), np.zeros(4), 1), {}, ValueError),
        ((np.zeros((3, 2)), np.zeros((4, 2)), np.zeros(3), np.zeros(5), 1), {}, ValueError),
        ((np.zeros((3, 2)), np.zeros((4, 2)), np.zeros(3), None, 1), {}, ValueError),
        ((np.zeros((3, 2)), np.zeros((4, 2)), np.zeros(3), np.zeros(4), 1),
         {"label_distances": np.zeros((3, 4))}, ValueError),
        ((np.zeros((3, 2)), np.zeros((4, 2)), None, None, 1),
         {"label_distances": -np.ones((3, 4))}, ValueError),
        ((np.zeros((3, 2)), np.zeros((4, 2)), None, None, 1),
         {"label_distances": np.ones((4, 3))}, ValueError),
        ((np.full((3, 2), np.nan), np.zeros((4, 2)), np.zeros(3), np.zeros(4), 1), {},
         ValueError),
        ((np.zeros((3, 2)), np.zeros((4, 2)), np.zeros(3), np.zeros(4), 0), {}, ValueError),
        ((np.zeros((3, 2)), np.zeros((4, 2)), np.zeros(3), np.zeros(4), []), {}, ValueError),
        ((np.zeros(3), np.zeros((4, 2)), np.zeros(3), np.zeros(4), 1), {}, ValueError),
        ((np.zeros((3, 2), dtype=int), np.zeros((4, 2)), np.zeros(3), np.zeros(4), 1), {},
         TypeError),
    ],
)  # fmt: skip
def test_bad_input(args, kwargs, error):
    with pytest.raises(error):
        metrics.mean_label_distance_at_k(*args, **kwargs)
