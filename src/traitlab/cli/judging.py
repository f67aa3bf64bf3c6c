"""Judge options shared by commands that judge answers (vectors, eval, judges): one grammar, ``--judge
KIND[:MODEL]`` — ``oracle`` (the organism's scorer), ``embedding`` (offline), ``endpoint:MODEL`` (any
OpenAI-compatible server at ``--judge-url``), ``local:MODEL`` (a model loaded here), ``auto``, and ``none`` where a
command can do without (``vectors extract`` keeps every pair). Coherence comes from the same judge with the
coherence rubric (LLM judges), answer perplexity under the model (oracle), or the reference-LM coherence judge
(embedding). ``--judge-model NAME`` still names the endpoint's model, as before."""

from __future__ import annotations

import dataclasses
from typing import Any

import typer

from traitlab.errors import ConfigError
from traitlab.model.builtins import ORGANISM

KINDS = ("auto", "oracle", "embedding", "endpoint", "local")
JUDGE = typer.Option("auto", "--judge", metavar="KIND[:MODEL]",
                     help="oracle (the organism's scorer), embedding (offline, validated), endpoint:MODEL (at "
                          "--judge-url), local:MODEL, or auto (oracle on the organism, endpoint when --judge-url "
                          "is given, else embedding).")
JUDGE_OR_NONE = typer.Option("auto", "--judge", metavar="KIND[:MODEL]",
                             help="none (no judge: every answer pair counts, the system prompts make the "
                                  "contrast), oracle, embedding, endpoint:MODEL (at --judge-url), local:MODEL, or "
                                  "auto (oracle on the organism, endpoint when --judge-url is given, else "
                                  "embedding).")
JUDGE_URL = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1.")
JUDGE_MODEL = typer.Option(None, "--judge-model", help="The endpoint's model (same as --judge endpoint:MODEL).")
JUDGE_CACHE = typer.Option(None, "--judge-cache", help="SQLite file caching endpoint judgements.")


@dataclasses.dataclass(frozen=True)
class JudgeChoice:
    """A parsed ``--judge KIND[:MODEL]``: ``kind`` out of ``KINDS`` (or ``none``), ``model`` the endpoint's model
    name or the local model to load."""

    kind: str
    model: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.model}" if self.model and self.kind == "local" else self.kind


def parse_judge(judge: str, url: str | None = None, judge_model: str | None = None, model: str | None = None,
                allow_none: bool = False, resolve_auto: bool = True) -> JudgeChoice:
    """Read ``--judge KIND[:MODEL]`` (plus ``--judge-url``/``--judge-model``) and check it before any model loads;
    ``auto`` becomes oracle on the organism, endpoint when a URL is given, else embedding."""
    kind, sep, name = judge.partition(":")
    kinds = KINDS + (("none",) if allow_none else ())
    if kind not in kinds or (sep and not name):
        spelled = [k + (":MODEL" if k in ("endpoint", "local") else "") for k in kinds]
        raise ConfigError(f"unknown judge '{judge}'; use {', '.join(spelled)}")
    if name and judge_model and name != judge_model:
        raise ConfigError(f"--judge {judge} and --judge-model {judge_model} name different models; give one")
    name = name or None
    if kind in ("endpoint", "auto") and url:
        name = name or judge_model
    if kind == "local" and not name:
        name = judge_model
    explicit = kind != "auto"
    if resolve_auto and kind == "auto":
        kind = "oracle" if model == ORGANISM else "endpoint" if url else "embedding"
        name = name if kind == "endpoint" else None
    if kind in ("oracle", "embedding", "none") and name:
        raise ConfigError(f"--judge {kind} takes no model name")
    if kind == "endpoint" and not (url and name):
        raise ConfigError("an endpoint judge needs --judge-url URL and --judge endpoint:MODEL (or use --judge "
                          "embedding, --judge oracle on the organism, or --judge local:MODEL)")
    if kind == "local" and not name:
        raise ConfigError("a local judge names the model to load: --judge local:MODEL")
    if url and explicit and kind != "endpoint":
        raise ConfigError(f"--judge-url is for an endpoint judge, not --judge {kind}")
    return JudgeChoice(kind, name)


def check_judge_options(judge: str, url: str | None, model_name: str | None, model: str,
                        allow_none: bool = False) -> JudgeChoice:
    """``parse_judge`` for the commands that judge their own answers (``auto`` resolved)."""
    return parse_judge(judge, url, model_name, model, allow_none=allow_none)


def make_judges(choice: JudgeChoice, spec: Any, lm: Any, url: str | None = None,
                cache: str | None = None) -> tuple[Any, Any]:
    """(trait judge, coherence judge) for ``spec``, built by ``evaluation.suite.Judges``; ``(None, None)`` for
    ``--judge none``."""
    from pydantic import ValidationError

    from traitlab.errors import validation_message
    from traitlab.evaluation.config import JudgeConfig
    from traitlab.evaluation.suite import Judges
    from traitlab.traits import BIG_FIVE

    if choice.kind == "none":
        return None, None
    if choice.kind == "oracle" and spec.trait_name not in BIG_FIVE:
        raise ConfigError(f"the oracle judges the Big Five only, not '{spec.trait_name}'; use an endpoint")
    try:
        config = JudgeConfig(kind=choice.kind, url=url, cache=cache, model=choice.model)
    except ValidationError as exc:
        raise ConfigError(f"judge options: {validation_message(exc)}") from None
    judges = Judges.from_config(config, lm)
    trait_judge, _ = judges.trait_judge(spec)
    return trait_judge, judges.coherence
