"""Framework adapters, one thin module per framework, imported only when needed.

* :mod:`logratio.backends.torch`: the closed-form gradient as PyTorch autograd's derivative,
  and :class:`~logratio.backends.torch.LogRatioLoss` (a ``torch.nn.Module``);
* :mod:`logratio.backends.jax`: the same as a ``jax.custom_jvp`` rule (reverse and forward
  mode, ``jit``, ``vmap``);
* :mod:`logratio.backends.cupy`: the core on the input's GPU (CuPy has no autodiff);
* :mod:`logratio.backends.array_api`: the core itself, for NumPy and any other namespace.

Every adapter has the same two functions, ``loss(embeddings, labels, label_distances,
anchors, mask, options)`` and ``loss_and_grad(...)`` with the same arguments, ``options``
a :class:`~logratio.options.LossOptions`.

:func:`adapter_for` picks the adapter of an array without importing any framework that the
caller has not imported already: like ``array_api_compat.is_torch_array`` and its siblings,
it looks the framework up in ``sys.modules``, but with a plain ``isinstance`` that
``torch.compile`` traces without a graph break.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

from . import array_api

__all__ = ["adapter_for"]

#: (framework module, array class, adapter module name)
_ADAPTERS = (
    ("torch", "Tensor", "torch"),
    ("jax", "Array", "jax"),  # tracers are jax.Array instances too
    ("cupy", "ndarray", "cupy"),
)


def adapter_for(array: Any) -> ModuleType:
    """The adapter module for ``array``'s framework (:mod:`.array_api` for any other)."""
    for framework, cls, name in _ADAPTERS:
        module = sys.modules.get(framework)
        if module is not None and isinstance(array, getattr(module, cls)):
            qualified = f"{__name__}.{name}"
            adapter = sys.modules.get(qualified)
            return adapter if adapter is not None else importlib.import_module(qualified)
    return array_api
