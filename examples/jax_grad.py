"""JAX: jax.jit(jax.grad(...)) through the log-ratio loss's closed-form derivative rule."""

import jax
import jax.numpy as jnp
import numpy as np

import logratio

rng = np.random.default_rng(0)
ages = jnp.asarray(rng.uniform(0, 80, size=64))  # continuous labels
params = {
    "w": jnp.asarray(rng.normal(size=(16, 8)) / 4),
    "x": jnp.asarray(rng.normal(size=(64, 16))),
}


def loss(params, labels):
    embeddings = jnp.tanh(params["x"] @ params["w"])
    return logratio.log_ratio_loss(embeddings, labels)  # options (ties=..., ...) are static


step = jax.jit(jax.value_and_grad(loss))
for i in range(201):
    value, grads = step(params, ages)
    params = jax.tree_util.tree_map(lambda p, g: p - 0.5 * g, params, grads)
    if i % 50 == 0:
        print(f"step {i:3d}  loss {float(value):.4f}")

# a batch of problems at once
batch = jax.vmap(lambda f, y: logratio.log_ratio_loss(f, y))(
    jnp.asarray(rng.normal(size=(4, 32, 8))), jnp.asarray(rng.normal(size=(4, 32)))
)
print("vmap over 4 problems:", batch)
