"""The options of ``logratio check`` and :func:`run`, which prints the table and exits 0 or 1."""

from __future__ import annotations

import argparse
import json
import time

from .comparison import BACKENDS, DTYPES, HALF_DTYPES, run_check
from .table import as_json, failure_lines, format_table, summary_line

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "main", "run"]

#: The one-line help of ``logratio check`` in ``logratio --help``.
HELP = "compare loss and gradient on every installed backend with a float64 reference"
#: The description of ``logratio check --help``.
DESCRIPTION = (
    "Compute loss and gradient on a few random problems with every installed backend, device "
    "and dtype; compare with a float64 loop reference, the framework's autodiff and finite "
    "differences; exit 1 if any disagrees."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``logratio check``."""
    parser.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="check only this backend (repeatable; default: every installed one)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random problems")
    parser.add_argument(
        "--half",
        action="store_true",
        help="also check float16 and bfloat16 inputs, where the backend has them",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the rows to this JSON file")


def run(args: argparse.Namespace) -> int:
    """Run the check, print the table; 0 when every backend agrees, 1 otherwise."""
    start = time.perf_counter()
    backends = tuple(args.backend) if args.backend else BACKENDS
    dtypes = (*DTYPES, *HALF_DTYPES) if args.half else DTYPES
    rows, notes = run_check(backends, seed=args.seed, dtypes=dtypes)
    print(format_table(rows))
    for note in notes:
        print(f"note: {note}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(as_json(rows, notes), fh, indent=2)
    failures = failure_lines(rows)
    for line in failures:
        print(line)
    print(summary_line(rows, time.perf_counter() - start))
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m logratio.check``."""
    parser = argparse.ArgumentParser(prog="logratio check", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
