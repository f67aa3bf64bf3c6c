"""Every traitlab module imports on its own, first, in a fresh set of traitlab modules: no partially
initialised module is ever asked for a name (the runtime face of an import circle, through package
``__init__`` files, that the AST layering test does not see)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import importlib, pkgutil, sys
import traitlab
names = sorted(m.name for m in pkgutil.walk_packages(traitlab.__path__, "traitlab.") if not m.name.endswith("__main__"))
failed = []
for name in names:
    for loaded in [m for m in sys.modules if m == "traitlab" or m.startswith("traitlab.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:  # an optional dependency (fastapi, peft, ...) is not installed
        if (exc.name or "").startswith("traitlab"):
            failed.append(f"{name}: {exc}")
    except ImportError as exc:
        failed.append(f"{name}: {exc}")
print("\n".join(failed))
"""


def test_every_module_imports_first():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600, check=True)
    assert result.stdout.strip() == ""
