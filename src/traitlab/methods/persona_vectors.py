"""Persona vectors (Chen et al. 2025, "Persona Vectors", arXiv 2507.21509).

Extraction: answer the spec's extraction questions under each positive and negative system prompt, judge the
answers, keep the pairs where the positive answer shows the trait (score ≥ τ), the negative one does not
(< τ) and both are coherent, then average activations per layer over each kept answer and take

    v_ℓ = mean_i ā_ℓ(x_i^+, y_i^+) − mean_i ā_ℓ(x_i^−, y_i^−)      for every layer ℓ = 0..L,

where ā is the mean over response tokens (``response_avg``; also ``prompt_avg`` over prompt tokens and
``prompt_last`` at the last prompt token). Activations come from batched teacher-forced forwards with hooks.

The default steering layer is the one whose projections best separate positive from negative answers
(Cohen's d of a·v̂_ℓ); ``traitlab.methods.sweep`` refines it by steering held-out questions. With
``optimize=OptimizeSettings(...)`` the positive answers of the kept pairs also fit an ``optimized`` variant by
gradient descent (``traitlab.methods.persona_optimize``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from traitlab.errors import ConfigError
from traitlab.interventions import Intervention, kwargs_from_meta
from traitlab.judging import Judge, judge_all
from traitlab.methods.persona_optimize import OPTIMIZED, OptimizeSettings, optimize_directions
from traitlab.methods.pole_answers import pair_rows
from traitlab.methods.steering import Mode, ResidualSteering
from traitlab.model import Generation, LoadedModel, capture_residual, teacher_forced
from traitlab.progress import activity, track
from traitlab.traits import TraitSpec
from traitlab.validate import finite

VARIANTS = ("response_avg", "prompt_avg", "prompt_last")
ALL_VARIANTS = (*VARIANTS, OPTIMIZED)
_VARIANT_POSITIONS = {"response_avg": "response", "prompt_avg": "prompt", "prompt_last": "last_prompt"}


@dataclasses.dataclass(frozen=True)
class ExtractionSettings:
    """Rollout, filter and batching settings of an extraction (persona_vectors' defaults where they have one)."""

    n_per_question: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0
    trait_threshold: float = 50.0
    coherence_threshold: float = 50.0
    min_pairs: int = 5
    batch_size: int = 32
    n_questions: int | None = None  # the spec's first n extraction questions (default all)
    filter_pairs: bool = True  # False: keep every pair with two non-empty answers (no judge filter)

    def __post_init__(self) -> None:
        if self.n_per_question < 1:
            raise ConfigError("n_per_question must be ≥ 1")
        if self.n_questions is not None and self.n_questions < 1:
            raise ConfigError("n_questions must be ≥ 1")
        if self.min_pairs < 1:
            raise ConfigError("min_pairs must be ≥ 1")


@dataclasses.dataclass
class Rollouts:
    """Answers under the positive and negative prompts, row-aligned, with their judge scores."""

    questions: list[str]
    pos_systems: list[str]
    neg_systems: list[str]
    pos: Generation
    neg: Generation
    pos_scores: list[float | None]
    neg_scores: list[float | None]
    pos_coherence: list[float | None] | None = None
    neg_coherence: list[float | None] | None = None
    judged: bool = True

    def kept(self, settings: ExtractionSettings) -> list[int]:
        """Rows where pos ≥ τ, neg < τ, both answers non-empty and (when judged) both coherent ≥ τ_c; with no
        judge (``judged=False``), every row with two non-empty answers."""
        if not settings.filter_pairs:
            return [i for i in range(len(self.questions)) if self.pos.response_ids[i] and self.neg.response_ids[i]]
        keep = []
        for i, (p, n) in enumerate(zip(self.pos_scores, self.neg_scores, strict=True)):
            if self.judged and (p is None or n is None or p < settings.trait_threshold
                                or n >= settings.trait_threshold):
                continue
            if not self.pos.response_ids[i] or not self.neg.response_ids[i]:
                continue
            if self.pos_coherence is not None and self.neg_coherence is not None:
                pc, nc = self.pos_coherence[i], self.neg_coherence[i]
                if pc is None or nc is None or min(pc, nc) < settings.coherence_threshold:
                    continue
            keep.append(i)
        return keep


def rollouts(lm: LoadedModel, spec: TraitSpec, judge: Judge | None, settings: ExtractionSettings,
             coherence_judge: Judge | None = None, questions: Sequence[str] | None = None,
             answers: tuple[Generation, Generation] | None = None) -> Rollouts:
    """Generate contrastive answers (every instruction pair × question × n) and judge them (``judge=None``:
    no judge, every pair counts; the system prompts alone make the contrast).

    The positive side is sampled with ``settings.seed``, the negative with ``settings.seed + 1``. ``answers``:
    the (positive, negative) replies of exactly these rows, already sampled (e.g. from a run's answer bank,
    shared with a subnetwork's calibration, where both sides use one seed); then nothing is generated here."""
    qs = list(questions if questions is not None else spec.questions[:settings.n_questions])
    questions_rows, pos_systems, neg_systems = pair_rows([(p.pos, p.neg) for p in spec.instruction], qs,
                                                         settings.n_per_question)
    n_rows = len(questions_rows)
    options = dict(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                   top_p=settings.top_p, batch_size=settings.batch_size)
    if answers is not None:
        pos, neg = answers
        if len(pos.texts) != n_rows or len(neg.texts) != n_rows:
            raise ConfigError(f"persona vectors of {spec.name} need {n_rows} answers per side (instruction "
                              f"pairs × questions × n_per_question), got {len(pos.texts)} and {len(neg.texts)}")
    else:
        with activity(f"persona vectors {spec.name}: positive prompts"):
            pos = lm.generate_chat(questions_rows, pos_systems, seed=settings.seed, **options)
        with activity(f"persona vectors {spec.name}: negative prompts"):
            neg = lm.generate_chat(questions_rows, neg_systems, seed=settings.seed + 1, **options)
    if judge is None:
        return Rollouts(questions_rows, pos_systems, neg_systems, pos, neg, [None] * n_rows, [None] * n_rows,
                        judged=False)
    pos_scores = judge_all(judge, _triples(questions_rows, pos.texts, spec.eval_prompt))
    neg_scores = judge_all(judge, _triples(questions_rows, neg.texts, spec.eval_prompt))
    result = Rollouts(questions_rows, pos_systems, neg_systems, pos, neg, pos_scores, neg_scores)
    if coherence_judge is not None:
        result.pos_coherence = judge_all(coherence_judge, _triples(questions_rows, pos.texts, ""))
        result.neg_coherence = judge_all(coherence_judge, _triples(questions_rows, neg.texts, ""))
    return result


def _triples(questions: Sequence[str], answers: Sequence[str], rubric: str) -> list[tuple[str, str, str]]:
    """(question, answer, rubric template) rows for a judge; the judge fills the template."""
    return [(q, a, rubric) for q, a in zip(questions, answers, strict=True)]


def _chunks(rows: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(rows), size):
        yield list(rows[start:start + size])


def row_activations(lm: LoadedModel, generation: Generation, rows: Sequence[int],
                    batch_size: int = 32, label: str = "answers") -> dict[str, torch.Tensor]:
    """Per-row mean activations ``[len(rows), L+1, d]`` for each variant, from batched teacher-forced passes.

    Rows go through in order of length (little padding) and each pass stops after the last block (no final
    norm, no LM head); the result is in the order of ``rows``."""
    layers = list(range(lm.num_layers + 1))
    rows = list(rows)
    length = [len(generation.prompt_ids[i]) + len(generation.response_ids[i]) for i in rows]
    order = sorted(range(len(rows)), key=length.__getitem__)
    parts: dict[str, list[torch.Tensor]] = {variant: [] for variant in VARIANTS}
    chunks = list(_chunks([rows[k] for k in order], batch_size))
    for chunk in track(chunks, f"persona vectors: activations of {len(rows)} {label}, layers 0-{lm.num_layers}",
                       total=len(chunks), enabled=len(chunks) > 1):
        input_ids, attention_mask, roles = (t.to(lm.device) for t in generation.batch(chunk))
        with capture_residual(lm, layers, "response") as response, capture_residual(lm, layers, "prompt") as \
                prompt, capture_residual(lm, layers, "last_prompt", stop_after_last=True) as last:
            teacher_forced(lm, input_ids, attention_mask, roles)
        for variant, capture in zip(VARIANTS, (response, prompt, last), strict=True):
            parts[variant].append(capture.means().cpu())
    restore = torch.empty(len(rows), dtype=torch.long)
    restore[torch.tensor(order)] = torch.arange(len(rows))
    return {variant: torch.cat(chunks_, dim=0)[restore] for variant, chunks_ in parts.items()}


def separation(pos: torch.Tensor, neg: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Cohen's d of the projections on v̂_ℓ per layer: (mean⁺ − mean⁻) / sqrt((var⁺ + var⁻) / 2)."""
    unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    p, n = (pos * unit).sum(-1), (neg * unit).sum(-1)
    pooled = ((p.var(0, unbiased=False) + n.var(0, unbiased=False)) / 2).sqrt().clamp(min=1e-12)
    return (p.mean(0) - n.mean(0)) / pooled


def extract(lm: LoadedModel, spec: TraitSpec, judge: Judge | None, settings: ExtractionSettings | None = None,
            coherence_judge: Judge | None = None, optimize: OptimizeSettings | None = None,
            answers: tuple[Generation, Generation] | None = None) -> PersonaVector:
    """Run the whole extraction and return a ``PersonaVector`` steering at the best-separating layer (with an
    ``optimized`` variant fitted at ``optimize.layers`` when ``optimize`` is given). ``judge=None`` keeps every
    pair (judge-free extraction: the system prompts alone make the contrast). ``answers``: the rollouts'
    (positive, negative) replies already sampled (see ``rollouts``)."""
    settings = settings or ExtractionSettings()
    for layer in optimize.layers if optimize else ():
        lm.hooks.check_layer(layer)
    data = rollouts(lm, spec, judge, settings, coherence_judge, answers=answers)
    keep = data.kept(settings)
    total = len(data.questions)
    if len(keep) < settings.min_pairs:
        raise ConfigError(
            f"only {len(keep)} of {total} answer pairs for '{spec.name}' passed the filter (positive ≥ "
            f"{settings.trait_threshold:g}, negative < {settings.trait_threshold:g}"
            + (f", coherence ≥ {settings.coherence_threshold:g}" if coherence_judge else "")
            + f"); need {settings.min_pairs}: sample more answers, relax the thresholds, or check the judge")
    pos = row_activations(lm, data.pos, keep, settings.batch_size, f"{spec.name} positive answers")
    neg = row_activations(lm, data.neg, keep, settings.batch_size, f"{spec.name} negative answers")
    directions = {variant: pos[variant].mean(0) - neg[variant].mean(0) for variant in VARIANTS}
    d_per_layer = separation(pos["response_avg"], neg["response_avg"], directions["response_avg"])
    layer = best_layer(d_per_layer, lm.num_layers)
    stats = {
        "pairs_total": total, "pairs_kept": len(keep),
        "pos_mean_score": _mean([data.pos_scores[i] for i in keep]),
        "neg_mean_score": _mean([data.neg_scores[i] for i in keep]),
        "separation_per_layer": [round(float(x), 4) for x in d_per_layer],
    }
    if optimize is not None:
        directions[OPTIMIZED], losses = optimize_directions(lm, data.questions, data.pos, keep, optimize)
        stats["optimized"] = {**dataclasses.asdict(optimize), "final_loss": losses}
    hyper = {**dataclasses.asdict(settings), "judged": judge is not None,
             "coherence_judged": coherence_judge is not None}
    return PersonaVector(directions, layers=[layer], trait=spec.trait_name, pole=spec.pole,
                         hyperparameters=hyper, fingerprint=lm.fingerprint, extra={"spec": spec.name, **stats})


def best_layer(d_per_layer: torch.Tensor, num_layers: int) -> int:
    """The layer whose projections separate the poles best (Cohen's d), skipping the embeddings (0) and the
    last block's raw output (L)."""
    inner = d_per_layer[1:num_layers]
    return int(inner.argmax()) + 1 if len(inner) else num_layers


Example = str | tuple[str, str]


def example_rows(lm: LoadedModel, examples: Sequence[Example], system: str | None = None) -> Generation:
    """Texts as teacher-forcing rows. A string is a plain text: its first token (BOS, or the first word: the
    attention-sink position, whose activations are huge and carry nothing of the text) is the "prompt", the
    rest the "response". A ``(question, answer)`` pair is a chat: the question rendered with the model's
    template (under ``system``) is the prompt, the answer the response."""
    prompts: list[list[int]] = []
    responses: list[list[int]] = []
    for item in examples:
        if isinstance(item, str):
            ids = lm.tokenizer(item, add_special_tokens=True)["input_ids"]
            if len(ids) < 2:
                raise ConfigError(f"example text {item!r} is too short: it needs at least two tokens")
            prompts.append(ids[:1])
            responses.append(ids[1:])
        elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            prompts.append(lm.encode(lm.render([item[0]], system))[0])
            answer = lm.tokenizer(item[1], add_special_tokens=False)["input_ids"]
            if not answer:
                raise ConfigError(f"the answer of example {item!r} is empty")
            responses.append(answer)
        else:
            raise ConfigError(f"an example is a text or a (question, answer) pair of texts, got {item!r}")
    texts = [item if isinstance(item, str) else item[1] for item in examples]
    return Generation(texts, prompts, responses, [True] * len(texts), lm.tokenizer.pad_token_id)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 3) if present else None


class PersonaVector(ResidualSteering):
    """Per-layer persona directions (all layers, three variants) steering at ``layers``.

    Scale = steering coefficient α: h_ℓ ← h_ℓ + α·v_ℓ (negative α inhibits); ``mode='ablate'`` projects v̂
    out, ``mode='cap'`` clamps the projection. ``at(...)`` picks other layers, variant, mode or positions.
    """

    mechanism = "persona_vectors"

    def __init__(self, directions: dict[str, torch.Tensor], layers: Sequence[int], variant: str = "response_avg",
                 mode: Mode = "add", positions: str = "response",
                 cap: tuple[float | None, float | None] = (None, None), **kwargs: Any) -> None:
        if variant not in directions:
            raise ConfigError(f"unknown persona-vector variant '{variant}'; have {', '.join(directions)}")
        table = directions[variant]
        bad = [layer for layer in layers if not 0 <= layer < table.shape[0]]
        if bad or not layers:
            raise ConfigError(f"steering layers {list(layers)} out of range 0..{table.shape[0] - 1}")
        self.directions = {name: t.float() for name, t in directions.items()}
        self.variant = variant
        super().__init__({layer: table[layer] for layer in layers}, mode, positions, cap, **kwargs)

    @classmethod
    def from_pairs(cls, lm: LoadedModel, positive: Sequence[Example], negative: Sequence[Example],
                   layers: Sequence[int] | int | None = None, *, system: str | None = None,
                   trait: str | None = None, pole: str | None = None, batch_size: int = 32) -> PersonaVector:
        """A persona vector from example texts, with no judge (the mean-difference vector of Chen et al. 2025
        without their judge filter; repeng's and steering-vectors' training from contrastive pairs):

            v_ℓ = mean_i ā_ℓ(positive_i) − mean_j ā_ℓ(negative_j)      for every layer ℓ = 0..L,

        ā the mean residual activation over a text's tokens (a plain string, less its first token) or over the
        answer's tokens (a ``(question, answer)`` pair, the question rendered with the chat template under
        ``system``). The two lists need not be paired or of one length. It steers at ``layers`` (default: the
        layer whose projections separate the two sets best, Cohen's d, as ``extract`` chooses).
        """
        if not positive or not negative:
            raise ConfigError("from_pairs needs at least one positive and one negative example")
        chosen = None if layers is None else [layers] if isinstance(layers, int) else list(layers)
        for layer in chosen or ():
            lm.hooks.check_layer(layer)
        pos_rows, neg_rows = example_rows(lm, positive, system), example_rows(lm, negative, system)
        pos = row_activations(lm, pos_rows, range(len(positive)), batch_size, label="positive examples")
        neg = row_activations(lm, neg_rows, range(len(negative)), batch_size, label="negative examples")
        chats = not any(isinstance(x, str) for x in (*positive, *negative))
        variants = VARIANTS if chats else ("response_avg",)
        directions = {v: pos[v].mean(0) - neg[v].mean(0) for v in variants}
        d_per_layer = separation(pos["response_avg"], neg["response_avg"], directions["response_avg"])
        if chosen is None:
            chosen = [best_layer(d_per_layer, lm.num_layers)]
        extra = {"from_pairs": {"positive": len(positive), "negative": len(negative)},
                 "separation_per_layer": [round(float(x), 4) for x in d_per_layer]}
        return cls(directions, chosen, trait=trait, pole=pole or ("high" if trait else None),
                   fingerprint=lm.fingerprint, extra=extra)

    # -- vectors as values (repeng's ControlVector arithmetic): each operand counts as it steers, scale folded in

    def _folded(self, factor: float) -> PersonaVector:
        factor = finite(factor, "a persona vector's multiplier") * self.scale
        twin = copy.copy(self)
        twin.extra = {k: v for k, v in self.extra.items() if k not in ("sweep", "separation_per_layer")}
        PersonaVector.__init__(twin, {k: factor * t for k, t in self.directions.items()}, sorted(self.vectors),
                               self.variant, self.mode, self.positions, self.cap,
                               **{**self.common_kwargs(), "scale": 1.0, "extra": twin.extra})
        return twin

    def __mul__(self, factor: float) -> PersonaVector:
        if isinstance(factor, PersonaVector) or not isinstance(factor, (int, float)):
            return NotImplemented
        return self._folded(float(factor))

    __rmul__ = __mul__

    def __truediv__(self, divisor: float) -> PersonaVector:
        if not isinstance(divisor, (int, float)) or isinstance(divisor, bool):
            return NotImplemented
        if divisor == 0:
            raise ConfigError("cannot divide a persona vector by zero")
        return self._folded(1.0 / float(divisor))

    def __neg__(self) -> PersonaVector:
        return self._folded(-1.0)

    def __pos__(self) -> PersonaVector:
        return self._folded(1.0)

    def __add__(self, other: PersonaVector) -> PersonaVector:
        if not isinstance(other, PersonaVector):
            return NotImplemented
        return self._plus(other, 1.0)

    def __sub__(self, other: PersonaVector) -> PersonaVector:
        if not isinstance(other, PersonaVector):
            return NotImplemented
        return self._plus(other, -1.0)

    def _plus(self, other: PersonaVector, sign: float) -> PersonaVector:
        """Σ of two vectors (all layers, the variants both hold), steering at the left operand's layers; the
        two must come from one model (fingerprint) and have the same ``[L+1, d]`` shape."""
        from traitlab.errors import ArtifactError

        if self.fingerprint and other.fingerprint and self.fingerprint.mismatches(other.fingerprint):
            raise ArtifactError(f"cannot combine {self.name} and {other.name}: they were made for different models")
        mine, theirs = self.directions[self.variant].shape, other.directions[other.variant].shape
        if mine != theirs:
            raise ArtifactError(f"cannot combine vectors of shapes [L+1, d] = {list(mine)} and {list(theirs)}")
        shared = [v for v in self.directions if v in other.directions]
        if not shared:
            raise ArtifactError(f"{self.name} and {other.name} share no variant")
        left, right = self._folded(1.0), other._folded(sign)
        directions = {v: left.directions[v] + right.directions[v] for v in shared}
        variant = self.variant if self.variant in directions else shared[0]
        trait = self.trait if self.trait == other.trait else None
        return PersonaVector(directions, sorted(self.vectors), variant, self.mode, self.positions, self.cap,
                             trait=trait, pole=self.pole if trait else None,
                             fingerprint=self.fingerprint or other.fingerprint)

    @property
    def num_layers(self) -> int:
        return self.directions[self.variant].shape[0] - 1

    def direction(self, layer: int, variant: str | None = None) -> torch.Tensor:
        return self.directions[variant or self.variant][layer]

    def at(self, layers: Sequence[int] | int | None = None, variant: str | None = None, mode: Mode | None = None,
           positions: str | None = None, cap: tuple[float | None, float | None] | None = None) -> PersonaVector:
        """A copy steering at other layers / with another variant, mode, positions or cap range."""
        chosen = [layers] if isinstance(layers, int) else list(layers or self.vectors)
        twin = copy.copy(self)
        PersonaVector.__init__(twin, self.directions, chosen, variant or self.variant, mode or self.mode,
                               positions or self.positions, cap or self.cap, **self.common_kwargs())
        return twin

    def tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.directions)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "variant": self.variant}

    @classmethod
    def from_artifact(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Intervention:
        p = meta["params"]
        return cls(tensors, p["layers"], p["variant"], p["mode"], p["positions"], tuple(p["cap"]),
                   **kwargs_from_meta(meta))
