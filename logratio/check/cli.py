"""The options of ``logratio check`` and :func:`run`, which prints the table and exits 0 or 1."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from ..testing import backends as registry
from .against import run_against
from .comparison import BACKENDS, DTYPES, HALF_DTYPES, run_check
from .table import as_json, failure_lines, format_table, summary_line

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "main", "run", "unavailable_backends"]

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
    mine = parser.add_argument_group(
        "checking your own implementation",
        "--against runs logratio.testing.assert_matches_reference on FUNCTION(embeddings, "
        "labels, **options) for every combination of the options it accepts (squared, ties, "
        "reduction; anchors, mask and label_metric drawn per example) instead of the backend "
        "table; exit 1 on a mismatch, with the option set and the smallest failing example.",
    )
    mine.add_argument(
        "--against",
        metavar="MODULE:FUNCTION",
        help="the loss to check: a dotted module or a path/to/file.py, and a function in it",
    )
    mine.add_argument(
        "--against-gradient",
        metavar="MODULE:FUNCTION",
        help="also check this gradient(embeddings, labels, **options) -> ∂loss/∂embeddings",
    )
    mine.add_argument(
        "--returns-gradient",
        action="store_true",
        help="the --against function returns (loss, gradient): check both",
    )
    mine.add_argument(
        "--examples",
        type=int,
        default=50,
        metavar="N",
        help="Hypothesis examples per option set (default: 50)",
    )
    mine.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="fix an option instead of varying it, e.g. reduction=mean or anchors=0 (repeatable)",
    )
    mine.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="the dtype of the inputs given to the function (default: float64)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the check and print the table: 0 when every row agrees, 1 when one does not or a
    backend named by ``--backend`` cannot be checked, 2 when ``--json`` cannot be written.

    With ``--against``, check that function instead (:func:`.against.run_against`): 0 when it
    agrees with the reference on every option set, 1 on a mismatch, 2 when it cannot be had."""
    if getattr(args, "against", None) is not None:
        return run_against(args)
    extra = [f for f in ("against_gradient", "option") if getattr(args, f, None)]
    if extra or getattr(args, "returns_gradient", False):
        print("logratio check: error: --against-gradient, --returns-gradient and --option "
              "need --against", file=sys.stderr)  # fmt: skip
        return 2
    start = time.perf_counter()
    if args.json:
        problem = _unwritable(args.json)
        if problem:
            print(f"logratio check: error: --json {args.json}: {problem}", file=sys.stderr)
            return 2
    backends = tuple(args.backend) if args.backend else BACKENDS
    if args.backend:  # asked for by name: missing is an error, not a note
        missing = unavailable_backends(backends)
        for name, reason in missing:
            print(f"logratio check: --backend {name} cannot be checked: {reason}", file=sys.stderr)
        if missing:
            return 1
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


def unavailable_backends(names: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(name, why)`` for each of ``names`` that cannot be checked here: not installed, no
    device, or a broken install (the registry's note)."""
    out = []
    for name in dict.fromkeys(names):
        found, notes = registry.discover((name,))
        if not found:
            note = notes[0] if notes else f"{name}: no device"
            out.append((name, note.removeprefix(f"{name}: ")))
    return out


def _unwritable(path: str) -> str | None:
    """Why a file cannot be written at ``path``, or ``None``; creates nothing."""
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        return "is a folder"
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return f"cannot write in the folder {folder} ({err.strerror or err})"
    if target.exists() and not os.access(target, os.W_OK):
        return "the file is not writable"
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m logratio.check``."""
    parser = argparse.ArgumentParser(prog="logratio check", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
