"""What every recipe shares: the params base model, the build context, the Recipe record, the one parameter
check (pydantic errors as one-line ``ConfigError``s) and the one artifact cache.

A recipe turns ``{name, params}`` of an experiment's method entry into a fitted Intervention:
``Recipe(name, Params, build)`` where ``Params`` is a pydantic model (``extra="forbid"``, strict types, the
defaults in one place) and ``build(context, params)`` fits the Intervention (or returns ``None``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from traitlab.claims import claimed
from traitlab.errors import ConfigError, TraitlabError
from traitlab.interventions import Intervention
from traitlab.methods.pole_answers import PoleAnswers, Sampling, Side, answers, pole_answers
from traitlab.model.loaded import LoadedModel
from traitlab.registry import load_intervention

if TYPE_CHECKING:
    from traitlab.evaluation.suite import Judges
    from traitlab.traits import TraitSpec


class Params(BaseModel):
    """Base of every recipe's parameters: unknown keys and wrong types are errors (``1`` is no boolean)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def given(self) -> dict[str, Any]:
        """The parameters the experiment set (not the defaults), as recorded in prompt hyperparameters."""
        return self.model_dump(exclude_unset=True)


P = TypeVar("P", bound=Params)


@dataclasses.dataclass(frozen=True)
class RecipeContext:
    """What a recipe builds with: the run's model, the trait spec, a work folder of its own, the run's
    judges (the same ``Judges`` the evaluation uses; recipes that judge must use them) and the folder of the
    run's answer bank (``None``: the bank lives in memory, per loaded model)."""

    lm: LoadedModel
    spec: TraitSpec
    workdir: Path
    judges: Judges | None = None
    answers_dir: Path | None = None

    def pole_answers(self, spec: TraitSpec, side: Side, n_per_question: int, sampling: Sampling) -> PoleAnswers:
        """The run's answer bank (``traitlab.methods.pole_answers``): the model's answers to ``spec``'s extraction
        questions under its ``side`` prompts (every instruction pair × question × ``n_per_question``), sampled
        once per run and shared by every recipe that asks the same call (persona vectors' rollouts, a
        subnetwork's calibration, NPTI's statistics, a personality vector's self-distillation). Kept on disk in
        ``answers_dir`` when the runner gives one (one folder for all methods), else in memory."""
        return pole_answers(self.lm, spec, side, n_per_question, sampling, self.answers_dir)

    def answers(self, questions: Sequence[str], systems: Sequence[str | None], sampling: Sampling,
                label: str = "answers") -> PoleAnswers:
        """The answer bank's replies to ``questions[i]`` under ``systems[i]`` (any rows; ``pole_answers`` is the
        usual layout)."""
        return answers(self.lm, questions, systems, sampling, self.answers_dir, label)

    def trimmed(self, n_questions: int | None) -> TraitSpec:
        """The spec with only its first ``n_questions`` extraction questions (all with ``None``): a cheaper fit
        that still never sees the held-out ``eval_questions``."""
        if n_questions is None or n_questions >= len(self.spec.questions):
            return self.spec
        return self.spec.model_copy(update={"questions": list(self.spec.questions[:n_questions])})

    def high_pole(self) -> RecipeContext:
        """The context of the same trait's ``<trait>_high`` library spec (its own work folder beside this one),
        for a low pole that reuses the high pole's fit (``mirror``); this context when the spec is not a low
        Big Five pole of the library."""
        from traitlab.traits import load_trait

        if self.spec.pole != "low":
            return self
        try:
            high = load_trait(f"{self.spec.trait_name}_high")
        except TraitlabError:
            return self
        return dataclasses.replace(self, spec=high, workdir=self.workdir.parent / high.name)

    def require_judges(self, method: str) -> Judges:
        if self.judges is None:
            raise ConfigError(f"method '{method}' judges answers: pass the run's judges in the recipe context")
        return self.judges


@dataclasses.dataclass(frozen=True)
class Recipe(Generic[P]):
    """One method of ``traitlab compare``. ``sweepable=False``: it has no strength, ``sweep`` is refused.
    ``offload``: its fit needs no judges and costs enough to give to a helper process (``fit_workers``)."""

    name: str
    params: type[P]
    build: Callable[[RecipeContext, P], Intervention | None]
    sweepable: bool = True
    offload: bool = False

    def parse(self, params: Mapping[str, Any]) -> P:
        """The typed parameters; ``ConfigError("method 'name': ...")`` on unknown or bad ones."""
        try:
            return self.params.model_validate(dict(params))
        except ValidationError as exc:
            raise ConfigError(f"method '{self.name}': {_problem(exc, self.params)}") from None
        except TraitlabError as exc:  # raised by a settings object or file check while validating
            raise type(exc)(f"method '{self.name}': {exc}") from None


_KINDS = {"bool_type": "true or false", "int_type": "an integer", "float_type": "a number",
          "string_type": "a string", "list_type": "a list"}


def _problem(exc: ValidationError, model: type[BaseModel]) -> str:
    """The first problem of a parameters ValidationError in words."""
    first = exc.errors()[0]
    kind, where = first["type"], ".".join(str(p) for p in first["loc"])
    if kind == "extra_forbidden":
        extra = sorted({str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden"})
        known = ", ".join(sorted(model.model_fields)) or "none"
        return f"has no parameter {', '.join(extra)} (parameters: {known})"
    if kind == "missing":
        return f"needs {where}"
    if kind in _KINDS:
        return f"{where} must be {_KINDS[kind]}, got {first['input']!r}"
    if kind == "literal_error":
        return f"{where} must be {first['ctx']['expected']}, got {first['input']!r}"
    message = first["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def artifact_path(context: RecipeContext, method: str, key: Any, tags: tuple[str, ...] = (),
                  suffix: str = ".tl.safetensors") -> Path:
    """Where the artifact of (spec content, ``key``, model fingerprint) lives in the work folder:
    ``<method>-<spec name>[-<tags>]-<hash><suffix>``, the hash the first 16 hex digits of SHA-256 of all three."""
    blob = json.dumps({"spec": context.spec.model_dump(mode="json"), "key": key,
                       "fingerprint": context.lm.fingerprint.to_dict()}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    path = Path(context.workdir) / "-".join((method, context.spec.name, *tags, digest))
    return path.with_name(path.name + suffix)


def cached(context: RecipeContext, method: str, key: Any, fit: Callable[[], Intervention], *,
           tags: tuple[str, ...] = (), load: Callable[[Path], Intervention | None] | None = None) -> Intervention:
    """The artifact ``fit()`` makes for (spec content, ``key``, model fingerprint), kept in the work folder as
    ``<method>-<spec name>[-<tags>]-<hash>.tl.safetensors``: loaded when present, else fitted and saved.
    ``load(path)`` may return ``None`` to refit (default: any artifact, checked against the model). The fit holds
    the artifact's claim (``traitlab.claims``), so processes of one run sharing an artifact fit it once."""
    path = artifact_path(context, method, key, tags)
    path.parent.mkdir(parents=True, exist_ok=True)
    with claimed(path.parent, path.name, mark_done=False):  # another process fitting it: wait, then load
        if path.is_file():
            loaded = load(path) if load is not None else load_intervention(path, context.lm)
            if loaded is not None:
                return loaded
        intervention = fit()
        intervention.save(path)
        return intervention
