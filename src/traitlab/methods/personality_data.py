"""Training data for personality vectors (arXiv 2509.19727): the Big5-Chat CSV layout, chat JSONL, or
**self-distilled** data — the model's own answers under a persona system prompt, saved without the prompt, so
any model can get a personality vector with no external data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from traitlab.errors import ConfigError
from traitlab.model import LoadedModel
from traitlab.model.chat import Conversation
from traitlab.traits import TraitSpec

BIG5CHAT_COLUMNS = ("trait", "level", "train_instruction", "train_input", "train_output")


def load_big5chat(path: str | Path, trait: str, level: str, keep_instruction: bool = False,
                  limit: int | None = None) -> list[Conversation]:
    """Rows of one trait and level from a Big5-Chat CSV (``trait, level, train_instruction, train_input,
    train_output``) as conversations; the persona instruction is dropped unless ``keep_instruction``, so the
    finetuned model carries the persona without being told."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"Big5-Chat file {source} not found")
    with source.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in BIG5CHAT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{source} lacks the Big5-Chat column(s) {', '.join(missing)}")
        conversations = []
        for row in reader:
            if row["trait"].strip().lower() != trait or row["level"].strip().lower() != level:
                continue
            turns = [{"role": "system", "content": row["train_instruction"]}] if keep_instruction else []
            turns += [{"role": "user", "content": row["train_input"]},
                      {"role": "assistant", "content": row["train_output"]}]
            conversations.append(turns)
            if limit and len(conversations) >= limit:
                break
    if not conversations:
        raise ConfigError(f"{source} has no rows for trait '{trait}' at level '{level}'")
    return conversations


def self_distill(lm: LoadedModel, spec: TraitSpec, n_per_question: int = 8, temperature: float = 1.0,
                 max_new_tokens: int = 96, seed: int = 0, batch_size: int = 64) -> list[Conversation]:
    """The model's answers to the spec's extraction questions under its positive instructions (cycled),
    ``n_per_question`` samples each, returned without the system prompt; empty answers are dropped."""
    questions = [q for q in spec.questions for _ in range(n_per_question)]
    systems = [spec.instruction[i % len(spec.instruction)].pos for i in range(len(questions))]
    answers = lm.generate_chat(questions, systems, max_new_tokens=max_new_tokens, temperature=temperature,
                               seed=seed, batch_size=batch_size).texts
    return [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            for q, a in zip(questions, answers, strict=True) if a.strip()]


def write_chat_jsonl(conversations: list[Conversation], out: str | Path) -> Path:
    target = Path(out)
    if not target.parent.is_dir():
        raise ConfigError(f"cannot write {target}: folder {target.parent} does not exist")
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    temporary.replace(target)
    return target
