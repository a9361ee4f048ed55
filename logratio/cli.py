"""The ``logratio`` command: ``logratio check`` and ``logratio demo``.

``logratio check`` validates the loss and gradient on every installed backend
(:mod:`logratio.check`); ``logratio demo`` trains a small embedding on real images and
compares the paper's loss and sampler with its baselines (:mod:`logratio.demo`, whose
dependencies are imported only when it runs).  Each subcommand's module provides ``HELP``,
``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from . import __version__

__all__ = ["build_parser", "main"]


def _commands() -> dict[str, ModuleType]:
    """The subcommands and their modules (neither imports a framework)."""
    names = {"check": "logratio.check.cli", "demo": "logratio.demo"}
    return {name: importlib.import_module(module) for name, module in names.items()}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with its ``check`` and ``demo`` subcommands."""
    parser = argparse.ArgumentParser(
        prog="logratio",
        description="Log-ratio loss and dense triplet mining for continuous labels "
        "(Kim et al., CVPR 2019), on NumPy, PyTorch, JAX and CuPy.",
    )
    parser.add_argument("--version", action="version", version=f"logratio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _commands().items():
        command = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``logratio`` console script; returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
