"""Benchmarks of the dense log-ratio loss: time and peak memory against the batch size B.

One command measures, in float32 with d = 128 and scalar labels:

1. loss + gradient time against B for NumPy, PyTorch (closed-form autograd rule; CPU, and CUDA
   when present), JAX (``jit``; CPU, and GPU when present) and CuPy (when present), next to the
   floor ``torch.cdist(F, F)`` at the same B, with PyTorch's engine on and off, and the same
   loss on a batch of near pairs (the cost of their exact distances);
2. the same loss computed by materialising all B×B×B triplets (a straightforward PyTorch
   implementation, and the explicit-triplet loss on the dense triplet list of the miner),
   until the triplets would take more memory than a cap;
3. the PyTorch adapter's closed-form backward against plain autograd through the same core;
4. peak memory against B, one fresh subprocess per configuration and B (resident set for the
   CPU frameworks, ``tracemalloc`` for NumPy too, the allocators' peaks on a GPU).

Each configuration runs in its own subprocess (the worker threads of one framework would
otherwise spin on the cores another one needs), after waiting for the machine to be idle;
every timing is a median over ``--repeats`` calls after a warm-up, reported as a ratio to the
floor, which is timed first and last (the lower median counts).  Results go to
``<out>/results.json`` (``results-quick.json`` with ``--quick``), a markdown table
``results.md`` and a log-log plot ``benchmark.png``.

    python benchmarks/run.py            # the full suite (B = 64 … 16384): about 10 min, 2 cores
    python benchmarks/run.py --quick    # B = 64 … 2048, a couple of minutes
    python benchmarks/run.py --replot benchmarks/results/results.json   # table and plot only

The parts: ``settings`` (the values of a run), ``cases`` (what each configuration computes),
``harness`` (subprocesses, timing, memory), ``suite`` (the order of a run), ``report``
(targets, tables, plot); this file is the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness import memory_child, time_child
from report import replot, write
from settings import Settings
from suite import run_suite


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="B up to 2048, fewer repeats")
    ap.add_argument("--sizes", type=_ints, default=None, help="comma-separated batch sizes B")
    ap.add_argument(
        "--backends",
        type=lambda s: s.split(","),
        default=None,
        help="comma-separated subset of numpy,torch,jax,cupy,triplets,near,peers (default: all)",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed calls per configuration (default 7, 3 with --quick)",
    )
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--seconds-per-config", type=float, default=20.0)
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=None,
        help="seconds to wait for the CPUs to be idle before each configuration "
        "(default 300, 0 with --quick)",
    )
    ap.add_argument("--memory-sizes", type=_ints, default=None)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-cap-gib", type=float, default=6.0, help="skip configs above this")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder of the results (default benchmarks/results; with --replot: the JSON's)",
    )
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--time-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument(
        "--replot", type=Path, default=None, help="only redraw the table and plot of a JSON"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        replot(args.replot, args.out)
        return 0
    settings = Settings.from_args(args)
    if args.memory_child:
        name, batch = args.memory_child.rsplit(":", 1)
        print(json.dumps(memory_child(name, int(batch), settings)))
        return 0
    if args.time_child:
        time_child(args.time_child, settings)
        return 0
    result = run_suite(settings)
    md = write(result, settings.out, settings.stem)
    print(md)
    print(
        f"written under {settings.out}: {settings.stem}.json, {settings.stem}.md, the plot;"
        f" {result['seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
