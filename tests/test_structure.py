"""The package's shape: no import cycle inside ``logratio/``, no module over 450 lines, and
the engine modules free of any particular loss (docs/design.md §7)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "logratio"
MAX_LINES = 450
#: the engine: no module here may name a loss (its formula, options or entry points)
ENGINE = (
    "_block.py", "_dense.py", "_near.py", "_pairs.py", "_problem.py", "formula.py", "engine.py",
    "backends/__init__.py", "backends/array_api.py", "backends/cupy.py", "backends/jax.py",
    "backends/_torch_engine.py",
)  # fmt: skip


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports at any level of its code (a function's
    import is an edge too: it runs whenever the function does)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph = {m: _imports(p, modules) for m, p in files.items()}
    # a package's __init__ is imported with any of its modules: not an edge to follow back
    for m in graph:
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return [*stack[stack.index(t) :], t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_planted_cycle():
    graph = _graph()
    graph["logratio._near"] = {*graph["logratio._near"], "logratio._block"}
    assert _cycle(graph) is not None


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: _module_name(p))
def test_no_module_over_the_size_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name}: {lines} lines (at most {MAX_LINES})"


@pytest.mark.parametrize("name", ENGINE)
def test_engine_modules_name_no_loss(name):
    text = (PACKAGE / name).read_text()
    for word in ("LogRatio", "log_ratio", "LossOptions", "formulas"):
        assert word not in text, f"{name} names {word}"
