"""NPTI acceptance figures on the organism (issue 6), in one run:

1. induction: per trait, both poles' neuron statistics are collected once (the ``<trait>_high`` spec's
   instruction pairs and extraction questions); each pole's induction is the selection for that side
   (``with_options(target=...)``). Options and γ are chosen per pole on the spec's evaluation questions, like
   persona vectors' layer × coefficient sweep (``CONFIGS``: boost + clamp or boost only, generated tokens or
   the prompt too, threshold 0.1 or 0.2) × γ in 1–2.5; the highest oracle score whose median answer perplexity
   stays ≤ 1.4× unsteered. Then, on fresh held-out
   questions without a system prompt: unsteered vs persona-prompted (the pole spec's five instructions, cycled)
   vs NPTI, the oracle score oriented to the pole, the fraction of the prompt's shift that NPTI reaches
   (target ≥ 0.5 for ≥ 8 of 10 poles) and the median answer perplexity under the base model over the
   unsteered one's (target ≤ 1.5);
2. ablations (the paper's trends), mean over the 10 poles: γ, threshold, f(δ) on/off, boost/clamp only and a
   90% boosted share: trait score, perplexity ratio and perplexity-coherence;
3. the NPTI-style table through the evaluation harness (``evaluate_situational``, oracle judge, perplexity
   coherence): mean and variance of the trait score per pole for no intervention, the simple prompt (the spec's
   first instruction), persona vectors (extract + sweep) and NPTI.

Run: ``nice -n 10 python -m benchmarks.npti_quality [--model DIR] [--quick] [--skip-harness] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import save_results
from traitlab.evaluation.judges import OracleJudge, PerplexityCoherenceJudge
from traitlab.evaluation.situational import evaluate_situational
from traitlab.methods.neurons import CollectionSettings, NeuronInduction, fit
from traitlab.methods.persona_sweep import apply_sweep, sweep
from traitlab.methods.persona_vectors import ExtractionSettings, extract
from traitlab.methods.prompting import PromptIntervention
from traitlab.model import ORGANISM, LoadedModel, load_model
from traitlab.organism.corpus import TRAITS, heldout_questions
from traitlab.traits import load_trait

GAMMAS = [1.0, 1.5, 2.0, 2.5]
MAX_NEW = 80


def mean(values: list[float]) -> float:
    present = [v for v in values if v is not None]
    return round(statistics.fmean(present), 2) if present else float("nan")


class Scorer:
    """Oracle score oriented to a pole and answer perplexity under the un-intervened model."""

    def __init__(self, lm: LoadedModel) -> None:
        self.lm = lm
        self.coherence = PerplexityCoherenceJudge(lm)

    def trait(self, trait: str, pole: str, questions: list[str], answers: list[str]) -> list[float]:
        judge = OracleJudge(trait, pole)
        return [judge.score(q, a) for q, a in zip(questions, answers, strict=True)]

    def ppl(self, questions: list[str], answers: list[str]) -> list[float]:
        return [p if p is not None else float("nan") for p in self.coherence.perplexities(questions, answers)]


def generate(lm: LoadedModel, questions: list[str], induction: NeuronInduction | None = None,
             gammas: list[float] | None = None, systems: list[str] | None = None) -> list[list[str]]:
    """Answers per γ (one batched generation with per-row scales), or plain answers."""
    grid = gammas or [1.0]
    rows = [q for q in questions for _ in grid]
    sys_rows = [s for s in systems for _ in grid] if systems else None
    if induction is None:
        texts = lm.generate_chat(rows, sys_rows, max_new_tokens=MAX_NEW, progress=False).texts
    else:
        # per-row γ (whatever the stored scale) needs one batch: generation sorts rows by prompt length, which
        # keeps each question's len(grid) rows together, so row k still carries grid[k % len(grid)]
        scales = torch.tensor([g for _ in questions for g in grid])
        with induction.applied(lm, row_scale=scales / induction.scale):
            texts = lm.generate_chat(rows, sys_rows, max_new_tokens=MAX_NEW, batch_size=len(rows),
                                     progress=False).texts
    return [texts[k::len(grid)] for k in range(len(grid))]


def cell(scorer: Scorer, trait: str, pole: str, questions: list[str], answers: list[str],
         base_ppl: float) -> dict[str, float]:
    scores = scorer.trait(trait, pole, questions, answers)
    ppls = scorer.ppl(questions, answers)
    coherence = [scorer.coherence.from_perplexity(p, a) for p, a in zip(ppls, answers, strict=True)]
    return {"trait": mean(scores), "ppl_ratio": round(statistics.median(ppls) / base_ppl, 3),
            "coherence": mean(coherence)}


CONFIGS: list[dict[str, Any]] = [
    {}, {"boost_only": True}, {"positions": "all"}, {"positions": "all", "boost_only": True},
    {"positions": "all", "threshold": 0.2}, {"positions": "all", "threshold": 0.2, "boost_only": True},
]


def choose(lm: LoadedModel, scorer: Scorer, induction: NeuronInduction, trait: str, pole: str,
           questions: list[str], limit: float = 1.4) -> tuple[dict[str, Any], float, list[dict[str, Any]]]:
    """The options × γ cell with the highest oracle score whose median perplexity ratio stays ≤ ``limit``
    (ties: the smaller γ); the paper's default at γ = 1 when no cell qualifies."""
    base = generate(lm, questions)[0]
    base_ppl = statistics.median(scorer.ppl(questions, base))
    table = []
    for options in CONFIGS:
        variant = induction.with_options(**options) if options else induction
        for gamma, answers in zip(GAMMAS, generate(lm, questions, variant, GAMMAS), strict=True):
            table.append({"options": options, "gamma": gamma,
                          **cell(scorer, trait, pole, questions, answers, base_ppl)})
    eligible = [row for row in table if row["ppl_ratio"] <= limit] or [table[1]]
    best = max(eligible, key=lambda row: (row["trait"], -row["gamma"]))
    return best["options"], best["gamma"], table


def induction_figures(lm: LoadedModel, test_questions: list[str], quick: bool) -> tuple[dict, dict, dict, dict]:
    scorer = Scorer(lm)
    settings = CollectionSettings(n_answers=100, max_new_tokens=64, temperature=0.7)
    rows, fitted, tuned, gammas = {}, {}, {}, {}
    base = generate(lm, test_questions)[0]
    base_ppl = scorer.ppl(test_questions, base)
    for trait in TRAITS:
        start = time.perf_counter()
        both = fit(lm, load_trait(f"{trait}_high"), settings=settings, progress=False)
        fit_seconds = round(time.perf_counter() - start, 1)
        for pole in ("high", "low"):
            spec = load_trait(f"{trait}_{pole}")
            options, gamma, sweep_table = choose(lm, scorer, both.with_options(target=pole), trait, pole,
                                                 spec.eval_questions[:8 if quick else 12])
            induction = both.with_options(target=pole, **options)
            chosen = induction.scaled(gamma)  # scale = γ
            systems = spec.positive_prompts(len(test_questions))
            prompted = generate(lm, test_questions, systems=systems)[0]
            steered = generate(lm, test_questions, chosen, [gamma])[0]
            s_base = mean(scorer.trait(trait, pole, test_questions, base))
            s_prompt = mean(scorer.trait(trait, pole, test_questions, prompted))
            s_npti = mean(scorer.trait(trait, pole, test_questions, steered))
            ppl = scorer.ppl(test_questions, steered)
            gap = s_prompt - s_base
            counts = chosen.counts()
            rows[f"{trait}_{pole}"] = {
                "options": options, "gamma": gamma, "boosted": sum(c[0] for c in counts.values()),
                "clamped": sum(c[1] for c in counts.values()),
                "tokens": [both.stats.pos.tokens, both.stats.neg.tokens],
                "unsteered": s_base, "prompted": s_prompt, "npti": s_npti,
                "fraction_of_prompt_shift": round((s_npti - s_base) / gap, 2) if gap else None,
                "ppl_ratio": round(statistics.median(ppl) / statistics.median(base_ppl), 3),
                "gamma_sweep": sweep_table, "fit_seconds": fit_seconds,
            }
            fitted[(trait, pole)] = both.with_options(target=pole)
            tuned[(trait, pole)] = induction
            gammas[(trait, pole)] = gamma
            print(f"{trait}_{pole}: " + json.dumps({k: v for k, v in rows[f'{trait}_{pole}'].items()
                                                     if k != "gamma_sweep"}), flush=True)
    return rows, fitted, tuned, gammas


ABLATIONS: list[tuple[str, dict[str, Any], list[float]]] = [
    ("paper default: τ 0.1, f(δ), boost + clamp, generated tokens", {}, [0.6, 1.0, 1.5, 2.0]),
    ("τ 0.05", {"threshold": 0.05}, [1.0, 1.5]),
    ("τ 0.2", {"threshold": 0.2}, [1.0, 1.5]),
    ("without f(δ)", {"use_f": False}, [1.0, 1.5]),
    ("boost only", {"boost_only": True}, [1.0, 1.5]),
    ("clamp only", {"clamp_only": True}, [1.0, 1.5]),
    ("boost 90%", {"boost_fraction": 0.9}, [1.0, 1.5]),
    ("prompt too (positions all)", {"positions": "all"}, [1.0, 1.5, 2.0]),
]


def ablation_figures(lm: LoadedModel, fitted: dict, questions: list[str]) -> list[dict[str, Any]]:
    scorer = Scorer(lm)
    base = generate(lm, questions)[0]
    base_ppl = statistics.median(scorer.ppl(questions, base))
    cells: dict[tuple[str, float], list[dict[str, float]]] = {}
    for (trait, pole), induction in fitted.items():
        for label, options, grid in ABLATIONS:
            variant = induction.with_options(**options) if options else induction
            for gamma, answers in zip(grid, generate(lm, questions, variant, grid), strict=True):
                cells.setdefault((label, gamma), []).append(cell(scorer, trait, pole, questions, answers, base_ppl))
    table = []
    for (label, gamma), values in cells.items():
        table.append({"setting": label, "gamma": gamma, "trait": mean([v["trait"] for v in values]),
                      "ppl_ratio": round(statistics.fmean(v["ppl_ratio"] for v in values), 3),
                      "coherence": mean([v["coherence"] for v in values])})
        print("ablation " + json.dumps(table[-1]), flush=True)
    return table


def harness_table(lm: LoadedModel, fitted: dict, gammas: dict, questions: list[str], quick: bool) -> dict:
    coherence = PerplexityCoherenceJudge(lm)
    table: dict[str, dict[str, Any]] = {}
    for (trait, pole), induction in fitted.items():
        spec = load_trait(f"{trait}_{pole}")
        judge = OracleJudge(trait, pole)
        start = time.perf_counter()
        vector = extract(lm, spec, judge, ExtractionSettings(n_per_question=1, temperature=1.0, max_new_tokens=64),
                         coherence)
        result = sweep(lm, vector, spec, judge, range(1, lm.num_layers), [1.0, 2.0, 4.0, 8.0], coherence,
                       questions=spec.eval_questions[:8 if quick else 12], max_new_tokens=64)
        methods = {"none": None, "simple prompt": PromptIntervention(spec.instruction[0].pos),
                   "persona vectors": apply_sweep(vector, result, with_plot=False),
                   "npti": induction.scaled(gammas[(trait, pole)])}
        row = {}
        for name, intervention in methods.items():
            summary = evaluate_situational(lm, questions, judge, "", trait=trait, pole=pole,
                                           intervention=intervention, coherence_judge=coherence,
                                           max_new_tokens=MAX_NEW).summary()
            row[name] = {"mean": round(summary["expression_mean"], 2), "var": round(summary["expression_var"], 1),
                         "coherence": round(summary["coherence_mean"], 1), "ppl": round(summary["perplexity"], 2)}
        row["persona_vector_layer_coef"] = [result.best.layer, result.best.coef]
        row["seconds"] = round(time.perf_counter() - start, 1)
        table[f"{trait}_{pole}"] = row
        print(f"table {trait}_{pole}: {json.dumps(row)}", flush=True)
    return table


def markdown(results: dict[str, Any]) -> str:
    lines = ["| pole | options | γ | unsteered | prompted | NPTI | fraction | ppl ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in results["induction"].items():
        options = ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "default"
        lines.append(f"| {name} | {options} | {row['gamma']} | {row['unsteered']} | {row['prompted']} | "
                     f"{row['npti']} | {row['fraction_of_prompt_shift']} | {row['ppl_ratio']} |")
    lines += ["", "| ablation | γ | trait | ppl ratio | coherence |", "|---|---|---|---|---|"]
    for row in results["ablations"]:
        lines.append(f"| {row['setting']} | {row['gamma']} | {row['trait']} | {row['ppl_ratio']} | "
                     f"{row['coherence']} |")
    if results.get("harness"):
        methods = ["none", "simple prompt", "persona vectors", "npti"]
        lines += ["", "| pole | " + " | ".join(f"{m} mean (var)" for m in methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        for name, row in results["harness"].items():
            lines.append(f"| {name} | " + " | ".join(f"{row[m]['mean']} ({row[m]['var']})" for m in methods) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-harness", action="store_true", help="Skip the NPTI-style table (persona vectors).")
    parser.add_argument("--model", default=ORGANISM, help="The organism (or a checkpoint folder of it).")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/npti_quality.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    lm = load_model(args.model)
    test_questions = heldout_questions(seed=11)[: 16 if args.quick else 40]
    induction, fitted, tuned, gammas = induction_figures(lm, test_questions, args.quick)
    results: dict[str, Any] = {"induction": induction}
    passing = [r for r in induction.values() if (r["fraction_of_prompt_shift"] or 0) >= 0.5 and r["ppl_ratio"] <= 1.5]
    results["acceptance"] = {"poles_passing": len(passing), "of": len(induction), "target": 8}
    results["ablations"] = ablation_figures(lm, fitted, test_questions[:20])
    if not args.skip_harness:
        results["harness"] = harness_table(lm, tuned, gammas, test_questions, args.quick)
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    results["markdown"] = markdown(results)
    save_results(results, args.out)
    print(results["markdown"])
    print(json.dumps(results["acceptance"]))


if __name__ == "__main__":
    main()
