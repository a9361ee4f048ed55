"""``logratio check`` and the command line: packaged reference, comparison, exit code."""

from __future__ import annotations

import importlib.util
import itertools
import json
import subprocess
import sys
import types

import numpy as np
import pytest
import reference
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import logratio
from logratio import _reference, check, cli
from logratio.testing import backends


@st.composite
def small_problems(draw):
    b = draw(st.integers(0, 7))
    d = draw(st.integers(1, 3))
    f = draw(hnp.arrays(np.float64, (b, d), elements=st.floats(-4, 4, allow_subnormal=False)))
    y = draw(hnp.arrays(np.float64, (b, 2), elements=st.integers(-2, 2).map(float)))
    opts = {
        "squared": draw(st.booleans()),
        "ties": draw(st.sampled_from(["include", "exclude"])),
        "reduction": draw(st.sampled_from(["mean", "sum"])),
    }
    if b and draw(st.booleans()):
        opts["anchors"] = draw(st.lists(st.integers(0, b - 1), min_size=1, max_size=3))
    if draw(st.booleans()):
        opts["mask"] = draw(hnp.arrays(np.bool_, (b, b)))
    metric = draw(st.sampled_from(["euclidean", "sqeuclidean", "cityblock"]))
    return f, y, metric, opts


@given(small_problems())
def test_packaged_reference_agrees_with_unordered_pairs(case):
    """The loop reference against the loss written over unordered pairs (itertools).

    ``l`` is symmetric in ``i, j``, so summing it over every unordered neighbour pair (dropping
    tied pairs with ``ties="exclude"``) must give the reference's ordered enumeration.
    """
    f, y, metric, opts = case
    dl = _reference.label_distances(y, metric)
    b = f.shape[0]
    y2 = np.asarray(y, dtype=np.float64)
    y2 = y2[:, None] if y2.ndim == 1 else y2
    for a, c in itertools.product(range(b), repeat=2):
        diff = y2[a] - y2[c]
        want = {
            "cityblock": np.abs(diff).sum(),
            "sqeuclidean": (diff**2).sum(),
            "euclidean": np.sqrt((diff**2).sum()),
        }[metric]
        assert dl[a, c] == pytest.approx(want, rel=1e-15, abs=0)
    mask = opts.get("mask")
    total, count = 0.0, 0
    for a in opts.get("anchors", range(b)):
        others = [k for k in range(b) if k != a and (mask is None or mask[a, k])]
        for i, j in itertools.combinations(others, 2):
            if opts["ties"] == "exclude" and dl[a, i] == dl[a, j]:
                continue
            total += reference.triplet_term(f, dl, a, i, j, opts["squared"])
            count += 1
    want = total / count if opts["reduction"] == "mean" and count else total
    loss, _ = _reference.loss_and_grad(f, dl, **opts)
    assert loss == pytest.approx(want, rel=1e-12, abs=1e-300)


def test_packaged_reference_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    for squared in (True, False):
        f = rng.normal(size=(6, 3))
        dl = _reference.label_distances(rng.integers(0, 3, size=6), "euclidean")
        _, grad = _reference.loss_and_grad(f, dl, squared=squared, ties="exclude")
        fd = _reference.finite_differences(
            lambda x, s=squared, d=dl: _reference.loss_and_grad(x, d, squared=s, ties="exclude")[0],
            f,
        )
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(grad.sum(axis=0), 0, atol=1e-12)  # translation invariance


def test_problems_cover_the_options_and_match_the_test_reference():
    problems = check.make_problems(seed=3)
    seen = {key for p in problems for key in p.options}
    assert {"anchors", "squared", "ties", "mask", "reduction", "label_metric"} <= seen
    assert any(p.label_distances is not None for p in problems)
    assert {p.function for p in problems} == set(check.problems.LOSSES)
    for p in problems:
        if p.function != "log_ratio":  # the contrastive losses' own restatements
            from test_rank_n_contrast import pairs_loss
            from test_y_aware import restated

            opts = dict(p.options)
            tau = opts.pop("temperature")
            if p.function == "rank_n_contrast":
                want = pairs_loss(p.embeddings, p.labels, tau=tau, **opts)
            else:
                want = restated(p.embeddings, p.labels, tau=tau, **opts)
            assert np.sum(p.loss) == pytest.approx(np.sum(want), rel=1e-12)
            assert np.abs(p.grad).max() > 0
            continue
        dl = p.label_distances
        if dl is None:
            dl = reference.label_distance_matrix(
                p.labels, p.options.get("label_metric", "euclidean")
            )
        opts = {k: val for k, val in p.options.items() if k != "label_metric"}
        if isinstance(opts.get("anchors"), int):
            opts["anchors"] = [opts["anchors"]]
        assert p.loss == pytest.approx(reference.loss(p.embeddings, dl, **opts), rel=1e-12)
        np.testing.assert_allclose(p.grad, reference.gradient(p.embeddings, dl, **opts), rtol=1e-10)
        assert p.loss > 0 and np.abs(p.grad).max() > 0


def test_numpy_and_strict_rows_pass():
    rows, _ = check.run_check(("numpy", "array_api_strict"))
    assert [(r.backend, r.dtype) for r in rows[1:]] == [
        ("numpy", "float32"), ("numpy", "float64"),
        ("array_api_strict", "float32"), ("array_api_strict", "float64"),
    ]  # fmt: skip
    for r in rows:
        assert r.ok, (r.backend, r.dtype, r.error, r.failures)
    assert rows[2].fd_error is not None and rows[2].fd_error < check.FD_TOLERANCE
    assert rows[2].grad_error < 1e-12 and rows[1].grad_error < 1e-4
    table = check.format_table(rows)
    assert "numpy" in table and "grad err" in table and "FAIL" not in table


def test_half_precision_rows():
    names = ("numpy", "torch") if importlib.util.find_spec("torch") else ("numpy",)
    rows, _ = check.run_check(names, dtypes=check.HALF_DTYPES)
    assert {(r.backend, r.dtype) for r in rows[1:]} >= {("numpy", "float16")}
    for r in rows:
        assert r.ok, (r.backend, r.dtype, r.error, r.failures)
    for r in rows[1:]:  # the gradient is rounded to the half type, the loss is float32
        assert 0 < r.grad_error and r.loss_error < 1e-5


def test_a_wrong_gradient_is_caught(monkeypatch):
    original = logratio.log_ratio_loss_and_grad

    def off_by_one_percent(*args, **kwargs):
        loss, grad = original(*args, **kwargs)
        return loss, grad * 1.01

    monkeypatch.setattr(logratio, "log_ratio_loss_and_grad", off_by_one_percent)
    rows, _ = check.run_check(("numpy",))
    assert [r.ok for r in rows] == [True, False, False]
    assert any("gradient" in f for f in rows[1].failures)
    assert any("finite differences" in f for f in rows[2].failures)


def test_a_wrong_loss_and_a_crash_are_caught(monkeypatch):
    original = logratio.log_ratio_loss_and_grad
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise RuntimeError("boom")
        loss, grad = original(*args, **kwargs)
        return loss * (1 + 1e-3), grad

    monkeypatch.setattr(logratio, "log_ratio_loss_and_grad", flaky)
    rows, _ = check.run_check(("numpy",))
    assert any("loss" in f for f in rows[1].failures)  # float32: 1e-3 > tolerance
    assert rows[2].error == "RuntimeError: boom"


def test_missing_backend_is_a_note(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "cupy" else real(name)
    )
    found, notes = backends.discover(("numpy", "cupy"))
    assert [b.name for b in found] == ["numpy"]
    assert notes == ["cupy: not installed"]


def test_cli_check_exit_code_and_json(tmp_path, capsys, monkeypatch):
    out = tmp_path / "check.json"
    assert cli.main(["check", "--backend", "numpy", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "numpy" in printed and "3/3 rows agree" in printed
    data = json.loads(out.read_text())
    assert [r["ok"] for r in data["rows"]] == [True, True, True]

    def broken(*args, **kwargs):
        raise ValueError("nope")

    monkeypatch.setattr(logratio, "log_ratio_loss_and_grad", broken)
    assert cli.main(["check", "--backend", "numpy"]) == 1
    assert "FAIL numpy cpu float32: ValueError: nope" in capsys.readouterr().out


def test_cli_dispatches_demo_like_check(monkeypatch):
    """``demo`` is an argparse subcommand like ``check``: its module's options, its ``run``."""
    seen = []
    fake = types.ModuleType("logratio.demo")
    fake.HELP = fake.DESCRIPTION = "fake demo"
    fake.add_arguments = lambda parser: (
        parser.add_argument("--quick", action="store_true"),
        parser.add_argument("--seed", type=int, default=0),
    )
    fake.run = lambda args: seen.append((args.quick, args.seed)) or 0
    monkeypatch.setitem(sys.modules, "logratio.demo", fake)
    assert cli.main(["demo", "--quick", "--seed", "3"]) == 0
    assert seen == [(True, 3)]
    fake.run = lambda args: 3
    assert cli.main(["demo"]) == 3
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--no-such-option"])
    assert exc.value.code == 2


def test_cli_help_lists_both_commands_and_their_options(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    top = capsys.readouterr().out
    assert "check" in top and "demo" in top
    for command, option in (("check", "--json"), ("demo", "--workers")):
        with pytest.raises(SystemExit) as exc:
            cli.main([command, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: logratio {command}" in out and option in out


def test_cli_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["check", "--backend", "tensorflow"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and logratio.__version__ in capsys.readouterr().out


def test_cli_check_json_path_is_checked_before_running(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(logratio, "log_ratio_loss_and_grad", lambda *a, **k: calls.append(1))
    for path in (tmp_path / "missing" / "x.json", tmp_path):
        assert cli.main(["check", "--backend", "numpy", "--json", str(path)]) == 2
        err = capsys.readouterr().err
        assert "--json" in err and str(path) in err
    assert not calls, "the check ran before failing"
    assert not (tmp_path / "missing").exists()


def test_cli_check_requested_backend_that_cannot_be_had_fails(capsys, monkeypatch):
    if importlib.util.find_spec("cupy") is None:  # not installed: the registry says so
        assert cli.main(["check", "--backend", "numpy", "--backend", "cupy"]) == 1
        captured = capsys.readouterr()
        assert "--backend cupy" in captured.err and "not installed" in captured.err
        assert "rows agree" not in captured.out

    def broken():
        raise RuntimeError("broken install")

    monkeypatch.setitem(backends._FACTORIES, "jax", broken)
    assert cli.main(["check", "--backend", "jax"]) == 1
    captured = capsys.readouterr()
    assert "--backend jax" in captured.err and "RuntimeError: broken install" in captured.err
    assert "rows agree" not in captured.out


def test_check_without_backend_keeps_missing_ones_as_notes(capsys, monkeypatch):
    for name in ("torch", "torch-eager", "jax", "cupy", "array_api_strict"):
        monkeypatch.setitem(backends._FACTORIES, name, _unavailable)
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    assert "note: cupy: no such backend here" in out and "3/3 rows agree" in out


def _unavailable():
    raise backends.BackendUnavailable("no such backend here")


def test_module_entry_point_and_lazy_imports():
    code = (
        "import sys, logratio, logratio.cli, logratio.check, logratio.metrics\n"
        "bad = [m for m in ('torch', 'jax', 'cupy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    done = subprocess.run(
        [sys.executable, "-m", "logratio", "check", "--backend", "numpy"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "numpy" in done.stdout
