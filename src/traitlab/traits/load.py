"""Loading trait specs: the built-in library (JSON written by this project, ``traits/library``), a traitlab
JSON file, or a persona_vectors file (``trait_data_extract/NAME.json`` with its ``trait_data_eval`` twin)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from traitlab.errors import ConfigError, validation_message
from traitlab.traits.spec import BIG_FIVE, TraitSpec
from traitlab.validate import output_file, read_text, write_text_atomic

LIBRARY = Path(str(resources.files("traitlab.traits"))) / "library"


def list_traits() -> list[str]:
    """Names of the built-in trait specs."""
    return sorted(p.stem for p in LIBRARY.glob("*.json"))


def _validated(data: Any, source: str) -> TraitSpec:
    try:
        return TraitSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid trait spec {source}: {validation_message(exc)}") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path, "trait file"))
    except FileNotFoundError:
        raise ConfigError(f"trait file {path} not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"trait file {path} is not valid JSON: {exc}") from None


def from_persona_vectors(extract_path: Path, eval_path: Path | None = None, name: str | None = None) -> TraitSpec:
    """A spec from persona_vectors' layout: ``{instruction: [{pos, neg}], questions, eval_prompt}`` for
    extraction, and the same layout in ``trait_data_eval`` for held-out questions."""
    data = _read_json(extract_path)
    if eval_path is None:
        twin = extract_path.parent.parent / "trait_data_eval" / extract_path.name
        eval_path = twin if twin.is_file() else None
    eval_questions = _read_json(eval_path).get("questions", []) if eval_path else []
    if not isinstance(data, dict) or "instruction" not in data:
        raise ConfigError(f"{extract_path} is not a persona_vectors trait file (no 'instruction')")
    spec = {"name": name or extract_path.stem.lower().replace("-", "_"), "instruction": data["instruction"],
            "questions": data.get("questions", []), "eval_questions": eval_questions,
            "eval_prompt": data.get("eval_prompt", "")}
    return _validated(spec, str(extract_path))


def trait_name(name: str) -> str:
    """The one trait-name resolver of every command: a bare Big Five name is its high pole (``extraversion`` →
    ``extraversion_high``; ``extraversion_low`` is the other pole); anything else is returned unchanged."""
    return f"{name}_high" if name in BIG_FIVE else name


def load_trait(name_or_path: str | Path) -> TraitSpec:
    """A built-in name (``extraversion`` = ``extraversion_high``, ``extraversion_low``, ``evil`` ...), a traitlab
    spec JSON, or a persona_vectors file."""
    text = trait_name(str(name_or_path))
    if text in list_traits():
        return _validated(_read_json(LIBRARY / f"{text}.json"), text)
    path = Path(text).expanduser()
    if not path.suffix == ".json" and not path.exists():
        raise ConfigError(f"unknown trait '{text}'; built-in traits: {', '.join(BIG_FIVE)} (= their _high pole), "
                          f"{', '.join(list_traits())}, or give a JSON file")
    data = _read_json(path)
    if isinstance(data, dict) and "name" not in data and "instruction" in data:
        return from_persona_vectors(path)
    return _validated(data, str(path))


def save_trait(spec: TraitSpec, path: str | Path) -> Path:
    target = output_file(path, "trait spec")
    return write_text_atomic(target, spec.model_dump_json(indent=2) + "\n")
