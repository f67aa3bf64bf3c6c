"""Model layer: loading, family table, hook engine, generation, fingerprint. Imports nothing of traitlab above."""

from traitlab.model.builtins import BUILTIN_MODELS, ORGANISM, BuiltinModel
from traitlab.model.capture import (
    LinearInputStats,
    NeuronMoments,
    ResidualCapture,
    capture_linear_inputs,
    capture_residual,
    linear_modules,
    stream_neurons,
    teacher_forced,
)
from traitlab.model.edits import neuron_edit, residual_ablate, residual_add, residual_cap
from traitlab.model.family import FAMILY_TABLE, Family, guess_family, resolve_family
from traitlab.model.fingerprint import Fingerprint, compute_fingerprint
from traitlab.model.generation import Generation, pack
from traitlab.model.hooks import HookEngine
from traitlab.model.loaded import LoadedModel, load_model, resolve_spec, wrap
from traitlab.model.positions import PAD, POSITIONS, PROMPT, RESPONSE

__all__ = [
    "BUILTIN_MODELS", "FAMILY_TABLE", "ORGANISM", "PAD", "POSITIONS", "PROMPT", "RESPONSE", "BuiltinModel", "Family",
    "Fingerprint", "Generation", "HookEngine", "LinearInputStats", "LoadedModel", "NeuronMoments", "ResidualCapture",
    "capture_linear_inputs", "capture_residual", "compute_fingerprint", "guess_family", "linear_modules",
    "load_model", "neuron_edit", "pack", "residual_ablate", "residual_add", "residual_cap", "resolve_family",
    "resolve_spec", "stream_neurons", "teacher_forced", "wrap",
]
