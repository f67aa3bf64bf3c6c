"""``traitlab judges``: fit, validate and use the offline judges on replies made anywhere."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from traitlab.cli.common import console
from traitlab.errors import ConfigError
from traitlab.validate import output_file, write_text_atomic

app = typer.Typer(no_args_is_help=True, help="Offline judges: score replies, validate judges, fit the shipped "
                                               "embedding judge.")

JUDGES = "embedding (default), a judge file (*.safetensors from judges fit), oracle, endpoint:MODEL, local:MODEL"


def _check_judge(judge: str, url: str | None, model_name: str | None) -> tuple[str, str | None]:
    """(kind, endpoint model): ``--judge KIND[:MODEL]`` as every command reads it (``auto`` = embedding here),
    or a fitted judge file."""
    from traitlab.cli.judging import parse_judge

    if judge.endswith(".safetensors"):
        if not Path(judge).expanduser().is_file():
            raise ConfigError(f"judge file {judge} not found")
        return judge, model_name
    if judge.partition(":")[0] not in ("auto", "oracle", "embedding", "endpoint", "local"):
        raise ConfigError(f"unknown judge '{judge}'; use {JUDGES}")
    choice = parse_judge("embedding" if judge == "auto" else judge, url, model_name)
    if choice.kind == "local":
        return f"local:{choice.model}", None
    return choice.kind, choice.model


def _llm_judge(kind: str, url: str | None, model_name: str | None, cache: str | None) -> Any:
    """The endpoint judge, or a local model's log-prob judge for ``local:MODEL``."""
    from traitlab.evaluation.judges import EndpointJudge, LocalJudge

    if kind == "endpoint":
        from traitlab.evaluation.client import ChatClient

        return EndpointJudge(ChatClient(url, model_name, cache=cache))  # type: ignore[arg-type]
    from traitlab.model import load_model

    return LocalJudge(load_model(kind.removeprefix("local:")))


def _rubric_scorer(kind: str, url: str | None, model_name: str | None, cache: str | None) -> tuple[Any, str]:
    """(scorer(spec, questions, replies), name) for the LLM judges (endpoint, local) and the oracle."""
    from traitlab.evaluation.judges import OracleJudge, judge_all, trait_rubric

    if kind == "oracle":
        def oracle(spec: Any, qs: list[str], rs: list[str]) -> list[float | None]:
            judge = OracleJudge(spec.trait_name, spec.pole or "high")
            return judge.score_many([(q, r, "") for q, r in zip(qs, rs, strict=True)])
        return oracle, "oracle"
    judge = _llm_judge(kind, url, model_name, cache)

    def llm(spec: Any, qs: list[str], rs: list[str]) -> list[float | None]:
        rubric = trait_rubric(spec, spec.pole or "high")
        return judge_all(judge, [(q, r, rubric) for q, r in zip(qs, rs, strict=True)])
    return llm, judge.name


def _embedding_scorer(source: str, baseline: list[dict] | None) -> tuple[Any, str]:
    from traitlab.evaluation.embedding_judge import EmbeddingJudge, default_judge
    from traitlab.evaluation.judge_fit import judge_for_spec

    base = default_judge() if source == "embedding" else EmbeddingJudge.load(source)
    if baseline is not None:
        base = base.calibrate([r["question"] for r in baseline], [r["reply"] for r in baseline], "baseline-file")

    def scorer(spec: Any, qs: list[str], rs: list[str]) -> list[float | None]:
        judge = base if spec.trait_name in base.traits else judge_for_spec(spec)
        return judge.for_trait(spec.trait_name, spec.pole or "high").score_many(
            [(q, r, "") for q, r in zip(qs, rs, strict=True)])
    return scorer, base.name


@app.command("score")
def score(
    input: Path = typer.Option(..., "--input", "-i", help="JSONL rows {question, reply, trait?}."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write JSONL here (default: stdout)."),
    judge: str = typer.Option("embedding", "--judge", help=f"Trait judge: {JUDGES}, or auto (= embedding)."),
    judge_url: str | None = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL."),
    judge_model: str | None = typer.Option(None, "--judge-model", help="Model name at the judge endpoint."),
    judge_cache: str | None = typer.Option(None, "--judge-cache", help="SQLite cache of endpoint judgements."),
    coherence: str = typer.Option("reference", "--coherence",
                                  help="reference (perplexity under --reference plus repetition), judge (the "
                                       "trait judge with the coherence rubric; LLM judges only) or none."),
    reference: str = typer.Option("gemma-3-270m", "--reference", help="Reference LM of the coherence judge."),
    baseline: Path | None = typer.Option(None, "--baseline",
                                         help="JSONL of the unsteered model's own replies {question, reply}: "
                                              "calibrates the embedding and coherence judges on them."),
    profile: bool = typer.Option(False, "--profile", help="Add the linguistic profile of each reply."),
) -> None:
    """Score replies made anywhere: one JSON line per row, {"scores": {trait: 0-100}, "coherence", "judge"}.
    Rows without a trait get all five Big Five traits (high pole); a row's trait may be any trait spec name."""
    from traitlab.evaluation.offline import read_rows, resolve_traits, score_rows

    kind, judge_model = _check_judge(judge, judge_url, judge_model)
    if output is not None:
        output_file(output, "--output")
    if coherence not in ("reference", "judge", "none"):
        raise ConfigError(f"unknown --coherence '{coherence}'; use reference, judge or none")
    if coherence == "judge" and (kind == "embedding" or kind == "oracle" or kind.endswith(".safetensors")):
        raise ConfigError("--coherence judge needs an LLM judge (endpoint or local:MODEL)")
    rows = read_rows(input)
    base_rows = read_rows(baseline) if baseline is not None else None
    specs = resolve_traits(rows)
    if kind == "oracle":
        odd = [s.trait_name for s in specs.values() if s.trait_name not in
               ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")]
        if odd:
            raise ConfigError(f"the oracle judges the Big Five only, not {', '.join(odd)}")
    if kind == "embedding" or kind.endswith(".safetensors"):
        scorer, name = _embedding_scorer(kind, base_rows)
    else:
        scorer, name = _rubric_scorer(kind, judge_url, judge_model, judge_cache)
    coherence_judge: Any = None
    if coherence == "reference":
        from traitlab.evaluation.coherence import ReferenceCoherenceJudge, load_reference

        coherence_judge = ReferenceCoherenceJudge(load_reference(reference))
        if base_rows is not None:
            coherence_judge = coherence_judge.calibrate([r["question"] for r in base_rows],
                                                        [r["reply"] for r in base_rows], "baseline-file")
    elif coherence == "judge":
        from traitlab.evaluation.judges import COHERENCE_RUBRIC, RubricJudge

        coherence_judge = RubricJudge(_llm_judge(kind, judge_url, judge_model, judge_cache), COHERENCE_RUBRIC)
    names = {"trait": name, "coherence": getattr(coherence_judge, "name", "none")}
    records = score_rows(rows, specs, scorer, coherence_judge, names, with_profile=profile)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if output is None:
        sys.stdout.write(lines)
    else:
        write_text_atomic(output, lines)
        console.print(f"wrote {len(records)} rows to {output}")


@app.command("validate")
def validate(
    data: Path | None = typer.Option(None, "--data", help="Folder with big5chat/ and npti_personalitybench/ "
                                                          "(default: ../shared/data next to the checkout)."),
    csv: list[Path] = typer.Option([], "--csv", help="Extra labelled CSV text,trait,pole[,question] (repeatable)."),
    judge: str = typer.Option("embedding", "--judge", help="The judge to validate: embedding or a judge file."),
    compare: list[str] = typer.Option([], "--compare", help="Another judge to report Spearman agreement with: "
                                                            "endpoint or local:MODEL (repeatable)."),
    judge_url: str | None = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL (for endpoint)."),
    judge_model: str | None = typer.Option(None, "--judge-model", help="Model name at the judge endpoint."),
    judge_cache: str | None = typer.Option(None, "--judge-cache", help="SQLite cache of endpoint judgements."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """Per trait: pairwise accuracy (Big5-Chat eval pairs) and AUROC (NPTI descriptions, your CSVs) of the
    trait judge on held-out labelled text, against the targets, plus Spearman agreement with other judges."""
    from traitlab.evaluation import judge_validity as jv
    from traitlab.evaluation.embedding_judge import EmbeddingJudge, default_judge

    if judge != "embedding" and not judge.endswith(".safetensors"):
        raise ConfigError(f"judges validate checks an embedding judge (embedding or a .safetensors file), "
                          f"not '{judge}'; give other judges with --compare")
    checked = [_check_judge(c, judge_url, judge_model) for c in compare]
    others_kinds = [kind for kind, _ in checked]
    judge_model = next((name for kind, name in checked if kind == "endpoint"), judge_model)
    bad = [c for c in others_kinds if c in ("embedding", "oracle") or c.endswith(".safetensors")]
    if bad:
        raise ConfigError(f"--compare takes endpoint or local:MODEL, not {', '.join(bad)}")
    sets = jv.load_sets(data, csv)
    if not sets:
        raise ConfigError(f"no labelled sets found in {data or jv.default_data_dir()}; give --data DIR or --csv")
    ej = default_judge() if judge == "embedding" else EmbeddingJudge.load(judge)
    others = {}
    for kind in others_kinds:
        from traitlab.traits import load_trait

        scorer, name = _rubric_scorer(kind, judge_url, judge_model, judge_cache)
        others[name] = (lambda s: lambda qs, xs, t: _as_array(s(load_trait(f"{t}_high"), list(qs), list(xs))))(scorer)
    rows = jv.validate(lambda qs, xs, t: ej.score_matrix(qs, xs)[:, ej.index(t)], sets, ej.traits, others)
    if as_json:
        print(json.dumps({"judge": ej.name, "rows": rows}, indent=2))
        return
    _print_table(ej.name, rows)


def _as_array(values: list[float | None]) -> Any:
    import numpy as np

    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _print_table(name: str, rows: list[dict]) -> None:
    from rich.table import Table

    extra = sorted({k for r in rows for k in r if k.startswith("spearman[")})
    table = Table(title=f"validity of {name}")
    for col in ("set", "trait", "n", "pairwise acc", "AUROC", "target", "met", *extra):
        table.add_column(col)
    for r in rows:
        def fmt(v: Any) -> str:
            return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
        table.add_row(r["set"], r["trait"], str(r["n"]), fmt(r.get("pairwise")), fmt(r.get("auroc")),
                      r.get("target", r.get("note", "")), {True: "yes", False: "NO"}.get(r.get("met"), ""),
                      *[fmt(r.get(k)) for k in extra])
    console.print(table)


@app.command("fit")
def fit(
    out: Path | None = typer.Option(None, "--out", help="Where to write the judge (default: the shipped file, "
                                                        "traitlab/evaluation/data/embedding_judge.safetensors)."),
    data: Path | None = typer.Option(None, "--data", help="Labelled sets to record the measured validity from "
                                                          "(default: ../shared/data when present)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Fit the Big Five embedding judge on the project's own text (deterministic), record its validity on the
    held-out sets when they are present, and write it."""
    from traitlab.evaluation import judge_validity as jv
    from traitlab.evaluation.embedding_judge import WEIGHTS
    from traitlab.evaluation.judge_fit import fit_big_five

    out = output_file(out or WEIGHTS, "--out")
    judge = fit_big_five(seed)
    sets = jv.load_sets(data)
    validity: dict[str, Any] = {t: {} for t in judge.traits}
    for row in jv.validate(lambda qs, xs, t: judge.score_matrix(qs, xs)[:, judge.index(t)], sets, judge.traits):
        if "auroc" in row:
            key = "big5chat_pairwise" if row["set"] == "big5chat" else f"{row['set']}_auroc"
            value = row.get("pairwise") if row["set"] == "big5chat" else row["auroc"]
            validity[row["trait"]][key] = None if value is None else round(float(value), 4)
    from dataclasses import replace

    replace(judge, validity={t: (v or "unknown") for t, v in validity.items()}).save(out)
    console.print(f"wrote {out} ({out.stat().st_size} bytes); validity: {json.dumps(validity)}")


@app.command("profile")
def profile_cmd(
    input: Path = typer.Option(..., "--input", "-i", help="JSONL rows {question, reply}."),
) -> None:
    """The mean linguistic profile (empath categories and plain measures) of the replies in a JSONL file."""
    from traitlab.evaluation.offline import read_rows
    from traitlab.evaluation.profile import mean_profile, profile_many

    rows = read_rows(input)
    print(json.dumps(mean_profile(profile_many([r["reply"] for r in rows])), indent=2))
