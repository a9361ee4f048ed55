"""Framework adapters, one thin module per framework, imported only when needed.

* :mod:`logratio.backends.torch`: the closed-form gradient as PyTorch autograd's derivative,
  (the ``torch.nn.Module`` losses are in :mod:`logratio.nn`);
* :mod:`logratio.backends.jax`: the same as a ``jax.custom_jvp`` rule (reverse and forward
  mode, ``jit``, ``vmap``);
* :mod:`logratio.backends.cupy`: the engine on the input's GPU (CuPy has no autodiff);
* :mod:`logratio.backends.array_api`: the engine itself, for NumPy and any other namespace.

Every adapter implements :class:`Adapter`: ``loss(arrays, spec, axis_name=None)`` and
``loss_and_grad(...)`` with the same arguments, ``arrays`` one
:class:`~logratio._problem.Arrays` and ``spec`` a :class:`~logratio.options.Spec`.

:func:`adapter_for` picks the adapter of an array without importing any framework that the
caller has not imported already: like ``array_api_compat.is_torch_array`` and its siblings,
it looks the framework up in ``sys.modules``, but with a plain ``isinstance`` that
``torch.compile`` traces without a graph break.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Protocol, cast, runtime_checkable

from .._problem import Arrays
from ..options import Spec
from . import array_api

__all__ = ["Adapter", "adapter_for", "call"]


@runtime_checkable
class Adapter(Protocol):
    """What every framework adapter provides (each is a module)."""

    #: whether ``axis_name=`` is supported (the loss of a batch sharded over a mapped axis)
    SUPPORTS_AXIS_NAME: bool

    def loss(self, arrays: Arrays, spec: Spec, axis_name: Any = None) -> Any:
        """The reduced loss; differentiable where the framework differentiates."""
        ...

    def loss_and_grad(self, arrays: Arrays, spec: Spec, axis_name: Any = None) -> tuple[Any, Any]:
        """The reduced loss and its closed-form gradient, in the embeddings' dtype."""
        ...


#: (framework module, array class, adapter module name)
_ADAPTERS = (
    ("torch", "Tensor", "torch"),
    ("jax", "Array", "jax"),  # tracers are jax.Array instances too
    ("cupy", "ndarray", "cupy"),
)


def adapter_for(array: Any) -> Adapter:
    """The adapter for ``array``'s framework (:mod:`.array_api` for any other)."""
    for framework, cls, name in _ADAPTERS:
        module = sys.modules.get(framework)
        if module is not None and isinstance(array, getattr(module, cls)):
            qualified = f"{__name__}.{name}"
            adapter = sys.modules.get(qualified)
            if adapter is None:
                adapter = importlib.import_module(qualified)
            return cast(Adapter, adapter)
    return cast(Adapter, array_api)


def call(method: str, arrays: Arrays, spec: Spec, axis_name: Any = None) -> Any:
    """The adapter's ``method`` (``"loss"`` or ``"loss_and_grad"``) for the embeddings of
    ``arrays``; ``axis_name`` only with an adapter of a mapping framework."""
    adapter = adapter_for(arrays.embeddings)
    fn = getattr(adapter, method)
    if axis_name is None:
        return fn(arrays, spec)
    if not adapter.SUPPORTS_AXIS_NAME:
        e = arrays.embeddings
        raise ValueError(
            f"axis_name={axis_name!r} applies to JAX arrays inside jax.shard_map or jax.pmap; "
            f"got {type(e).__module__}.{type(e).__name__} embeddings.  For PyTorch across "
            "processes, use logratio.distributed"
        )
    return fn(arrays, spec, axis_name=axis_name)
