"""The static table of mechanisms: an artifact's ``mechanism`` name → the Intervention class that rebuilds it,
and loading an artifact of any mechanism (``load_intervention``, ``load_applied``, ``from_artifact``).

It sits above ``traitlab.interventions`` (the protocol, which knows no mechanism) and ``traitlab.methods``
(one module per mechanism); nothing registers itself on import. A new mechanism is one more line in
``MECHANISMS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from traitlab.errors import ArtifactError
from traitlab.interventions import Composite, Intervention, compose, parse_apply_spec, read_artifact
from traitlab.methods.axis_capping import AxisCapping
from traitlab.methods.merging import PersonalityVector
from traitlab.methods.neurons import NeuronInduction
from traitlab.methods.persona_vectors import PersonaVector
from traitlab.methods.prompting import PromptIntervention
from traitlab.methods.steering import ResidualSteering
from traitlab.methods.subnetworks import SubnetworkMask
from traitlab.methods.weights import WeightDelta
from traitlab.model.loaded import LoadedModel

MECHANISMS: dict[str, type[Intervention]] = {cls.mechanism: cls for cls in (
    Composite, ResidualSteering, PersonaVector, NeuronInduction, SubnetworkMask, WeightDelta, PersonalityVector,
    PromptIntervention, AxisCapping,
)}


def from_artifact(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Intervention:
    """Rebuild the Intervention an artifact's metadata names (a composite's parts recursively)."""
    mechanism = meta.get("mechanism")
    if mechanism not in MECHANISMS:
        raise ArtifactError(f"unknown mechanism '{mechanism}' in artifact; known: {', '.join(sorted(MECHANISMS))}")
    try:
        if mechanism == Composite.mechanism:
            return Composite.from_artifact(meta, tensors, load_part=from_artifact)
        return MECHANISMS[mechanism].from_artifact(meta, tensors)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ArtifactError(f"corrupt {mechanism} artifact: {exc}") from None


def load_intervention(path: str | os.PathLike[str], model: LoadedModel | None = None) -> Intervention:
    """Load any mechanism's artifact; with ``model``, check it was made for that model."""
    intervention = from_artifact(*read_artifact(path))
    if model is not None:
        intervention.check_model(model)
    return intervention


def effective_line(path: str, stored: float, multiplier: float, intervention: Intervention) -> str:
    """What ``--apply ART:SCALE`` does, in one line: ``:SCALE`` multiplies the artifact's stored scale (a persona
    vector's α, NPTI's γ, a merge's weight), so the user sees the effective value, not only the multiplier."""
    return (f"applying {path}: {intervention.name}, effective scale {stored * multiplier:g} "
            f"(stored {stored:g} × --apply {multiplier:g})")


def load_applied(specs: Sequence[str], model: LoadedModel | None = None,
                 report: Callable[[str], None] | None = None) -> Intervention | None:
    """Load ``ARTIFACT[:SCALE]`` specs (CLI ``--apply``) into one composed Intervention, or ``None``; ``report``
    receives each one's ``effective_line``."""
    loaded = []
    for spec in specs:
        path, scale = parse_apply_spec(spec)
        intervention = load_intervention(path, model)
        if report is not None:
            report(effective_line(path, intervention.scale, scale, intervention))
        loaded.append(intervention.scaled(scale))
    if not loaded:
        return None
    return loaded[0] if len(loaded) == 1 else compose(loaded)
