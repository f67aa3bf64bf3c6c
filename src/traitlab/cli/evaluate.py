"""``traitlab compare EXPERIMENT.yaml`` and ``traitlab eval``: the evaluation harness from the command line.
Everything the user gives (YAML, suites, traits, artifacts, files, judge settings) is checked before any
model loads."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from traitlab.cli.common import DEVICE, DTYPE, FAMILY, MODEL, console, read_family
from traitlab.cli.judging import JUDGE, JUDGE_CACHE, JUDGE_MODEL, JUDGE_URL, parse_judge
from traitlab.errors import ConfigError, validation_message
from traitlab.evaluation.fit_workers import default_workers
from traitlab.validate import output_file, write_text_atomic

BIG_FIVE_CSV = "openness,conscientiousness,extraversion,agreeableness,neuroticism"
SUITES_CSV = "questionnaire,situational,coherence,capability"


def compare(
    experiment: Path = typer.Argument(..., help="Experiment YAML: model, traits, methods, evaluations, seeds."),
    out: Path | None = typer.Option(None, "--out", "-o",
                                    help="Results folder (default: traitlab-results/<experiment file name>)."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip summary.csv and report.html."),
    workers: int = typer.Option(default_workers(), "--workers", min=1, max=64,
                                help="Processes: the run plus helpers that fit the judge-free methods meanwhile "
                                     "(default: 2 where there are 2 cores or more)."),
) -> None:
    """Run (or resume) an experiment and compare methods side by side: results.jsonl, summary.csv, report.html.
    An unfinished run waits in .FOLDER.partial and the rerun resumes it; FOLDER appears only when complete."""
    from traitlab.evaluation.config import load_experiment
    from traitlab.evaluation.report import summary_table
    from traitlab.evaluation.runner import RESULTS, run_experiment
    from traitlab.progress import is_quiet

    config, _ = load_experiment(experiment)
    folder = out or Path("traitlab-results") / experiment.stem
    rows = run_experiment(experiment, folder, progress=not is_quiet(), report=not no_report, workers=workers)
    console.print(summary_table(rows, title=f"{config.name}: {config.model}"))
    console.print(f"results: {folder / RESULTS}" + ("" if no_report else f", {folder / 'report.html'}"))


def _csv(value: str, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise ConfigError(f"--{what} is empty")
    return items


def eval_(
    model: str = MODEL,
    apply: list[str] = typer.Option([], "--apply", "-a", help="Intervention artifact ARTIFACT[:SCALE]; repeatable."),
    system: str | None = typer.Option(None, "--system", help="A persona system prompt to evaluate under."),
    suite: str = typer.Option(SUITES_CSV, "--suite", help=f"Comma-separated suites out of {SUITES_CSV}."),
    traits: str = typer.Option(BIG_FIVE_CSV, "--traits",
                               help="Traits for situational questions: Big Five names (= <name>_high), spec names "
                                    "or JSON files."),
    inventory: str = typer.Option("traitlab", "--inventory",
                                  help="Questionnaire: traitlab, or an IPIP-NEO JSON / MPI CSV / PsychoBench JSON "
                                       "/ text,trait,key CSV file."),
    scoring: str = typer.Option("logprob", "--scoring", help="Questionnaire scoring: logprob or generate."),
    questions: str | None = typer.Option(None, "--questions",
                                         help="Situational questions: a PersonalityBench file or folder."),
    n_questions: int = typer.Option(10, "--n-questions", help="Questions per trait."),
    samples: int = typer.Option(1, "--samples", help="Answers per question (1 = greedy)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
    judge: str = JUDGE, judge_url: str | None = JUDGE_URL, judge_model: str | None = JUDGE_MODEL,
    judge_cache: str | None = JUDGE_CACHE,
    capability_file: str | None = typer.Option(None, "--capability-file",
                                               help="Multiple-choice CSV question,A,B,C,D,answer."),
    seed: int = typer.Option(0, "--seed"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the full results as JSON here."),
    family: Path | None = FAMILY,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
) -> None:
    """Evaluate one model (optionally under interventions or a persona prompt) on the chosen suites."""
    from pydantic import ValidationError

    from traitlab.evaluation.config import Evaluations, JudgeConfig, resolve_trait
    from traitlab.evaluation.questionnaire import load_inventory
    from traitlab.evaluation.situational import question_set
    from traitlab.evaluation.suite import Judges, evaluate
    from traitlab.interventions import compose
    from traitlab.model import load_model
    from traitlab.progress import is_quiet, note
    from traitlab.registry import load_applied

    if out is not None:
        output_file(out, "--out", make_parents=True)
    suites = _csv(suite, "suite")
    unknown = [s for s in suites if s not in SUITES_CSV.split(",")]
    if unknown:
        raise ConfigError(f"unknown suite {', '.join(unknown)}; use {SUITES_CSV}")
    config: dict = {name: {} for name in suites}
    try:
        if "questionnaire" in config:
            config["questionnaire"] = {"inventory": inventory, "scoring": scoring}
        if "situational" in config or "coherence" in config:
            config["situational"] = {"questions": questions, "n_questions": n_questions, "samples": samples,
                                     "max_new_tokens": max_new_tokens}
            if "situational" not in suites:
                config["situational"]["examples"] = 0
        if "capability" in config:
            config["capability"] = {"file": capability_file}
        evaluations = Evaluations.model_validate(config)
        choice = parse_judge(judge, judge_url, judge_model, resolve_auto=False)
        judge_config = JudgeConfig(kind=choice.kind, url=judge_url, model=choice.model, cache=judge_cache)
    except ValidationError as exc:
        raise ConfigError(f"bad option {validation_message(exc)}") from None
    specs = [resolve_trait(t) for t in _csv(traits, "traits")]
    if evaluations.questionnaire is not None:
        load_inventory(inventory)
    if evaluations.capability is not None and capability_file is not None:
        from traitlab.evaluation.capability import load_mcq

        load_mcq(capability_file)
    if evaluations.situational is not None:
        for spec in specs:
            question_set(spec, questions, n_questions)
    family_override = read_family(family)
    applied_lines: list[str] = []
    intervention = load_applied(apply, report=applied_lines.append)
    if system:
        from traitlab.methods.prompting import PromptIntervention

        prompt = PromptIntervention(system)
        intervention = prompt if intervention is None else compose([prompt, intervention])

    lm = load_model(model, dtype=dtype, device=device, family=family_override)
    if intervention is not None:
        intervention.check_model(lm)
    for line in applied_lines:  # once the artifacts are known to fit the model
        note(line)
    judges = Judges.from_config(judge_config, lm)
    result = evaluate(lm, intervention, specs, evaluations, judges, seed, progress=not is_quiet())
    _print(result, suites)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"model": model, "apply": apply, "system": system, "judge": judges.kind, **result}
        write_text_atomic(out, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        console.print(f"results: {out}")


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print(result: dict, suites: list[str]) -> None:
    q = result.get("questionnaire")
    if q is not None:
        table = Table(title=f"questionnaire {q['inventory']} ({q['scoring']}, {len(q['respondents'])} administrations"
                            f", label mass {_f(q['label_mass'])}, parse failures {q['parse_failure_rate']:.0%})")
        for column in ("trait", "score (1-5)", "SD", "alpha", "items"):
            table.add_column(column, justify="left" if column == "trait" else "right")
        for trait, ts in q["traits"].items():
            table.add_row(trait, _f(ts["score"]), _f(ts["sd"]), _f(ts["alpha"]), str(ts["n_items"]))
        console.print(table)
    situational = result.get("situational")
    if situational:
        table = Table(title="situational answers")
        for column in ("spec", "judge", "answers", "expression", "variance", "coherence", "perplexity"):
            table.add_column(column, justify="left" if column in ("spec", "judge") else "right")
        for name, s in situational.items():
            table.add_row(name, s["judge"], str(s["n_answers"]), _f(s["expression_mean"], 1),
                          _f(s["expression_var"], 1), _f(s["coherence_mean"], 1), _f(s["perplexity"]))
        console.print(table)
    cap = result.get("capability")
    if cap is not None:
        extra = f", neutral perplexity {cap['neutral_perplexity']:.2f}" if "neutral_perplexity" in cap else ""
        console.print(f"capability: accuracy {cap['accuracy']:.3f} (length-normalised {cap['accuracy_norm']:.3f}, "
                      f"n={cap['n']}, chance {cap['chance']:.2f}){extra}")
