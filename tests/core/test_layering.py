"""The import layering, read from the source (AST): ``traitlab.methods`` never imports
``traitlab.evaluation``, ``traitlab.interventions`` never imports ``traitlab.methods``, ``traitlab.model``
imports nothing above it, and module-level imports form no circle."""

from __future__ import annotations

import ast
from pathlib import Path

import traitlab

ROOT = Path(traitlab.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ["traitlab", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The traitlab module an imported name lives in (the name itself, or its longest module prefix)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, top_level_only: bool) -> set[str]:
    """The traitlab modules ``module`` imports (at module level only, or anywhere)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if top_level_only and isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in child.names]
            else:
                visit(child)
                continue
            for name in names:
                target = _resolve(name) if name.startswith("traitlab") else None
                if target and target != module:
                    found.add(target)

    visit(tree)
    return found


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _offenders(low: str, high: str) -> list[str]:
    return sorted(f"{m} -> {t}" for m in MODULES if _inside(m, low) for t in _imports(m, False) if _inside(t, high))


def test_methods_never_import_evaluation():
    assert _offenders("traitlab.methods", "traitlab.evaluation") == []


def test_interventions_never_import_methods():
    assert _offenders("traitlab.interventions", "traitlab.methods") == []
    assert _offenders("traitlab.interventions", "traitlab.registry") == []


def test_model_imports_nothing_above_it():
    above = [m for m in MODULES if not _inside(m, "traitlab.model") and m not in ("traitlab", "traitlab.errors",
                                                                                    "traitlab.progress")]
    offenders = [f"{m} -> {t}" for m in MODULES if _inside(m, "traitlab.model") for t in _imports(m, False)
                 if t in above]
    assert offenders == []


def test_no_import_circles_at_module_level():
    graph = {m: _imports(m, True) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    assert circles == [], "\n".join(" <-> ".join(c) for c in circles)
