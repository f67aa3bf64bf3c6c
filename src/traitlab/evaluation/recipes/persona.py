"""The recipes of the fitted steering and weight mechanisms:

- ``persona_vectors``: extraction judged with the run's judges, then the layer × coefficient sweep
  (``variants`` and ``positions``, a list, may be swept too) on the last ``sweep_questions`` of the spec's
  extraction questions, never on the held-out questions the evaluation then asks; with ``layer`` and ``coef``
  both set it steers there without a sweep. ``mirror``: a low Big Five pole
  steers with the high pole's vector at the negated coefficient (v_low = −v_high, one extraction per trait).
  ``filter_pairs: false`` keeps every contrastive pair instead of only those the judge scores on their poles'
  sides (the paper's filter), for a model or judge too weak for the filter to leave enough pairs.
  ``short_prompts: true`` extracts from the spec's ``short_instruction`` pairs (the prompts a 135M model
  follows).
- ``personality_vector``: self-distilled data (with ``self_report``: also the persona's answers to that
  inventory's items of the trait) → finetune → φ = θ_tuned − θ_base. ``every_instruction``: distil from every
  instruction pair × question × ``n_per_question`` (the rows the other fits sample, shared through the run's
  answer bank); ``mirror``: a low Big Five pole distils from the ``<trait>_high`` spec's negative prompts.
  ``precision`` as in ``FinetuneSettings``
  ("auto": bf16 autocast where the hardware has bf16 natively, else fp32); the artifact is keyed on the
  precision it resolves to, and an fp32 fit keeps the key it had before the setting existed.
  ``lora_top_blocks: n`` puts the LoRA adapters on the model's last n blocks only (the backward stops there).

``n_questions`` keeps the first n extraction questions of the spec (a cheaper fit).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from traitlab.errors import ConfigError
from traitlab.evaluation.questionnaire import load_inventory
from traitlab.evaluation.recipes.base import Params, Recipe, RecipeContext, cached
from traitlab.finetune import FinetuneSettings, finetune
from traitlab.finetune.personality_data import self_distill, side_prompts
from traitlab.finetune.sft import resolve_precision
from traitlab.interventions import Intervention
from traitlab.methods.merging import vector_from_models
from traitlab.methods.persona_optimize import OPTIMIZED, OptimizeSettings
from traitlab.methods.persona_sweep import apply_sweep, sweep
from traitlab.methods.persona_vectors import ALL_VARIANTS, ExtractionSettings, extract
from traitlab.methods.pole_answers import Sampling, pole_rows
from traitlab.model.positions import check_positions

_ANSWERS = "answer-bank-v1"  # in the artifact keys: the answers come from the run's bank, one seed for both sides


class PersonaVectorParams(Params):
    n_per_question: int = 1
    temperature: float = 1.0
    max_new_tokens: int = 80
    min_pairs: int = 5
    layers: list[int] | None = None
    coefs: list[float] = Field(default=[1.0, 2.0, 4.0, 8.0], min_length=1)
    sweep_questions: int = 8
    positions: str | list[str] = "response"
    variants: list[str] | None = None
    coherence_threshold: float = 50.0
    optimize_layers: list[int] | None = None
    optimize_steps: int = 100
    n_questions: int | None = Field(default=None, ge=1)
    layer: int | None = Field(default=None, ge=1)
    coef: float | None = None
    mirror: bool = False
    filter_pairs: bool = True
    short_prompts: bool = False

    @field_validator("positions")
    @classmethod
    def _positions(cls, value: str | list[str]) -> str | list[str]:
        for where in [value] if isinstance(value, str) else value:
            check_positions(where)
        return value

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[str] | None) -> list[str] | None:
        for variant in value or []:
            if variant not in ALL_VARIANTS:
                raise ValueError(f"unknown persona_vectors variant '{variant}'; use {', '.join(ALL_VARIANTS)}")
        return value

    @model_validator(mode="after")
    def _optimize(self) -> PersonaVectorParams:
        if (self.layer is None) != (self.coef is None):
            raise ValueError("a fixed persona-vector cell needs both layer and coef (or neither, to sweep)")
        if self.layer is not None and not isinstance(self.positions, str):
            raise ValueError("a fixed persona-vector cell steers one positions value, not a list")
        if self.optimize_layers is not None:
            self.optimize()
        elif OPTIMIZED in (self.variants or []):
            raise ValueError("the persona_vectors 'optimized' variant needs optimize_layers, e.g. [1, 3]")
        return self

    def extraction(self) -> ExtractionSettings:
        return ExtractionSettings(n_per_question=self.n_per_question, temperature=self.temperature,
                                  max_new_tokens=self.max_new_tokens, min_pairs=self.min_pairs,
                                  filter_pairs=self.filter_pairs)

    def optimize(self) -> OptimizeSettings | None:
        if self.optimize_layers is None:
            return None
        return OptimizeSettings(tuple(self.optimize_layers), steps=self.optimize_steps)


def build_persona_vectors(context: RecipeContext, params: PersonaVectorParams) -> Intervention:
    """Extract with the run's trait and coherence judges, sweep layer × coefficient, steer at the best cell (or
    at the fixed ``layer``/``coef``); ``mirror`` on a low pole: the high pole's vector scaled by −1."""
    if params.mirror and context.high_pole() is not context:
        return build_persona_vectors(context.high_pole(), params.model_copy(update={"mirror": False})).scaled(-1.0)
    lm, spec = context.lm, context.spec
    if params.short_prompts and not spec.short_instruction:
        raise ConfigError(f"method 'persona_vectors': short_prompts is set but {spec.name} has no short_instruction "
                          "pairs")
    judges = context.require_judges("persona_vectors")

    def fit() -> Intervention:
        trait_judge, _ = judges.trait_judge(spec)
        coherence = judges.coherence if params.filter_pairs else None  # unfiltered: no need to judge fluency
        pairs = context.trimmed(params.n_questions)
        if params.short_prompts:
            pairs = pairs.with_short_instructions()
        settings = params.extraction()
        sampling = Sampling.like(settings)
        pos, neg = (context.pole_answers(pairs, side, settings.n_per_question, sampling) for side in ("pos", "neg"))
        vector = extract(lm, pairs, trait_judge, settings, coherence, params.optimize(),
                         answers=(pos.generation, neg.generation))
        if params.layer is not None and params.coef is not None:
            lm.hooks.check_layer(params.layer)
            chosen = vector.at(params.layer, positions=params.positions if isinstance(params.positions, str)
                               else None)
            chosen.scale = params.coef
            return chosen
        layers = params.layers or list(range(1, lm.num_layers))
        result = sweep(lm, vector, spec, trait_judge, layers, params.coefs, judges.coherence,
                       params.coherence_threshold, questions=spec.questions[-params.sweep_questions:],
                       max_new_tokens=64, positions=params.positions, variants=params.variants)
        return apply_sweep(vector, result)

    judged_by = [judges.kind, getattr(judges.shared, "name", None)]  # another judge keeps other pairs
    key = [params.model_dump(exclude={"mirror"}), judged_by, _ANSWERS]
    return cached(context, "persona_vectors", key, fit)


class PersonalityVectorParams(Params):
    n_per_question: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 80
    method: Literal["lora", "full"] = "full"
    epochs: float = 2.0
    learning_rate: float = 3e-4
    batch_size: int = 8
    self_report: str | None = None
    n_questions: int | None = Field(default=None, ge=1)
    every_instruction: bool = False
    mirror: bool = False
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    lora_top_blocks: int | None = Field(default=None, ge=1)

    @field_validator("self_report")
    @classmethod
    def _inventory(cls, value: str | None) -> str | None:
        if value is not None:
            load_inventory(value)
        return value

    @model_validator(mode="after")
    def _top_blocks_need_lora(self) -> PersonalityVectorParams:
        if self.lora_top_blocks is not None and self.method != "lora":
            raise ValueError("lora_top_blocks needs method: lora")
        return self


def build_personality_vector(context: RecipeContext, params: PersonalityVectorParams) -> Intervention:
    """Self-distil from the run's answer bank, finetune, φ = θ_tuned − θ_base. The distillation answers are the
    bank's replies to the spec's (first ``n_questions``) extraction questions under its positive prompts,
    cycled over question × ``n_per_question`` (``every_instruction``: every instruction pair × question ×
    ``n_per_question``, the rows persona vectors, subnetwork and npti sample, so a run shares them); ``mirror``
    on a low Big Five pole: the ``<trait>_high`` spec's negative prompts instead (the answers persona vectors
    contrast and the subnetwork calibrates its low pole on). The vector is the context's own pole either way."""
    lm, spec = context.lm, context.spec
    source, side = context, "pos"
    if params.mirror and context.high_pole() is not context:
        source, side = context.high_pole(), "neg"

    def fit() -> Intervention:
        data_spec = source.trimmed(params.n_questions)
        self_report = None
        if params.self_report is not None:
            inventory = load_inventory(params.self_report)
            self_report = inventory.subset([spec.trait_name]) if spec.trait_name in inventory.traits else None
        if params.every_instruction:
            questions, systems = pole_rows(data_spec, side, params.n_per_question)
            sampling = Sampling(max_new_tokens=params.max_new_tokens, temperature=params.temperature)
        else:  # self_distill's own rows and call (batch 64)
            questions = [q for q in data_spec.questions for _ in range(params.n_per_question)]
            systems = side_prompts(data_spec, side, len(questions))
            sampling = Sampling(max_new_tokens=params.max_new_tokens, temperature=params.temperature,
                                batch_size=64)
        answers = context.answers(questions, systems, sampling, f"{data_spec.name}: answers under the {side} "
                                  "prompts")
        data = self_distill(lm, data_spec, params.n_per_question, params.temperature, params.max_new_tokens,
                            self_report=self_report, side=side, answers=(answers.questions, answers.texts))
        top = params.lora_top_blocks
        layers = tuple(range(max(0, lm.num_layers - top), lm.num_layers)) if top is not None else None
        settings = FinetuneSettings(method=params.method, epochs=params.epochs, learning_rate=params.learning_rate,
                                    batch_size=params.batch_size, precision=precision, lora_layers=layers)
        return vector_from_models(lm, finetune(lm, data, settings), spec.trait_name, spec.pole)

    # the new switches enter the key only when set, so artifacts fitted before them stay valid
    precision = resolve_precision(params.precision, lm.device)
    unset = {k for k in ("every_instruction", "mirror") if not getattr(params, k)}
    key = params.model_dump(exclude={"precision"} | unset | ({"lora_top_blocks"} if params.lora_top_blocks is None
                                                             else set()))
    return cached(context, "personality_vector", key if precision == "fp32" else [key, precision], fit)


PERSONA_VECTORS = Recipe("persona_vectors", PersonaVectorParams, build_persona_vectors)
PERSONALITY_VECTOR = Recipe("personality_vector", PersonalityVectorParams, build_personality_vector, offload=True)
