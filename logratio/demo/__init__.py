"""``logratio demo``: metric learning on rotated digits, the paper's method against baselines.

A small network learns to embed scikit-learn's 8×8 digits, each rotated by a random
continuous angle, so that embedding distances follow the angle distance on the circle
(Kim et al., *Deep Metric Learning Beyond Binary Supervision*, CVPR 2019).  Four objectives
train the same network from the same initial weights on the same batches for the same number
of steps (:mod:`.methods`); held-out digits are then retrieved by embedding distance and
judged by the angles they return (:mod:`logratio.metrics`).  Outputs in ``--out``:
``results.json``, ``results.md`` (the table) and ``metrics.png`` (metrics against step).

Needs the demo's extra dependencies (PyTorch or JAX, scikit-learn, SciPy, Matplotlib, tqdm,
threadpoolctl); this package imports none of them until :func:`main` runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable

__all__ = [
    "DESCRIPTION",
    "HELP",
    "add_arguments",
    "build_parser",
    "config_from_args",
    "install_hint",
    "main",
    "missing_modules",
    "run",
]

QUICK = {"steps": 300, "eval_every": 75}
FULL = {"steps": 5000, "eval_every": 250}
#: ``--long``: the one-anchor comparison at four epochs of the sampler, chosen from a
#: one-seed pilot of 40000 steps (docs/demo-long-pilot-*): there the mean angle errors are
#: flat from about 18000 steps; nDCG@100 and Spearman's ρ still rise slowly after 20000.
LONG = {"steps": 20000, "eval_every": 1000}
NUM_SEEDS = 3
#: Modules the demo imports (besides NumPy and array-api-compat), and their PyPI names.
REQUIRED = {
    "sklearn": "scikit-learn",
    "scipy": "scipy",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
    "threadpoolctl": "threadpoolctl",
}
BACKENDS = {"torch": "torch", "jax": "jax"}

#: The one-line help of ``logratio demo`` in ``logratio --help``.
HELP = (
    "train a small embedding on rotated digits and compare the paper's method with its "
    "baselines (options: logratio demo --help)"
)
#: The description of ``logratio demo --help``.
DESCRIPTION = (
    "Train a small embedding network on rotated digits (the label is the rotation angle) with "
    "the log-ratio loss and dense triplet mining, and with two triplet baselines; report "
    "held-out retrieval metrics over several seeds."
)


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an int of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an int: {text!r}") from None
        if value < minimum:
            kind = "positive" if minimum == 1 else "non-negative"
            raise argparse.ArgumentTypeError(f"must be a {kind} int; got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``logratio demo``."""
    positive = _at_least(1)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['steps']} steps per run instead of {FULL['steps']} (under a minute on "
        "2 CPU cores)",
    )
    parser.add_argument(
        "--long",
        action="store_true",
        help=f"the one-anchor comparison only (the two one-anchor log-ratio rows and the dense "
        f"triplet baseline), {LONG['steps']} steps per run, where their held-out angle errors "
        "have flattened (about 30 minutes on 2 CPU cores with 3 seeds)",
    )
    parser.add_argument(
        "--out", default="demo-output", metavar="DIR", help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--seed",
        type=_at_least(0),
        default=0,
        metavar="N",
        help="first seed; the runs use seeds N, N+1, … (default: %(default)s)",
    )
    parser.add_argument(
        "--backend", choices=tuple(BACKENDS), default="torch", help="default: %(default)s"
    )
    parser.add_argument(
        "--steps", type=positive, metavar="N", help="training steps per run (overrides --quick)"
    )
    parser.add_argument(
        "--seeds",
        type=positive,
        default=NUM_SEEDS,
        metavar="N",
        help="seeds (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=positive,
        metavar="N",
        help="processes training runs side by side (default: the machine's cores)",
    )
    parser.add_argument(
        "--threads",
        type=positive,
        metavar="N",
        help="CPU threads per process (default: 1; the network is too small to gain from more)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``logratio demo`` on its own (``logratio.cli`` adds the same options)."""
    parser = argparse.ArgumentParser(prog="logratio demo", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def missing_modules(backend: str) -> list[str]:
    """PyPI names of the demo's dependencies that cannot be imported."""
    wanted = {**REQUIRED, backend: BACKENDS[backend]}
    return [pypi for module, pypi in wanted.items() if importlib.util.find_spec(module) is None]


def config_from_args(args: argparse.Namespace):
    """The :class:`~logratio.demo.train.DemoConfig` that the options describe."""
    from .methods import LONG_METHODS
    from .train import DemoConfig

    if args.quick and args.long:
        raise ValueError("--quick and --long exclude each other")
    preset = dict(LONG if args.long else QUICK if args.quick else FULL)
    if args.steps is not None:
        preset["steps"] = args.steps
        preset["eval_every"] = max(1, args.steps // 20)
    if args.seed < 0:
        raise ValueError(f"--seed must be a non-negative int; got {args.seed}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be a positive int; got {args.seeds}")
    extra = {}
    if args.threads is not None:
        extra["threads"] = args.threads
    if args.workers is not None:
        extra["workers"] = args.workers
    if args.long:
        extra["methods"] = LONG_METHODS
    return DemoConfig(
        seeds=tuple(range(args.seed, args.seed + args.seeds)),
        backend=args.backend,
        **preset,
        **extra,
    )


def install_hint(backend: str) -> str:
    """The command that installs the demo's dependencies for ``backend`` from a checkout (the
    ``demo`` extra has torch; the ``jax`` extra adds jax)."""
    extras = "demo" if backend == "torch" else f"demo,{backend}"
    return f'pip install -e ".[{extras}]"'


def run(args: argparse.Namespace) -> int:
    """Run the demo with parsed options: 0 on success, 2 on a missing dependency, a bad
    option or an output folder that cannot be written (each checked before training)."""
    try:
        config = config_from_args(args)
    except ValueError as err:
        print(f"logratio demo: error: {err}", file=sys.stderr)
        return 2
    missing = missing_modules(config.backend)
    if missing:
        print(
            f"logratio demo --backend {config.backend} needs {', '.join(missing)}, not "
            "installed here; install the demo's dependencies from the root of a logratio "
            f"checkout: {install_hint(config.backend)}",
            file=sys.stderr,
        )
        return 2
    from . import report, train

    problem = report.make_output_folder(args.out)
    if problem:
        print(f"logratio demo: error: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    results = train.run_demo(config, progress=not args.no_progress)
    paths = report.write_outputs(results, args.out)
    print(paths["markdown"].read_text())
    print(
        f"Wrote {paths['json']}, {paths['markdown']} and {paths['plot']} "
        f"({time.perf_counter() - start:.0f} s)."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the demo with the options ``argv`` (default: ``sys.argv[1:]``); return 0 on success."""
    return run(build_parser().parse_args(argv))
