"""The method registry of the experiment runner: a method name → a builder
``(lm, trait_spec, params, workdir) -> Intervention | None``.

Built in:

- ``none``: no intervention (the model as it is).
- ``prompt``: the simple persona prompt of the papers: the spec's first ``pos`` instruction (``index`` picks
  another, ``text`` overrides it) as a ``PromptIntervention`` (system prompt).
- ``p2``: a P²-style portrait prompt (Jiang et al. 2023, "Evaluating and Inducing Personality in Pre-trained
  Language Models"). P² has the model write a portrait of a person with the trait; traitlab writes it
  deterministically instead, from the spec: the sentences of the ``pos`` instructions in order, without
  repeats and without the sentences that also occur in a ``neg`` instruction (framing such as "Take on the
  following persona." or a character's name and job, which say nothing about the pole); imperatives
  ("Be ...", "Answer as ...") become "You be..."/"You answer as ..."; at most ``sentences`` (default 6) of them
  go between a fixed opening ("Here is a portrait of who you are.") and closing ("Stay this person in every
  answer."). Same spec → same text, no model call.
- ``artifact``: a saved intervention file (``path``; optional ``scale`` multiplies its stored scale),
  checked against the model's fingerprint.

Other mechanisms add themselves with ``register_method(name, builder, validate=...)``; ``validate(params)``
runs while the YAML is validated, before any model loads, and raises ``ConfigError`` on bad parameters.
Sweeps call ``intervention.scaled(s)`` on the built intervention, once per scale.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from traitlab.errors import ConfigError
from traitlab.interventions import Intervention, load_intervention, read_artifact
from traitlab.model.loaded import LoadedModel

Builder = Callable[[LoadedModel, Any, dict[str, Any], Path], Intervention | None]
Validator = Callable[[dict[str, Any]], None]

METHODS: dict[str, Builder] = {}
VALIDATORS: dict[str, Validator] = {}
SWEEPABLE: dict[str, bool] = {}


def register_method(name: str, builder: Builder, validate: Validator | None = None, sweepable: bool = True) -> None:
    """Make ``name`` usable in an experiment's ``methods``. ``sweepable=False`` rejects ``sweep`` for it."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"method names are lowercase identifiers, got {name!r}")
    METHODS[name] = builder
    if validate is not None:
        VALIDATORS[name] = validate
    SWEEPABLE[name] = sweepable


def _discover() -> None:
    """Import ``traitlab.methods`` so mechanisms that register runner methods on import are present."""
    import importlib

    importlib.import_module("traitlab.methods")


def known_methods() -> list[str]:
    _discover()
    return sorted(METHODS)


def validate_method(name: str, params: Mapping[str, Any]) -> None:
    """Unknown names and bad parameters raise ``ConfigError``."""
    _discover()
    if name not in METHODS:
        raise ConfigError(f"unknown method '{name}'; known methods: {', '.join(sorted(METHODS))}")
    check = VALIDATORS.get(name)
    if check is not None:
        check(dict(params))


def build(name: str, lm: LoadedModel, spec: Any, params: Mapping[str, Any], workdir: Path) -> Intervention | None:
    validate_method(name, params)
    return METHODS[name](lm, spec, dict(params), workdir)


def _allowed(method: str, params: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(params) - allowed)
    if extra:
        known = ", ".join(sorted(allowed)) or "none"
        raise ConfigError(f"method '{method}' has no parameter {', '.join(extra)} (parameters: {known})")


# ---------------------------------------------------------------------------------------------- none


def _build_none(lm: LoadedModel, spec: Any, params: dict[str, Any], workdir: Path) -> None:
    return None


# ---------------------------------------------------------------------------------------------- prompts


def _pos_instructions(spec: Any) -> list[str]:
    seen: dict[str, None] = {}
    for pair in spec.instruction:
        seen.setdefault(pair.pos.strip(), None)
    return list(seen)


def _validate_prompt(params: dict[str, Any]) -> None:
    _allowed("prompt", params, {"text", "index"})
    if "text" in params and (not isinstance(params["text"], str) or not params["text"].strip()):
        raise ConfigError("method 'prompt': text must be a non-empty string")
    if "index" in params and (not isinstance(params["index"], int) or params["index"] < 0):
        raise ConfigError("method 'prompt': index must be a non-negative integer")


def _build_prompt(lm: LoadedModel, spec: Any, params: dict[str, Any], workdir: Path) -> Intervention:
    from traitlab.methods.prompting import PromptIntervention

    text = params.get("text")
    if text is None:
        pos = _pos_instructions(spec)
        index = params.get("index", 0)
        if index >= len(pos):
            raise ConfigError(f"method 'prompt': index {index} but {spec.name} has {len(pos)} instructions")
        text = pos[index]
    return PromptIntervention(text, trait=spec.trait_name, pole=spec.pole,
                              hyperparameters={"method": "prompt", **params})


_IMPERATIVE = re.compile(r"^(be|act|behave|speak|respond|answer|reply)\b", re.IGNORECASE)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")


def _sentences(text: str) -> list[str]:
    return [m.group(0).strip() for m in _SENTENCE.finditer(text) if m.group(0).strip(" .!?")]


def p2_portrait(spec: Any, sentences: int = 6) -> str:
    """The deterministic P² portrait of a spec (see the module docstring)."""
    framing = {s.lower() for pair in spec.instruction for s in _sentences(pair.neg)}
    lines: list[str] = []
    for instruction in _pos_instructions(spec):
        for text in _sentences(instruction):
            if text.lower() in framing or text in lines:
                continue
            if _IMPERATIVE.match(text):
                text = "You " + text[0].lower() + text[1:]
            if text[-1] not in ".!?":
                text += "."
            lines.append(text)
    if not lines:  # every sentence also frames the opposite pole: fall back to the first instruction
        lines = [_pos_instructions(spec)[0]]
    return "Here is a portrait of who you are. " + " ".join(lines[:sentences]) + " Stay this person in every answer."


def _validate_p2(params: dict[str, Any]) -> None:
    _allowed("p2", params, {"sentences"})
    if "sentences" in params and (not isinstance(params["sentences"], int) or params["sentences"] < 1):
        raise ConfigError("method 'p2': sentences must be a positive integer")


def _build_p2(lm: LoadedModel, spec: Any, params: dict[str, Any], workdir: Path) -> Intervention:
    from traitlab.methods.prompting import PromptIntervention

    return PromptIntervention(p2_portrait(spec, params.get("sentences", 6)), trait=spec.trait_name,
                              pole=spec.pole, hyperparameters={"method": "p2", **params})


# ---------------------------------------------------------------------------------------------- artifact


def _validate_artifact(params: dict[str, Any]) -> None:
    _allowed("artifact", params, {"path", "scale"})
    if not isinstance(params.get("path"), str):
        raise ConfigError("method 'artifact' needs params.path: the intervention file to load")
    if "scale" in params and not isinstance(params["scale"], int | float):
        raise ConfigError("method 'artifact': scale must be a number")
    read_artifact(Path(params["path"]).expanduser())  # missing, corrupt or foreign files fail here


def _build_artifact(lm: LoadedModel, spec: Any, params: dict[str, Any], workdir: Path) -> Intervention:
    intervention = load_intervention(Path(params["path"]).expanduser(), lm)
    return intervention.scaled(float(params.get("scale", 1.0)))


register_method("none", _build_none, lambda p: _allowed("none", p, set()), sweepable=False)
register_method("prompt", _build_prompt, _validate_prompt)
register_method("p2", _build_p2, _validate_p2)
register_method("artifact", _build_artifact, _validate_artifact)


def _register_mechanisms() -> None:
    """The fitted mechanisms (evaluation sits above methods, so their registration lives here)."""
    from traitlab.evaluation import builders
    from traitlab.methods import neurons, subnetworks

    register_method("persona_vectors", builders.build_persona_vectors, builders.validate_persona_vectors)
    register_method("personality_vector", builders.build_personality_vector, builders.validate_personality_vector)
    register_method("npti", neurons.runner_builder, neurons.validate_runner_params)
    register_method("subnetwork", subnetworks.runner_builder, subnetworks.validate_runner_params)


_register_mechanisms()
