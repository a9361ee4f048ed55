"""The global-batch loss over a mapped JAX axis, on 4 host devices (run in a subprocess).

``XLA_FLAGS=--xla_force_host_platform_device_count=4`` must be set before JAX is imported,
so tests/test_jax_sharded.py runs this file as ``python _jax_sharded_worker.py OUT.json``.
Every case compares a sharded evaluation (``jax.shard_map`` and ``jax.pmap``) with the
single-device loss of the whole batch and writes the largest relative errors.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

DEVICES = 4
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={DEVICES}"
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import logratio  # noqa: E402

jax.config.update("jax_enable_x64", True)

shard_map = getattr(jax, "shard_map", None)
if shard_map is None:  # older JAX
    from jax.experimental.shard_map import shard_map

B, D = 12, 3  # 3 rows per device


def cityblock_sq(a, b):
    return jnp.sum(jnp.abs(a[:, None, :] - b[None, :, :]), axis=-1) ** 2


#: name -> (options, labels key); "full": also loss_and_grad and pmap
CASES = {
    "mean": ({}, "cont"),
    "sum-anchors-first": ({"reduction": "sum", "anchors": 0}, "cont"),
    "none": ({"reduction": "none"}, "cont"),
    "euclid-root-exclude-callable": (
        {"squared": False, "root_eps": 1e-3, "ties": "exclude", "label_metric": cityblock_sq},
        "int2",
    ),
}
FULL = ("mean", "none")
#: formulas of the test suite (tests/test_formula_plugin.py) through the same gather
PLUGINS = {
    "plugin-stress": "stress", "plugin-cosine-none": "cosine", "y-aware": "y_aware",
    "y-aware-released-none": "y_aware_released", "rank-n-contrast": "rnc",
    "rank-n-contrast-none": "rnc",
}  # fmt: skip


def plugin(name):
    from test_formula_plugin import CosineFit, Stress

    from logratio.formulas import RankNContrast, YAwareInfoNCE

    return {
        "stress": Stress(scale=0.7),
        "cosine": CosineFit(temperature=0.3),
        "y_aware": YAwareInfoNCE(temperature=0.5),
        "y_aware_released": YAwareInfoNCE(temperature=0.5, sigma=0.7, weights="released"),
        "rnc": RankNContrast(temperature=1.5),
    }[PLUGINS[name]]


def run_plugin(mesh, name):
    """A formula of the test suite over the mapped axis against one device."""
    import logratio.engine

    formula = plugin(name)
    f, labels, weights = data()
    y = labels["cont"]
    reduction = "none" if name.endswith("none") else "mean"

    def objective_single(f):
        value = logratio.engine.loss(formula, f, y, reduction=reduction)
        return weighted(value, weights), value

    (_, value), grad = jax.value_and_grad(objective_single, has_aux=True)(f)

    def local_loss(fl, yl):
        return logratio.engine.loss(formula, fl, yl, reduction=reduction, axis_name="x")

    out_spec = P("x") if reduction == "none" else P()
    mapped = shard_map(local_loss, mesh=mesh, in_specs=(P("x"), P("x")), out_specs=out_spec)

    def objective(f):
        v = mapped(f, y)
        return weighted(v, weights), v

    (_, v), g = jax.jit(jax.value_and_grad(objective, has_aux=True))(f)
    return {"shard_map value": rel(v, value), "shard_map grad": rel(g, grad)}


def data():
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    f = jax.random.normal(k[0], (B, D), dtype=jnp.float64)
    labels = {
        "cont": jax.random.uniform(k[1], (B,), dtype=jnp.float64) * 3,
        "int2": jax.random.randint(k[2], (B, 2), 0, 3).astype(jnp.float64),
    }
    weights = jax.random.uniform(k[3], (B,), dtype=jnp.float64)
    return f, labels, weights


def rel(a, b):
    a, b = jnp.asarray(a), jnp.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-300))


def weighted(value, weights):
    """The objective differentiated: the loss, or Σ_a w_a S_a for reduction="none"."""
    return (value * weights).sum() if value.ndim else value


def single(f, y, weights, options):
    """Single-device value and gradient; local anchors 0 are the first row of each shard."""
    options = dict(options)
    if options.get("anchors") == 0:
        options["anchors"] = jnp.arange(0, B, B // DEVICES)

    def objective(f):
        value = logratio.log_ratio_loss(f, y, **options)
        return weighted(value, weights), value

    (_, value), grad = jax.value_and_grad(objective, has_aux=True)(f)
    return value, grad


def run_case(mesh, name):
    """The mapped loss's value and gradient (jax.value_and_grad outside the map) against one
    device; for the FULL cases also loss_and_grad inside the map and jax.pmap."""
    options, key = CASES[name]
    f, labels, weights = data()
    y = labels[key]
    value, grad = single(f, y, weights, options)
    none = options.get("reduction") == "none"
    out_spec = P("x") if none else P()
    out = {}

    def local_loss(fl, yl):
        return logratio.log_ratio_loss(fl, yl, axis_name="x", **options)

    mapped = shard_map(local_loss, mesh=mesh, in_specs=(P("x"), P("x")), out_specs=out_spec)

    def objective(f):
        v = mapped(f, y)
        return weighted(v, weights), v

    (_, v), g = jax.jit(jax.value_and_grad(objective, has_aux=True))(f)
    out["shard_map value"] = rel(v, value)
    out["shard_map grad"] = rel(g, grad)
    if name not in FULL:
        return out
    fp, yp = f.reshape(DEVICES, B // DEVICES, D), y.reshape(DEVICES, B // DEVICES, *y.shape[1:])
    pv = jax.pmap(local_loss, axis_name="x")(fp, yp)
    out["pmap value"] = rel(pv.reshape(-1) if none else pv[0], value)
    if none:  # loss_and_grad's gradient is that of the plain sum: run_none_loss_and_grad
        return out

    def local_both(fl, yl):
        return logratio.log_ratio_loss_and_grad(fl, yl, axis_name="x", **options)

    both = shard_map(local_both, mesh=mesh, in_specs=(P("x"), P("x")), out_specs=(P(), P("x")))
    v2, g2 = jax.jit(both)(f, y)
    out["shard_map loss_and_grad value"] = rel(v2, value)
    out["shard_map loss_and_grad grad"] = rel(g2, grad)
    pv2, pg2 = jax.pmap(local_both, axis_name="x")(fp, yp)
    out["pmap loss_and_grad value"] = rel(pv2[0], value)
    out["pmap loss_and_grad grad"] = rel(pg2.reshape(B, D), grad)
    return out


def run_none_loss_and_grad(mesh):
    """``reduction="none"``: loss_and_grad's gradient is that of the sum of every anchor."""
    f, labels, _ = data()
    y = labels["cont"]
    grad = jax.grad(lambda f: logratio.log_ratio_loss(f, y, reduction="none").sum())(f)

    def local_both(fl, yl):
        return logratio.log_ratio_loss_and_grad(fl, yl, axis_name="x", reduction="none")

    both = shard_map(local_both, mesh=mesh, in_specs=(P("x"), P("x")), out_specs=(P("x"), P("x")))
    _, g = jax.jit(both)(f, y)
    return {"shard_map loss_and_grad grad": rel(g, grad)}


def run_refusals():
    f, labels, _ = data()
    out = {}
    for name, kwargs in {
        "label_distances": {"label_distances": jnp.zeros((B, B))},
        "mask": {"mask": jnp.ones((B, B), dtype=bool), "labels": labels["cont"]},
    }.items():
        try:
            logratio.log_ratio_loss(f, axis_name="x", **kwargs)
            out[name] = "no error"
        except ValueError as err:
            out[name] = str(err)
    return out


def main(path):
    result = {}
    try:
        assert len(jax.devices()) == DEVICES, jax.devices()
        mesh = jax.sharding.Mesh(jax.devices(), ("x",))
        result["cases"] = {name: run_case(mesh, name) for name in CASES}
        result["cases"].update({name: run_plugin(mesh, name) for name in PLUGINS})
        result["none loss_and_grad"] = run_none_loss_and_grad(mesh)
        result["refusals"] = run_refusals()
    except Exception:
        result["failure"] = traceback.format_exc()
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
