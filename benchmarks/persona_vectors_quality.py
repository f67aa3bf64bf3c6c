"""Persona-vector acceptance figures on the organism (issue 5), in one run:

1. steering: for each of the 10 poles, extract (oracle judge, perplexity coherence) with an optimised variant
   fitted at layers 1 and 3, sweep the four vector variants × steered positions (response, prompt) × layers ×
   coefficients on the spec's eval questions, then on fresh held-out questions compare unsteered,
   persona-prompted and steered oracle scores (pole-oriented) and answer perplexity under the base model;
   negative steering of the prompted persona, with the paper's vector and with the chosen one;
2. monitoring: Pearson r between the last-prompt projection and the oracle trait score over prompts ranging
   from the low pole through no prompt to the high pole;
3. finetuning: finetune-shift vs post-finetune oracle score over trait fractions; screening AUROC of trait-laden
   vs neutral samples; preventative steering on a fully trait-laden set.

Negative steering, monitoring, finetune-shift, screening and preventative steering use the paper's
configuration: the response-average vector at response positions, at the layer and coefficient of the best
such cell of the sweep, whatever steered best.

Run: ``python -m benchmarks.persona_vectors_quality [--quick] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import save_results
from traitlab.evaluation.judges import OracleJudge, PerplexityCoherenceJudge
from traitlab.evaluation.scoring import pearson
from traitlab.finetune import FinetuneSettings, finetune
from traitlab.methods.persona_optimize import OptimizeSettings
from traitlab.methods.persona_sweep import apply_sweep, best_cell, sweep
from traitlab.methods.persona_vectors import ALL_VARIANTS, ExtractionSettings, PersonaVector, extract
from traitlab.model import ORGANISM, LoadedModel, load_model
from traitlab.monitor import auroc, finetune_shift, project_conversations, screen
from traitlab.organism import OracleScorer
from traitlab.organism.corpus import TRAITS, finetune_set, heldout_questions, neutral_set, pole_description
from traitlab.traits import load_trait

OPPOSITE = {"high": "low", "low": "high"}
OPTIMIZE = OptimizeSettings(layers=(1, 3), positions="response", steps=100, learning_rate=0.3, answers_per_step=16)


def mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 2) if values else float("nan")


def oriented(scorer: OracleScorer, texts: list[str], trait: str, pole: str) -> float:
    raw = [scorer.trait_score(t, trait) for t in texts]
    return mean([r if pole == "high" else 100 - r for r in raw])


def fluency_judge(lm: LoadedModel, questions: list[str], limit: float = 1.5) -> PerplexityCoherenceJudge:
    """Coherence 100 up to ``limit`` × the unsteered answers' median perplexity, 0 at 6x: with the sweep's
    threshold of 90 it keeps the cells the acceptance allows (perplexity ≤ 1.5x unsteered at the default)."""
    answers = lm.generate_chat(questions, max_new_tokens=64, progress=False).texts
    base = statistics.median(p for p in PerplexityCoherenceJudge(lm).perplexities(questions, answers) if p)
    return PerplexityCoherenceJudge(lm, good_ppl=limit * base, bad_ppl=6 * base)


def steering_figures(lm: LoadedModel, questions: list[str], quick: bool,
                     fluency_limit: float = 1.5) -> tuple[dict[str, Any], dict[str, Any]]:
    scorer, coherence = OracleScorer(), PerplexityCoherenceJudge(lm)
    rows, vectors = {}, {}
    settings = ExtractionSettings(n_per_question=1, temperature=1.0, max_new_tokens=80)
    for trait in TRAITS:
        for pole in ("high", "low"):
            spec = load_trait(f"{trait}_{pole}")
            judge = OracleJudge(trait, pole)
            start = time.perf_counter()
            vector = extract(lm, spec, judge, settings, coherence, OPTIMIZE)
            sweep_questions = spec.eval_questions[: 8 if quick else 20]
            result = sweep(lm, vector, spec, judge, range(1, lm.num_layers), [0.5, 1.0, 2.0, 4.0, 8.0, 16.0],
                           fluency_judge(lm, sweep_questions, fluency_limit), 90.0, questions=sweep_questions,
                           max_new_tokens=64, variants=ALL_VARIANTS, positions=["response", "prompt"])
            chosen = apply_sweep(vector, result, with_plot=False)
            paper_cell = best_cell([c for c in result.cells if (c.variant, c.positions) == ("response_avg",
                                                                                              "response")], 90.0)
            paper = vector.at(paper_cell.layer, variant="response_avg", positions="response")
            paper.scale = paper_cell.coef
            systems = spec.positive_prompts(len(questions))
            base = lm.generate_chat(questions, max_new_tokens=80).texts
            prompted = lm.generate_chat(questions, systems, max_new_tokens=80).texts
            with chosen.applied(lm):
                steered = lm.generate_chat(questions, max_new_tokens=80).texts
            with paper.scaled(-1.0).applied(lm):
                inhibited = lm.generate_chat(questions, systems, max_new_tokens=80).texts
            with chosen.scaled(-1.0).applied(lm):
                inhibited_chosen = lm.generate_chat(questions, systems, max_new_tokens=80).texts
            ppl_inhibited_chosen = coherence.perplexities(questions, inhibited_chosen)
            ppl_prompted = coherence.perplexities(questions, prompted)
            ppl_base = coherence.perplexities(questions, base)
            ppl_steered = coherence.perplexities(questions, steered)
            s_base, s_prompt = oriented(scorer, base, trait, pole), oriented(scorer, prompted, trait, pole)
            s_steer, s_inhib = oriented(scorer, steered, trait, pole), oriented(scorer, inhibited, trait, pole)
            s_inhib_chosen = oriented(scorer, inhibited_chosen, trait, pole)
            gap = s_prompt - s_base
            rows[f"{trait}_{pole}"] = {
                "layer": result.best.layer, "coef": result.best.coef, "variant": result.best.variant,
                "positions": result.best.positions, "pairs_kept": vector.extra["pairs_kept"],
                "unsteered": s_base, "prompted": s_prompt, "steered": s_steer,
                "fraction_of_prompt_shift": round((s_steer - s_base) / gap, 2) if gap else None,
                "ppl_ratio": round(statistics.median([p for p in ppl_steered if p]) /
                                   statistics.median([p for p in ppl_base if p]), 3),
                "inhibition": {"layer": paper_cell.layer, "coef": -paper_cell.coef},
                "prompted_then_inhibited": s_inhib,
                "fraction_of_shift_removed": round((s_prompt - s_inhib) / gap, 2) if gap else None,
                "chosen_inhibition": {
                    "prompted_then_inhibited": s_inhib_chosen,
                    "fraction_of_shift_removed": round((s_prompt - s_inhib_chosen) / gap, 2) if gap else None,
                    "ppl_ratio_to_prompted": round(statistics.median([p for p in ppl_inhibited_chosen if p]) /
                                                   statistics.median([p for p in ppl_prompted if p]), 3)},
                "seconds": round(time.perf_counter() - start, 1),
            }
            vectors[(trait, pole)] = paper
            print(f"{trait}_{pole}: {rows[f'{trait}_{pole}']}", flush=True)
    return rows, vectors


def monitoring_figures(lm: LoadedModel, vectors: dict, questions: list[str]) -> dict[str, float | None]:
    scorer, rng = OracleScorer(), random.Random(0)
    figures = {}
    for trait in TRAITS:
        vector: PersonaVector = vectors[(trait, "high")]
        layer = next(iter(vector.vectors))
        systems = [pole_description(trait, "low", rng) for _ in questions] + [None] * len(questions) + [
            pole_description(trait, "high", rng) for _ in questions]
        prompts = questions * 3
        replies = lm.generate_chat(prompts, systems, max_new_tokens=80).texts
        conversations = [([{"role": "system", "content": s}] if s else []) + [{"role": "user", "content": q}]
                         for s, q in zip(systems, prompts, strict=True)]
        projections = [r["last_prompt_projection"] for r in
                       project_conversations(lm, vector.direction(layer, "response_avg"), layer, conversations)]
        scores = [scorer.trait_score(t, trait) for t in replies]
        figures[trait] = round(pearson(projections, scores), 3)
        print(f"monitor {trait}: r = {figures[trait]}", flush=True)
    return figures


def finetune_figures(lm: LoadedModel, vectors: dict, questions: list[str], quick: bool) -> dict[str, Any]:
    scorer = OracleScorer()
    settings = FinetuneSettings(method="lora", epochs=1.0, learning_rate=2e-3, batch_size=8, lora_r=8)
    fractions = [0.0, 0.5, 1.0] if quick else [0.0, 0.25, 0.5, 0.75, 1.0]
    n = 96 if quick else 160
    neutral = neutral_set(48, seed=5, split="heldout")
    base_scores = {t: mean([scorer.trait_score(x, t) for x in lm.generate_chat(questions, max_new_tokens=80).texts])
                   for t in TRAITS}
    out: dict[str, Any] = {"shift_r": {}, "screen_auroc": {}, "preventative": {}}
    for trait in TRAITS[:2] if quick else TRAITS:
        vector = vectors[(trait, "high")]
        layer = next(iter(vector.vectors))
        shifts, post = [], []
        for fraction in fractions:
            data = [row["messages"] for row in finetune_set(trait, "high", fraction, n, seed=1)]
            tuned = finetune(lm, data, settings, progress=False)
            shifts.append(finetune_shift(lm, tuned, vector.direction(layer, "response_avg"), layer, questions))
            post.append(mean([scorer.trait_score(x, trait)
                              for x in tuned.generate_chat(questions, max_new_tokens=80).texts]))
        out["shift_r"][trait] = {"r": round(pearson(shifts, post), 3), "shifts": [round(s, 3) for s in shifts],
                                 "post_scores": post}
        mixed = finetune_set(trait, "high", 0.5, 80 if quick else 120, seed=2)
        rows = screen(lm, vector.direction(layer, "response_avg"), layer, [row["messages"] for row in mixed],
                      max_new_tokens=80)
        out["screen_auroc"][trait] = round(auroc([r["delta_p"] or 0.0 for r in rows],
                                                 [row["meta"]["marked"] for row in mixed]), 3)
        laden = [row["messages"] for row in finetune_set(trait, "high", 1.0, n, seed=3)]
        plain = finetune(lm, laden, settings, progress=False)
        plain_shift = mean([scorer.trait_score(x, trait) for x in
                            plain.generate_chat(questions, max_new_tokens=80).texts]) - base_scores[trait]
        plain_ppl = neutral_ppl(plain, neutral)
        trials = {}
        for coef in (1.0, 2.0, 4.0):
            steering = vector.at(variant="response_avg", positions="all").scaled(coef)
            guarded = finetune(lm, laden, settings, steering=steering, progress=False)
            shift = mean([scorer.trait_score(x, trait) for x in
                          guarded.generate_chat(questions, max_new_tokens=80).texts]) - base_scores[trait]
            trials[coef] = {"shift": round(shift, 2), "neutral_ppl_ratio": round(neutral_ppl(guarded, neutral) /
                                                                                 plain_ppl, 3)}
        out["preventative"][trait] = {"plain_shift": round(plain_shift, 2), "trials": trials}
        print(f"finetune {trait}: shift r {out['shift_r'][trait]['r']}, screening AUROC "
              f"{out['screen_auroc'][trait]}, preventative {out['preventative'][trait]}", flush=True)
    return out


def neutral_ppl(lm: LoadedModel, rows: list[dict]) -> float:
    judge = PerplexityCoherenceJudge(lm)
    questions = [r["messages"][-2]["content"] for r in rows]
    answers = [r["messages"][-1]["content"] for r in rows]
    values = [v for v in judge.perplexities(questions, answers) if v]
    return float(torch.tensor(values).log().mean().exp())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default=ORGANISM, help="The organism (default) or another checkpoint of it.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/persona_vectors_quality.json"))
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--fluency-limit", type=float, default=1.5,
                        help="Perplexity ratio the sweep accepts; below 1.5 leaves a margin for held-out questions.")
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    lm = load_model(args.model)
    questions = heldout_questions(seed=11)[: 16 if args.quick else 40]
    steering, vectors = steering_figures(lm, questions, args.quick, args.fluency_limit)
    results: dict[str, Any] = {"steering": steering,
                               "monitoring_r": monitoring_figures(lm, vectors, questions)}
    if not args.skip_finetune:
        results["finetuning"] = finetune_figures(lm, vectors, questions[:24], args.quick)
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    save_results(results, args.out)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
