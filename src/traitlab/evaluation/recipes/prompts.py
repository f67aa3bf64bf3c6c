"""The recipes that fit nothing:

- ``none``: no intervention (the model as it is).
- ``prompt``: the simple persona prompt of the papers: the spec's first ``pos`` instruction (``index`` picks
  another, ``short: true`` picks from the ``short_instruction`` pairs, ``text`` overrides it) as a
  ``PromptIntervention`` (system prompt).
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
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from traitlab.errors import ConfigError
from traitlab.evaluation.recipes.base import Params, Recipe, RecipeContext
from traitlab.interventions import Intervention, read_artifact
from traitlab.methods.prompting import PromptIntervention
from traitlab.registry import load_intervention


class NoParams(Params):
    pass


def build_none(context: RecipeContext, params: NoParams) -> None:
    return None


def _pos_instructions(spec: Any) -> list[str]:
    seen: dict[str, None] = {}
    for pair in spec.instruction:
        seen.setdefault(pair.pos.strip(), None)
    return list(seen)


class PromptParams(Params):
    text: str | None = None
    index: int = Field(default=0, ge=0)
    short: bool = False

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("text must be a non-empty string")
        return value


def build_prompt(context: RecipeContext, params: PromptParams) -> Intervention:
    spec = context.spec
    text = params.text
    if text is None:
        if params.short and not spec.short_instruction:
            raise ConfigError(f"method 'prompt': short is set but {spec.name} has no short_instruction pairs")
        pos = _pos_instructions(spec.with_short_instructions() if params.short else spec)
        if params.index >= len(pos):
            raise ConfigError(f"method 'prompt': index {params.index} but {spec.name} has {len(pos)} instructions")
        text = pos[params.index]
    return PromptIntervention(text, trait=spec.trait_name, pole=spec.pole,
                              hyperparameters={"method": "prompt", **params.given()})


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


class P2Params(Params):
    sentences: int = Field(default=6, ge=1)


def build_p2(context: RecipeContext, params: P2Params) -> Intervention:
    spec = context.spec
    return PromptIntervention(p2_portrait(spec, params.sentences), trait=spec.trait_name, pole=spec.pole,
                              hyperparameters={"method": "p2", **params.given()})


class ArtifactParams(Params):
    path: str
    scale: float = 1.0

    @field_validator("path")
    @classmethod
    def _readable(cls, value: str) -> str:
        read_artifact(Path(value).expanduser())  # missing, corrupt or foreign files fail here
        return value


def build_artifact(context: RecipeContext, params: ArtifactParams) -> Intervention:
    intervention = load_intervention(Path(params.path).expanduser(), context.lm)
    return intervention.scaled(params.scale)


NONE = Recipe("none", NoParams, build_none, sweepable=False)
PROMPT = Recipe("prompt", PromptParams, build_prompt)
P2 = Recipe("p2", P2Params, build_p2)
ARTIFACT = Recipe("artifact", ArtifactParams, build_artifact)
