"""Tests of ``logratio demo``: its pieces against independent references, and a smoke run.

The references: the circle distance from complex phases, rotations from ``numpy.rot90`` and
from image moments, the perceptron and the triplet losses from float64 NumPy loops, the JAX
Adam from ``torch.optim.Adam``.  The smoke run trains every method for a few steps.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

pytest.importorskip("sklearn")
pytest.importorskip("scipy")

from logratio.demo import data as demo_data
from logratio.demo import methods as demo_methods
from logratio.demo import models as demo_models

angles = arrays(
    np.float64,
    st.integers(1, 12),
    elements=st.floats(-30.0, 30.0, allow_nan=False, allow_infinity=False),
)


def reference_circle_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The angle between the unit complex numbers e^{ia} and e^{ib}."""
    return np.abs(np.angle(np.exp(1j * a)[:, None] * np.exp(-1j * b)[None, :]))


# --- the label metric --------------------------------------------------------------------


@given(angles, angles)
def test_circle_distance_matches_complex_phase_reference(a, b):
    got = np.asarray(demo_data.circle_distance(a, b))
    assert got.shape == (a.shape[0], b.shape[0])
    np.testing.assert_allclose(got, reference_circle_distance(a, b), atol=1e-9)


@given(angles, st.integers(-3, 3))
def test_circle_distance_is_a_metric_on_the_circle(a, turns):
    d = np.asarray(demo_data.circle_distance(a, a))
    assert np.all(d >= 0) and np.all(d <= math.pi + 1e-12)
    np.testing.assert_allclose(d, d.T, atol=0)
    np.testing.assert_allclose(np.diag(d), 0.0, atol=1e-12)
    # triangle inequality over every (i, j, k)
    assert np.all(d[:, :, None] <= d[:, None, :] + d[None, :, :].transpose(0, 2, 1) + 1e-9)
    # whole turns do not change the distance
    shifted = np.asarray(demo_data.circle_distance(a + 2 * math.pi * turns, a))
    np.testing.assert_allclose(shifted, d, atol=1e-9)


def test_circle_distance_known_values_and_column_input():
    a = np.array([0.0, 0.0, 0.1, 3 * math.pi / 2])
    b = np.array([math.pi, 2 * math.pi - 0.1, 2 * math.pi - 0.1, 0.0])
    got = np.diag(np.asarray(demo_data.circle_distance(a[:, None], b[:, None])))
    np.testing.assert_allclose(got, [math.pi, 0.1, 0.2, math.pi / 2], atol=1e-12)


def test_circle_distance_runs_on_torch_like_numpy():
    torch = pytest.importorskip("torch")
    a = np.array([0.3, 6.0, 2.0])
    got = demo_data.circle_distance(torch.from_numpy(a), torch.from_numpy(a[::-1].copy()))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), reference_circle_distance(a, a[::-1]), atol=1e-12)


def test_circle_distance_rejects_matrices():
    with pytest.raises(ValueError, match="angles"):
        demo_data.circle_distance(np.zeros((3, 2)), np.zeros(3))


# --- the rotation ------------------------------------------------------------------------


def _moments(img: np.ndarray) -> tuple[float, float, float]:
    """Centroid (x right, y up, from the canvas centre) and principal-axis angle mod π."""
    h, w = img.shape
    rows, cols = np.mgrid[0:h, 0:w]
    x = cols - (w - 1) / 2
    y = (h - 1) / 2 - rows
    mass = img.sum()
    cx, cy = (img * x).sum() / mass, (img * y).sum() / mass
    mxx = (img * (x - cx) ** 2).sum()
    myy = (img * (y - cy) ** 2).sum()
    mxy = (img * (x - cx) * (y - cy)).sum()
    return cx, cy, 0.5 * math.atan2(2 * mxy, mxx - myy)


def test_quarter_turn_is_rot90():
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(1, 24, 24))
    got = demo_data.rotate_images(img, np.array([math.pi / 2]))
    np.testing.assert_allclose(got[0], np.rot90(img[0], 1), atol=1e-12)


@pytest.mark.parametrize("theta", [0.3, 1.2, 2.5, 3.9, 5.6])
def test_rotation_turns_counter_clockwise_by_the_angle(theta):
    h = 24
    rows, cols = np.mgrid[0:h, 0:h]
    x, y = cols - (h - 1) / 2, (h - 1) / 2 - rows
    blob = np.exp(-((x - 6.0) ** 2 + y**2) / 2.0)  # a dot 6 pixels right of the centre
    bar = np.exp(-(y**2) / 1.0) * (np.abs(x) < 8)  # a horizontal bar through the centre
    out = demo_data.rotate_images(np.stack([blob, bar]), np.array([theta, theta]))
    cx, cy, _ = _moments(out[0])
    assert math.hypot(cx - 6 * math.cos(theta), cy - 6 * math.sin(theta)) < 0.15
    orientation = _moments(out[1])[2]
    assert reference_circle_distance(np.array([2 * orientation]), np.array([2 * theta]))[0, 0] < (
        2 * math.radians(2)
    )


def test_digit_canvas_keeps_the_whole_digit_under_rotation():
    from sklearn.datasets import load_digits

    canvas = demo_data.digit_canvas(load_digits().images[:20])
    assert canvas.shape == (20, 24, 24)
    assert canvas.min() >= 0 and canvas.max() <= 1
    turned = demo_data.rotate_images(canvas, np.full(20, math.pi / 4))
    # a 45° turn loses (almost) no ink: the digit's corners stay on the canvas
    np.testing.assert_allclose(turned.sum(axis=(1, 2)), canvas.sum(axis=(1, 2)), rtol=0.02)


def test_rotated_digits_split_is_reproducible_and_disjoint():
    a = demo_data.make_rotated_digits(3, copies=2, held_out=0.2)
    b = demo_data.make_rotated_digits(3, copies=2, held_out=0.2)
    c = demo_data.make_rotated_digits(4, copies=2, held_out=0.2)
    np.testing.assert_array_equal(a.train_x, b.train_x)
    np.testing.assert_array_equal(a.test_y, b.test_y)
    assert not np.array_equal(a.train_y, c.train_y)
    n_test = round(0.2 * 1797)
    assert a.test_x.shape == (n_test, 24, 24) and a.test_y.shape == (n_test,)
    assert a.train_x.shape == (2 * (1797 - n_test), 24, 24)
    assert np.all((a.train_y >= 0) & (a.train_y < 2 * math.pi))
    assert a.train_x.dtype == np.float32 and np.isfinite(a.train_x).all()
    # split by image: no digit image is both trained on and held out
    assert not set(a.train_source) & set(a.test_source)
    assert len(set(a.train_source) | set(a.test_source)) == 1797
    np.testing.assert_array_equal(np.bincount(a.train_source, minlength=1797)[a.train_source], 2)


# --- the network and the baselines ------------------------------------------------------


def test_torch_and_jax_perceptrons_match_the_numpy_reference():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    params = demo_models.init_mlp(rng, demo_models.layer_sizes(24 * 24, 16, 5))
    x = rng.uniform(size=(7, 24, 24)).astype(np.float32)
    ref = demo_models.mlp_numpy(params, x)
    with torch.no_grad():
        got = demo_models.torch_mlp(params)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    jnp = pytest.importorskip("jax.numpy")
    got = np.asarray(demo_models.jax_mlp([(jnp.asarray(w), jnp.asarray(b)) for w, b in params], x))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


#: The demo's L2 normalisation adds this under the root (``f / sqrt(‖f‖² + c)``).
NORMALISER_OFFSET = 1e-12


def _unit(f: np.ndarray) -> np.ndarray:
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def _sq(u: np.ndarray, v: np.ndarray) -> float:
    return float(np.sum((u - v) ** 2))


def _hinge_tolerance(f: np.ndarray, terms: int, margin: float) -> float:
    """How far a mean of hinges ``max(0, D_0p − D_0n + margin)`` on the demo's normalised
    embeddings may lie from the same mean on exactly normalised ones (float64).

    The demo scales each unit row by ``r_a = ‖f_a‖ / sqrt(‖f_a‖² + c)``, with
    ``0 ≤ 1 − r_a ≤ δ = min(1, max_a c / (2‖f_a‖²))``; then
    ``|D'_ab − D_ab| = |(r_a − r_b)² − (1 − r_a r_b) D_ab| ≤ δ² + 8δ`` (``D_ab ≤ 4``), and a
    hinge, 1-Lipschitz in ``D_0p − D_0n``, moves by at most twice that.  Rounding adds a few
    ulps of the magnitudes summed: ``terms`` terms of at most ``4 + margin``.
    """
    norms2 = np.sum(f * f, axis=1)
    delta = min(1.0, float(np.max(NORMALISER_OFFSET / (2 * norms2))))
    rounding = (terms + 64) * np.finfo(np.float64).eps * (4 + margin)
    return 2 * (delta**2 + 8 * delta) + rounding


def _loop_binary_triplet(f: np.ndarray, num_pos: int, margin: float) -> tuple[float, int]:
    """The authors' naive batch: anchor 0, positives at 1..num_pos, negatives after them;
    the mean over every (positive, negative) of ``max(0, D_0p − D_0n + margin)``."""
    g = _unit(f)
    terms = []
    for p in range(1, 1 + num_pos):
        for n in range(1 + num_pos, len(g)):
            terms.append(max(0.0, _sq(g[0], g[p]) - _sq(g[0], g[n]) + margin))
    return float(np.mean(terms)), len(terms)


def _loop_dense_by_position(f: np.ndarray, margin: float) -> tuple[float, int]:
    """The authors' dense-triplet baseline: the mean over positions ``0 < i < j`` of
    ``max(0, D_0i − D_0j + margin)``."""
    g = _unit(f)
    terms = []
    for i in range(1, len(g)):
        for j in range(i + 1, len(g)):
            terms.append(max(0.0, _sq(g[0], g[i]) - _sq(g[0], g[j]) + margin))
    return float(np.mean(terms)), len(terms)


def _loop_released_log_ratio(f: np.ndarray, y: np.ndarray) -> float:
    """The authors' ``LogRatioLoss``: anchor 0, ``D_0i = sqrt(‖f_0 − f_i‖² + 1e-4/d)``, the
    mean over ``0 < i < j`` of ``(log (D_0i+ε)/(D_0j+ε) − log (Δ_0i+ε)/(Δ_0j+ε))²``, ε = 1e-6."""
    eps = 1e-6
    lab = reference_circle_distance(y, y)
    dist = [math.sqrt(_sq(f[0], f[i]) + 1e-4 / f.shape[1]) for i in range(len(f))]
    terms = []
    for i in range(1, len(f)):
        for j in range(i + 1, len(f)):
            u = math.log((dist[i] + eps) / (dist[j] + eps))
            v = math.log((lab[0, i] + eps) / (lab[0, j] + eps))
            terms.append((u - v) ** 2)
    return float(np.mean(terms))


def _method(key: str) -> demo_methods.Method:
    (method,) = demo_methods.methods_named((key,))
    return method


def _random_embeddings(rng: np.random.Generator, batch: int) -> np.ndarray:
    f = rng.normal(size=(batch, 3))
    f[rng.uniform(size=batch) < 0.2] *= 1e-5  # rows near 0, where the normaliser offset shows
    return f


@given(st.integers(0, 2**32 - 1), st.integers(4, 12))
def test_triplet_baselines_match_loops(seed, batch):
    """Both triplet baselines as released, against float64 loops over positions."""
    rng = np.random.default_rng(seed)
    f = _random_embeddings(rng, batch)
    y = rng.uniform(0, 2 * math.pi, size=batch)
    # binary: a naive batch (anchor, positives, negatives), positives from the neighbour table
    num_pos = int(rng.integers(1, batch - 2))
    table = np.zeros((batch, num_pos), dtype=np.int64)
    table[0] = np.arange(1, 1 + num_pos)
    binary = _method("binary_triplet")
    assert binary.margin == 0.2
    b = demo_methods.make_batch(binary, list(range(batch)), y, table)
    got = float(demo_methods.method_loss(binary, f, b))
    want, terms = _loop_binary_triplet(f, num_pos, 0.2)
    assert abs(got - want) <= _hinge_tolerance(f, terms, 0.2)
    # dense by position: the batch sorted by label distance to the anchor, with ties
    y[rng.uniform(size=batch) < 0.3] = y[0] + 0.5  # equal label distances
    order = np.argsort(reference_circle_distance(y[:1], y)[0], kind="stable")
    y = y[np.concatenate([[0], order[order != 0]])]
    lab = reference_circle_distance(y, y)[0]
    assert np.all(np.diff(lab[1:]) >= 0)  # so i < j means Δ_0i ≤ Δ_0j
    dense = _method("dense_triplet")
    assert dense.margin == 0.03
    d = demo_methods.make_batch(dense, list(range(batch)), y, table)
    got = float(demo_methods.method_loss(dense, f, d))
    want, terms = _loop_dense_by_position(f, 0.03)
    assert terms == (batch - 1) * (batch - 2) // 2  # tied pairs kept
    assert abs(got - want) <= _hinge_tolerance(f, terms, 0.03)


@given(st.integers(0, 2**32 - 1), st.integers(3, 12), st.integers(1, 6))
def test_released_log_ratio_matches_the_authors_loss(seed, batch, dim):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(batch, dim))
    f[rng.uniform(size=batch) < 0.2] = f[0]  # copies of the anchor: D = sqrt(1e-4/d)
    y = rng.uniform(0, 2 * math.pi, size=batch)
    y[rng.uniform(size=batch) < 0.2] = y[0]
    released = _method("log_ratio_released")
    got = float(demo_methods.method_loss(released, f, demo_methods.Batch(np.arange(batch), y)))
    want = _loop_released_log_ratio(f, y)
    # the terms are squared differences of logs of magnitude ≤ |log 1e-6| ≈ 14
    assert abs(got - want) <= 1e-11 * (1 + want)


def test_squared_log_ratio_is_the_papers_eq4():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(9, 4))
    y = rng.uniform(0, 2 * math.pi, size=9)
    lab = reference_circle_distance(y, y)
    terms = []
    for i in range(1, 9):
        for j in range(i + 1, 9):
            u = math.log((_sq(f[0], f[i]) + 1e-6) / (_sq(f[0], f[j]) + 1e-6))
            v = math.log((lab[0, i] + 1e-6) / (lab[0, j] + 1e-6))
            terms.append((u - v) ** 2)
    squared = _method("log_ratio_squared")
    got = float(demo_methods.method_loss(squared, f, demo_methods.Batch(np.arange(9), y)))
    np.testing.assert_allclose(got, np.mean(terms), rtol=1e-12)


def test_binary_positives_are_the_anchors_label_neighbours():
    y = np.array([0.0, 0.1, 3.0, 6.2, 1.0])
    table = np.array([[1, 3], [0, 3], [4, 1], [0, 1], [1, 0]])
    method = _method("binary_triplet")
    batch = demo_methods.make_batch(method, [0, 2, 1, 4, 3], y, table)
    np.testing.assert_array_equal(batch.positives, [False, False, True, False, True])


def _naive_setup(seed: int, n: int = 80, batch: int = 20, pool: int = 8):
    import logratio

    y = np.random.default_rng(seed).uniform(0, 2 * math.pi, size=n)
    table = np.asarray(logratio.knn_table(y, pool, label_metric=demo_data.circle_distance))

    def dense():
        return logratio.DenseBatchSampler(
            y, neighbors=table, batch_size=batch, k=3, label_metric=demo_data.circle_distance,
            seed=seed,
        )  # fmt: skip

    return y, table, dense


@pytest.mark.parametrize("seed", [0, 7])
def test_naive_batches_are_the_authors_sampler_around_the_dense_anchors(seed):
    """Anchor, then ``positives`` of its ``pool`` nearest labels, then negatives from outside
    them, checked sample by sample; the anchors are those of the dense batches, step by step,
    epoch after epoch; the same seed gives the same batches."""
    from logratio.demo.train import endless_batches

    y, table, dense = _naive_setup(seed)
    naive = demo_methods.NaiveBatchSampler(dense(), table, positives=4, pool=8)
    assert len(naive) == 80
    steps = 3 * 80 + 5  # three epochs and a bit
    got = list(itertools.islice(endless_batches(naive), steps))
    want_anchors = [b[0] for b in itertools.islice(endless_batches(dense()), steps)]
    assert [b[0] for b in got] == want_anchors
    for batch in got:
        assert len(batch) == 20 and len(set(batch)) == 20
        anchor, pool = batch[0], set(table[batch[0]].tolist())
        # the pool is the anchor's 8 nearest labels: no sample outside it is nearer
        dist = reference_circle_distance(y[anchor : anchor + 1], y)[0]
        outside = [i for i in range(80) if i != anchor and i not in pool]
        assert max(dist[list(pool)]) <= min(dist[outside])
        for member in batch[1:5]:
            assert member in pool
        for member in batch[5:]:
            assert member not in pool and member != anchor
    # an epoch's anchors are every sample once
    assert sorted(b[0] for b in got[:80]) == list(range(80))
    repeat = demo_methods.NaiveBatchSampler(dense(), table, positives=4, pool=8)
    again = list(itertools.islice(endless_batches(repeat), steps))
    assert again == got
    # the positives are a random draw, not always the same members of the pool
    by_anchor: dict[int, set] = {}
    for batch in got:
        by_anchor.setdefault(batch[0], set()).add(tuple(sorted(batch[1:5])))
    assert any(len(draws) > 1 for draws in by_anchor.values())


def test_naive_batches_draw_uniformly():
    """Over many batches of one anchor, each pool member is a positive about
    positives/pool of the time and each outside sample a negative about
    (batch − 1 − positives)/(n − 1 − pool) of the time."""
    _, table, dense = _naive_setup(1, n=40, batch=12, pool=6)
    naive = demo_methods.NaiveBatchSampler(dense(), table, positives=3, pool=6)
    pos_counts, neg_counts, anchors = np.zeros(40), np.zeros(40), 0
    from logratio.demo.train import endless_batches

    for batch in itertools.islice(endless_batches(naive), 40 * 60):
        if batch[0] != 0:
            continue
        anchors += 1
        pos_counts[batch[1:4]] += 1
        neg_counts[batch[4:]] += 1
    assert anchors == 60
    pool = table[0]
    np.testing.assert_allclose(pos_counts[pool] / anchors, 3 / 6, atol=0.22)
    outside = np.setdiff1d(np.arange(1, 40), pool)
    np.testing.assert_allclose(neg_counts[outside] / anchors, 8 / 33, atol=0.17)
    assert pos_counts[outside].sum() == 0 and neg_counts[pool].sum() == 0


def test_naive_sampler_rejects_impossible_batches():
    _, table, dense = _naive_setup(0, n=30, batch=28, pool=8)
    with pytest.raises(ValueError, match="negatives"):
        demo_methods.NaiveBatchSampler(dense(), table, positives=4, pool=8)
    _, table, dense = _naive_setup(0)
    with pytest.raises(ValueError, match="columns"):
        demo_methods.NaiveBatchSampler(dense(), table, positives=4, pool=9)
    with pytest.raises(ValueError, match="positives"):
        demo_methods.NaiveBatchSampler(dense(), table, positives=0, pool=8)


def test_jax_adam_matches_torch_adam():
    torch = pytest.importorskip("torch")
    pytest.importorskip("jax")
    import jax.numpy as jnp

    from logratio.demo import backend_jax

    rng = np.random.default_rng(2)
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    grads = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(5)]
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = torch.optim.Adam([p], lr=0.01)
    params, state = [jnp.asarray(w0)], backend_jax.adam_init([jnp.asarray(w0)])
    for g in grads:
        p.grad = torch.from_numpy(g)
        opt.step()
        params, state = backend_jax.adam_update(params, [jnp.asarray(g)], state, 0.01)
    np.testing.assert_allclose(np.asarray(params[0]), p.detach().numpy(), rtol=1e-5, atol=1e-6)


# --- the command -------------------------------------------------------------------------


def _check_outputs(out, backend: str) -> dict:
    from logratio.demo.train import METRIC_KEYS

    results = json.loads((out / "results.json").read_text())
    assert results["config"]["backend"] == backend
    keys = {m["key"] for m in results["methods"]}
    assert keys == set(results["config"]["methods"])
    for key in keys:
        summary = results["summary"][key]
        assert set(summary) == set(METRIC_KEYS)
        for metric in METRIC_KEYS:
            assert math.isfinite(summary[metric]["mean"])
            assert math.isfinite(summary[metric]["std"])
    for run in results["runs"]:
        assert run["steps"][0] == 0 and run["steps"][-1] == results["config"]["steps"]
        for values in run["metrics"].values():
            assert len(values) == len(run["steps"]) and all(math.isfinite(v) for v in values)
        assert 0 <= min(run["metrics"]["mean_label_distance@1"])
        assert max(run["metrics"]["mean_label_distance@1"]) <= math.pi
    table = (out / "results.md").read_text()
    for method in demo_methods.methods_named(tuple(results["config"]["methods"])):
        assert method.title in table
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return results


def test_demo_smoke_torch(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    from logratio.demo import main

    argv = ["--steps", "3", "--seeds", "1", "--seed", "5", "--no-progress"]
    assert main([*argv, "--workers", "1", "--out", str(tmp_path / "a")]) == 0
    assert "| method |" in capsys.readouterr().out
    first = _check_outputs(tmp_path / "a", "torch")
    assert first["config"]["methods"] == [m.key for m in demo_methods.METHODS]
    # the same seed gives the same results, in one process or spread over two
    assert main([*argv, "--workers", "2", "--out", str(tmp_path / "b")]) == 0
    second = _check_outputs(tmp_path / "b", "torch")
    assert [r["metrics"] for r in first["runs"]] == [r["metrics"] for r in second["runs"]]
    assert [r["train_loss"] for r in first["runs"]] == [r["train_loss"] for r in second["runs"]]


def test_demo_smoke_jax(tmp_path):
    pytest.importorskip("jax")
    pytest.importorskip("matplotlib")
    from logratio.demo import main

    argv = ["--backend", "jax", "--steps", "2", "--seeds", "1", "--workers", "1", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    _check_outputs(tmp_path, "jax")


@pytest.mark.parametrize(
    "argv",
    [
        ["--seeds", "0"],
        ["--seed", "-1"],
        ["--backend", "numpy"],
        ["--steps", "0"],
        ["--workers", "0"],
    ],
)
def test_demo_rejects_bad_options(argv):
    from logratio.demo import main

    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2


def test_demo_presets():
    """The default run stays at 5000 steps with every method; ``--long`` is the one-anchor
    comparison at its documented budget; ``--steps`` overrides either."""
    from logratio import demo

    parse = demo.build_parser().parse_args
    full = demo.config_from_args(parse([]))
    assert full.steps == 5000 and full.methods == tuple(m.key for m in demo_methods.METHODS)
    assert demo.config_from_args(parse(["--quick"])).steps == 300
    long = demo.config_from_args(parse(["--long"]))
    assert (long.steps, long.eval_every) == (demo.LONG["steps"], demo.LONG["eval_every"])
    assert long.steps > full.steps
    assert long.methods == demo_methods.LONG_METHODS
    assert {m.every_anchor for m in demo_methods.methods_named(long.methods)} == {False}
    assert {"log_ratio_released", "dense_triplet"} <= set(long.methods)
    assert demo.config_from_args(parse(["--long", "--steps", "40"])).steps == 40
    help_text = " ".join(demo.build_parser().format_help().split())
    assert f"{demo.LONG['steps']} steps" in help_text


def test_demo_long_smoke(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    from logratio.demo import main

    argv = ["--long", "--steps", "2", "--seeds", "1", "--workers", "1", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    results = _check_outputs(tmp_path, "torch")
    assert tuple(results["config"]["methods"]) == demo_methods.LONG_METHODS
    assert main(["--long", "--quick", "--out", str(tmp_path / "b")]) == 2
    assert "--quick and --long" in capsys.readouterr().err


def test_demo_names_missing_dependencies(monkeypatch, capsys):
    import importlib.util

    from logratio.demo import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tqdm" else real(name, *a)
    )
    assert main(["--steps", "1", "--seeds", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "tqdm" in err and "pip install" in err


def test_demo_install_hint_names_extras_that_hold_the_dependencies(monkeypatch, capsys):
    """The hint is a command that works from a checkout: its extras list every module."""
    import importlib.util
    import re
    from pathlib import Path

    from logratio import demo

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    real = importlib.util.find_spec
    for backend in ("torch", "jax"):
        hidden = {"tqdm", backend}
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a, h=hidden: None if name in h else real(name, *a),
        )
        assert demo.main(["--backend", backend, "--steps", "1", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "logratio[demo]" not in err
        (names,) = re.findall(r'pip install -e "\.\[([a-z,]+)\]"', err)
        packages = {re.split(r"[<>=\[ ]", req)[0] for n in names.split(",") for req in extras[n]}
        assert {*demo.REQUIRED.values(), demo.BACKENDS[backend]} <= packages


def test_demo_checks_the_output_folder_before_training(tmp_path, monkeypatch, capsys):
    import sys

    from logratio import demo

    if demo.missing_modules("torch"):
        pytest.skip(f"the demo needs {demo.missing_modules('torch')}")
    from logratio.demo import train

    def must_not_train(*args, **kwargs):
        raise AssertionError("the demo trained")

    monkeypatch.setattr(train, "run_demo", must_not_train)
    (tmp_path / "file").write_text("")
    bad = [tmp_path / "file", tmp_path / "file" / "out"]
    if sys.platform.startswith("linux"):
        bad.append("/proc/nope")
    for out in bad:
        assert demo.main(["--steps", "1", "--seeds", "1", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"--out {out}" in err and "Traceback" not in err


def _loop_rank_n_contrast(f: np.ndarray, lab: np.ndarray, tau: float) -> float:
    n = len(f)
    sim = [[-math.sqrt(_sq(f[i], f[j])) / tau for j in range(n)] for i in range(n)]
    total = 0.0
    for i in range(n):
        for k in range(n):
            if k == i:
                continue
            den = [sim[i][j] for j in range(n) if j != i and lab[i, j] >= lab[i, k]]
            top = max(den)
            total += -sim[i][k] + top + math.log(sum(math.exp(d - top) for d in den))
    return total / (n * (n - 1))


def _loop_y_aware(f: np.ndarray, lab: np.ndarray, tau: float, sigma: float) -> float:
    n = len(f)
    z = f / np.linalg.norm(f, axis=1, keepdims=True)
    total = 0.0
    for i in range(n):
        others = [j for j in range(n) if j != i]
        s = [float(z[i] @ z[j]) / tau for j in others]
        w = [math.exp(-(lab[i, j] ** 2) / (2 * sigma**2)) for j in others]
        top = max(s)
        log_norm = top + math.log(sum(math.exp(v - top) for v in s))
        total -= sum(wj * (sj - log_norm) for wj, sj in zip(w, s, strict=True)) / sum(w)
    return total / n


def test_contrastive_rows_are_the_two_losses_on_angle_distances():
    """Rank-N-Contrast (τ = 2, angle distance, raw rows) and y-aware InfoNCE (τ = 0.1, σ = 1,
    RBF kernel of the angle distance), every member an anchor, against float64 loops."""
    rng = np.random.default_rng(11)
    f = rng.normal(size=(8, 3))
    y = rng.uniform(0, 2 * math.pi, size=8)
    y[3] = y[1] + 2 * math.pi - 1e-9  # a near-copy across the wrap
    y[5] = y[2]  # a tie
    lab = reference_circle_distance(y, y)
    batch = demo_methods.Batch(np.arange(8), y)
    rnc = float(demo_methods.method_loss(_method("rank_n_contrast"), f, batch))
    assert abs(rnc - _loop_rank_n_contrast(f, lab, 2.0)) <= 1e-10 * abs(rnc)
    yaw = float(demo_methods.method_loss(_method("y_aware"), f, batch))
    assert abs(yaw - _loop_y_aware(f, lab, 0.1, 1.0)) <= 1e-10 * abs(yaw)
