"""Situational evaluation: open questions answered under an Intervention, judged for the trait and for
coherence, with the answers' perplexity under the un-intervened model (fluency).

Question sets: a TraitSpec's held-out questions (``eval_questions``, else ``questions``); for a Big Five
name, the project's default set ``load_trait(f"{trait}_high").eval_questions`` from traitlab's trait
library; or a PersonalityBench file (JSONL lines ``{"question": ...}``, the trait from the file name,
``Openness.json``) or a folder of them.

``N`` answers per question: ``samples=1`` is greedy; ``samples > 1`` samples at ``temperature`` (default 1.0)
from ``seed``. The trait score of an answer is the judge's 0–100 *expression of the evaluated pole* (how high-
extraverted an answer is for ``extraversion_high``, how low-extraverted for ``extraversion_low``). The
summary names both judges (``judge``, ``coherence_judge``) and carries the answers' mean linguistic
``profile`` (``evaluation.profile``).

Shared greedy replies (``ReplyBank``): a run of many cells hands ``evaluate_situational`` a bank of the
un-intervened model's greedy replies keyed by the rendered prompt's token ids. A cell without an intervention or
with a prompt Intervention (which only changes the rendered prompt) takes its replies from the bank; the runner
*requests* every such cell's prompts (and the judge's calibration prompts) up front, so the first reply anyone
asks for generates all of them in one batched call (one forward per decoding step for all rows, instead of one
small batch per cell), and a prompt two cells share (the ``none`` cell of both poles) is generated once. Greedy
decoding is prefix-consistent, so a row generated for ``m`` tokens serves any request of ``n ≤ m`` tokens
(its first ``n`` tokens, finished when the end-of-turn token came within them). The bank also keeps each
reply's log-likelihood under the model (``nll``), the fluency every cell measures. Runtime Interventions that
take per-row scales (``row_scalable``: persona vectors, NPTI) are generated together too
(``generate_together``): each steers its own rows of one batch (scale 1 there, 0 on the others, which leaves a
row exactly as it is), and the bank keeps the answers for each cell.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from traitlab.errors import ConfigError
from traitlab.evaluation import scoring
from traitlab.evaluation.forward import continuation_nll
from traitlab.evaluation.judges import Judge, PerplexityCoherenceJudge, judge_all
from traitlab.interventions import Intervention
from traitlab.model.loaded import LoadedModel
from traitlab.traits.spec import BIG_FIVE
from traitlab.validate import read_text


def load_question_file(path: str | Path) -> list[str]:
    """Questions from a PersonalityBench JSONL file (``{"question": ...}`` per line), a JSON list of strings
    or of ``{"question"}`` objects, a JSON object with ``questions``, or a text file (one per line)."""
    source = Path(path).expanduser()
    if not source.exists():
        raise ConfigError(f"question file {source} not found")
    text = read_text(source, "question file")
    if source.suffix.lower() == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip()]
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("questions"), list):
        data = data["questions"]
    if isinstance(data, list):
        questions = [q if isinstance(q, str) else q.get("question") if isinstance(q, dict) else None for q in data]
        bad = next((n for n, q in enumerate(questions) if not isinstance(q, str)), None)
        if bad is not None:
            raise ConfigError(f"{source} item {bad} is neither a string nor an object with a 'question' string")
        return questions
    questions = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            questions.append(row if isinstance(row, str) else str(row["question"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"{source} line {n} is not a JSON object with a 'question'") from None
    return questions


def load_personalitybench(path: str | Path) -> dict[str, list[str]]:
    """PersonalityBench test questions per trait, from one ``<Trait>.json`` file or a folder of them."""
    source = Path(path).expanduser()
    files = sorted(source.glob("*.json")) if source.is_dir() else [source]
    out = {}
    for file in files:
        trait = file.stem.lower()
        if trait in BIG_FIVE:
            out[trait] = load_question_file(file)
    if not out:
        raise ConfigError(f"no PersonalityBench question files (<Trait>.json, e.g. Openness.json) in {source}")
    return out


def default_questions(trait: str) -> list[str]:
    """The project's default question set of a Big Five trait (``<trait>_high`` in the trait library)."""
    from traitlab.traits import load_trait

    try:
        spec = load_trait(f"{trait}_high")
    except ConfigError:
        raise ConfigError(f"no built-in situational questions for '{trait}' (the trait library has no "
                          f"{trait}_high); give a TraitSpec or questions=PATH") from None
    return spec.held_out_questions


def question_set(spec: Any, source: str | Path | None = None, n: int | None = None) -> list[str]:
    """Questions for a TraitSpec or trait name: from ``source`` (PersonalityBench file/folder or a question
    file) when given, else the spec's held-out questions, else the project's default set; the first ``n``."""
    trait = getattr(spec, "trait_name", None) or str(spec)
    if source is not None:
        path = Path(source).expanduser()
        if path.is_dir() or path.stem.lower() in BIG_FIVE:
            per_trait = load_personalitybench(path)
            if trait not in per_trait:
                raise ConfigError(f"{path} has no questions for '{trait}' (has {', '.join(per_trait)})")
            questions = per_trait[trait]
        else:
            questions = load_question_file(path)
    elif hasattr(spec, "held_out_questions"):
        questions = spec.held_out_questions
    else:
        questions = default_questions(trait)
    if not questions:
        raise ConfigError(f"no situational questions for '{trait}'")
    return list(questions[:n] if n else questions)


@dataclasses.dataclass
class SituationalResult:
    """Answers and their scores; one entry per (question, sample)."""

    trait: str
    pole: str | None
    judge: str
    questions: list[str]
    answers: list[str]
    expression: list[float | None]
    coherence: list[float | None] | None = None
    nll: list[tuple[float, int]] | None = None
    coherence_judge: str | None = None
    profile: dict[str, float] | None = None

    @property
    def perplexity(self) -> float | None:
        """exp(Σ NLL / Σ tokens) of the answers under the un-intervened model."""
        if not self.nll:
            return None
        total = sum(n for _, n in self.nll)
        return math.exp(sum(v for v, _ in self.nll) / total) if total else None

    def summary(self) -> dict[str, Any]:
        judged = [v for v in self.expression if v is not None]
        return {
            "trait": self.trait, "pole": self.pole, "judge": self.judge, "n_answers": len(self.answers),
            "expression_mean": scoring.mean(judged), "expression_var": scoring.variance(judged),
            "judged_share": len(judged) / len(self.expression) if self.expression else 0.0,
            "coherence_mean": scoring.mean(self.coherence) if self.coherence else None,
            "perplexity": self.perplexity, "coherence_judge": self.coherence_judge, "profile": self.profile,
        }

    def examples(self, k: int = 3) -> list[dict[str, Any]]:
        out = []
        for i in range(min(k, len(self.answers))):
            out.append({"question": self.questions[i], "answer": self.answers[i], "expression": self.expression[i],
                        "coherence": self.coherence[i] if self.coherence else None})
        return out


class ReplyBank:
    """Greedy replies of the un-intervened ``lm`` to rendered prompts (token ids), generated together.

    ``request(prompt_ids, n)`` notes prompts someone will ask for; ``generate(prompt_ids, n)`` returns their
    ``Generation`` (``n`` new tokens at most), generating every requested and asked-for prompt the bank lacks in
    one ``generate_ids`` call, each row to its own ``n`` (``limits``). A stored row of ``m`` generated tokens
    serves ``n ≤ m`` (greedy decoding is prefix-consistent) and any ``n`` when it ended on an end-of-turn token.
    ``nll`` is
    ``forward.continuation_nll`` memoised per (prompt, response). Use it only for the model as loaded: the bank
    refuses to generate while a hook of the model is active (a runtime Intervention applied around it)."""

    def __init__(self, lm: LoadedModel, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be ≥ 1, got {batch_size}")
        self.lm = lm
        self.batch_size = batch_size
        self._rows: dict[tuple[int, ...], tuple[list[int], bool, int]] = {}  # ids → (response, stopped, steps)
        self._pending: dict[tuple[int, ...], int] = {}
        self._nll: dict[tuple[tuple[int, ...], tuple[int, ...]], tuple[float, int]] = {}
        self._steered: dict[int, tuple[Intervention, tuple[str, ...], int, Any]] = {}
        self.generated_rows = 0
        self.generate_calls = 0

    def put_steered(self, intervention: Intervention, questions: Sequence[str], max_new_tokens: int,
                    generation: Any) -> None:
        """Keep the greedy answers ``generate_together`` made under ``intervention`` (this very object) for the
        ``generate_answers`` call that asks for them."""
        self._steered[id(intervention)] = (intervention, tuple(questions), max_new_tokens, generation)

    def take_steered(self, intervention: Intervention | None, questions: Sequence[str],
                     max_new_tokens: int) -> Any | None:
        """The kept answers under ``intervention`` to exactly these questions, once; else ``None``."""
        entry = self._steered.get(id(intervention))
        if entry is None or entry[0] is not intervention or entry[1:3] != (tuple(questions), max_new_tokens):
            return None
        del self._steered[id(intervention)]
        return entry[3]

    def _has(self, ids: tuple[int, ...], n: int) -> bool:
        row = self._rows.get(ids)
        return row is not None and (row[1] or row[2] >= n)

    def request(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int) -> None:
        """Note prompts to generate with the next call that generates anything."""
        for ids in map(tuple, prompt_ids):
            if not self._has(ids, max_new_tokens):
                self._pending[ids] = max(max_new_tokens, self._pending.get(ids, 0))

    def generate(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int,
                 progress: bool = False) -> Any:
        """The greedy ``Generation`` of each prompt (``max_new_tokens`` at most), in the given order."""
        from traitlab.model.generation import Generation, SamplingParams, generate_ids

        self.request(prompt_ids, max_new_tokens)
        if self._pending:
            if self.lm.hooks.active_handles:
                raise RuntimeError("ReplyBank generates for the un-intervened model; a hook is active")
            todo = list(self._pending)
            limits = [self._pending[ids] for ids in todo]
            responses, finished = generate_ids(self.lm.model, self.lm.hooks, [list(ids) for ids in todo],
                                               self.lm.tokenizer.pad_token_id, self.lm.stop_ids,
                                               SamplingParams(max_new_tokens=max(limits)), None, self.batch_size,
                                               progress, limits)
            for ids, response, stopped, steps in zip(todo, responses, finished, limits, strict=True):
                self._rows[ids] = (response, stopped, steps)
            self.generated_rows += len(todo)
            self.generate_calls += 1
            self._pending.clear()
        out_ids, out_finished = [], []
        for ids in map(tuple, prompt_ids):
            response, stopped, _ = self._rows[ids]
            cut = stopped and len(response) < max_new_tokens
            out_ids.append(list(response if cut else response[:max_new_tokens]))
            out_finished.append(cut)
        texts = self.lm.tokenizer.batch_decode(out_ids, skip_special_tokens=True)
        return Generation([t.strip() for t in texts], [list(p) for p in prompt_ids], out_ids, out_finished,
                          self.lm.tokenizer.pad_token_id)

    def nll(self, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]],
            batch_size: int = 32) -> list[tuple[float, int]]:
        """``continuation_nll`` under the un-intervened model, each (prompt, response) pair computed once."""
        keys = [(tuple(p), tuple(r)) for p, r in zip(prompt_ids, response_ids, strict=True)]
        missing = list(dict.fromkeys(k for k in keys if k not in self._nll))
        if missing:
            if self.lm.hooks.active_handles:
                raise RuntimeError("ReplyBank scores under the un-intervened model; a hook is active")
            values = continuation_nll(self.lm, [list(p) for p, _ in missing], [list(r) for _, r in missing],
                                      batch_size)
            self._nll.update(zip(missing, values, strict=True))
        return [self._nll[k] for k in keys]


def prompt_only(intervention: Intervention | None) -> bool:
    """True when ``intervention`` only changes the rendered prompt (none, or a prompt Intervention): its
    greedy replies are the un-intervened model's replies to other prompts, which a ``ReplyBank`` can share."""
    from traitlab.methods.prompting import PromptIntervention

    return intervention is None or type(intervention) is PromptIntervention


def row_scalable(intervention: Intervention | None) -> bool:
    """True for a runtime Intervention whose per-row scale 0 leaves a row exactly as it is and whose per-row
    scale 1 is exactly the Intervention (residual addition or ablation, NPTI's neuron edit): several of them
    can then steer disjoint rows of one batch."""
    from traitlab.methods.neurons import NeuronInduction
    from traitlab.methods.steering import ResidualSteering

    if intervention is None or intervention.weight_space:
        return False
    return type(intervention) is NeuronInduction or (isinstance(intervention, ResidualSteering)
                                                      and intervention.mode in ("add", "ablate"))


def generate_together(lm: LoadedModel, jobs: Sequence[tuple[Intervention, Sequence[str]]], max_new_tokens: int,
                      batch_size: int, bank: ReplyBank) -> None:
    """Greedy answers of several row-scalable Interventions (``row_scalable``) to their questions in one
    batched generation: each Intervention is applied with per-row scale 1 on its own rows and 0 on every other
    row, so each row is steered by its own Intervention only (the same numbers as steering it alone). The
    answers go to ``bank`` (``put_steered``) for each job's ``generate_answers``."""
    from traitlab.model.generation import Generation

    if not all(row_scalable(intervention) for intervention, _ in jobs):
        raise ConfigError("generate_together takes row-scalable Interventions only")
    rows = [q for _, questions in jobs for q in questions]
    owner = torch.tensor([n for n, (_, questions) in enumerate(jobs) for _ in questions])
    with contextlib.ExitStack() as stack:
        for n, (intervention, _) in enumerate(jobs):
            stack.enter_context(intervention.applied(lm, row_scale=(owner == n).float()))
        generation = lm.generate_chat(rows, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=False)
    start = 0
    for intervention, questions in jobs:
        part = slice(start, start + len(questions))
        start += len(questions)
        bank.put_steered(intervention, questions, max_new_tokens,
                         Generation(generation.texts[part], generation.prompt_ids[part],
                                    generation.response_ids[part], generation.finished[part],
                                    generation.pad_token_id))


def generate_answers(lm: LoadedModel, questions: Sequence[str], intervention: Intervention | None = None,
                     samples: int = 1, temperature: float | None = None, max_new_tokens: int = 64, seed: int = 0,
                     batch_size: int = 32, progress: bool = False,
                     bank: ReplyBank | None = None) -> tuple[list[str], Any]:
    """``samples`` answers per question (question-major order) under ``intervention``: the repeated
    questions and the ``Generation``. Greedy answers under no or a prompt-only Intervention come from
    ``bank`` when one is given (the same token ids as generating them here)."""
    if samples < 1:
        raise ConfigError(f"samples must be ≥ 1, got {samples}")
    temp = (0.0 if samples == 1 else 1.0) if temperature is None else temperature
    repeated = [q for q in questions for _ in range(samples)]
    applied = intervention.applied(lm) if intervention is not None else contextlib.nullcontext()
    kept = bank.take_steered(intervention, repeated, max_new_tokens) if bank is not None and temp == 0 else None
    if kept is not None:
        return repeated, kept
    if bank is not None and bank.lm is lm and temp == 0 and prompt_only(intervention) \
            and not lm.hooks.active_handles:
        with applied:
            prompt_ids = lm.encode(lm.render(repeated))
        return repeated, bank.generate(prompt_ids, max_new_tokens, progress)
    with applied:
        generation = lm.generate_chat(repeated, max_new_tokens=max_new_tokens, temperature=temp, seed=seed,
                                      batch_size=batch_size, progress=progress)
    return repeated, generation


def request_answers(bank: ReplyBank, questions: Sequence[str], intervention: Intervention | None,
                    samples: int = 1, temperature: float | None = None, max_new_tokens: int = 64) -> bool:
    """Note in ``bank`` the prompts ``generate_answers(…, bank=bank)`` will ask for (when it will take them
    from the bank), so they are generated in the bank's next batch; returns whether it noted any."""
    temp = (0.0 if samples == 1 else 1.0) if temperature is None else temperature
    if temp != 0 or not prompt_only(intervention):
        return False
    lm = bank.lm
    repeated = [q for q in questions for _ in range(samples)]
    with intervention.applied(lm) if intervention is not None else contextlib.nullcontext():
        bank.request(lm.encode(lm.render(repeated)), max_new_tokens)
    return True


def evaluate_situational(lm: LoadedModel, questions: Sequence[str], trait_judge: Judge, rubric: str, *,
                         trait: str, pole: str | None = None, intervention: Intervention | None = None,
                         coherence_judge: Judge | None = None, coherence_rubric: str | None = None,
                         fluency: bool = True, samples: int = 1, temperature: float | None = None,
                         max_new_tokens: int = 64, seed: int = 0, batch_size: int = 32,
                         progress: bool = False, bank: ReplyBank | None = None) -> SituationalResult:
    """Answer ``questions`` under ``intervention``, then (un-intervened) judge them for the trait and for
    coherence, and measure their perplexity under the un-intervened ``lm``. ``bank`` shares greedy replies and
    their perplexities between the cells of a run (see ``ReplyBank``)."""
    from traitlab.evaluation.judges import COHERENCE_RUBRIC

    repeated, generation = generate_answers(lm, questions, intervention, samples, temperature, max_new_tokens,
                                            seed, batch_size, progress, bank)
    answers = generation.texts
    nll = None
    if fluency or isinstance(coherence_judge, PerplexityCoherenceJudge):
        plain = lm.encode(lm.render(repeated))
        if bank is not None and bank.lm is lm and not lm.hooks.active_handles:
            nll = bank.nll(plain, generation.response_ids, batch_size)
        else:
            nll = continuation_nll(lm, plain, generation.response_ids, batch_size)
    expression = judge_all(trait_judge, [(q, a, rubric) for q, a in zip(repeated, answers, strict=True)],
                           progress=progress, description="judging trait")
    coherence = None
    if coherence_judge is not None:
        if isinstance(coherence_judge, PerplexityCoherenceJudge) and coherence_judge.lm is lm and nll is not None:
            coherence = [coherence_judge.from_perplexity(math.exp(v / n) if n else None, a)
                         for (v, n), a in zip(nll, answers, strict=True)]
        else:
            rubric_c = coherence_rubric or COHERENCE_RUBRIC
            coherence = judge_all(coherence_judge, [(q, a, rubric_c) for q, a in zip(repeated, answers, strict=True)],
                                  progress=progress, description="judging coherence")
    return SituationalResult(trait, pole, getattr(trait_judge, "name", type(trait_judge).__name__), repeated,
                             answers, expression, coherence, nll if fluency else None,
                             None if coherence_judge is None else getattr(coherence_judge, "name", "coherence"),
                             _mean_profile(answers))


def _mean_profile(answers: Sequence[str]) -> dict[str, float] | None:
    """The answers' mean linguistic profile (``evaluation.profile``); ``None`` without the empath package."""
    from traitlab.evaluation.profile import mean_profile, profile_many

    try:
        return mean_profile(profile_many(answers))
    except ConfigError:
        return None
