"""One module per mechanism (fitting, the Intervention class, its artifact). The table from a mechanism name to
its class is ``traitlab.registry.MECHANISMS``; nothing here registers itself on import."""

from traitlab.methods.axis_capping import AxisCapping
from traitlab.methods.merging import PersonalityVector
from traitlab.methods.neurons import NeuronInduction
from traitlab.methods.persona_vectors import PersonaVector
from traitlab.methods.prompting import PromptIntervention
from traitlab.methods.steering import ResidualSteering
from traitlab.methods.subnetworks import SubnetworkMask
from traitlab.methods.weights import WeightDelta, WeightEdit

__all__ = ["AxisCapping", "NeuronInduction", "PersonaVector", "PersonalityVector", "PromptIntervention",
           "ResidualSteering", "SubnetworkMask", "WeightDelta", "WeightEdit"]
