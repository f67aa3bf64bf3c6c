"""Judge options shared by commands that judge answers (vectors, neurons, eval): the organism's oracle, an
OpenAI-compatible endpoint, or a local model; coherence by the same judge with the coherence rubric, or by
answer perplexity under the model when the judge is the oracle (which cannot judge coherence)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer

from traitlab.errors import ConfigError
from traitlab.model import ORGANISM, LoadedModel
from traitlab.traits import BIG_FIVE, TraitSpec

JUDGE = typer.Option("auto", "--judge", help="oracle (the organism's scorer), endpoint, local:MODEL, or auto "
                                             "(oracle on the organism, else endpoint).")
JUDGE_URL = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1.")
JUDGE_MODEL = typer.Option(None, "--judge-model", help="Model name at the judge endpoint.")
JUDGE_CACHE = typer.Option(None, "--judge-cache", help="SQLite file caching endpoint judgements.")


class RubricJudge:
    """Scores with ``inner`` against a fixed rubric template (e.g. coherence), whatever rubric it is given."""

    def __init__(self, inner: Any, rubric: str) -> None:
        self.inner, self.rubric, self.name = inner, rubric, f"{getattr(inner, 'name', 'judge')}:coherence"

    def score(self, question: str, answer: str, rubric: str = "") -> float | None:
        return self.score_many([(question, answer, rubric)])[0]

    def score_many(self, triples: Sequence[tuple[str, str, str]]) -> list[float | None]:
        from traitlab.evaluation.judges import fill

        return self.inner.score_many([(q, a, fill(self.rubric, q, a)) for q, a, _ in triples])


def check_judge_options(judge: str, url: str | None, model_name: str | None, model: str) -> str:
    """Resolve ``auto`` and check the options before any model loads."""
    kind = ("oracle" if model == ORGANISM else "endpoint") if judge == "auto" else judge
    if kind == "endpoint" and not (url and model_name):
        raise ConfigError("an endpoint judge needs --judge-url and --judge-model (or use --judge oracle on "
                          "the organism, or --judge local:MODEL)")
    if kind not in ("oracle", "endpoint") and not kind.startswith("local:"):
        raise ConfigError(f"unknown judge '{judge}'; use oracle, endpoint, local:MODEL or auto")
    return kind


def make_judges(kind: str, spec: TraitSpec, lm: LoadedModel, url: str | None = None,
                model_name: str | None = None, cache: str | None = None) -> tuple[Any, Any]:
    """(trait judge, coherence judge) for ``spec``."""
    from traitlab.evaluation.judges import (
        COHERENCE_RUBRIC,
        EndpointJudge,
        LocalJudge,
        OracleJudge,
        PerplexityCoherenceJudge,
    )

    if kind == "oracle":
        if spec.trait_name not in BIG_FIVE:
            raise ConfigError(f"the oracle judges the Big Five only, not '{spec.trait_name}'; use an endpoint")
        return OracleJudge(spec.trait_name, spec.pole or "high"), PerplexityCoherenceJudge(lm)
    if kind == "endpoint":
        from traitlab.evaluation.client import ChatClient

        judge = EndpointJudge(ChatClient(url or "", model_name or "", cache=cache))
    else:
        from traitlab.model import load_model

        judge = LocalJudge(load_model(kind.removeprefix("local:")))
    return judge, RubricJudge(judge, COHERENCE_RUBRIC)
