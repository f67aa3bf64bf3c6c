"""The ``subnetwork`` recipe (Ye et al. 2026): the activation-guided mask of the spec's pole (or ``pole``),
Wanda or contrastive, cached on the spec, the find settings and the model; ``n_questions`` keeps the first n
extraction questions for the calibration answers (a cheaper fit)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from traitlab.evaluation.recipes.base import Params, Recipe, RecipeContext, cached
from traitlab.interventions import Intervention
from traitlab.methods import subnet_fit
from traitlab.methods.subnet_calibration import GenerationSettings, spec_pole
from traitlab.methods.subnet_fit import FindSettings, parse_blocks


class SubnetworkParams(Params):
    sparsity: float | None = FindSettings.sparsity
    contrastive: bool = FindSettings.contrastive
    modules: str = FindSettings.modules
    blocks: str | list[int] | None = None
    with_system: bool = FindSettings.with_system
    positions: str = FindSettings.positions
    eps: float = FindSettings.eps
    disjoint: str = FindSettings.disjoint
    n_answers: int = GenerationSettings.n_answers
    seed: int = GenerationSettings.seed
    temperature: float = GenerationSettings.temperature
    max_new_tokens: int = GenerationSettings.max_new_tokens
    pole: Literal["high", "low"] | None = None
    n_questions: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _settings(self) -> SubnetworkParams:
        self.find_settings()
        return self

    def find_settings(self) -> FindSettings:
        blocks = parse_blocks(self.blocks) if isinstance(self.blocks, str) else self.blocks
        generation = GenerationSettings(n_answers=self.n_answers, temperature=self.temperature,
                                        max_new_tokens=self.max_new_tokens, seed=self.seed)
        return FindSettings(sparsity=self.sparsity, contrastive=self.contrastive, modules=self.modules,
                            blocks=tuple(blocks) if blocks is not None else None, with_system=self.with_system,
                            positions=self.positions, eps=self.eps, disjoint=self.disjoint, generation=generation)


def build_subnetwork(context: RecipeContext, params: SubnetworkParams) -> Intervention:
    settings = params.find_settings()
    pole, _ = spec_pole(context.spec, params.pole)

    def fit() -> Intervention:
        mask, _ = subnet_fit.find(context.lm, context.trimmed(params.n_questions), pole, settings)
        return mask

    key = [pole, settings.hyperparameters(), *([params.n_questions] if params.n_questions else [])]
    return cached(context, "subnetwork", key, fit, tags=(pole,))


SUBNETWORK = Recipe("subnetwork", SubnetworkParams, build_subnetwork)
