"""Calibration sets and activation statistics of persona subnetworks (Ye et al. 2026, arXiv 2602.07164).

A persona is given as

- a TraitSpec pole: the model's own answers to the spec's extraction questions under that pole's system prompts
  (the ``pos`` instructions for the spec's own pole, ``neg`` for the opposite one), ``n_answers`` per question
  and prompt, seeded;
- a description: one system prompt, answers to a question list (default: the built-in Big Five specs'
  extraction questions);
- a JSONL file of persona texts, one object per line: ``{"messages": [...]}`` (the last message is the
  assistant reply, the others its prompt), ``{"prompt": ..., "response": ...}``, or ``{"text": ...}`` (all of it
  counts as reply).

The calibration context either drops the persona system prompt (default, as the paper calibrates on persona texts
alone, and as the subnetwork runs with no system prompt) or keeps it in front of each reply (``with_system=True``);
the choice is recorded in the artifact. Then batched teacher-forced passes with ``capture_linear_inputs``
accumulate, for every Linear in the selected blocks, Σx_j and Σx²_j over the tokens at ``positions``
(``response``: reply tokens; ``all``: prompt and reply).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from traitlab.errors import ConfigError
from traitlab.methods.pole_answers import pole_rows
from traitlab.model import Generation, LinearInputStats, LoadedModel, capture_linear_inputs, pack, teacher_forced
from traitlab.model.capture import stop_after_block
from traitlab.progress import track
from traitlab.readers import read_jsonl
from traitlab.traits import BIG_FIVE, TraitSpec, load_trait

CALIBRATION_POSITIONS = ("response", "all")


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """How calibration answers are sampled."""

    n_answers: int = 1
    temperature: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not isinstance(self.n_answers, int) or self.n_answers < 1:
            raise ConfigError(f"n_answers must be an integer ≥ 1, got {self.n_answers!r}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be ≥ 0, got {self.temperature}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be ≥ 1, got {self.max_new_tokens}")


@dataclasses.dataclass
class CalibrationSet:
    """Token ids of calibration prompts and replies, row-aligned, plus a JSON description of the source."""

    prompts: list[list[int]]
    responses: list[list[int]]
    pad_token_id: int
    source: dict[str, Any]
    texts: list[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)

    def tokens(self) -> int:
        return sum(len(p) + len(r) for p, r in zip(self.prompts, self.responses, strict=True))

    def batch(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return pack([self.prompts[i] for i in rows], [self.responses[i] for i in rows], self.pad_token_id)

    def chunks(self, batch_size: int) -> list[list[int]]:
        """Rows sorted by length, in chunks (less padding)."""
        order = sorted(range(len(self)), key=lambda i: len(self.prompts[i]) + len(self.responses[i]))
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def spec_pole(spec: TraitSpec, pole: str | None) -> tuple[str, bool]:
    """``(pole, use_pos)``: the pole asked for (default the spec's own, or ``high``) and whether its system prompts
    are the spec's ``pos`` instructions. For a spec without a pole, ``high`` means the trait is present."""
    chosen = pole or spec.pole or "high"
    if chosen not in ("high", "low"):
        raise ConfigError(f"pole must be high or low, got '{chosen}'")
    own = spec.pole or "high"
    return chosen, chosen == own


def opposite(pole: str) -> str:
    return "low" if pole == "high" else "high"


def resolve_trait(name: str) -> TraitSpec:
    """A trait spec; a bare Big Five trait name (``extraversion``) means its ``_high`` spec."""
    return load_trait(name)


def default_questions() -> list[str]:
    """The extraction questions of the built-in Big Five specs, deduplicated, in a fixed order."""
    seen: dict[str, None] = {}
    for trait in BIG_FIVE:
        for question in load_trait(f"{trait}_high").questions:
            seen.setdefault(question, None)
    return list(seen)


def _render_prompts(lm: LoadedModel, questions: Sequence[str]) -> list[list[int]]:
    return lm.encode([lm.renderer.render([{"role": "user", "content": q}]) for q in questions])


def _generated(lm: LoadedModel, questions: list[str], systems: list[str], settings: GenerationSettings,
               with_system: bool, source: dict[str, Any], answers: Generation | None = None) -> CalibrationSet:
    if answers is not None:
        if len(answers.texts) != len(questions):
            raise ConfigError(f"the calibration needs {len(questions)} answers (one per prompt row), got "
                              f"{len(answers.texts)}")
        generation = answers
    else:
        generation = lm.generate_chat(questions, systems, max_new_tokens=settings.max_new_tokens,
                                      temperature=settings.temperature, seed=settings.seed,
                                      batch_size=settings.batch_size)
    prompts = generation.prompt_ids if with_system else _render_prompts(lm, questions)
    keep = [i for i, ids in enumerate(generation.response_ids) if ids]
    if not keep:
        raise ConfigError("the model produced only empty answers for the calibration prompts")
    return CalibrationSet([prompts[i] for i in keep], [generation.response_ids[i] for i in keep],
                          lm.tokenizer.pad_token_id, {**source, "with_system": with_system, "texts": len(keep),
                                                      **dataclasses.asdict(settings)},
                          [generation.texts[i] for i in keep])


def from_spec(lm: LoadedModel, spec: TraitSpec, pole: str | None = None, with_system: bool = False,
              settings: GenerationSettings | None = None, questions: Sequence[str] | None = None,
              answers: Generation | None = None) -> CalibrationSet:
    """The model's own answers to the spec's extraction questions under the pole's system prompts (every
    instruction pair × question × ``n_answers``, pair-major, one ``generate_chat`` call seeded ``settings.seed``:
    the rows and call of ``traitlab.methods.pole_answers.pole_answers``). ``answers``: those rows' replies
    already sampled (e.g. from a run's answer bank); then nothing is generated here."""
    settings = settings or GenerationSettings()
    chosen, use_pos = spec_pole(spec, pole)
    qs = list(questions if questions is not None else spec.questions)
    asked, systems = pole_rows(spec, "pos" if use_pos else "neg", settings.n_answers, qs)
    source = {"kind": "trait", "spec": spec.name, "trait": spec.trait_name, "pole": chosen,
              "instructions": "pos" if use_pos else "neg"}
    return _generated(lm, asked, systems, settings, with_system, source, answers)


def from_description(lm: LoadedModel, description: str, with_system: bool = False,
                     settings: GenerationSettings | None = None,
                     questions: Sequence[str] | None = None) -> CalibrationSet:
    """Answers under one persona description used as the system prompt."""
    if not description.strip():
        raise ConfigError("a persona description must be non-empty")
    settings = settings or GenerationSettings()
    qs = list(questions if questions is not None else default_questions())
    rows = [q for q in qs for _ in range(settings.n_answers)]
    source = {"kind": "description", "description": description}
    return _generated(lm, rows, [description] * len(rows), settings, with_system, source)


def read_persona_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Validated records of a persona-text JSONL file (checked before any model is loaded)."""
    source = Path(path)
    records = []
    for number, record in read_jsonl(source, "persona text file"):
        if not isinstance(record, dict):
            raise ConfigError(f"{source}:{number} must be a JSON object")
        if "messages" in record:
            messages = record["messages"]
            if (not isinstance(messages, list) or not messages or not all(
                    isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") in
                    ("system", "user", "assistant") for m in messages) or messages[-1]["role"] != "assistant"):
                raise ConfigError(f"{source}:{number}: 'messages' must be chat messages ending with the "
                                  "assistant's reply")
        elif "response" in record:
            if not isinstance(record["response"], str) or not isinstance(record.get("prompt", ""), str):
                raise ConfigError(f"{source}:{number}: 'prompt' and 'response' must be strings")
        elif not isinstance(record.get("text"), str):
            raise ConfigError(f"{source}:{number} needs 'messages', 'prompt'/'response' or 'text'")
        records.append(record)
    if not records:
        raise ConfigError(f"persona text file {source} has no records")
    return records


def from_texts(lm: LoadedModel, records: Sequence[dict[str, Any]] | str | Path,
               with_system: bool = False) -> CalibrationSet:
    """Calibration from given persona texts (see ``read_persona_jsonl``); system messages are dropped when
    ``with_system`` is false."""
    path = None
    if isinstance(records, str | Path):
        path = str(records)
        records = read_persona_jsonl(records)
    prompts, responses, texts = [], [], []
    for record in records:
        if "messages" in record:
            context = [m for m in record["messages"][:-1] if with_system or m["role"] != "system"]
            prompt = lm.encode([lm.renderer.render(context)])[0] if context else []
            reply = record["messages"][-1]["content"]
        elif "response" in record:
            prompt = _render_prompts(lm, [record["prompt"]])[0] if record.get("prompt") else []
            reply = record["response"]
        else:
            prompt, reply = [], record["text"]
        ids = lm.tokenizer(reply, add_special_tokens=False)["input_ids"]
        if ids:
            prompts.append(prompt)
            responses.append(ids)
            texts.append(reply)
    if not responses:
        raise ConfigError("the persona texts are all empty")
    return CalibrationSet(prompts, responses, lm.tokenizer.pad_token_id,
                          {"kind": "texts", "path": path, "with_system": with_system, "texts": len(texts)}, texts)


def collect_stats(lm: LoadedModel, calibration: CalibrationSet, positions: str = "response",
                  modules: str = "all", blocks: Sequence[int] | None = None,
                  batch_size: int = 16) -> dict[str, LinearInputStats]:
    """Σx_j and Σx²_j of every selected Linear's input over the calibration tokens at ``positions``, from
    batched teacher-forced passes that stop after the last selected block. Keys are module names
    (``model.layers.3.mlp.down_proj``)."""
    if positions not in CALIBRATION_POSITIONS:
        raise ConfigError(f"calibration positions must be response or all, got '{positions}'")
    chunks = calibration.chunks(batch_size)
    last = max(blocks) if blocks else lm.num_layers - 1  # nothing after it is recorded: the pass stops there
    with capture_linear_inputs(lm, positions, modules, blocks) as stats, \
            stop_after_block(lm, last):  # type: ignore[arg-type]
        for rows in track(chunks, "calibrating", total=len(chunks), enabled=len(chunks) > 1):
            input_ids, attention_mask, roles = (t.to(lm.device) for t in calibration.batch(rows))
            teacher_forced(lm, input_ids, attention_mask, roles)
    if not stats or not any(entry.count for entry in stats.values()):
        raise ConfigError(f"no calibration tokens at positions '{positions}'")
    return dict(stats)
