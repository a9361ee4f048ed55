"""Hypothesis profiles, the ``xp`` fixture and its markers.

Profiles: "ci" (quick, used when CI is set), "dev" (default), "thorough"; select one with
``HYPOTHESIS_PROFILE=thorough pytest``.

``xp`` is every backend of :mod:`logratio.testing.backends` in turn, a
:class:`~logratio.testing.backends.Backend` on the CPU (CuPy: its first CUDA device); a
backend that cannot be had is skipped with the registry's reason.  Compare its results with
:func:`assertions.assert_close`.  Two markers narrow it, read against the capabilities each
backend declares once (:data:`logratio.testing.backends.CAPABILITIES`):

* ``@pytest.mark.backends("numpy", "jax")``: only these backends (the others deselected);
* ``@pytest.mark.requires("grad")``: backends without the capability are skipped, saying so.
"""

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from logratio.testing import backends

sys.path.insert(0, str(Path(__file__).parent))

# The PyTorch engine (off by default) compiles its kernel once per formula and input structure
# (seconds each): on for the tests that are about it (the ``torch`` backend of the ``xp``
# fixture, the engine's own tests), off elsewhere unless LOGRATIO_COMPILE=1 (everywhere).
# ``torch-eager`` runs the same property suite with it off.

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


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "backends(*names): the xp fixture runs these backends only (others deselected)"
    )
    config.addinivalue_line(
        "markers",
        "requires(*capabilities): the xp fixture skips backends without them "
        "(logratio.testing.backends.CAPABILITIES: grad, axis_name, compile)",
    )


def pytest_collection_modifyitems(config, items):
    """The ``backends`` and ``requires`` markers, read against the declared capabilities."""
    kept, dropped = [], []
    for item in items:
        name = item.callspec.params.get("xp") if hasattr(item, "callspec") else None
        only = item.get_closest_marker("backends")
        if name is not None and only is not None and name not in only.args:
            dropped.append(item)
            continue
        need = item.get_closest_marker("requires")
        if name is not None and need is not None:
            missing = sorted(set(need.args) - backends.CAPABILITIES[name])
            if missing:
                item.add_marker(pytest.mark.skip(reason=f"{name} lacks {', '.join(missing)}"))
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


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
    elif b.name == "jax":
        yield dataclasses.replace(b, context=_with_room_for_executables(b.context))
    else:
        yield b


def _with_room_for_executables(context):
    """``context``, entered after making room for XLA's executables: each one JAX compiles
    holds memory mappings (about a hundred), and a process that keeps a few hundred (a thorough
    run compiles a program per shape and option set) reaches the kernel's limit
    (vm.max_map_count) and dies in the compiler.  Past a quarter of the limit, JAX's caches
    are cleared (a later call compiles again)."""

    @contextlib.contextmanager
    def roomy():
        if _map_count() > _map_limit() // 4:
            sys.modules["jax"].clear_caches()
        with context():
            yield

    return roomy


def _map_count() -> int:
    try:
        with open("/proc/self/maps") as maps:
            return sum(1 for _ in maps)
    except OSError:  # not Linux: nothing to count
        return 0


def _map_limit() -> int:
    try:
        with open("/proc/sys/vm/max_map_count") as limit:
            return int(limit.read())
    except (OSError, ValueError):
        return 65530


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
