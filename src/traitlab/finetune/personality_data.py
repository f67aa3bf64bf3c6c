"""Training data for personality vectors (arXiv 2509.19727): the Big5-Chat CSV layout, chat JSONL, or
**self-distilled** data — the model's own answers under a persona system prompt, saved without the prompt, so
any model can get a personality vector with no external data."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from traitlab.errors import ConfigError
from traitlab.evaluation.questionnaire import Administration, Inventory
from traitlab.evaluation.scoring import parse_first_integer
from traitlab.model import LoadedModel
from traitlab.model.chat import Conversation
from traitlab.traits import TraitSpec
from traitlab.validate import output_file, write_text_atomic

BIG5CHAT_COLUMNS = ("trait", "level", "train_instruction", "train_input", "train_output")


def load_big5chat(path: str | Path, trait: str, level: str, keep_instruction: bool = False,
                  limit: int | None = None) -> list[Conversation]:
    """Rows of one trait and level from a Big5-Chat CSV (``trait, level, train_instruction, train_input,
    train_output``) as conversations; the persona instruction is dropped unless ``keep_instruction``, so the
    finetuned model carries the persona without being told."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"Big5-Chat file {source} not found")
    try:
        return _read_big5chat(source, trait, level, keep_instruction, limit)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Big5-Chat file {source} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None


def _read_big5chat(source: Path, trait: str, level: str, keep_instruction: bool, limit: int | None
                   ) -> list[Conversation]:
    with source.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in BIG5CHAT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{source} lacks the Big5-Chat column(s) {', '.join(missing)}")
        conversations = []
        for row in reader:
            if (row["trait"] or "").strip().lower() != trait or (row["level"] or "").strip().lower() != level:
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
                 max_new_tokens: int = 96, seed: int = 0, batch_size: int = 64,
                 self_report: Inventory | None = None, side: Literal["pos", "neg"] = "pos",
                 answers: tuple[Sequence[str], Sequence[str]] | None = None) -> list[Conversation]:
    """The model's answers to the spec's extraction questions under its positive instructions (cycled; ``side=
    "neg"``: its negative ones, the opposite pole), ``n_per_question`` samples each, returned without the system
    prompt; empty answers are dropped. ``answers``: (questions, replies) already sampled under that side's
    prompts (e.g. a run's answer bank, in any row layout); then nothing is generated for them.

    With ``self_report``, the persona also answers each of that inventory's items ``n_per_question`` times per
    administration (the questionnaire harness's wordings × option orders) and the answers that parse as 1-5
    are kept, so the finetuned model reports its personality as well as speaking in it. Distil from a
    different instrument than the one you evaluate with."""
    if answers is not None:
        questions, replies = list(answers[0]), list(answers[1])
    else:
        questions = [q for q in spec.questions for _ in range(n_per_question)]
        systems = side_prompts(spec, side, len(questions))
        replies = lm.generate_chat(questions, systems, max_new_tokens=max_new_tokens, temperature=temperature,
                                   seed=seed, batch_size=batch_size).texts
    rows = [_chat(q, a) for q, a in zip(questions, replies, strict=True) if a.strip()]
    if self_report is not None:
        rows += _self_report(lm, spec, self_report, n_per_question, temperature, seed, batch_size, side)
    return rows


def side_prompts(spec: TraitSpec, side: Literal["pos", "neg"], n: int) -> list[str]:
    """``n`` system prompts of one side of ``spec``: its ``pos`` (or ``neg``) instructions cycled."""
    return [getattr(spec.instruction[i % len(spec.instruction)], side) for i in range(n)]


def judge_filter(rows: list[Conversation], judge: Any, rubric: str = "", threshold: float = 50.0,
                 keep: int | None = None) -> tuple[list[Conversation], list[float]]:
    """The rows whose last answer the pole-oriented ``judge`` scores ≥ ``threshold`` (0–100, toward the pole),
    best first and at most ``keep`` of them, with their scores.

    The persona prompt does not make every sampled answer express the pole (a small model often ignores it);
    training only on the answers the judge places on the pole's side is the judge filter of persona-vector
    extraction (Chen et al. 2025) applied to the personality vector's data (arXiv 2509.19727 distils from a
    persona-conditioned model)."""
    if keep is not None and keep < 1:
        raise ConfigError(f"keep must be at least 1, got {keep}")
    triples = [(_question(row), row[-1]["content"], rubric) for row in rows]
    scores = judge.score_many(triples) if triples else []
    ranked = sorted((i for i, s in enumerate(scores) if s is not None and s >= threshold),
                    key=lambda i: -float(scores[i]))  # type: ignore[arg-type]
    chosen = sorted(ranked[:keep] if keep is not None else ranked)
    return [rows[i] for i in chosen], [float(scores[i]) for i in chosen]  # type: ignore[arg-type]


def _question(row: Conversation) -> str:
    return next((turn["content"] for turn in reversed(row[:-1]) if turn["role"] == "user"), "")


def _chat(question: str, answer: str) -> Conversation:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def _self_report(lm: LoadedModel, spec: TraitSpec, inventory: Inventory, n_per_item: int, temperature: float,
                 seed: int, batch_size: int, side: Literal["pos", "neg"] = "pos") -> list[Conversation]:
    if not inventory.items:
        raise ConfigError(f"self-report inventory {inventory.name} has no items")
    admin = Administration()
    prompts = [admin.prompt(item, w, order) for item in inventory.items for w, order in admin.respondents()
               for _ in range(n_per_item)]
    systems = side_prompts(spec, side, len(prompts))
    answers = lm.generate_chat(prompts, systems, max_new_tokens=4, temperature=temperature, seed=seed,
                               batch_size=batch_size).texts
    return [_chat(p, a.strip()) for p, a in zip(prompts, answers, strict=True)
            if parse_first_integer(a, 1, 5) is not None]


def write_chat_jsonl(conversations: list[Conversation], out: str | Path) -> Path:
    target = output_file(out, "chat JSONL")
    return write_text_atomic(target, "".join(json.dumps({"messages": c}) + "\n" for c in conversations))
