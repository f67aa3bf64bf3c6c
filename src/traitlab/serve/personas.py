"""The personas a server has loaded: named Interventions, how each one can vary per request, and the
per-request scale maps.

``--persona NAME=ARTIFACT[:SCALE]`` loads an artifact under a name; SCALE (default 1) is the scale a request
gets when it does not name the persona (``NAME=ARTIFACT:0`` loads it switched off). A request's
``persona: {NAME: s}`` sets the scale α of that persona: the artifact's own strength times s.

Each loaded Intervention is flattened (composites into their parts) and every part is served in one of three
ways:

- **runtime** (persona vectors, residual steering, neuron edits, Assistant-Axis capping): hooks with per-row
  scales, so rows of one batch can carry different personas (``Intervention.applied(lm, row_scale=...)``);
- **shared** (weight-space edits, residual steering's ``cap`` mode): one state per batch; requests whose shared
  settings differ are never batched together (the engine groups them by ``shared_key``);
- **prompt** (prompt interventions): the persona's text becomes the system prompt of a conversation that has
  none (per request, at render time).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from traitlab.errors import ArtifactError, ConfigError
from traitlab.interventions import Composite, Intervention, parse_apply_spec, read_artifact
from traitlab.model.loaded import LoadedModel
from traitlab.registry import from_artifact

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
MAX_SCALE = 100.0
SharedKey = tuple[tuple[str, int, float], ...]


@dataclasses.dataclass(frozen=True)
class Part:
    """One flattened part of a persona: the Intervention, the product of the composite scales above it, and
    how it is served (``runtime``, ``shared`` or ``prompt``)."""

    persona: str
    index: int
    intervention: Intervention
    multiplier: float
    kind: str


@dataclasses.dataclass
class Persona:
    name: str
    source: str
    intervention: Intervention
    default_scale: float
    parts: list[Part]
    monitor: tuple[int, torch.Tensor] | None

    @property
    def kinds(self) -> list[str]:
        return sorted({part.kind for part in self.parts})

    def describe(self) -> dict[str, Any]:
        iv = self.intervention
        mechanism = (iv.mechanism if not isinstance(iv, Composite)
                     else "composite(" + ", ".join(p.intervention.mechanism for p in self.parts) + ")")
        kinds = self.kinds
        return {
            "name": self.name, "mechanism": mechanism, "trait": iv.trait, "pole": iv.pole,
            "default_scale": self.default_scale, "stored_scale": iv.scale, "artifact": self.source,
            "per_request": "runtime" in kinds or "prompt" in kinds,
            "weight_space": any(p.intervention.weight_space for p in self.parts),
            "batching": "grouped" if "shared" in kinds else "per-row",
            "monitor": None if self.monitor is None else {"layer": self.monitor[0]},
        }


def parse_persona_spec(spec: str) -> tuple[str, str, float]:
    """``NAME=ARTIFACT[:SCALE]`` → (name, path, default scale)."""
    name, sep, rest = spec.partition("=")
    name = name.strip()
    if not sep or not rest:
        raise ConfigError(f"--persona '{spec}' must be NAME=ARTIFACT[:SCALE]")
    if not NAME.match(name):
        raise ConfigError(f"persona name '{name}' must start with a letter and use letters, digits, _ . - "
                          "(at most 64 characters)")
    path, scale = parse_apply_spec(rest)
    check_scale(name, scale)
    return name, path, scale


def check_scale(name: str, scale: float) -> float:
    if not isinstance(scale, int | float) or isinstance(scale, bool) or not math.isfinite(scale):
        raise ConfigError(f"scale of persona '{name}' must be a finite number")
    if abs(scale) > MAX_SCALE:
        raise ConfigError(f"scale {scale:g} of persona '{name}' is outside [-{MAX_SCALE:g}, {MAX_SCALE:g}]")
    return float(scale)


def read_persona_specs(specs: Sequence[str]) -> list[tuple[str, str, float, Intervention]]:
    """Parse and load every ``--persona`` spec (without a model): names unique, files readable artifacts."""
    loaded: list[tuple[str, str, float, Intervention]] = []
    seen: set[str] = set()
    for spec in specs:
        name, path, scale = parse_persona_spec(spec)
        if name in seen:
            raise ConfigError(f"persona name '{name}' is given twice; names must be unique")
        seen.add(name)
        if not Path(path).is_file():
            raise ArtifactError(f"persona '{name}': artifact {path} not found")
        intervention = from_artifact(*read_artifact(path))
        loaded.append((name, path, scale, intervention))
    return loaded


def flatten(intervention: Intervention, multiplier: float = 1.0) -> list[tuple[Intervention, float]]:
    """The leaf interventions of a (possibly nested) composite, each with the product of the scales above it."""
    if isinstance(intervention, Composite):
        out: list[tuple[Intervention, float]] = []
        for part in intervention.parts:
            out.extend(flatten(part, multiplier * intervention.scale))
        return out
    return [(intervention, multiplier)]


def kind_of(intervention: Intervention) -> str:
    from traitlab.methods.prompting import PromptIntervention

    if isinstance(intervention, PromptIntervention):
        return "prompt"
    if intervention.weight_space or getattr(intervention, "mode", None) == "cap":
        return "shared"
    return "runtime"


def monitor_direction(parts: Sequence[Part]) -> tuple[int, torch.Tensor] | None:
    """(layer, direction) of the first residual-steering part (persona vectors): its first steering layer."""
    for part in parts:
        vectors = getattr(part.intervention, "vectors", None)
        if isinstance(vectors, Mapping) and vectors:
            layer = min(vectors)
            return int(layer), torch.as_tensor(vectors[layer]).float()
    return None


class PersonaSet:
    """The loaded personas, by name, and the per-request views of a scale map."""

    def __init__(self, personas: Sequence[Persona] = ()) -> None:
        self.personas = {p.name: p for p in personas}
        self.parts = [part for p in personas for part in p.parts]

    @classmethod
    def load(cls, lm: LoadedModel, specs: Sequence[tuple[str, str, float, Intervention]]) -> PersonaSet:
        """Check each loaded artifact against the model and classify its parts."""
        personas = []
        for name, path, scale, intervention in specs:
            intervention.check_model(lm)
            parts = [Part(name, i, iv, mult, kind_of(iv)) for i, (iv, mult) in enumerate(flatten(intervention))]
            monitor = monitor_direction(parts)
            if monitor is not None:
                lm.hooks.check_layer(monitor[0])
            personas.append(Persona(name, Path(path).name, intervention, scale, parts, monitor))
        return cls(personas)

    @classmethod
    def from_interventions(cls, lm: LoadedModel, named: Mapping[str, Intervention | tuple[Intervention, float]]
                           ) -> PersonaSet:
        """Build from in-memory Interventions (``{name: iv}`` or ``{name: (iv, default_scale)}``)."""
        specs = []
        for name, value in named.items():
            iv, scale = value if isinstance(value, tuple) else (value, 1.0)
            if not NAME.match(name):
                raise ConfigError(f"persona name '{name}' is not valid")
            specs.append((name, f"<{name}>", check_scale(name, scale), iv))
        return cls.load(lm, specs)

    def __len__(self) -> int:
        return len(self.personas)

    def names(self) -> list[str]:
        return list(self.personas)

    def resolve(self, overrides: Mapping[str, float] | None) -> dict[str, float]:
        """The full scale map of a request: defaults, overridden by the request's own values."""
        scales = {name: p.default_scale for name, p in self.personas.items()}
        for name, value in (overrides or {}).items():
            if name not in self.personas:
                loaded = ", ".join(self.personas) or "none"
                raise ConfigError(f"unknown persona '{name}'; loaded personas: {loaded}")
            scales[name] = check_scale(name, value)
        return scales

    def effective(self, part: Part, scales: Mapping[str, float]) -> float:
        return scales.get(part.persona, 0.0) * part.multiplier

    def shared_key(self, scales: Mapping[str, float]) -> SharedKey:
        """What a batch must share: the nonzero effective scales of the shared (weight-space) parts."""
        key = []
        for part in self.parts:
            value = self.effective(part, scales)
            if part.kind == "shared" and value != 0:
                key.append((part.persona, part.index, value))
        return tuple(key)

    def shared_part(self, persona: str, index: int) -> Part:
        return self.personas[persona].parts[index]

    def runtime_parts(self) -> list[Part]:
        return [part for part in self.parts if part.kind == "runtime"]

    def system_prompt(self, scales: Mapping[str, float]) -> str | None:
        """The system text of the active prompt personas (``None`` when none is active)."""
        texts = [part.intervention.text for part in self.parts  # type: ignore[attr-defined]
                 if part.kind == "prompt" and self.effective(part, scales) * part.intervention.scale != 0]
        return "\n\n".join(texts) or None

    def monitored(self) -> dict[str, tuple[int, torch.Tensor]]:
        return {name: p.monitor for name, p in self.personas.items() if p.monitor is not None}
