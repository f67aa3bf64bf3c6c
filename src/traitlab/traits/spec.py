"""``TraitSpec``: what a trait is, for extraction and evaluation (persona_vectors layout, Chen et al. 2025).

``instruction`` holds contrastive system prompts (``pos`` elicits the trait, ``neg`` its opposite),
``short_instruction`` optional short, explicit pairs ("You are very outgoing and talkative. ...") that a
small model follows where it ignores a role-play card (measured on SmolLM2-135M-Instruct,
docs/persona-vectors.md), ``questions`` the extraction questions, ``eval_questions`` held-out questions for
steering sweeps and evaluation, and ``eval_prompt`` the judge rubric with ``{question}`` and ``{answer}``
placeholders, asking for a 0–100 score.
Big Five poles are specs of their own (``extraversion_high``, ``extraversion_low``), with ``trait`` and ``pole``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
POLES = ("high", "low")


class InstructionPair(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pos: str = Field(min_length=1)
    neg: str = Field(min_length=1)


class TraitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    trait: str | None = None
    pole: Literal["high", "low"] | None = None
    instruction: list[InstructionPair] = Field(min_length=1)
    short_instruction: list[InstructionPair] = Field(default_factory=list, exclude_if=lambda pairs: not pairs)
    questions: list[str] = Field(min_length=1)
    eval_questions: list[str] = Field(default_factory=list)
    eval_prompt: str

    @field_validator("eval_prompt")
    @classmethod
    def _has_placeholders(cls, value: str) -> str:
        missing = [p for p in ("{question}", "{answer}") if p not in value]
        if missing:
            raise ValueError(f"eval_prompt lacks {' and '.join(missing)}")
        return value

    @property
    def trait_name(self) -> str:
        """The trait a judge scores (``extraversion`` for ``extraversion_low``; the name otherwise)."""
        return self.trait or self.name

    @property
    def held_out_questions(self) -> list[str]:
        """Evaluation questions, or the extraction questions when the spec has no separate set."""
        return self.eval_questions or self.questions

    def with_short_instructions(self) -> TraitSpec:
        """A copy whose ``instruction`` pairs are the short ones (itself when it has none)."""
        if not self.short_instruction:
            return self
        return self.model_copy(update={"instruction": list(self.short_instruction)})

    def positive_prompts(self, n: int) -> list[str]:
        """``n`` system prompts eliciting the trait: the ``pos`` instructions cycled."""
        return [self.instruction[i % len(self.instruction)].pos for i in range(n)]

    def rubric(self, question: str, answer: str) -> str:
        return self.eval_prompt.replace("{question}", question).replace("{answer}", answer)
