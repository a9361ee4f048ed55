"""Public entry points that route each call to the adapter of the embeddings' framework.

A ``torch.Tensor`` goes to :mod:`logratio.backends.torch`, a JAX array (or tracer) to
:mod:`logratio.backends.jax`, a CuPy array to :mod:`logratio.backends.cupy`; any other array
(NumPy, array-api-strict, …) to the Array API core, :mod:`logratio.loss`.  No framework is
imported unless the embeddings already are one of its arrays.
"""

from __future__ import annotations

import functools
from typing import Any

from . import loss as _core
from .backends import adapter_for

__all__ = ["log_ratio_loss", "log_ratio_loss_and_grad"]

_DISPATCH_NOTE = """
    Array types: a ``torch.Tensor`` gets a loss whose autograd derivative is the closed-form
    gradient (``loss.backward()``, ``torch.compile``, ``torch.func.grad``); a JAX array gets a
    ``jax.custom_jvp`` rule (``jax.grad``, ``jax.jvp``, ``jax.jit``, ``jax.vmap``); CuPy and
    other Array API arrays run the core on their own device.  Labels, label distances,
    anchors and masks given as NumPy arrays or lists move to the embeddings' namespace and
    device.
"""


@functools.wraps(_core.log_ratio_loss)
def log_ratio_loss(embeddings: Any, labels: Any = None, **kwargs: Any) -> Any:
    adapter = adapter_for(embeddings)
    fn = _core.log_ratio_loss if adapter is None else adapter.log_ratio_loss
    return fn(embeddings, labels, **kwargs)


@functools.wraps(_core.log_ratio_loss_and_grad)
def log_ratio_loss_and_grad(embeddings: Any, labels: Any = None, **kwargs: Any) -> Any:
    adapter = adapter_for(embeddings)
    fn = _core.log_ratio_loss_and_grad if adapter is None else adapter.log_ratio_loss_and_grad
    return fn(embeddings, labels, **kwargs)


for _fn in (log_ratio_loss, log_ratio_loss_and_grad):
    _fn.__doc__ = (_fn.__doc__ or "").rstrip() + "\n" + _DISPATCH_NOTE
