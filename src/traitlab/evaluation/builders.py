"""Runner builders of the fitted mechanisms: each fits its Intervention for a trait spec on the experiment's
model, or reuses the artifact cached under the run's folder (keyed by spec, parameters and model fingerprint).

- ``persona_vectors``: extraction (judged with the experiment's judges) + layer/coefficient sweep.
- ``persona_vectors`` may sweep ``variants`` and ``positions`` (a list) too.
- ``personality_vector``: self-distilled data (with ``self_report``: also the persona's answers to that
  inventory's items of the trait) → finetune → φ = θ_tuned − θ_base.
- ``npti`` and ``subnetwork`` come from their own modules' ``runner_builder``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traitlab.errors import ConfigError
from traitlab.interventions import Intervention, load_intervention
from traitlab.model import LoadedModel

PERSONA_VECTOR_DEFAULTS = {"n_per_question": 1, "temperature": 1.0, "max_new_tokens": 80, "min_pairs": 5,
                           "layers": None, "coefs": [1.0, 2.0, 4.0, 8.0], "sweep_questions": 8,
                           "positions": "response", "variants": None, "coherence_threshold": 50.0,
                           "optimize_layers": None, "optimize_steps": 100}
PERSONALITY_VECTOR_DEFAULTS = {"n_per_question": 4, "temperature": 1.0, "max_new_tokens": 80, "method": "full",
                               "epochs": 2.0, "learning_rate": 3e-4, "batch_size": 8, "self_report": None}


def _checked(params: dict[str, Any], defaults: dict[str, Any], method: str) -> dict[str, Any]:
    unknown = set(params) - set(defaults)
    if unknown:
        raise ConfigError(f"unknown {method} parameter(s) {', '.join(sorted(unknown))}; known: "
                          f"{', '.join(defaults)}")
    return {**defaults, **params}


def validate_persona_vectors(params: dict[str, Any]) -> None:
    merged = _checked(params, PERSONA_VECTOR_DEFAULTS, "persona_vectors")
    if not merged["coefs"] or any(not isinstance(c, int | float) for c in merged["coefs"]):
        raise ConfigError("persona_vectors coefs must be a non-empty list of numbers")
    from traitlab.methods.persona_optimize import OPTIMIZED
    from traitlab.methods.persona_vectors import ALL_VARIANTS
    from traitlab.model.positions import check_positions

    positions = merged["positions"]
    for where in [positions] if isinstance(positions, str) else positions:
        check_positions(where)
    for variant in merged["variants"] or []:
        if variant not in ALL_VARIANTS:
            raise ConfigError(f"unknown persona_vectors variant '{variant}'; use {', '.join(ALL_VARIANTS)}")
    if merged["optimize_layers"] is not None:
        _optimize_settings(merged)
    elif OPTIMIZED in (merged["variants"] or []):
        raise ConfigError("the persona_vectors 'optimized' variant needs optimize_layers, e.g. [1, 3]")


def _optimize_settings(params: dict[str, Any]) -> Any:
    from traitlab.methods.persona_optimize import OptimizeSettings

    layers = params["optimize_layers"]
    if not isinstance(layers, list) or not all(isinstance(x, int) for x in layers):
        raise ConfigError("persona_vectors optimize_layers must be a list of layer numbers")
    return OptimizeSettings(tuple(layers), steps=params["optimize_steps"])


def validate_personality_vector(params: dict[str, Any]) -> None:
    merged = _checked(params, PERSONALITY_VECTOR_DEFAULTS, "personality_vector")
    if merged["method"] not in ("lora", "full"):
        raise ConfigError("personality_vector method must be lora or full")
    if merged["self_report"] is not None:
        from traitlab.evaluation.questionnaire import load_inventory

        load_inventory(merged["self_report"])


def cached(lm: LoadedModel, workdir: Path, method: str, spec: Any, params: dict[str, Any],
           fit: Callable[[], Intervention]) -> Intervention:
    """Load ``method``'s artifact for (spec, params, model) from ``workdir``, or fit and save it."""
    key = hashlib.sha256(json.dumps([spec.name, params, lm.fingerprint.to_dict()], sort_keys=True,
                                    default=str).encode()).hexdigest()[:12]
    path = Path(workdir) / "artifacts" / f"{method}-{spec.name}-{key}.safetensors"
    if path.is_file():
        return load_intervention(path, lm)
    path.parent.mkdir(parents=True, exist_ok=True)
    intervention = fit()
    intervention.save(path)
    return intervention


def build_persona_vectors(lm: LoadedModel, spec: Any, params: dict[str, Any], workdir: Path,
                          judges: Any = None) -> Intervention:
    from traitlab.methods.persona_sweep import apply_sweep, sweep
    from traitlab.methods.persona_vectors import ExtractionSettings, extract

    p = _checked(params, PERSONA_VECTOR_DEFAULTS, "persona_vectors")

    def fit() -> Intervention:
        trait_judge, coherence_judge = _judges(lm, spec, judges)
        settings = ExtractionSettings(n_per_question=p["n_per_question"], temperature=p["temperature"],
                                      max_new_tokens=p["max_new_tokens"], min_pairs=p["min_pairs"])
        optimize = _optimize_settings(p) if p["optimize_layers"] is not None else None
        vector = extract(lm, spec, trait_judge, settings, coherence_judge, optimize)
        layers = p["layers"] or list(range(1, lm.num_layers))
        result = sweep(lm, vector, spec, trait_judge, layers, p["coefs"], coherence_judge, p["coherence_threshold"],
                       questions=spec.held_out_questions[: p["sweep_questions"]], max_new_tokens=64,
                       positions=p["positions"], variants=p["variants"])
        return apply_sweep(vector, result)

    return cached(lm, workdir, "persona_vectors", spec, p, fit)


def _judges(lm: LoadedModel, spec: Any, judges: Any) -> tuple[Any, Any]:
    from traitlab.evaluation.config import JudgeConfig
    from traitlab.evaluation.suite import Judges

    judges = judges or Judges.from_config(JudgeConfig(), lm)
    trait_judge, _ = judges.trait_judge(spec)
    return trait_judge, judges.coherence


def build_personality_vector(lm: LoadedModel, spec: Any, params: dict[str, Any], workdir: Path,
                             judges: Any = None) -> Intervention:
    from traitlab.finetune import FinetuneSettings, finetune
    from traitlab.methods.merging import vector_from_models
    from traitlab.methods.personality_data import self_distill

    p = _checked(params, PERSONALITY_VECTOR_DEFAULTS, "personality_vector")

    def fit() -> Intervention:
        self_report = None
        if p["self_report"] is not None:
            from traitlab.evaluation.questionnaire import load_inventory

            inventory = load_inventory(p["self_report"])
            self_report = inventory.subset([spec.trait_name]) if spec.trait_name in inventory.traits else None
        data = self_distill(lm, spec, p["n_per_question"], p["temperature"], p["max_new_tokens"],
                            self_report=self_report)
        settings = FinetuneSettings(method=p["method"], epochs=p["epochs"], learning_rate=p["learning_rate"],
                                    batch_size=p["batch_size"])
        return vector_from_models(lm, finetune(lm, data, settings), spec.trait_name, spec.pole)

    return cached(lm, workdir, "personality_vector", spec, p, fit)
