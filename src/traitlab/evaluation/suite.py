"""One evaluation of one condition (a model under an Intervention, or none): the suites questionnaire,
situational, coherence and capability, as a JSON-ready dict. The runner and ``traitlab eval`` call it.

Judges (``Judges.from_config``): ``auto`` is the oracle on the persona organism, the endpoint when a URL is
given, else the offline judges (``embedding``: the validated embedding trait judge and the reference-LM
coherence judge, both calibrated on the un-intervened model's own replies; see ``evaluation.offline``).
``local`` judges with a local model's log-probs. With the oracle, coherence comes from
``PerplexityCoherenceJudge`` on the un-intervened model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from traitlab.errors import ConfigError
from traitlab.evaluation.config import (
    CapabilityConfig,
    Evaluations,
    JudgeConfig,
    QuestionnaireConfig,
    SituationalConfig,
)
from traitlab.evaluation.judges import (
    COHERENCE_RUBRIC,
    EndpointJudge,
    Judge,
    LocalJudge,
    OracleJudge,
    PerplexityCoherenceJudge,
    RubricJudge,
    trait_rubric,
)
from traitlab.interventions import Intervention
from traitlab.model.builtins import ORGANISM
from traitlab.model.loaded import LoadedModel


def is_organism(lm: LoadedModel) -> bool:
    """The built-in persona organism, loaded by name or from its folder."""
    if lm.spec == ORGANISM:
        return True
    from pathlib import Path

    from traitlab.organism import ORGANISM_DIR

    try:
        return Path(lm.spec).expanduser().resolve() == ORGANISM_DIR.resolve()
    except (OSError, ValueError):
        return False


@dataclasses.dataclass
class Judges:
    """The trait judge per (trait, pole) and the coherence judge of an evaluation."""

    kind: str
    lm: LoadedModel
    shared: Judge | None = None
    coherence: Judge | None = None
    embedding: Any = None

    @classmethod
    def from_config(cls, config: JudgeConfig, lm: LoadedModel, cache_dir: Any = None, bank: Any = None) -> Judges:
        """The one judge factory: a judge kind → the shared trait judge and the coherence judge. Every
        command and the runner build their judges here (a new judge kind is one more branch). The offline
        judges keep their calibration in ``cache_dir`` and draw its replies from ``bank`` (a
        ``situational.ReplyBank``) when given."""
        kind = config.kind
        if kind == "auto":
            kind = "oracle" if is_organism(lm) else "endpoint" if config.url else "embedding"
        if kind == "oracle":
            return cls("oracle", lm, None, PerplexityCoherenceJudge(lm))
        if kind == "embedding":
            from traitlab.evaluation.offline import LazyOfflineJudges

            offline = LazyOfflineJudges(lm, config.reference, config.calibrate, cache_dir, bank)
            return cls("embedding", lm, None, offline.coherence_judge(), offline)
        if kind == "endpoint":
            judge: Judge = endpoint_judge(config)
        elif kind == "local":
            judge = local_judge(config, lm)
        else:
            raise ConfigError(f"unknown judge kind '{kind}'")
        return cls(kind, lm, judge, RubricJudge(judge, COHERENCE_RUBRIC))

    def request_calibration(self) -> None:
        """Have the offline judges' calibration replies generated in their reply bank's next batch."""
        if self.embedding is not None:
            self.embedding.request()

    def trait_judge(self, spec: Any) -> tuple[Judge, str]:
        """The judge and rubric of a TraitSpec (its ``eval_prompt``)."""
        pole = getattr(spec, "pole", None) or "high"
        if self.kind == "oracle":
            return OracleJudge(spec.trait_name, pole), ""
        if self.kind == "embedding":
            from traitlab.evaluation.judge_fit import judge_for_spec

            embedding = self.embedding.trait
            known = spec.trait_name in embedding.traits
            return (embedding if known else judge_for_spec(spec)).for_trait(spec.trait_name, pole), ""
        assert self.shared is not None
        return self.shared, trait_rubric(spec, pole)


def endpoint_judge(config: JudgeConfig) -> EndpointJudge:
    from traitlab.evaluation.client import ChatClient

    if not (config.url and config.model):
        raise ConfigError("an endpoint judge needs a URL and a model name (--judge-url, --judge-model)")
    client = ChatClient(config.url, config.model, api_key_env=config.api_key_env,
                        concurrency=config.concurrency, retries=config.retries, cache=config.cache)
    return EndpointJudge(client)


def local_judge(config: JudgeConfig, lm: LoadedModel) -> LocalJudge:
    """A log-prob judge on ``config.model`` (loaded here) or on the evaluated model itself, un-intervened."""
    judge_lm = lm
    if config.model:
        from traitlab.model.loaded import load_model

        judge_lm = load_model(config.model)
    return LocalJudge(judge_lm, batch_size=config.batch_size)

def run_questionnaire(lm: LoadedModel, intervention: Intervention | None, config: QuestionnaireConfig,
                      seed: int = 0, progress: bool = False) -> dict[str, Any]:
    from traitlab.evaluation.questionnaire import WORDINGS, Administration, administer, load_inventory

    inventory = load_inventory(config.inventory, config.format, config.name)
    if config.max_items_per_trait:
        inventory = inventory.subset(max_per_trait=config.max_items_per_trait)
    admin = Administration(tuple(config.wordings) if config.wordings else WORDINGS, config.reverse)
    result = administer(lm, inventory, intervention=intervention, scoring_mode=config.scoring,
                        administration=admin, samples=config.samples, temperature=config.temperature,
                        seed=seed, batch_size=config.batch_size, progress=progress)
    return result.to_dict()


def run_situational(lm: LoadedModel, intervention: Intervention | None, spec: Any, judges: Judges,
                    config: SituationalConfig, with_coherence: bool, fluency: bool, seed: int = 0,
                    progress: bool = False, bank: Any = None) -> dict[str, Any]:
    from traitlab.evaluation.situational import evaluate_situational, question_set

    questions = question_set(spec, config.questions, config.n_questions)
    judge, rubric = judges.trait_judge(spec)
    result = evaluate_situational(
        lm, questions, judge, rubric, trait=spec.trait_name, pole=getattr(spec, "pole", None),
        intervention=intervention, coherence_judge=judges.coherence if with_coherence else None,
        coherence_rubric=COHERENCE_RUBRIC, fluency=fluency, samples=config.samples,
        temperature=config.temperature, max_new_tokens=config.max_new_tokens, seed=seed,
        batch_size=config.batch_size, progress=progress, bank=bank)
    return {**result.summary(), "spec": spec.name, "examples": result.examples(config.examples)}


def run_capability(lm: LoadedModel, intervention: Intervention | None, config: CapabilityConfig,
                   progress: bool = False) -> dict[str, Any]:
    from traitlab.evaluation.capability import load_mcq, mcq_accuracy, neutral_perplexity

    questions = load_mcq(config.file)[: config.max_questions]
    out = mcq_accuracy(lm, questions, intervention, config.batch_size, progress)
    neutral = config.neutral_perplexity
    if neutral is True or (neutral == "auto" and is_organism(lm)):
        out["neutral_perplexity"] = neutral_perplexity(lm, config.neutral_n, 0, intervention, config.batch_size)
    return out


def evaluate(lm: LoadedModel, intervention: Intervention | None, specs: Sequence[Any], evaluations: Evaluations,
             judges: Judges, seed: int = 0, progress: bool = False, monitor: bool = True,
             bank: Any = None) -> dict[str, Any]:
    """Run the requested suites for one condition; situational/coherence/monitor run per trait spec. The
    monitor (un-intervened, so the same for every scale of one intervention) runs only when ``monitor``.
    ``bank`` (a ``situational.ReplyBank``) shares greedy replies and their perplexities between conditions."""
    out: dict[str, Any] = {}
    ev = evaluations
    if ev.monitor is not None and monitor:
        from traitlab.evaluation.monitoring import run_monitor

        found = {}
        for spec in specs:
            judge, rubric = judges.trait_judge(spec)
            record = run_monitor(lm, intervention, spec, judge, lambda q, a, rubric=rubric: rubric, ev.monitor)
            if record is not None:
                found[spec.name] = record
        if found:
            out["monitor"] = found
    if ev.questionnaire is not None:
        out["questionnaire"] = run_questionnaire(lm, intervention, ev.questionnaire, seed, progress)
    if ev.situational is not None or ev.coherence is not None:
        config = ev.situational or SituationalConfig()
        fluency = ev.coherence.fluency if ev.coherence is not None else True
        out["situational"] = {spec.name: run_situational(lm, intervention, spec, judges, config,
                                                         ev.coherence is not None, fluency, seed, progress,
                                                         bank)
                              for spec in specs}
    if ev.capability is not None:
        out["capability"] = run_capability(lm, intervention, ev.capability, progress)
    return out


def headline(result: dict[str, Any], spec: Any | None = None) -> dict[str, Any]:
    """The metrics of one condition (and one trait spec) that go into summary tables."""
    row: dict[str, Any] = {}
    q = result.get("questionnaire")
    if q is not None and spec is not None:
        trait = q["traits"].get(spec.trait_name)
        row["questionnaire"] = trait["score"] if trait else None
    s = result.get("situational", {})
    sit = s.get(spec.name) if spec is not None else None
    if sit is not None:
        row.update(trait_expression=sit["expression_mean"], expression_var=sit["expression_var"],
                   coherence=sit["coherence_mean"], perplexity=sit["perplexity"])
    cap = result.get("capability")
    if cap is not None:
        row["capability"] = cap["accuracy"]
        if "neutral_perplexity" in cap:
            row["neutral_perplexity"] = cap["neutral_perplexity"]
    return row
