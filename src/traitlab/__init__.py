"""traitlab: find, steer, monitor and edit the personality of open-weight language models from the inside."""

from traitlab.errors import TraitlabError
from traitlab.interventions import Intervention, compose
from traitlab.model import LoadedModel, load_model
from traitlab.registry import load_intervention

__version__ = "0.1.0"
__all__ = ["Intervention", "LoadedModel", "TraitlabError", "__version__", "compose", "load_intervention",
           "load_model"]
