"""Framework adapters, one thin module per framework, imported only when needed.

* :mod:`logratio.backends.torch`: the closed-form gradient as PyTorch autograd's derivative,
  and :class:`~logratio.backends.torch.LogRatioLoss` (a ``torch.nn.Module``);
* :mod:`logratio.backends.jax`: the same as a ``jax.custom_jvp`` rule (reverse and forward
  mode, ``jit``, ``vmap``);
* :mod:`logratio.backends.cupy`: the core on the input's GPU (CuPy has no autodiff).

:func:`adapter_for` picks the adapter of an array without importing any framework that the
caller has not imported already (``array_api_compat.is_*_array`` look at ``sys.modules``).
Arrays of other namespaces (NumPy, array-api-strict, …) use the core directly.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import array_api_compat

__all__ = ["adapter_for"]

_ADAPTERS = (
    (array_api_compat.is_torch_array, "torch"),
    (array_api_compat.is_jax_array, "jax"),
    (array_api_compat.is_cupy_array, "cupy"),
)


def adapter_for(array: Any) -> ModuleType | None:
    """The adapter module for ``array``'s framework, or None when the core serves it."""
    for is_kind, name in _ADAPTERS:
        if is_kind(array):
            return importlib.import_module(f"{__name__}.{name}")
    return None
