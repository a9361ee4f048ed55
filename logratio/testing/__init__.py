"""Tools for checking an implementation of the log-ratio loss against this one.

* :mod:`logratio.testing.backends`: how to reach each array library (conversion, devices,
  synchronisation, autodiff), shared by ``logratio check``, the test suite and the benchmarks.
"""

__all__ = ["backends"]
