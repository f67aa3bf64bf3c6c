"""The ``npti`` recipe (Deng et al. 2025): collect both poles' neuron statistics for the spec (cached: keyed
on the spec, the collection parameters, the description and question files and the model), then select and
edit neurons for the spec's pole (or ``pole``) with the selection parameters; ``scale`` is γ. A rerun that
changes only selection parameters re-selects from the cached statistics. ``mirror``: a low Big Five pole selects
its side from the statistics of the ``<trait>_high`` spec (the collection role-plays both poles either way, so
the trait's statistics are collected once).

The answers come from the run's answer bank (``RecipeContext.answers``, both sides sampled with one seed) and
the statistics from a teacher-forced pass over them (``neurons.stats_from_answers``, equal to the statistics
streamed during generation up to float rounding). With ``n_per_question`` (and ``n_questions``) the rows are
every instruction pair × question × n, pair-major: the rows of ``persona_vectors`` and ``subnetwork``, so with
the same sampling settings the three fits share one sampling per pole; without it, NPTI's shuffled sample of
``n_answers`` rows."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from traitlab.errors import ArtifactError, ConfigError
from traitlab.evaluation.recipes.base import Params, Recipe, RecipeContext, cached
from traitlab.evaluation.situational import load_question_file
from traitlab.interventions import Intervention
from traitlab.methods import neurons
from traitlab.methods.neurons import CollectionSettings, NeuronInduction, SelectionOptions
from traitlab.methods.pole_answers import Sampling, pair_rows

_ANSWERS = "answer-bank-v1"  # in the key: answers from the run's bank, one seed for both sides, teacher-forced

_COLLECTION = ("n_answers", "max_new_tokens", "temperature", "top_p", "seed", "batch_size", "bins")
_SELECTION = ("threshold", "top_k", "use_f", "boost_only", "clamp_only", "boost_fraction", "positions")


class NptiParams(Params):
    # selection (SelectionOptions; selection_seed is its seed)
    threshold: float = SelectionOptions.threshold
    top_k: int = SelectionOptions.top_k
    use_f: bool = SelectionOptions.use_f
    boost_only: bool = SelectionOptions.boost_only
    clamp_only: bool = SelectionOptions.clamp_only
    boost_fraction: float = SelectionOptions.boost_fraction
    selection_seed: int = SelectionOptions.seed
    positions: str = SelectionOptions.positions
    # collection (CollectionSettings)
    n_answers: int | None = CollectionSettings.n_answers
    max_new_tokens: int = CollectionSettings.max_new_tokens
    temperature: float = CollectionSettings.temperature
    top_p: float = CollectionSettings.top_p
    seed: int = CollectionSettings.seed
    batch_size: int = CollectionSettings.batch_size
    bins: int = CollectionSettings.bins
    n_questions: int | None = Field(default=None, ge=1)
    n_per_question: int | None = Field(default=None, ge=1)
    # the rest
    pole: Literal["high", "low"] | None = None
    scale: float = 1.0
    description_json: str | None = None
    questions: str | None = None
    mirror: bool = False

    @field_validator("description_json", "questions")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_file():
            raise ValueError(f"file {value} not found")
        return value

    @model_validator(mode="after")
    def _settings(self) -> NptiParams:
        if self.n_per_question is not None and self.n_answers is not None:
            raise ValueError("n_per_question (every instruction pair × question × n) and n_answers (a shuffled "
                             "sample of n rows) choose the rows two ways: set one")
        self.collection()
        self.selection()
        return self

    def collection(self) -> CollectionSettings:
        return CollectionSettings(**{k: getattr(self, k) for k in _COLLECTION})

    def selection(self) -> SelectionOptions:
        return SelectionOptions(seed=self.selection_seed, **{k: getattr(self, k) for k in _SELECTION})


def answer_rows(pairs: list[tuple[str, str]], questions: list[str],
                params: NptiParams) -> tuple[list[str], list[str], list[str]]:
    """(questions, pos systems, neg systems) of the collection: with ``n_per_question``, ``pole_answers.pair_rows``
    (the rows of persona vectors and a subnetwork's calibration, so the run's answer bank serves all three); else
    NPTI's shuffled sample of ``n_answers`` rows (``neurons.pole_rows``)."""
    if params.n_per_question is None:
        return neurons.pole_rows(pairs, questions, params.n_answers, params.seed)
    return pair_rows(pairs, questions, params.n_per_question)


def build_npti(context: RecipeContext, params: NptiParams) -> Intervention:
    own_pole = params.pole or context.spec.pole
    if params.mirror:
        context = context.high_pole()
    lm, spec = context.lm, context.spec
    settings = params.collection()
    pairs = None
    if params.description_json is not None:
        pairs = neurons.description_pairs(neurons.load_npti_descriptions(params.description_json, spec.trait_name),
                                          spec)
    questions = load_question_file(params.questions) if params.questions is not None else None

    def fit() -> Intervention:
        pair_list = pairs if pairs is not None else [(p.pos, p.neg) for p in spec.instruction]
        asked = questions if questions is not None else context.trimmed(params.n_questions).questions
        qs, pos_systems, neg_systems = answer_rows(pair_list, list(asked), params)
        sampling = Sampling.like(settings)
        pos, neg = (context.answers(qs, systems, sampling, f"{spec.name}: answers under the {side} prompts")
                    for side, systems in (("pos", pos_systems), ("neg", neg_systems)))
        return neurons.fit(lm, spec, settings=settings, pairs=pair_list, questions=asked, progress=False,
                           answers=(pos.generation, neg.generation))

    def load(path: Path) -> NeuronInduction | None:
        try:
            loaded = NeuronInduction.load(path, lm)
        except (ArtifactError, ConfigError):
            return None
        return loaded if loaded.stats is not None else None

    key = [dataclasses.asdict(settings), pairs, questions, params.n_questions, params.n_per_question, _ANSWERS]
    base = cached(context, "npti-stats", key, fit, load=load)
    assert isinstance(base, NeuronInduction)
    options = dataclasses.replace(params.selection(), target=neurons.side_for(spec, own_pole))
    return base.with_options(**dataclasses.asdict(options)).scaled(params.scale)


NPTI = Recipe("npti", NptiParams, build_npti, offload=True)
