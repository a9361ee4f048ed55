"""``logratio check --against MODULE:FUNCTION``: check someone else's implementation.

The function is imported (a dotted module, found from the current folder too, or a file
``path/to/file.py``), and :func:`logratio.testing.assert_matches_reference` runs it on each
option set of :func:`logratio.testing.matching.option_sets`: every combination of
``squared``, ``ties`` and ``reduction`` among the options the function accepts, with
``anchors``, ``mask`` and ``label_metric`` drawn per example where it accepts them.  Hypothesis
is imported only when this runs.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["describe_options", "load_function", "parse_option", "run_against"]


def load_function(spec: str) -> Callable[..., Any]:
    """The callable named by ``MODULE:FUNCTION`` or ``path/to/file.py:FUNCTION``
    (``FUNCTION`` may be dotted, ``Class.method``); ValueError, ImportError, AttributeError
    or TypeError with the reason otherwise."""
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise ValueError("expected MODULE:FUNCTION or path/to/file.py:FUNCTION")
    if module_part.endswith(".py") or "/" in module_part or os.sep in module_part:
        path = Path(module_part)
        if not path.is_file():
            raise ImportError(f"no file {module_part}")
        folder = str(path.resolve().parent)
        if folder not in sys.path:  # as when the file runs as a script: its siblings import
            sys.path.insert(0, folder)
        name = path.stem  # the name its functions report, unless another module has it
        known = sys.modules.get(name)
        if known is not None and getattr(known, "__file__", None) != str(path.resolve()):
            name = f"_logratio_against_{path.stem}_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot import {module_part}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    else:
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        module = importlib.import_module(module_part)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{spec} is a {type(obj).__name__}, not a function")
    return obj


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE a Python literal (``False``, ``0``, ``1e-4``, ``[0, 2]``) or,
    failing that, a string (``reduction=sum``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE; got {text!r}")
    try:
        return key.strip(), ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return key.strip(), value.strip()


def describe_options(options: dict[str, Any]) -> str:
    """``squared=True, ties='include', anchors=<drawn>``: an option set in one line (a
    Hypothesis strategy or the ``"draw"`` marker shows as ``<drawn>``)."""
    if not options:
        return "(no options: the defaults)"
    parts = []
    for key, value in options.items():
        drawn = (isinstance(value, str) and value == "draw") or hasattr(value, "example")
        parts.append(f"{key}=<drawn>" if drawn else f"{key}={value!r}")
    return ", ".join(parts)


def run_against(args: argparse.Namespace) -> int:
    """Check ``args.against`` on every option set; print one line per set and the failures.
    Returns 0 when every set agrees, 1 on a mismatch, 2 when the function cannot be had."""
    start = time.perf_counter()
    try:
        from ..testing import backends as registry
        from ..testing.matching import (
            OPTION_NAMES,
            TOLERANCES,
            accepted_options,
            assert_matches_reference,
            option_sets,
        )
    except ImportError as err:
        print(f"logratio check: error: --against needs hypothesis ({err})", file=sys.stderr)
        return 2
    loaded: dict[str, Callable[..., Any]] = {}
    for flag, spec in (("--against", args.against), ("--against-gradient", args.against_gradient)):
        if spec is None:
            continue
        try:
            loaded[flag] = load_function(spec)
        except Exception as err:
            print(f"logratio check: error: {flag} {spec}: {type(err).__name__}: {err}",
                  file=sys.stderr)  # fmt: skip
            return 2
    if args.examples < 1:
        print(f"logratio check: error: --examples must be at least 1; got {args.examples}",
              file=sys.stderr)  # fmt: skip
        return 2
    fixed: dict[str, Any] = {}
    for text in args.option or []:
        try:
            key, value = parse_option(text)
        except ValueError as err:
            print(f"logratio check: error: --option: {err}", file=sys.stderr)
            return 2
        if key not in OPTION_NAMES:
            print(f"logratio check: error: --option {key}: not one of {', '.join(OPTION_NAMES)}",
                  file=sys.stderr)  # fmt: skip
            return 2
        fixed[key] = value
    backends = args.backend or ["numpy"]
    if len(backends) > 1:
        print("logratio check: error: --against takes at most one --backend", file=sys.stderr)
        return 2
    try:
        backend = registry.get(backends[0])
    except registry.BackendUnavailable as err:
        print(f"logratio check: --backend {backends[0]} cannot be used: {err}", file=sys.stderr)
        return 1
    fn = loaded["--against"]
    gradient: Any = loaded.get("--against-gradient")
    if args.returns_gradient:
        gradient = True
    names = tuple(n for n in accepted_options(fn) if n != "eps" or n in fixed)
    sets = list(option_sets(names, **fixed))
    what = "loss and gradient" if gradient is not None else "loss"
    print(f"checking the {what} of {args.against} against the float64 reference "
          f"({args.dtype}, {backend.label}, {args.examples} examples per option set)")  # fmt: skip
    passed, failures = 0, []
    for options in sets:
        label = describe_options(options)
        try:
            n = assert_matches_reference(
                fn, options=options, dtype=args.dtype, gradient=gradient,
                max_examples=args.examples, backend=backend, seed=args.seed,
            )  # fmt: skip
        except AssertionError as err:
            print(f"FAIL  {label}")
            failures.append((label, str(err)))
            continue
        passed += n
        print(f"ok    {label}: {n} examples")
    for label, message in failures:
        print(f"\nFAIL  option set {label}:")
        print("  " + message.replace("\n", "\n  "))
    seconds = time.perf_counter() - start
    delta, rho = TOLERANCES[args.dtype]
    tol = f"loss δ = {delta:g} per log-distance, gradient ρ = {rho:g} of its largest component"
    if failures:
        print(f"\n{len(failures)} of {len(sets)} option sets disagree with the float64 reference "
              f"({tol}) in {seconds:.1f} s")  # fmt: skip
        return 1
    print(f"{passed} examples over {len(sets)} option sets agree with the float64 reference "
          f"({tol}) in {seconds:.1f} s")  # fmt: skip
    return 0
