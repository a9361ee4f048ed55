"""Hypothesis profiles and the ``xp`` fixture.

Profiles: "ci" (quick, used when CI is set), "dev" (default), "thorough"; select one with
``HYPOTHESIS_PROFILE=thorough pytest``.

``xp`` is every backend of :mod:`logratio.testing.backends` in turn, a
:class:`~logratio.testing.backends.Backend` on the CPU (CuPy: its first CUDA device); a
backend that cannot be had is skipped with the registry's reason.  Compare its results with
:func:`assertions.assert_close`.
"""

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from logratio.testing import backends

sys.path.insert(0, str(Path(__file__).parent))

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
def xp(request) -> backends.Backend:
    """The backend under test (skipped, with the reason, when its package or device is
    missing)."""
    try:
        return backends.get(request.param)
    except backends.BackendUnavailable as err:
        pytest.skip(f"{request.param}: {err}")
