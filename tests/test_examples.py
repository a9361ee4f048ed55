"""The runnable examples run: each in a fresh process, with a time limit."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NEEDS = {
    "quickstart.py": (),
    "torch_train_step.py": ("torch",),
    "jax_grad.py": ("jax",),
    "sampler_and_metrics.py": ("torch",),
    "pml_train.py": ("torch", "pytorch_metric_learning"),
    "jax_sharded.py": ("jax",),
}


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_example_runs(name):
    missing = [m for m in NEEDS[name] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)}")
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent)}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True, text=True, timeout=300, env=env, cwd=EXAMPLES.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "the example printed nothing"


def test_every_example_is_listed():
    """A new example file must be added here (or to the CUDA/torchrun ones below)."""
    elsewhere = {"cupy_by_hand.py", "ddp_train.py"}  # a GPU; torchrun (tests/test_distributed)
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(NEEDS) | elsewhere
