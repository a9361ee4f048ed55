"""JAX training of the demo's network: the perceptron in ``jax.numpy`` and a hand-written Adam.

Adam (Kingma & Ba, 2015) with PyTorch's defaults: ``m ← β₁m + (1 − β₁)g``,
``v ← β₂v + (1 − β₂)g²``, ``θ ← θ − lr · m̂ / (√v̂ + ε)`` with ``m̂ = m/(1 − β₁ᵗ)``,
``v̂ = v/(1 − β₂ᵗ)``, β₁ = 0.9, β₂ = 0.999, ε = 1e-8.  One training step (loss, gradient,
update) is compiled with ``jax.jit`` per method; the log-ratio loss goes through
:func:`logratio.log_ratio_loss`, whose JAX adapter supplies the closed-form gradient.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .methods import Batch, Method, method_loss
from .models import Params, jax_mlp

__all__ = ["JaxTrainer", "adam_init", "adam_update", "get_threads", "set_threads"]

BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8


def adam_init(params):
    """Zero first and second moments and step 0."""
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return zeros, zeros, jnp.zeros((), dtype=jnp.int32)


def adam_update(params, grads, state, lr: float):
    """One Adam step: ``(new_params, new_state)``."""
    m, v, t = state
    t = t + 1
    m = jax.tree_util.tree_map(lambda m_, g: BETA1 * m_ + (1 - BETA1) * g, m, grads)
    v = jax.tree_util.tree_map(lambda v_, g: BETA2 * v_ + (1 - BETA2) * g * g, v, grads)
    c1 = 1 - BETA1 ** t.astype(jnp.float32)
    c2 = 1 - BETA2 ** t.astype(jnp.float32)
    params = jax.tree_util.tree_map(
        lambda p, m_, v_: p - lr * (m_ / c1) / (jnp.sqrt(v_ / c2) + ADAM_EPS), params, m, v
    )
    return params, (m, v, t)


@functools.partial(jax.jit, static_argnames=("method", "lr"))
def _train_step(params, state, x, batch: Batch, *, method: Method, lr: float):
    def objective(p):
        return method_loss(method, jax_mlp(p, x), batch)

    loss, grads = jax.value_and_grad(objective)(params)
    params, state = adam_update(params, grads, state, lr)
    return params, state, loss


jax.tree_util.register_pytree_node(
    Batch,
    lambda b: ((b.indices, b.angles, b.positives), None),
    lambda _, children: Batch(*children),
)


class JaxTrainer:
    """One network and its Adam state; ``step`` trains on a batch, ``embed`` evaluates."""

    def __init__(self, params: Params, train_x: np.ndarray, *, lr: float) -> None:
        self.params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in params]
        self.state = adam_init(self.params)
        self.lr = float(lr)
        self.train_x = jnp.asarray(np.asarray(train_x, dtype=np.float32))

    def step(self, method: Method, batch: Batch) -> float:
        """One Adam step on ``method``'s loss; returns the loss before the step."""
        x = self.train_x[jnp.asarray(batch.indices)]
        converted = Batch(
            indices=jnp.asarray(batch.indices),
            angles=jnp.asarray(batch.angles, dtype=jnp.float32),
            positives=None if batch.positives is None else jnp.asarray(batch.positives),
        )
        self.params, self.state, loss = _train_step(
            self.params, self.state, x, converted, method=method, lr=self.lr
        )
        return float(loss)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Embeddings (n, d) of images ``x`` as float64 NumPy."""
        out = jax_mlp(self.params, jnp.asarray(np.asarray(x, dtype=np.float32)))
        return np.asarray(out, dtype=np.float64)


def set_threads(threads: int) -> None:
    """JAX sizes its CPU thread pool itself; nothing to do."""


def get_threads() -> int:
    """Not tracked for JAX (its thread pool is sized by XLA)."""
    return 0
