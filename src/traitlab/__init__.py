"""traitlab: find, steer, monitor and edit the personality of open-weight language models from the inside.

The names below load on first use, so ``import traitlab`` (and ``traitlab --help``) does not import torch."""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from traitlab.errors import TraitlabError

if TYPE_CHECKING:
    from traitlab.interventions import Intervention, compose
    from traitlab.methods.persona_vectors import PersonaVector
    from traitlab.model import LoadedModel, load_model, wrap
    from traitlab.registry import load_intervention

__version__ = "0.1.0"
__all__ = ["Intervention", "LoadedModel", "PersonaVector", "TraitlabError", "__version__", "compose",
           "load_intervention", "load_model", "wrap"]

_LAZY = {"Intervention": "traitlab.interventions", "compose": "traitlab.interventions",
         "LoadedModel": "traitlab.model", "load_model": "traitlab.model", "wrap": "traitlab.model",
         "PersonaVector": "traitlab.methods.persona_vectors", "load_intervention": "traitlab.registry"}


def __getattr__(name: str) -> Any:
    """Public names resolve on first use (torch, transformers and the mechanisms load then)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if importlib.util.find_spec(f"traitlab.{name}") is not None:  # a subpackage: traitlab.model, ...
        return importlib.import_module(f"traitlab.{name}")
    raise AttributeError(f"module 'traitlab' has no attribute '{name}'")
