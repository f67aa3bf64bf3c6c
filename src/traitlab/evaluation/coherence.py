"""Coherence of replies on a real model: fluency under an independent reference LM plus repetition measures.

- **Fluency**: the reply's perplexity under a *reference* LM, another family and tokenizer than the judged
  model (built-in: ``gemma-3-270m``, the base model), conditioned on its question in a plain layout
  (``Question: …\\nAnswer: …``; a base model has no chat turns). The reference LM's own tokenizer reads the
  reply. Perplexity maps log-linearly from ``good`` (→ 1) to ``good · BAD_FACTOR`` (→ 0).
- **Repetition**: the repeated word-3-gram rate (1 − distinct 3-grams / 3-grams; of character 16-grams where
  that is higher, so that a loop without spaces counts) above the reference's, and
  distinct-1/distinct-2. A loop has a *low* perplexity (LMs copy well), so the repetition factor is what
  catches it: ``1 − (rep3 − ref_rep3) / 0.5``, clipped to [0, 1].
- **Score**: ``100 · fluency · repetition`` (0 for an empty reply).

Each (question, reply) pair's perplexity is computed once per judge (``perplexities`` remembers it): the
demo's ``none`` cells of a trait's two poles answer the same questions with the same replies.

``good`` and ``ref_rep3`` come from the unsteered model's own replies (``calibrate``: their median perplexity
and mean repeat rate), so its ordinary replies score near 100 and what heavy steering breaks (keyword salad:
high perplexity; loops: repeated 3-grams) scores low even when it is full of trait words. Without a
calibration, ``good`` is ``DEFAULT_GOOD`` (measured on the project's own neutral replies under Gemma-3-270m).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from traitlab.errors import ConfigError
from traitlab.evaluation.embedding_judge import words

REFERENCE = "gemma-3-270m"
DEFAULT_GOOD = 30.0
BAD_FACTOR = 20.0
REP_SPAN = 0.5
MAX_REPLY_TOKENS = 256
CHAR_GRAM = 16


def _distinct(units: Sequence[object], n: int) -> float:
    grams = [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def repetition_measures(text: str) -> dict[str, float]:
    """``rep3``, ``distinct1``, ``distinct2`` of a text (lower-cased words). ``rep3`` is the repeated-3-gram
    rate ``1 − distinct 3-grams / 3-grams`` of the words or, where higher, of the characters in
    ``CHAR_GRAM``-grams (whitespace collapsed): a loop without spaces ("hahaha…", "abcabcabc…") is one word
    and repeats no word 3-gram."""
    ws = words(text)
    chars = " ".join(text.lower().split())
    rep_chars = 1.0 - _distinct(chars, CHAR_GRAM)
    return {"rep3": max(1.0 - _distinct(ws, 3), rep_chars), "distinct1": _distinct(ws, 1),
            "distinct2": _distinct(ws, 2)}


def plain_prompt(question: str) -> str:
    return f"Question: {question.strip()}\nAnswer:" if question.strip() else "Answer:"


@dataclass
class ReferenceCoherenceJudge:
    """Coherence 0–100 from a reference LM's perplexity and repetition (see the module docstring)."""

    reference: Any  # LoadedModel
    good: float = DEFAULT_GOOD
    ref_rep3: float = 0.0
    batch_size: int = 16
    calibration: str = "default"
    memo: dict[tuple[str, str], float | None] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.good >= 1.0:
            raise ConfigError(f"reference perplexity must be ≥ 1, got {self.good}")

    @property
    def name(self) -> str:
        tail = "" if self.calibration == "default" else f"@{self.calibration}"
        return f"coherence:{self.reference.spec}{tail}"

    def perplexities(self, questions: Sequence[str], replies: Sequence[str]) -> list[float | None]:
        """The reply's perplexity ``exp(Σ −log p / n)`` under the reference LM, given its question in the plain
        layout (``None`` for an empty reply); pairs seen before are not computed again."""
        from traitlab.evaluation.forward import continuation_nll

        keys = list(zip(questions, replies, strict=True))
        todo = list(dict.fromkeys(k for k in keys if k not in self.memo))
        if todo:
            tok = self.reference.tokenizer
            prompts = [tok(plain_prompt(q), add_special_tokens=True)["input_ids"] for q, _ in todo]
            answers = [tok(" " + r.strip(), add_special_tokens=False)["input_ids"][:MAX_REPLY_TOKENS]
                       if r.strip() else [] for _, r in todo]
            nlls = continuation_nll(self.reference, prompts, answers, self.batch_size)
            self.memo.update((k, math.exp(nll / n) if n else None) for k, (nll, n) in zip(todo, nlls, strict=True))
        return [self.memo[k] for k in keys]

    def measures(self, questions: Sequence[str], replies: Sequence[str]) -> list[dict[str, float | None]]:
        """Per reply: ``perplexity``, ``rep3``, ``distinct1``, ``distinct2``, ``fluency``, ``repetition``,
        ``coherence``."""
        out = []
        for ppl, reply in zip(self.perplexities(questions, replies), replies, strict=True):
            m: dict[str, float | None] = {"perplexity": ppl, **repetition_measures(reply)}
            if ppl is None:
                m.update(fluency=0.0, repetition=0.0, coherence=0.0)
            else:
                bad = self.good * BAD_FACTOR
                fluency = (math.log(bad) - math.log(max(ppl, 1.0))) / math.log(BAD_FACTOR)
                fluency = min(1.0, max(0.0, fluency))
                repetition = min(1.0, max(0.0, 1.0 - (m["rep3"] - self.ref_rep3) / REP_SPAN))  # type: ignore[operator]
                m.update(fluency=fluency, repetition=repetition, coherence=100.0 * fluency * repetition)
            out.append(m)
        return out

    def calibrate(self, questions: Sequence[str], replies: Sequence[str],
                  label: str = "baseline") -> ReferenceCoherenceJudge:
        """Take ``good`` and ``ref_rep3`` from these (the unsteered model's) replies."""
        ppls = [p for p in self.perplexities(questions, replies) if p is not None]
        if len(ppls) < 4:
            raise ConfigError("coherence calibration needs at least 4 non-empty baseline replies")
        rep3 = float(np.mean([repetition_measures(r)["rep3"] for r in replies if r.strip()]))
        return ReferenceCoherenceJudge(self.reference, float(np.median(ppls)), rep3, self.batch_size, label, self.memo)

    def score(self, question: str, answer: str, rubric: str = "") -> float | None:
        return self.score_many([(question, answer, rubric)])[0]

    def score_many(self, triples: Sequence[tuple[str, str, str]]) -> list[float | None]:
        if not triples:
            return []
        ms = self.measures([q for q, _, _ in triples], [a for _, a, _ in triples])
        return [m["coherence"] for m in ms]


def load_reference(name: str = REFERENCE) -> Any:
    """The reference LM (built-in name, hub id or folder), loaded on CPU in float32."""
    from traitlab.model import load_model

    return load_model(name)
