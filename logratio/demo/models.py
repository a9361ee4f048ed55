"""The embedding network of the demo: a small multilayer perceptron.

``f(x) = W₃ relu(W₂ relu(W₁ vec(x) + b₁) + b₂) + b₃`` maps a 24×24 image to a
``dim``-dimensional embedding.  Its weights are drawn once, in NumPy, from the same
distribution as PyTorch's default ``nn.Linear`` initialisation (``U(−1/√fan_in, 1/√fan_in)``
for weights and biases), so every method of one seed, and both backends, start from the same
network.  The PyTorch and JAX versions below compute the same function.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["init_mlp", "jax_mlp", "layer_sizes", "mlp_numpy", "torch_mlp"]

Params = list[tuple[np.ndarray, np.ndarray]]


def layer_sizes(in_features: int, hidden: int, dim: int, depth: int = 2) -> list[int]:
    """``[in_features, hidden × depth, dim]``: the widths of the perceptron's layers."""
    return [in_features, *([hidden] * depth), dim]


def init_mlp(rng: np.random.Generator, sizes: list[int]) -> Params:
    """Weights ``(fan_in, fan_out)`` and biases of each layer, float32, ``U(±1/√fan_in)``."""
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        bound = 1 / math.sqrt(fan_in)
        w = rng.uniform(-bound, bound, size=(fan_in, fan_out)).astype(np.float32)
        b = rng.uniform(-bound, bound, size=(fan_out,)).astype(np.float32)
        params.append((w, b))
    return params


def mlp_numpy(params: Params, x: np.ndarray) -> np.ndarray:
    """The perceptron in NumPy (float64): a reference for the framework versions."""
    h = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
    for i, (w, b) in enumerate(params):
        h = h @ w.astype(np.float64) + b.astype(np.float64)
        if i < len(params) - 1:
            h = np.maximum(h, 0.0)
    return h


def torch_mlp(params: Params):
    """A ``torch.nn.Sequential`` holding copies of ``params``."""
    import torch
    from torch import nn

    layers: list[nn.Module] = [nn.Flatten()]
    for i, (w, b) in enumerate(params):
        lin = nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(params) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def jax_mlp(params, x):
    """The perceptron in ``jax.numpy``: ``params`` a list of ``(w, b)`` JAX arrays."""
    import jax.numpy as jnp

    h = jnp.reshape(x, (x.shape[0], -1))
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = jnp.maximum(h, 0.0)
    return h
