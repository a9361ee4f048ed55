"""Framework adapters, one thin module per framework, imported only when needed.

* :mod:`logratio.backends.torch`: the closed-form gradient as PyTorch autograd's derivative,
  and :class:`~logratio.backends.torch.LogRatioLoss` (a ``torch.nn.Module``);
* :mod:`logratio.backends.jax`: the same as a ``jax.custom_jvp`` rule (reverse and forward
  mode, ``jit``, ``vmap``);
* :mod:`logratio.backends.cupy`: the core on the input's GPU (CuPy has no autodiff).

:func:`adapter_for` picks the adapter of an array without importing any framework that the
caller has not imported already: like ``array_api_compat.is_torch_array`` and its siblings,
it looks the framework up in ``sys.modules``, but with a plain ``isinstance`` that
``torch.compile`` traces without a graph break.  Arrays of other namespaces (NumPy,
array-api-strict, …) use the core directly.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

__all__ = ["adapter_for"]

#: (framework module, array class, adapter module name)
_ADAPTERS = (
    ("torch", "Tensor", "torch"),
    ("jax", "Array", "jax"),  # tracers are jax.Array instances too
    ("cupy", "ndarray", "cupy"),
)


def adapter_for(array: Any) -> ModuleType | None:
    """The adapter module for ``array``'s framework, or None when the core serves it."""
    for framework, cls, name in _ADAPTERS:
        module = sys.modules.get(framework)
        if module is not None and isinstance(array, getattr(module, cls)):
            qualified = f"{__name__}.{name}"
            adapter = sys.modules.get(qualified)
            return adapter if adapter is not None else importlib.import_module(qualified)
    return None
