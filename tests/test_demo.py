"""Tests of ``logratio demo``: its pieces against independent references, and a smoke run.

The references: the circle distance from complex phases, rotations from ``numpy.rot90`` and
from image moments, the perceptron and the triplet losses from float64 NumPy loops, the JAX
Adam from ``torch.optim.Adam``.  The smoke run trains every method for a few steps.
"""

from __future__ import annotations

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


def _loop_binary_triplet(f: np.ndarray, pos: np.ndarray, margin: float) -> float:
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    terms = []
    for p in range(len(f)):
        for n in range(len(f)):
            if pos[p] and not pos[n] and n != 0 and p != 0:
                dp = np.sum((f[0] - f[p]) ** 2)
                dn = np.sum((f[0] - f[n]) ** 2)
                terms.append(max(0.0, dp - dn + margin))
    return float(np.mean(terms))


def _loop_dense_triplet(f: np.ndarray, y: np.ndarray, margin: float) -> float:
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    lab = reference_circle_distance(y, y)
    terms = []
    for i in range(1, len(f)):
        for j in range(1, len(f)):
            if i != j and lab[0, i] < lab[0, j]:
                di = np.sum((f[0] - f[i]) ** 2)
                dj = np.sum((f[0] - f[j]) ** 2)
                terms.append(max(0.0, di - dj + margin))
    return float(np.mean(terms))


@given(st.integers(0, 2**32 - 1), st.integers(4, 12))
def test_triplet_baselines_match_loops(seed, batch):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(batch, 3))
    y = rng.uniform(0, 2 * math.pi, size=batch)
    pos = np.zeros(batch, dtype=bool)
    pos[1 : 1 + rng.integers(1, batch - 2)] = True
    binary = demo_methods.Method("b", "b", "binary_triplet", False, True)
    dense = demo_methods.Method("d", "d", "dense_triplet", False, True)
    b = demo_methods.Batch(np.arange(batch), y, positives=pos)
    got = demo_methods.method_loss(binary, f, b, 0.2)
    np.testing.assert_allclose(float(got), _loop_binary_triplet(f, pos, 0.2), rtol=1e-10)
    d = demo_methods.make_batch(dense, list(range(batch)), y, np.zeros((batch, 1), dtype=int))
    got = demo_methods.method_loss(dense, f, d, 0.2)
    np.testing.assert_allclose(float(got), _loop_dense_triplet(f, y, 0.2), rtol=1e-10)


def test_binary_positives_are_the_anchors_label_neighbours():
    y = np.array([0.0, 0.1, 3.0, 6.2, 1.0])
    table = np.array([[1, 3], [0, 3], [4, 1], [0, 1], [1, 0]])
    method = demo_methods.METHODS[2]
    batch = demo_methods.make_batch(method, [0, 2, 1, 4, 3], y, table)
    np.testing.assert_array_equal(batch.positives, [False, False, True, False, True])


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
    assert keys == {m.key for m in demo_methods.METHODS}
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
    for method in demo_methods.METHODS:
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
