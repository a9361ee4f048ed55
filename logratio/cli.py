"""The ``logratio`` command: ``logratio check`` and ``logratio demo``.

``logratio check`` validates the loss and gradient on every installed backend
(:mod:`logratio.check`); ``logratio demo`` trains a small embedding on real images and
compares the paper's loss and sampler with its baselines (:mod:`logratio.demo`, imported
only when asked, with its own options: ``logratio demo --help``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from . import check as _check


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with its ``check`` and ``demo`` subcommands."""
    parser = argparse.ArgumentParser(
        prog="logratio",
        description="Log-ratio loss and dense triplet mining for continuous labels "
        "(Kim et al., CVPR 2019), on NumPy, PyTorch, JAX and CuPy.",
    )
    parser.add_argument("--version", action="version", version=f"logratio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    check = sub.add_parser(
        "check",
        help="compare loss and gradient on every installed backend with a float64 reference",
        description="Compute loss and gradient on a few random problems with every installed "
        "backend, device and dtype; compare with a float64 loop reference, the framework's "
        "autodiff and finite differences; exit 1 if any disagrees.",
    )
    _check.add_arguments(check)
    sub.add_parser(
        "demo",
        help="train a small embedding on rotated digits and compare the paper's method with "
        "its baselines (options: logratio demo --help)",
        add_help=False,
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``logratio`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":  # the demo parses its own options
        return _run_demo(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return _check.run(args)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects the rest


def _run_demo(argv: list[str]) -> int:
    try:
        demo = importlib.import_module("logratio.demo")
    except ModuleNotFoundError as err:
        missing = err.name or "a module"
        if missing == "logratio.demo":
            print("logratio demo is not available in this installation", file=sys.stderr)
        else:
            print(
                f"logratio demo needs {missing!r}, which is not installed; "
                "install the demo's dependencies first (see the README)",
                file=sys.stderr,
            )
        return 2
    status = demo.main(argv)
    return int(status or 0)


if __name__ == "__main__":
    raise SystemExit(main())
