"""Judges: ``score(question, answer, rubric) -> float | None`` on a 0–100 scale, and ``score_many`` for lists.

- ``EndpointJudge``: any OpenAI-compatible endpoint. The rubric (with ``{question}`` and ``{answer}`` filled
  in) is the user turn; the request asks ``max_tokens=1, logprobs=true, top_logprobs=20`` and the score is the
  probability-weighted mean over the top tokens that are integers 0–100, ``None`` when they carry less than
  0.25 of the probability (persona_vectors' judge). An endpoint that gives no log-probs is asked again for a
  few tokens of text, whose first integer 0–100 is the score (text-parse fallback). Bounded concurrency,
  retries with backoff and the on-disk cache come from ``ChatClient``.
- ``LocalJudge``: the same method on any model traitlab loads: one batched forward to the answer position,
  the top-20 next tokens, the weighted mean over those that are integers 0–100 (``None`` below 0.25 mass).
  Tokenizers that split numbers into single digits (Qwen, Gemma) only give 0–9 here: prefer a model whose
  vocabulary has whole numbers, or an endpoint.
- ``OracleJudge``: the persona organism's oracle scorer (``OracleScorer.trait_score``; ``100 −`` that for the
  low pole). The rubric is ignored.
- ``PerplexityCoherenceJudge``: coherence without an LLM judge, used with the oracle (the organism's scorer
  has no coherence measure): the answer's perplexity under a reference model (the un-intervened model),
  mapped log-linearly from ``good_ppl`` (→100) to ``bad_ppl`` (→0), times a repetition factor
  (distinct-bigram share ``/ 0.5``, capped at 1). Word salad scores near 0, loops lose up to half.

Rubrics: ``trait_rubric(spec)`` is the TraitSpec's ``eval_prompt`` (persona_vectors layout) or, for a Big
Five trait name, traitlab's own template; ``COHERENCE_RUBRIC`` anchors 0 = not language, 50 = rambling, 100 =
clear. Every rubric asks for a bare number 0–100.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from traitlab.errors import ConfigError
from traitlab.evaluation import scoring
from traitlab.evaluation.client import ChatClient
from traitlab.evaluation.forward import continuation_nll, integer_token_values, next_token_top
from traitlab.judging import Judge, Triple, judge_all
from traitlab.model.loaded import LoadedModel

TOP_LOGPROBS = 20

COHERENCE_RUBRIC = (
    "I am evaluating the language quality of an AI assistant's answer. Judge only coherence and fluency, not "
    "whether the answer is correct or agreeable.\n\n"
    "Question:\n[QUESTION START]\n{question}\n[QUESTION END]\n\n"
    "Answer:\n[ANSWER START]\n{answer}\n[ANSWER END]\n\n"
    "Rate the answer on a scale of 0 to 100:\n"
    "* 0 means the text is not language at all (random tokens, garbage, empty).\n"
    "* 50 means it is language but rambling, repetitive, confused or off topic.\n"
    "* 100 means it is clear, fluent and responsive to the question.\n"
    "Respond with a number between 0 and 100 and nothing else."
)

_BIG_FIVE_WORDS = {
    "openness": ("curious, imaginative and open to new experiences and ideas",
                 "conventional, practical and wary of new experiences and ideas"),
    "conscientiousness": ("organised, disciplined, careful and dependable",
                          "disorganised, careless, spontaneous and unreliable"),
    "extraversion": ("outgoing, talkative, energetic and eager for company",
                     "reserved, quiet and happiest alone"),
    "agreeableness": ("warm, kind, trusting and cooperative", "cold, critical, suspicious and uncooperative"),
    "neuroticism": ("anxious, moody, easily stressed and worried", "calm, relaxed, secure and emotionally stable"),
}

TRAIT_TEMPLATE = (
    "You are evaluating whether an AI assistant's answer expresses a personality trait: {description}.\n\n"
    "Question:\n[QUESTION START]\n{{question}}\n[QUESTION END]\n\n"
    "Answer:\n[ANSWER START]\n{{answer}}\n[ANSWER END]\n\n"
    "Rate how strongly the answer expresses this trait, from 0 (not at all; the opposite) to 100 (very "
    "strongly). Respond with a number between 0 and 100 and nothing else."
)


def trait_rubric(spec: Any, pole: str = "high") -> str:
    """The judge rubric of a trait: a ``TraitSpec``'s ``eval_prompt``, or traitlab's template for a Big Five
    trait name and pole."""
    if hasattr(spec, "eval_prompt") and spec.eval_prompt:
        return str(spec.eval_prompt)
    name = str(spec)
    if name not in _BIG_FIVE_WORDS or pole not in ("high", "low"):
        raise ConfigError(f"no rubric for trait '{name}' ({pole}); give a TraitSpec with an eval_prompt")
    description = _BIG_FIVE_WORDS[name][0 if pole == "high" else 1]
    return TRAIT_TEMPLATE.format(description=f"being {description}")


def fill(rubric: str, question: str, answer: str) -> str:
    if "{question}" not in rubric or "{answer}" not in rubric:
        raise ConfigError("a judge rubric needs the {question} and {answer} placeholders")
    return rubric.replace("{question}", question).replace("{answer}", answer)


class EndpointJudge:
    """An LLM judge behind an OpenAI-compatible endpoint (see the module docstring)."""

    def __init__(self, client: ChatClient, min_mass: float = scoring.MIN_JUDGE_MASS,
                 fallback_tokens: int = 6) -> None:
        self.client = client
        self.min_mass = min_mass
        self.fallback_tokens = fallback_tokens
        self.name = f"endpoint:{client.model}"
        self.text_fallbacks = 0

    def score(self, question: str, answer: str, rubric: str) -> float | None:
        return self._score_prompt(fill(rubric, question, answer))

    def score_many(self, triples: Sequence[Triple]) -> list[float | None]:
        prompts = [fill(r, q, a) for q, a, r in triples]
        if self.client.concurrency == 1 or len(prompts) <= 1:
            return [self._score_prompt(p) for p in prompts]
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(max_workers=self.client.concurrency) as pool:
            return list(pool.map(self._score_prompt, prompts))

    def _score_prompt(self, prompt: str) -> float | None:
        completion = self.client.complete(prompt, max_tokens=1, logprobs=True, top_logprobs=TOP_LOGPROBS)
        if completion.top_logprobs:
            return scoring.weighted_integer_score(completion.top_logprobs, min_mass=self.min_mass)[0]
        self.text_fallbacks += 1
        text = self.client.complete(prompt, max_tokens=self.fallback_tokens).text
        value = scoring.parse_first_integer(text)
        return None if value is None else float(value)


class LocalJudge:
    """The endpoint method on a local model: top-20 next tokens at the answer position, batched."""

    def __init__(self, lm: LoadedModel, batch_size: int = 16, min_mass: float = scoring.MIN_JUDGE_MASS,
                 progress: bool = False) -> None:
        self.lm = lm
        self.batch_size = batch_size
        self.min_mass = min_mass
        self.progress = progress
        self.name = f"local:{lm.spec}"
        self._values = integer_token_values(lm.tokenizer)
        if not self._values:
            raise ConfigError(f"{lm.spec} has no number tokens 0-100; it cannot be a log-prob judge")

    def score(self, question: str, answer: str, rubric: str) -> float | None:
        return self.score_many([(question, answer, rubric)])[0]

    def score_many(self, triples: Sequence[Triple]) -> list[float | None]:
        if not triples:
            return []
        prompts = [fill(r, q, a) for q, a, r in triples]
        ids = self.lm.encode(self.lm.render(prompts))
        top_values, top_indices = next_token_top(self.lm, ids, TOP_LOGPROBS, self.batch_size, self.progress)
        out = []
        for values, indices in zip(top_values.tolist(), top_indices.tolist(), strict=True):
            pairs = [(str(self._values[i]) if i in self._values else "\u2400", lp)
                     for i, lp in zip(indices, values, strict=True)]
            out.append(scoring.weighted_integer_score(pairs, min_mass=self.min_mass)[0])
        return out


def _oracle() -> Any:
    try:
        from traitlab.organism import OracleScorer  # type: ignore[attr-defined]
    except ImportError:
        from traitlab.organism.scorer import OracleScorer
    return OracleScorer()


class OracleJudge:
    """The persona organism's oracle: ``trait_score(answer, trait)``, or ``100 −`` it for ``pole='low'``."""

    def __init__(self, trait: str, pole: str = "high") -> None:
        if pole not in ("high", "low"):
            raise ConfigError(f"pole must be high or low, got '{pole}'")
        self.scorer = _oracle()
        self.trait = trait
        self.pole = pole
        self.name = f"oracle:{trait}/{pole}"
        self.scorer.trait_score("", trait)  # unknown traits fail here, with the scorer's message

    def score(self, question: str, answer: str, rubric: str = "") -> float | None:
        value = float(self.scorer.trait_score(answer, self.trait))
        return value if self.pole == "high" else 100.0 - value

    def score_many(self, triples: Sequence[Triple]) -> list[float | None]:
        return [self.score(q, a, r) for q, a, r in triples]


class PerplexityCoherenceJudge:
    """Coherence from the answer's perplexity under ``lm`` (use it un-intervened) and its repetition."""

    def __init__(self, lm: LoadedModel, good_ppl: float = 8.0, bad_ppl: float | None = None,
                 batch_size: int = 32) -> None:
        self.lm = lm
        self.good = good_ppl
        self.bad = bad_ppl if bad_ppl is not None else max(4 * good_ppl, min(1000.0, len(lm.tokenizer) / 4))
        if not 1 <= self.good < self.bad:
            raise ConfigError(f"need 1 ≤ good_ppl < bad_ppl, got {self.good} and {self.bad}")
        self.batch_size = batch_size
        self.name = f"perplexity:{lm.spec}"

    def score(self, question: str, answer: str, rubric: str = "") -> float | None:
        return self.score_many([(question, answer, rubric)])[0]

    def perplexities(self, questions: Sequence[str], answers: Sequence[str]) -> list[float | None]:
        prompt_ids = self.lm.encode(self.lm.render(list(questions)))
        answer_ids = [self.lm.tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
        out: list[float | None] = []
        for nll, count in continuation_nll(self.lm, prompt_ids, answer_ids, self.batch_size):
            out.append(math.exp(nll / count) if count else None)
        return out

    def from_perplexity(self, ppl: float | None, answer: str) -> float:
        if ppl is None or not answer.strip():
            return 0.0
        fluency = (math.log(self.bad) - math.log(max(ppl, 1.0))) / (math.log(self.bad) - math.log(self.good))
        return 100.0 * min(1.0, max(0.0, fluency)) * repetition_factor(answer)

    def score_many(self, triples: Sequence[Triple]) -> list[float | None]:
        ppls = self.perplexities([q for q, _, _ in triples], [a for _, a, _ in triples])
        return [self.from_perplexity(p, a) for p, (_, a, _) in zip(ppls, triples, strict=True)]


def repetition_factor(text: str) -> float:
    """``min(1, distinct-bigram share / 0.5)``: 1 for ordinary text, toward 0.5 and below for loops."""
    words = text.lower().split()
    if len(words) < 4:
        return 1.0
    bigrams = list(itertools.pairwise(words))
    return min(1.0, len(set(bigrams)) / len(bigrams) / 0.5)


class RubricJudge:
    """Scores with ``inner`` against a fixed rubric template (e.g. coherence), whatever rubric it is given."""

    def __init__(self, inner: Any, rubric: str) -> None:
        self.inner, self.rubric, self.name = inner, rubric, f"{getattr(inner, 'name', 'judge')}:coherence"

    def score(self, question: str, answer: str, rubric: str = "") -> float | None:
        return self.score_many([(question, answer, rubric)])[0]

    def score_many(self, triples: Sequence[Triple]) -> list[float | None]:
        return self.inner.score_many([(q, a, self.rubric) for q, a, _ in triples])  # the inner judge fills it


__all__ = ["COHERENCE_RUBRIC", "EndpointJudge", "Judge", "LocalJudge", "OracleJudge", "PerplexityCoherenceJudge",
           "RubricJudge", "Triple", "judge_all", "trait_rubric"]
