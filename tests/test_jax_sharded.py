"""The global-batch loss over a mapped JAX axis (``axis_name=``): shard_map and pmap.

Four host devices need ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` before JAX is
imported, and this process may have imported it already, so the checks run in a subprocess
(``tests/_jax_sharded_worker.py``, bounded by a timeout) that reports the relative errors
of the sharded value and gradient against the single-device loss of the whole batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

HERE = Path(__file__).parent
TIMEOUT_S = 180
REL = 1e-12  # float64
#: the worker's cases (it cannot be imported here: it sets XLA_FLAGS and imports JAX)
CASES = [
    "mean", "sum-anchors-first", "none", "euclid-root-exclude-callable",
    "plugin-stress", "plugin-cosine-none", "y-aware", "y-aware-released-none",
    "rank-n-contrast", "rank-n-contrast-none",
]  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("jax_sharded") / "report.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE.parent), env.get("PYTHONPATH")) if p)
    env.pop("XLA_FLAGS", None)  # the worker sets the device count itself
    try:
        done = subprocess.run(
            [sys.executable, str(HERE / "_jax_sharded_worker.py"), str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:  # subprocess.run has killed the child
        pytest.fail(f"the JAX worker did not finish within {TIMEOUT_S} s")
    assert done.returncode == 0 and out.exists(), done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert "failure" not in result, result["failure"]
    return result


@pytest.mark.parametrize("name", CASES)
def test_sharded_value_and_grad_equal_single_device(report, name):
    """``jax.value_and_grad`` of the shard-mapped loss (and, for "mean" and "none",
    ``jax.pmap`` and ``log_ratio_loss_and_grad`` inside the map) match one device."""
    errors = report["cases"][name]
    assert "shard_map value" in errors and "shard_map grad" in errors
    bad = {k: e for k, e in errors.items() if not e <= REL}
    assert not bad, bad


def test_full_checks_ran(report):
    mean = set(report["cases"]["mean"])
    assert {"pmap value", "pmap loss_and_grad grad", "shard_map loss_and_grad grad"} <= mean
    assert "pmap value" in report["cases"]["none"]


def test_none_loss_and_grad_is_gradient_of_the_sum(report):
    assert report["none loss_and_grad"]["shard_map loss_and_grad grad"] <= REL


def test_unshardable_inputs_refused(report):
    assert "cannot be sharded" in report["refusals"]["label_distances"]
    assert "mask is not supported" in report["refusals"]["mask"]


def test_axis_name_refused_for_numpy():
    import numpy as np

    import logratio

    with pytest.raises(ValueError, match=r"jax\.shard_map or jax\.pmap"):
        logratio.log_ratio_loss(np.random.rand(4, 3), np.random.rand(4), axis_name="x")
