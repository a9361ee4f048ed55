"""The public checking API, :mod:`logratio.testing`: the reference, the property check and
``logratio check --against``.

Deliberately wrong implementations (:mod:`wrong_impls`) must each be caught with a readable
message (the option set, the smallest example as arrays, expected against got, the
tolerance); correct ones must pass.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wrong_impls
from hypothesis import given

import logratio
from logratio import testing
from logratio.check import cli as check_cli
from logratio.testing import strategies as S

WRONG = str(Path(__file__).parent / "wrong_impls.py")


def batch_of(message: str) -> int:
    found = re.search(r"# B = (\d+), d = (\d+)", message)
    assert found, message
    return int(found.group(1))


# --------------------------------------------------------------------------- the reference


@given(S.loss_cases(max_batch=8, max_dim=3))
def test_reference_loss_is_the_dense_loss(case):
    """The public reference against :func:`logratio.log_ratio_loss` over the strategies."""
    kw = case.loss_kwargs()
    want, want_grad = logratio.log_ratio_loss_and_grad(case.embeddings, **kw)
    got, grad = testing.reference_loss_and_grad(case.embeddings, **kw)
    exp = S.expected(case)
    tol = exp.loss_tolerance(case.reduction, 1e-11)
    assert np.all(np.abs(np.asarray(got) - np.asarray(want)) <= tol)
    scale = np.max(np.abs(grad), initial=0.0)
    np.testing.assert_allclose(want_grad, grad, rtol=0, atol=1e-9 * scale + 1e-300)
    assert testing.reference_loss(case.embeddings, **kw) == pytest.approx(got, rel=0, abs=0)


def test_reference_counts_each_unordered_pair_once():
    f = np.array([[0.0], [1.0], [3.0]])
    y = np.array([0.0, 1.0, 1.0])  # anchor 0: neighbours 1 and 2 tie
    assert testing.reference_triplets(testing.reference_label_distances(y)) == [
        (0, 1, 2), (1, 2, 0), (2, 1, 0)
    ]  # fmt: skip
    dl = testing.reference_label_distances(y)
    assert testing.reference_triplets(dl, ties="exclude") == [(1, 2, 0), (2, 1, 0)]
    assert testing.reference_anchors(-1, 3) == [2]
    assert testing.reference_anchors(np.array([True, False, True]), 3) == [0, 2]
    # anchor 0 alone: one triplet (0, 1, 2), U_01 = log(1+ε) − log(1+ε) = 0, U_02 = log((9+ε)/(1+ε))
    want = np.log((9 + 1e-6) / (1 + 1e-6)) ** 2
    assert testing.reference_loss(f, y, anchors=0) == pytest.approx(want, rel=1e-14)
    per_anchor = testing.reference_loss(f, y, reduction="none")
    assert per_anchor.shape == (3,)
    assert testing.reference_loss(f, y, reduction="sum") == pytest.approx(per_anchor.sum())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ties": "both"}, "ties"),
        ({"reduction": "max"}, "reduction"),
        ({"label_metric": "cosine"}, "label_metric"),
        ({"root_eps": 1e-4}, "root_eps"),
        ({"anchors": 5}, "out of range"),
        ({"mask": np.ones((2, 2), dtype=bool)}, "mask"),
    ],
)
def test_reference_rejects_bad_options(kwargs, match):
    with pytest.raises((ValueError, IndexError), match=match):
        testing.reference_loss(np.zeros((3, 2)), np.arange(3.0), **kwargs)


def test_import_pulls_in_no_hypothesis_or_framework():
    code = (
        "import sys, logratio.testing, logratio.testing.reference, logratio.check;"
        "print(sorted(m for m in ('hypothesis', 'torch', 'jax', 'cupy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert set(testing.__all__) >= {"assert_matches_reference", "reference_loss", "strategies"}
    assert testing.strategies.LossCase is S.LossCase


# --------------------------------------------------------------------------- correct ones pass


def test_log_ratio_loss_passes_over_every_option():
    n = testing.assert_matches_reference(logratio.log_ratio_loss, max_examples=40, seed=0)
    assert n == 40


def test_log_ratio_loss_and_grad_passes_with_its_gradient():
    n = testing.assert_matches_reference(
        logratio.log_ratio_loss_and_grad, gradient=True, max_examples=30, seed=1
    )
    assert n == 30


def test_float32_passes():
    n = testing.assert_matches_reference(
        logratio.log_ratio_loss_and_grad, gradient=True, dtype="float32", max_examples=20, seed=2
    )
    assert n == 20


def test_independent_loop_passes_loss_and_gradient():
    n = testing.assert_matches_reference(
        wrong_impls.loss, gradient=wrong_impls.gradient, max_examples=30, seed=3
    )
    assert n == 30
    testing.assert_matches_reference(
        wrong_impls.loss_and_grad, gradient=True, max_examples=15, seed=4
    )


def test_torch_backend_passes():
    pytest.importorskip("torch")
    n = testing.assert_matches_reference(
        logratio.log_ratio_loss, options={"reduction": "sum"}, backend="torch", max_examples=10,
        seed=5,
    )  # fmt: skip
    assert n == 10


# --------------------------------------------------------------------------- wrong ones fail


def test_copied_anchor_gradient_passes_the_loss_and_fails_the_gradient():
    def loss_only(f, y, *, squared=True, ties="include", reduction="mean"):
        return wrong_impls.copied_anchor_gradient(f, y, squared=squared, ties=ties,
                                                  reduction=reduction)[0]  # fmt: skip

    testing.assert_matches_reference(loss_only, max_examples=30, seed=6)
    with pytest.raises(AssertionError) as info:
        testing.assert_matches_reference(
            wrong_impls.copied_anchor_gradient, gradient=True, max_examples=30, seed=6
        )
    message = str(info.value)
    assert "copied_anchor_gradient does not match" in message
    assert "option set: squared=" in message
    assert "gradient ∂loss/∂embeddings (the loss itself agrees)" in message
    assert "embeddings = array(" in message and "labels = array(" in message
    assert re.search(r"largest \|difference\| .* > tolerance .*ρ = 1e-06", message)
    assert batch_of(message) <= 4  # shrunk: three rows are enough


def test_mean_over_anchors_is_caught():
    with pytest.raises(AssertionError) as info:
        testing.assert_matches_reference(wrong_impls.mean_over_anchors, max_examples=50, seed=7)
    message = str(info.value)
    assert "reduction='mean'" in message
    assert re.search(r"loss: expected .*\n\s+got .*\n\s+\|difference\| .* > tolerance", message)
    assert "δ = 1e-07 per log-distance" in message
    assert batch_of(message) <= 6  # shrunk (with every row an anchor, B = 3 agrees by chance)
    # the other reductions are right
    for reduction in ("sum", "none"):
        testing.assert_matches_reference(
            wrong_impls.mean_over_anchors, options={"reduction": reduction, "ties": "include"},
            max_examples=20, seed=8,
        )  # fmt: skip


def test_ties_counted_twice_is_caught():
    with pytest.raises(AssertionError) as info:
        testing.assert_matches_reference(
            wrong_impls.ties_twice, options={"ties": "include"}, max_examples=50, seed=9
        )
    message = str(info.value)
    assert "option set: ties='include'" in message
    assert "loss: expected" in message or "per-anchor losses: expected" in message
    assert batch_of(message) <= 4
    # without ties nothing is counted twice
    testing.assert_matches_reference(
        wrong_impls.ties_twice, options={"ties": "exclude"}, max_examples=20, seed=10
    )


def test_an_exception_is_a_mismatch_with_the_example():
    def broken(f, y, *, reduction="mean"):
        if f.shape[0] > 2:
            raise RuntimeError("cannot do batches above 2")
        return 0.0

    with pytest.raises(AssertionError) as info:
        testing.assert_matches_reference(broken, max_examples=30, seed=11)
    message = str(info.value)
    assert "it raised RuntimeError: cannot do batches above 2" in message
    assert batch_of(message) == 3


def test_option_validation():
    with pytest.raises(ValueError, match="unknown options"):
        testing.assert_matches_reference(wrong_impls.loss, options={"temperature": 1.0})
    with pytest.raises(ValueError, match="dtype"):
        testing.assert_matches_reference(wrong_impls.loss, dtype="float16")
    assert testing.matching.accepted_options(wrong_impls.loss) == ("squared", "ties", "reduction")
    assert len(list(testing.matching.option_sets(("squared", "ties", "reduction")))) == 12


# --------------------------------------------------------------------------- the command line


def test_cli_against_a_wrong_file_exits_1_and_names_the_option_set(capsys):
    code = check_cli.main(
        ["--against", f"{WRONG}:mean_over_anchors", "--examples", "20", "--seed", "0"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"FAIL  option set squared=\w+, ties='\w+', reduction='mean':", out)
    assert "smallest failing example" in out and "embeddings = array(" in out
    assert "option sets disagree with the float64 reference" in out
    assert "ok    squared=True, ties='include', reduction='sum': 20 examples" in out


def test_cli_against_a_correct_module_exits_0_and_counts(capsys):
    # tests/ is on sys.path (conftest.py): a dotted module name works as well as a path
    code = check_cli.main(["--against", "wrong_impls:loss", "--against-gradient",
                           "wrong_impls:gradient", "--examples", "5", "--seed", "0"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "60 examples over 12 option sets agree with the float64 reference" in out


def test_cli_against_gradient_and_fixed_options(capsys):
    code = check_cli.main(
        ["--against", f"{WRONG}:copied_anchor_gradient", "--returns-gradient", "--option",
         "reduction=sum", "--option", "squared=True", "--examples", "20", "--seed", "0"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  squared=True, ties='include', reduction='sum'" in out
    assert "wrong_impls.copied_anchor_gradient does not match" in out
    assert "the loss itself agrees" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--against", "no_such_module_here:loss"],
        ["--against", f"{WRONG}:no_such_function"],
        ["--against", "wrong_impls"],
        ["--against", "wrong_impls:loss", "--option", "temperature=1"],
        ["--against", "wrong_impls:loss", "--examples", "0"],
        ["--option", "reduction=sum"],
    ],
)
def test_cli_against_usage_errors_exit_2(argv, capsys):
    assert check_cli.main(argv) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name", ["reference_rank_n_contrast_loss_and_grad", "reference_y_aware_infonce_loss_and_grad"]
)
def test_contrastive_references(name):
    """The public loop references of the other two losses: their gradient is their own
    loss's central differences, and the engine agrees with them (float64)."""
    from logratio._reference import finite_differences

    ref = getattr(testing, name)
    fn = (
        logratio.rank_n_contrast_loss_and_grad
        if "rank" in name
        else logratio.y_aware_infonce_loss_and_grad
    )
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(6, 3)), rng.integers(0, 3, size=6).astype(np.float64)
    mask = rng.random((6, 6)) < 0.8
    for kw in ({}, {"anchors": [2, 0, 2], "reduction": "sum"}, {"mask": mask}):
        loss, grad = ref(z, y, **kw)
        fd = finite_differences(lambda x, kw=kw: float(ref(x, y, **kw)[0]), z)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
        got, got_grad = fn(z, y, **kw)
        assert float(got) == pytest.approx(float(loss), rel=1e-12)
        np.testing.assert_allclose(got_grad, grad, rtol=1e-10, atol=1e-13)
