"""traitlab: find, steer, monitor and edit the personality of open-weight language models from the inside."""

from typing import Any

from traitlab.errors import TraitlabError
from traitlab.interventions import Intervention, compose
from traitlab.model import LoadedModel, load_model

__version__ = "0.1.0"
__all__ = ["Intervention", "LoadedModel", "TraitlabError", "__version__", "compose", "load_intervention",
           "load_model"]


def __getattr__(name: str) -> Any:
    """``load_intervention`` comes from ``traitlab.registry``, which imports every mechanism: on first use."""
    if name == "load_intervention":
        from traitlab.registry import load_intervention

        return load_intervention
    raise AttributeError(f"module 'traitlab' has no attribute '{name}'")
