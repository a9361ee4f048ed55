"""Hypothesis strategies for the log-ratio loss, shared by the NumPy and cross-backend suites.

The strategies, :class:`LossCase` and :func:`expected` are public, in
:mod:`logratio.testing.cases` and :mod:`logratio.testing.strategies` (see its docstring for
the grids, scales and sizes); this module re-exports them for the test files, with
Hypothesis' ``hnp``.

Another backend runs a case with ``case.loss_kwargs(convert=to_backend)`` and compares with
``expected(case)``, computed by the float64 reference loops.
"""

from __future__ import annotations

from hypothesis.extra import numpy as hnp  # noqa: F401  (the test files use S.hnp)

from logratio.testing.cases import *  # noqa: F403
from logratio.testing.strategies import *  # noqa: F403
