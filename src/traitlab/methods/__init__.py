"""One module per mechanism; importing this package registers every mechanism for ``load_intervention``."""

from traitlab.methods.persona_vectors import PersonaVector
from traitlab.methods.prompting import PromptIntervention
from traitlab.methods.steering import ResidualSteering
from traitlab.methods.weights import WeightDelta, WeightEdit

__all__ = ["PersonaVector", "PromptIntervention", "ResidualSteering", "WeightDelta", "WeightEdit"]
