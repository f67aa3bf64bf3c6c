"""Judge options shared by commands that judge answers (vectors, neurons, eval): the organism's oracle, the
offline embedding judge, an OpenAI-compatible endpoint, or a local model; coherence by the same judge with the
coherence rubric (LLM judges), by answer perplexity under the model (oracle), or by the reference-LM coherence
judge (embedding)."""

from __future__ import annotations

from typing import Any

import typer

from traitlab.errors import ConfigError
from traitlab.model import ORGANISM, LoadedModel
from traitlab.traits import BIG_FIVE, TraitSpec

JUDGE = typer.Option("auto", "--judge", help="oracle (the organism's scorer), embedding (offline, validated), "
                                             "endpoint, local:MODEL, or auto (oracle on the organism, endpoint "
                                             "when --judge-url is given, else embedding).")
JUDGE_URL = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1.")
JUDGE_MODEL = typer.Option(None, "--judge-model", help="Model name at the judge endpoint.")
JUDGE_CACHE = typer.Option(None, "--judge-cache", help="SQLite file caching endpoint judgements.")


def check_judge_options(judge: str, url: str | None, model_name: str | None, model: str) -> str:
    """Resolve ``auto`` and check the options before any model loads."""
    auto = "oracle" if model == ORGANISM else "endpoint" if url else "embedding"
    kind = auto if judge == "auto" else judge
    if kind == "endpoint" and not (url and model_name):
        raise ConfigError("an endpoint judge needs --judge-url and --judge-model (or use --judge embedding, "
                          "--judge oracle on the organism, or --judge local:MODEL)")
    if kind not in ("oracle", "embedding", "endpoint") and not kind.startswith("local:"):
        raise ConfigError(f"unknown judge '{judge}'; use oracle, embedding, endpoint, local:MODEL or auto")
    return kind


def make_judges(kind: str, spec: TraitSpec, lm: LoadedModel, url: str | None = None,
                model_name: str | None = None, cache: str | None = None) -> tuple[Any, Any]:
    """(trait judge, coherence judge) for ``spec``, built by ``evaluation.suite.Judges``."""
    from pydantic import ValidationError

    from traitlab.errors import validation_message
    from traitlab.evaluation.config import JudgeConfig
    from traitlab.evaluation.suite import Judges

    if kind == "oracle" and spec.trait_name not in BIG_FIVE:
        raise ConfigError(f"the oracle judges the Big Five only, not '{spec.trait_name}'; use an endpoint")
    local = kind.startswith("local:")
    try:
        config = JudgeConfig(kind="local" if local else kind, url=url, cache=cache,
                             model=kind.removeprefix("local:") if local else model_name)
    except ValidationError as exc:
        raise ConfigError(f"judge options: {validation_message(exc)}") from None
    judges = Judges.from_config(config, lm)
    trait_judge, _ = judges.trait_judge(spec)
    return trait_judge, judges.coherence
