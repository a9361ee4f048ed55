"""The log-ratio loss of a global batch sharded over a JAX mesh (4 host devices, CPU).

    python examples/jax_sharded.py

Inside ``jax.shard_map`` each device passes its shard to ``log_ratio_loss(...,
axis_name="batch")``: the shards are all-gathered, every device evaluates its own anchors
against the whole batch, and the sums are ``psum``-ed, so the value is the loss of the global
batch and ``jax.grad`` of the mapped function is the single-device gradient.
"""

import os

# host devices must be requested before JAX is imported
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import logratio

mesh = Mesh(jax.devices(), ("batch",))
n_dev = len(jax.devices())

key = jax.random.PRNGKey(0)
t = jax.random.uniform(key, (512,)) * 6.0  # continuous labels: position along a helix
points = jnp.stack([jnp.cos(t), jnp.sin(t), 0.1 * t], axis=1)
k1, k2 = jax.random.split(key)
params = {"w1": jax.random.normal(k1, (3, 64)) / 3**0.5, "w2": jax.random.normal(k2, (64, 8)) / 8}


def embed(params, x):
    return jnp.maximum(x @ params["w1"], 0) @ params["w2"]


def local_loss(params, x, y):  # one device's shard in, the global batch's loss out
    return logratio.log_ratio_loss(embed(params, x), y, axis_name="batch")


global_loss = jax.shard_map(
    local_loss, mesh=mesh, in_specs=(P(), P("batch"), P("batch")), out_specs=P()
)


@jax.jit
def train_step(params, x, y):
    loss, grads = jax.value_and_grad(global_loss)(params, x, y)
    return loss, jax.tree.map(lambda p, g: p - 0.05 * g, params, grads)


shard = NamedSharding(mesh, P("batch"))
batch = 128  # divisible by the number of devices
for step in range(31):
    idx = jax.random.randint(jax.random.PRNGKey(step), (batch,), 0, 512)
    x, y = jax.device_put(points[idx], shard), jax.device_put(t[idx], shard)
    if step == 0:  # the sharded loss is the single-device loss of the whole batch
        single = logratio.log_ratio_loss(embed(params, points[idx]), t[idx])
        print(f"devices {n_dev}: sharded {float(global_loss(params, x, y)):.6f}, "
              f"single device {float(single):.6f}")  # fmt: skip
    loss, params = train_step(params, x, y)
    if step % 10 == 0:
        print(f"step {step:2d}  global-batch loss {float(loss):.4f}")
