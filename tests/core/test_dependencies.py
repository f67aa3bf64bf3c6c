"""Every third-party module the package imports outside ``serve/`` comes from a core dependency, so the README's
plain ``pip install -e .`` runs everything but the server (peft and scipy once were only in the dev extra, and
the demo died on a fresh machine while the suite, installed with ``[dev]``, passed)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "traitlab"
# import name -> distribution name, where they differ
DISTRIBUTION = {"yaml": "pyyaml", "vaderSentiment": "vadersentiment"}
# what the core dependencies bring along (typer needs click; fastapi pulls starlette, but it is serve-only)
TRANSITIVE = {"click"}


def _core_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~ \[;]", spec, maxsplit=1)[0].lower() for spec in project["dependencies"]}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_everything_outside_the_server_imports_only_core_dependencies():
    core = _core_distributions()
    missing = {}
    for path in PACKAGE.rglob("*.py"):
        if "serve" in path.relative_to(PACKAGE).parts or path == PACKAGE / "cli" / "serve.py":
            continue  # the serve extra; `traitlab serve` says so in one line when it is missing
        for name in _imported_modules(path):
            if name in sys.stdlib_module_names or name in ("traitlab", "__future__") or name in TRANSITIVE:
                continue
            if DISTRIBUTION.get(name, name).lower() not in core:
                missing.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert not missing, f"imported but not a core dependency: {missing}"
