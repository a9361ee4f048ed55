"""Hypothesis profiles and the ``xp`` fixture.

Profiles: "ci" (quick, used when CI is set), "dev" (default), "thorough"; select one with
``HYPOTHESIS_PROFILE=thorough pytest``.

``xp`` is every backend of :mod:`logratio.testing.backends` in turn, a
:class:`~logratio.testing.backends.Backend` on the CPU (CuPy: its first CUDA device); a
backend that cannot be had is skipped with the registry's reason.  Compare its results with
:func:`assertions.assert_close`.
"""

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from logratio.testing import backends

sys.path.insert(0, str(Path(__file__).parent))

# The PyTorch engine compiles its kernel once per formula and input structure (seconds each):
# on for the tests that are about it (the ``torch`` backend of the ``xp`` fixture, the engine's
# own tests), off elsewhere unless LOGRATIO_COMPILE is set (LOGRATIO_COMPILE=1: everywhere).
# ``torch-eager`` runs the same property suite with it off.
os.environ.setdefault("LOGRATIO_COMPILE", "0")

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="module", params=backends.NAMES)
def xp(request) -> Iterator[backends.Backend]:
    """The backend under test (skipped, with the reason, when its package or device is
    missing)."""
    try:
        b = backends.get(request.param)
    except backends.BackendUnavailable as err:
        pytest.skip(f"{request.param}: {err}")
    if b.name == "torch-eager":  # the engine off for every call of the module, not only
        with b.context():  # those inside xp.context()
            yield b
    elif b.name == "torch":  # the default of a user's call: the engine on
        with _environment(LOGRATIO_COMPILE="1"):
            yield b
    else:
        yield b


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
