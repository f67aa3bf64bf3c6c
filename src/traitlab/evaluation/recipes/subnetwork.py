"""The ``subnetwork`` recipe (Ye et al. 2026): the activation-guided mask of the spec's pole (or ``pole``),
Wanda or contrastive, cached on the spec, the find settings and the model; ``n_questions`` keeps the first n
extraction questions for the calibration answers (a cheaper fit).

Each pole's calibration statistics (Σx_j, Σx²_j of every selected Linear's input over the model's answers under
that pole's prompts) are cached in the work folder too, keyed on the spec's content, the pole, the calibration
settings and the model: a contrastive fit of the high pole and one of the low pole share the same two statistics
instead of calibrating both poles twice. ``mirror``: a low Big Five pole is fitted from the ``<trait>_high``
spec (its ``neg`` prompts are the low pole's, as in the ``persona_vectors`` and ``npti`` recipes), so the two
poles of a trait calibrate two personas once, and the low pole's contrastive mask ranks ``|W|·ReLU(−z)`` with
the very ``z`` of the high pole's mask."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from traitlab.claims import claimed
from traitlab.evaluation.recipes.base import Params, Recipe, RecipeContext, artifact_path, cached
from traitlab.interventions import Intervention
from traitlab.methods import subnet_fit
from traitlab.methods.pole_answers import Sampling
from traitlab.methods.subnet_calibration import GenerationSettings, spec_pole
from traitlab.methods.subnet_fit import FindSettings, PoleStatistics, parse_blocks
from traitlab.model import LinearInputStats


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
    mirror: bool = False

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


def calibration_key(settings: FindSettings, n_questions: int | None) -> dict[str, Any]:
    """What decides one pole's calibration statistics (not the mask's sparsity, eps or disjointness)."""
    return {"with_system": settings.with_system, "positions": settings.positions, "modules": settings.modules,
            "blocks": list(settings.blocks) if settings.blocks else None, "batch_size": settings.batch_size,
            "generation": dataclasses.asdict(settings.generation), "n_questions": n_questions}


def cached_pole_statistics(context: RecipeContext, pole: str, settings: FindSettings,
                           n_questions: int | None = None) -> PoleStatistics:
    """``subnet_fit.pole_statistics`` of ``pole`` of the context's spec (its first ``n_questions`` extraction
    questions) over the run's answer bank (``context.pole_answers``: the very call ``from_spec`` makes, so the
    high pole's answers are persona vectors' positive rollouts and the low pole's their negative ones), kept
    in the work folder as ``subnet-stats-<spec>-<pole>-<hash>.safetensors`` (Σx and Σx² in
    float64, the token counts and the calibration source in the header): loaded when present, else collected
    and saved."""
    path = artifact_path(context, "subnet-stats", [pole, calibration_key(settings, n_questions)], (pole,),
                         suffix=".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    with claimed(path.parent, path.name, mark_done=False):  # one process of a run calibrates a pole
        return _pole_statistics(context, pole, settings, n_questions, path)


def _pole_statistics(context: RecipeContext, pole: str, settings: FindSettings, n_questions: int | None,
                     path: Path) -> PoleStatistics:
    from safetensors import safe_open
    from safetensors.torch import save_file

    if path.is_file():
        with safe_open(str(path), framework="pt") as handle:
            header = json.loads((handle.metadata() or {})["traitlab"])
            stats = {name: LinearInputStats(handle.get_tensor(f"{name}.sum"), handle.get_tensor(f"{name}.sum_sq"),
                                            int(count)) for name, count in header["counts"].items()}
        return stats, header["source"]
    spec = context.trimmed(n_questions)
    generation = settings.generation
    _, use_pos = spec_pole(spec, pole)
    answers = context.pole_answers(spec, "pos" if use_pos else "neg", generation.n_answers,
                                   Sampling.like(generation))
    stats, source = subnet_fit.pole_statistics(context.lm, spec, pole, settings, answers=answers.generation)
    tensors = {f"{name}.{field}": getattr(entry, field).contiguous()
               for name, entry in stats.items() for field in ("sum", "sum_sq")}
    header = {"counts": {name: entry.count for name, entry in stats.items()}, "source": source}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"traitlab": json.dumps(header, default=str)})
    Path(tmp).replace(path)
    return stats, source


def build_subnetwork(context: RecipeContext, params: SubnetworkParams) -> Intervention:
    settings = params.find_settings()
    pole, _ = spec_pole(context.spec, params.pole)
    if params.mirror:
        context = context.high_pole()

    def calibrate(which: str) -> PoleStatistics:
        return cached_pole_statistics(context, which, settings, params.n_questions)

    def fit() -> Intervention:
        mask, _ = subnet_fit.find(context.lm, context.trimmed(params.n_questions), pole, settings,
                                  calibrate=calibrate)
        return mask

    key = [pole, settings.hyperparameters(), *([params.n_questions] if params.n_questions else [])]
    return cached(context, "subnetwork", key, fit, tags=(pole,))


SUBNETWORK = Recipe("subnetwork", SubnetworkParams, build_subnetwork, offload=True)
