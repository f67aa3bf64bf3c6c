"""The judge protocol every mechanism and evaluation shares: ``score(question, answer, rubric)`` on 0–100 (or
``None``), ``score_many`` for lists, where ``rubric`` is a template with ``{question}`` and ``{answer}``
placeholders that the judge fills (a TraitSpec's ``eval_prompt``). The judges themselves live in
``traitlab.evaluation.judges``; ``traitlab.methods`` only needs this protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from traitlab.progress import track

Triple = tuple[str, str, str]


@runtime_checkable
class Judge(Protocol):
    """Scores an answer to a question on 0–100 against a rubric; ``None`` when it cannot."""

    name: str

    def score(self, question: str, answer: str, rubric: str) -> float | None: ...

    def score_many(self, triples: Sequence[Triple]) -> list[float | None]: ...


def judge_all(judge: Judge, triples: Sequence[Triple], chunk: int = 256, progress: bool = False,
              description: str = "judging") -> list[float | None]:
    """``score_many`` in chunks (``score`` one by one for judges without it), with a progress bar."""
    chunks = [list(triples[i:i + chunk]) for i in range(0, len(triples), chunk)]
    out: list[float | None] = []
    many = getattr(judge, "score_many", None)
    for part in track(chunks, description, total=len(chunks), enabled=progress and len(chunks) > 1):
        out += many(part) if many is not None else [judge.score(q, a, r) for q, a, r in part]
    return out
