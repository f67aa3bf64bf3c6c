"""The experiment file of ``traitlab compare``, validated in full (pydantic) before any model loads.

```yaml
name: extraversion-methods          # used in the report title
model: traitlab/persona-tiny        # hub id, local folder or the organism; dtype/device optional
traits: [extraversion, agreeableness_low, ./my_trait.json]   # Big Five name = <name>_high, spec name or file
methods:
  - name: none
  - name: prompt
  - name: p2
  - name: artifact
    label: ev-vector                # unique per method entry (default: the name)
    params: {path: ev.tl.safetensors}
    sweep: {scale: [0, 1, 2, 4]}    # one cell per scale: intervention.scaled(s)
evaluations:                        # a list of names takes the defaults: [questionnaire, situational]
  questionnaire: {inventory: traitlab, scoring: logprob, reverse: listing}
  situational: {n_questions: 10, samples: 1, max_new_tokens: 64}
  coherence: {threshold: 50}
  capability: {file: null, neutral_perplexity: auto}
judge: {kind: auto}                 # auto | oracle | embedding (reference, calibrate) | endpoint (url, model,
                                    # concurrency, cache) | local (model)
seeds: [0]
```

Unknown keys, unknown methods, bad method parameters (each recipe's params model), missing trait specs,
questionnaire or question files are all ``ConfigError``s raised by ``load_experiment``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from traitlab.errors import ConfigError, TraitlabError, validation_message
from traitlab.evaluation.recipes import recipe
from traitlab.traits.spec import BIG_FIVE
from traitlab.validate import read_text

SUITES = ("questionnaire", "situational", "coherence", "capability", "monitor")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuestionnaireConfig(_Strict):
    inventory: str = "traitlab"
    format: Literal["auto", "traitlab", "ipip", "mpi", "psychobench", "csv"] = "auto"
    name: str | None = None
    scoring: Literal["logprob", "generate"] = "logprob"
    reverse: Literal["listing", "labels", "none"] = "listing"
    wordings: list[str] | None = None
    max_items_per_trait: int | None = Field(default=None, ge=1)
    samples: int = Field(default=1, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=64, ge=1)


class SituationalConfig(_Strict):
    questions: str | None = None
    n_questions: int | None = Field(default=10, ge=1)
    samples: int = Field(default=1, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    max_new_tokens: int = Field(default=64, ge=1)
    batch_size: int = Field(default=32, ge=1)
    examples: int = Field(default=3, ge=0)


class CoherenceConfig(_Strict):
    threshold: float = Field(default=50.0, ge=0, le=100)
    fluency: bool = True


class MonitorConfig(_Strict):
    """Persona-vector monitoring (Chen et al. 2025, §4): last-prompt-token projections vs judged answers."""

    n_questions: int = Field(default=6, ge=2)
    max_new_tokens: int = Field(default=64, ge=1)
    batch_size: int = Field(default=32, ge=1)


class CapabilityConfig(_Strict):
    file: str | None = None
    max_questions: int | None = Field(default=None, ge=1)
    neutral_perplexity: bool | Literal["auto"] = "auto"
    neutral_n: int = Field(default=40, ge=1)
    batch_size: int = Field(default=32, ge=1)


class Evaluations(_Strict):
    questionnaire: QuestionnaireConfig | None = None
    situational: SituationalConfig | None = None
    coherence: CoherenceConfig | None = None
    capability: CapabilityConfig | None = None
    monitor: MonitorConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            unknown = [v for v in value if v not in SUITES]
            if unknown:
                raise ValueError(f"unknown evaluation {', '.join(map(str, unknown))}; use {', '.join(SUITES)}")
            return {name: {} for name in value}
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @property
    def suites(self) -> list[str]:
        return [s for s in SUITES if getattr(self, s) is not None]


def default_evaluations() -> Evaluations:
    return Evaluations.model_validate(["questionnaire", "situational", "coherence"])


class JudgeConfig(_Strict):
    kind: Literal["auto", "oracle", "embedding", "endpoint", "local"] = "auto"
    url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(default=4, ge=1)
    retries: int = Field(default=4, ge=0)
    cache: str | None = None
    batch_size: int = Field(default=16, ge=1)
    reference: str | None = "gemma-3-270m"  # embedding judge: the coherence judge's reference LM
    calibrate: bool = True  # embedding judge: calibrate on the un-intervened model's own replies

    @model_validator(mode="after")
    def _endpoint_needs_url(self) -> JudgeConfig:
        if self.kind == "endpoint" and not (self.url and self.model):
            raise ValueError("an endpoint judge needs url and model")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"judge url '{self.url}' must start with http:// or https://")
        return self


class SweepConfig(_Strict):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    scale: list[float] = Field(min_length=1)


class MethodConfig(_Strict):
    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    sweep: SweepConfig | None = None

    @property
    def key(self) -> str:
        return self.label or self.name

    @property
    def scales(self) -> list[float | None]:
        return list(self.sweep.scale) if self.sweep else [None]


class Experiment(_Strict):
    name: str = "experiment"
    model: str = "traitlab/persona-tiny"
    dtype: str | None = None
    device: str | None = None
    traits: list[str] = Field(min_length=1)
    methods: list[MethodConfig] = Field(min_length=1)
    evaluations: Evaluations = Field(default_factory=default_evaluations)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)

    @field_validator("traits")
    @classmethod
    def _unique_traits(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("traits are listed twice")
        return value

    @model_validator(mode="after")
    def _unique_labels(self) -> Experiment:
        keys = [m.key for m in self.methods]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"method labels must be unique; give 'label' to repeated {', '.join(dupes)}")
        if not self.evaluations.suites:
            raise ValueError("evaluations is empty; name at least one of " + ", ".join(SUITES))
        return self

    def fingerprint(self) -> str:
        """A short hash of what decides a cell's result besides its own coordinates."""
        blob = json.dumps({"model": self.model, "dtype": self.dtype, "evaluations": self.evaluations.model_dump(),
                           "judge": self.judge.model_dump(exclude={"concurrency", "cache", "retries"})},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def resolve_trait(name: str, base: Path | None = None) -> Any:
    """A TraitSpec for a trait entry: a Big Five name means ``<name>_high``; a relative file path is taken
    relative to the experiment file's folder."""
    from traitlab.traits import load_trait, trait_name

    entry = trait_name(name)
    if base is not None and (entry.endswith(".json") or os.sep in entry):
        candidate = base / entry
        if candidate.exists():
            entry = str(candidate)
    return load_trait(entry)


def _resolve_path(value: str | None, base: Path | None) -> str | None:
    if value is None or base is None:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() or not (base / path).exists() else base / path)


def validate_experiment(experiment: Experiment, base: Path | None = None) -> tuple[Experiment, dict[str, Any]]:
    """Check what pydantic cannot: methods and their parameters, trait specs, files. Returns the experiment
    with paths made relative to ``base`` and the resolved trait specs."""
    data = experiment.model_dump()
    # a suite left out is None in the dump; Evaluations reads None as "the defaults", so drop it here
    data["evaluations"] = {k: v for k, v in data["evaluations"].items() if v is not None}
    for method in data["methods"]:
        if isinstance(method["params"].get("path"), str):
            method["params"]["path"] = _resolve_path(method["params"]["path"], base)
    evaluations = data["evaluations"]
    if evaluations.get("questionnaire") and evaluations["questionnaire"]["inventory"] != "traitlab":
        evaluations["questionnaire"]["inventory"] = _resolve_path(evaluations["questionnaire"]["inventory"], base)
    if evaluations.get("situational") and evaluations["situational"]["questions"]:
        evaluations["situational"]["questions"] = _resolve_path(evaluations["situational"]["questions"], base)
    if evaluations.get("capability") and evaluations["capability"]["file"]:
        evaluations["capability"]["file"] = _resolve_path(evaluations["capability"]["file"], base)
    experiment = Experiment.model_validate(data)
    for method in experiment.methods:
        where = f"method '{method.key}'"
        try:
            chosen = recipe(method.name)
            chosen.parse(method.params)
        except TraitlabError as exc:
            raise type(exc)(f"{where}: {exc}" if method.key != method.name else str(exc)) from None
        if method.sweep and not chosen.sweepable:
            raise ConfigError(f"{where}: method '{method.name}' cannot be swept (it has no strength)")
    specs = {name: resolve_trait(name, base) for name in experiment.traits}
    ev = experiment.evaluations
    if ev.questionnaire is not None:
        from traitlab.evaluation.questionnaire import Administration, load_inventory

        load_inventory(ev.questionnaire.inventory, ev.questionnaire.format, ev.questionnaire.name)
        if ev.questionnaire.wordings:
            Administration(tuple(ev.questionnaire.wordings), ev.questionnaire.reverse)
    if ev.situational is not None or ev.coherence is not None:
        from traitlab.evaluation.situational import question_set

        situational = ev.situational or SituationalConfig()
        for spec in specs.values():
            question_set(spec, situational.questions, situational.n_questions)
    if ev.capability is not None and ev.capability.file is not None:
        from traitlab.evaluation.capability import load_mcq

        load_mcq(ev.capability.file)
    if experiment.judge.kind == "oracle":
        odd = [s.trait_name for s in specs.values() if s.trait_name not in BIG_FIVE]
        if odd:
            raise ConfigError(f"the oracle judge scores only the Big Five; not {', '.join(odd)}")
    return experiment, specs


def parse_experiment(data: Any, source: str = "experiment") -> Experiment:
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a YAML mapping with model, traits, methods, evaluations")
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {source}: {validation_message(exc)}") from None


def load_experiment(source: str | os.PathLike[str] | Experiment | dict[str, Any]) -> tuple[Experiment, dict[str, Any]]:
    """Read and fully validate an experiment (YAML file, dict or ``Experiment``) without loading a model."""
    base = None
    if isinstance(source, Experiment):
        experiment = source
    elif isinstance(source, dict):
        experiment = parse_experiment(source)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ConfigError(f"experiment file {path} not found")
        try:
            data = yaml.safe_load(read_text(path, "experiment file"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
        experiment = parse_experiment(data, str(path))
        base = path.parent
    return validate_experiment(experiment, base)
