"""Capability retention and fluency on neutral text.

- ``mcq_accuracy``: multiple choice from a CSV ``question,A,B,C,D,answer`` by option log-likelihood (cloze
  style): the question is the user turn, each option is teacher-forced as the assistant's reply, and the
  option with the highest total log-likelihood is the model's choice (``accuracy``); ``accuracy_norm`` divides
  by the option's length in characters. All questions × options go through batched forwards. traitlab ships a
  small general-knowledge file written for it (``data/capability.csv``, 40 questions; chance is 25%).
- ``neutral_perplexity``: for the persona organism, the perplexity of its held-out neutral corpus replies
  (no persona, no trait markers) under the model as it is (run it under the Intervention: a method that
  breaks the model raises it).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
from pathlib import Path
from typing import Any

from traitlab.errors import ConfigError
from traitlab.evaluation.forward import continuation_logprobs, continuation_nll
from traitlab.evaluation.questionnaire import DATA
from traitlab.interventions import Intervention
from traitlab.model.loaded import LoadedModel
from traitlab.validate import read_text

LETTERS = ("A", "B", "C", "D")


@dataclasses.dataclass(frozen=True)
class MCQ:
    question: str
    options: tuple[str, str, str, str]
    answer: int


def load_mcq(path: str | Path | None = None) -> list[MCQ]:
    """Questions from a CSV ``question,A,B,C,D,answer`` (answer is a letter); the shipped file by default."""
    source = DATA / "capability.csv" if path is None else Path(path).expanduser()
    if not source.is_file():
        raise ConfigError(f"multiple-choice file {source} not found")
    rows = list(csv.DictReader(io.StringIO(read_text(source, "multiple-choice file"), newline="")))
    if not rows or not {"question", *LETTERS, "answer"} <= set(rows[0]):
        raise ConfigError(f"{source} needs the columns question,A,B,C,D,answer")
    out = []
    for n, row in enumerate(rows, 2):
        letter = (row["answer"] or "").strip().upper()
        if letter not in LETTERS or any(not (row[k] or "").strip() for k in LETTERS):
            raise ConfigError(f"{source} line {n}: answer must be A, B, C or D and every option non-empty")
        out.append(MCQ(row["question"].strip(), tuple(row[k].strip() for k in LETTERS),  # type: ignore[arg-type]
                       LETTERS.index(letter)))
    return out


def mcq_accuracy(lm: LoadedModel, questions: list[MCQ] | str | Path | None = None,
                 intervention: Intervention | None = None, batch_size: int = 32,
                 progress: bool = False) -> dict[str, Any]:
    """Accuracy by option log-likelihood (see the module docstring), under ``intervention``."""
    items = questions if isinstance(questions, list) else load_mcq(questions)
    if not items:
        raise ConfigError("no multiple-choice questions")
    applied = intervention.applied(lm) if intervention is not None else contextlib.nullcontext()
    with applied:
        prompt_ids = lm.encode(lm.render([q.question for q in items]))
        prompts, options = [], []
        for ids, q in zip(prompt_ids, items, strict=True):
            for option in q.options:
                prompts.append(ids)
                options.append(lm.tokenizer(option, add_special_tokens=False)["input_ids"])
        lps = continuation_logprobs(lm, prompts, options, batch_size, progress, "capability")
    correct = correct_norm = 0
    for i, q in enumerate(items):
        totals = [sum(lps[4 * i + k]) for k in range(4)]
        norms = [t / max(1, len(q.options[k])) for k, t in enumerate(totals)]
        correct += max(range(4), key=totals.__getitem__) == q.answer
        correct_norm += max(range(4), key=norms.__getitem__) == q.answer
    return {"accuracy": correct / len(items), "accuracy_norm": correct_norm / len(items), "n": len(items),
            "chance": 0.25}


def neutral_perplexity(lm: LoadedModel, n: int = 40, seed: int = 0, intervention: Intervention | None = None,
                       batch_size: int = 32) -> float:
    """Perplexity of ``n`` held-out neutral replies of the organism corpus (prompts have no system turn)."""
    from traitlab.organism.corpus import neutral_set

    examples = neutral_set(n, seed, split="heldout")
    applied = intervention.applied(lm) if intervention is not None else contextlib.nullcontext()
    with applied:
        prompts = lm.encode(lm.render([ex["messages"][:-1] for ex in examples]))
        replies = [lm.tokenizer(ex["messages"][-1]["content"], add_special_tokens=False)["input_ids"]
                   for ex in examples]
        nll = continuation_nll(lm, prompts, replies, batch_size)
    tokens = sum(c for _, c in nll)
    return math.exp(sum(v for v, _ in nll) / tokens) if tokens else float("nan")
