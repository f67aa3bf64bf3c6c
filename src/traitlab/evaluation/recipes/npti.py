"""The ``npti`` recipe (Deng et al. 2025): collect both poles' neuron statistics for the spec (cached: keyed
on the spec, the collection parameters, the description and question files and the model), then select and
edit neurons for the spec's pole (or ``pole``) with the selection parameters; ``scale`` is γ. A rerun that
changes only selection parameters re-selects from the cached statistics. ``mirror``: a low Big Five pole selects
its side from the statistics of the ``<trait>_high`` spec (the collection role-plays both poles either way, so
the trait's statistics are collected once)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from pydantic import field_validator, model_validator

from traitlab.errors import ArtifactError, ConfigError
from traitlab.evaluation.recipes.base import Params, Recipe, RecipeContext, cached
from traitlab.evaluation.situational import load_question_file
from traitlab.interventions import Intervention
from traitlab.methods import neurons
from traitlab.methods.neurons import CollectionSettings, NeuronInduction, SelectionOptions

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
        self.collection()
        self.selection()
        return self

    def collection(self) -> CollectionSettings:
        return CollectionSettings(**{k: getattr(self, k) for k in _COLLECTION})

    def selection(self) -> SelectionOptions:
        return SelectionOptions(seed=self.selection_seed, **{k: getattr(self, k) for k in _SELECTION})


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
        return neurons.fit(lm, spec, settings=settings, pairs=pairs, questions=questions, progress=False)

    def load(path: Path) -> NeuronInduction | None:
        try:
            loaded = NeuronInduction.load(path, lm)
        except (ArtifactError, ConfigError):
            return None
        return loaded if loaded.stats is not None else None

    key = [dataclasses.asdict(settings), pairs, questions]
    base = cached(context, "npti-stats", key, fit, load=load)
    assert isinstance(base, NeuronInduction)
    options = dataclasses.replace(params.selection(), target=neurons.side_for(spec, own_pole))
    return base.with_options(**dataclasses.asdict(options)).scaled(params.scale)


NPTI = Recipe("npti", NptiParams, build_npti, offload=True)
