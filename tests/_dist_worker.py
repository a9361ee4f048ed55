"""One rank of the multi-process tests of :mod:`logratio.distributed` (gloo on 127.0.0.1).

Run as ``python _dist_worker.py RANK WORLD PORT OUTDIR``: joins a gloo group of WORLD
processes, evaluates every case of :data:`CASES` on its shard of :func:`global_batch`
(shard sizes :data:`SIZES`), and with two ranks also the error cases and a few DDP training
steps; writes ``OUTDIR/rank{RANK}.pt``.  The test process compares the results with
single-process evaluations of the same data (tests/test_distributed.py).
"""

from __future__ import annotations

import datetime
import sys
import traceback
from pathlib import Path

import torch

#: shard sizes per world size: uneven, and with three ranks one holds nothing
SIZES = {2: [5, 8], 3: [4, 0, 7]}
DDP_SIZES = [5, 8]
DDP_STEPS = 3
TIMEOUT_S = 30


def cityblock_sq(a, b):
    """A callable label metric: squared L1 distances (any (m, p), (n, p) -> (m, n))."""
    return ((a[:, None, :] - b[None, :, :]).abs().sum(-1)) ** 2


#: name -> (options, labels key, gradient mode, local anchors: None or "first" (row 0 of each
#: non-empty shard; with reduction "mean" only))
CASES = {
    "mean": ({}, "cont", "ddp-mean", None),
    "mean-grad-sum": ({}, "cont", "sum", None),
    "sum": ({"reduction": "sum"}, "cont", "ddp-mean", None),
    "none": ({"reduction": "none"}, "cont", "ddp-mean", None),
    "euclid-root-exclude": (
        {"squared": False, "root_eps": 1e-3, "ties": "exclude"},
        "int",
        "ddp-mean",
        None,
    ),
    "euclid-include-ties": ({"squared": False}, "int", "ddp-mean", None),
    "exclude-none-cityblock": (
        {"ties": "exclude", "reduction": "none", "label_metric": "cityblock"},
        "int2",
        "sum",
        None,
    ),
    "callable-metric": ({"label_metric": cityblock_sq}, "vec2", "ddp-mean", None),
    "blocks": ({"block_size": 2, "eps": 1e-4}, "cont", "ddp-mean", None),
    "anchors-first": ({}, "cont", "ddp-mean", "first"),
    "all-reduce-backward": ({}, "cont", "ddp-mean", None),
    # formulas of the test suite (tests/test_formula_plugin.py) through the same gather
    "plugin-stress": ({"formula": "stress"}, "cont", "ddp-mean", None),
    "plugin-cosine-none": ({"formula": "cosine", "reduction": "none"}, "int", "sum", None),
    "y-aware": ({"formula": "y_aware"}, "cont", "ddp-mean", None),
    "rank-n-contrast": ({"formula": "rnc"}, "int", "ddp-mean", None),
    "rank-n-contrast-none": ({"formula": "rnc", "reduction": "none"}, "int2", "sum", None),
    "y-aware-released-sum": (
        {"formula": "y_aware_released", "reduction": "sum"},
        "int2",
        "sum",
        None,
    ),
}


def plugin_formula(options):
    """``(formula, other options)`` of a case: None for the log-ratio loss."""
    from test_formula_plugin import CosineFit, Stress

    from logratio.formulas import RankNContrast, YAwareInfoNCE

    options = dict(options)
    kind = options.pop("formula", None)
    formulas = {
        None: None,
        "stress": Stress(scale=0.7),
        "cosine": CosineFit(temperature=0.3),
        "y_aware": YAwareInfoNCE(temperature=0.5),
        "y_aware_released": YAwareInfoNCE(temperature=0.5, sigma=0.7, weights="released"),
        "rnc": RankNContrast(temperature=1.5),
    }
    return formulas[kind], options


def global_batch(total: int, d: int = 3):
    """Embeddings (B, d) and label sets of the global batch, float64, fixed seed."""
    g = torch.Generator().manual_seed(1234)
    f = torch.randn(total, d, generator=g, dtype=torch.float64)
    labels = {
        "cont": torch.rand(total, generator=g, dtype=torch.float64) * 3,
        "int": torch.randint(0, 3, (total,), generator=g).to(torch.float64),
        "int2": torch.randint(0, 2, (total, 2), generator=g).to(torch.float64),
        "vec2": torch.randn(total, 2, generator=g, dtype=torch.float64),
    }
    weights = torch.rand(total, generator=g, dtype=torch.float64)  # upstream of "none"
    return f, labels, weights


def shard_rows(sizes, rank):
    start = sum(sizes[:rank])
    return torch.arange(start, start + sizes[rank])


def local_anchors(kind, size):
    if kind is None:
        return None
    return [0] if size > 0 else []


def ddp_model():
    torch.manual_seed(7)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    ).double()


def ddp_data():
    g = torch.Generator().manual_seed(99)
    total = sum(DDP_SIZES)
    return torch.randn(total, 4, generator=g, dtype=torch.float64), torch.rand(
        total, generator=g, dtype=torch.float64
    )


def run_cases(rank, world):
    import logratio.distributed as ld

    sizes = SIZES[world]
    f, labels, weights = global_batch(sum(sizes))
    rows = shard_rows(sizes, rank)
    out = {}
    from logratio.options import Spec

    for name, (options, key, gradient, anchors) in CASES.items():
        ld._USE_REDUCE_SCATTER = name != "all-reduce-backward"
        emb = f[rows].clone().requires_grad_(True)
        formula, options = plugin_formula(options)
        mine = local_anchors(anchors, sizes[rank])
        if formula is None:
            value = ld.log_ratio_loss(
                emb, labels[key][rows], gradient=gradient, anchors=mine, **options
            )
        elif name == "y-aware":  # the public entry points
            value = ld.y_aware_infonce_loss(
                emb, labels[key][rows], gradient=gradient, anchors=mine, temperature=0.5
            )
        elif name == "rank-n-contrast":
            value = ld.rank_n_contrast_loss(
                emb, labels[key][rows], gradient=gradient, anchors=mine, temperature=1.5
            )
        else:
            spec = Spec.of(formula, **options)
            value = ld.global_batch_loss(
                emb, labels[key][rows], spec, gradient=gradient, anchors=mine
            )
        if value.ndim:
            (value * weights[rows]).sum().backward()
        else:
            value.backward()
        out[name] = {"value": value.detach(), "grad": emb.grad}
    ld._USE_REDUCE_SCATTER = True
    return out


def run_errors(rank):
    """Inputs that one rank (or the ranks together) get wrong: every rank raises, none hangs."""
    import logratio.distributed as ld

    out = {}
    width = 3 if rank == 0 else 4
    try:
        ld.log_ratio_loss(torch.randn(4, width, dtype=torch.float64), torch.rand(4))
    except ValueError as err:
        out["width"] = str(err)
    y = torch.rand(4)
    if rank == 1:
        y[2] = float("nan")
    try:
        ld.log_ratio_loss(torch.randn(4, 3, dtype=torch.float64), y)
    except ValueError as err:
        out["nan-labels"] = str(err)
    # the group is still in step afterwards
    out["after"] = ld.log_ratio_loss(torch.ones(2, 3) * (rank + 1), torch.arange(2.0) + rank)
    return out


def run_ddp(rank, world):
    """A few SGD steps of a small model under DDP, and with summed gradients by hand."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from logratio import LogRatioLoss

    x, y = ddp_data()
    rows = shard_rows(DDP_SIZES, rank)
    out = {}

    def train(model, loss_fn, after_backward=lambda: None):
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        losses = []
        for _ in range(DDP_STEPS):
            loss = loss_fn(model(x[rows]), y[rows])
            opt.zero_grad()
            loss.backward()
            after_backward()
            opt.step()
            losses.append(loss.detach())
        return {"losses": torch.stack(losses), "params": [p.detach() for p in model.parameters()]}

    # DDP averages the gradients; the loss's backward is scaled by W (the default)
    out["ddp"] = train(DDP(ddp_model()), LogRatioLoss(distributed=True))
    # no DDP: gradient="sum" and the ranks' parameter gradients summed by hand
    model = ddp_model()

    def sum_gradients():
        for p in model.parameters():
            torch.distributed.all_reduce(p.grad)

    out["sum"] = train(model, LogRatioLoss(distributed=True, gradient="sum"), sum_gradients)
    return out


def main(rank, world, port, outdir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=TIMEOUT_S),
    )
    try:
        result = {"cases": run_cases(rank, world)}
        if world == 2:
            result["errors"] = run_errors(rank)
            result.update(run_ddp(rank, world))
    except Exception:
        result = {"failure": traceback.format_exc()}
    finally:
        torch.distributed.destroy_process_group()
    torch.save(result, Path(outdir) / f"rank{rank}.pt")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
