"""Personality-vector acceptance figures on the organism (issue 8), in one run:

1. for each of the 10 poles: self-distilled data (the organism's answers under the pole's persona prompts,
   saved without them: 8 answers to each of the spec's 20 extraction questions, and 8 self-reports per wording
   and option order on the organism's own *training* Likert items of the trait), a finetune,
   φ = θ_tuned − θ_base, then α ∈ {0, 0.25, …, 2.0}: the pole-oriented oracle score on held-out questions (no
   system prompt) and the questionnaire score of the trait on the traitlab inventory, whose items the
   organism never saw; Pearson r between α and each (target r ≥ 0.9 for the oracle score, the questionnaire
   moving the same way) and the questionnaire's oriented shift from α = 0 to α = 2;
2. the five high-pole vectors composed (each at α, α ∈ {0, 0.1, 0.2, 0.3, 0.4}) with task arithmetic, TIES
   (``normalize`` off: with it, equal weights cancel and every α > 0 gives the same merge) and DARE + task
   arithmetic: per-trait Pearson r between α and the trait's oracle score, and each trait's
   score at α = 0.4.

The oracle score of a model is the mean over 4 answers per question sampled at temperature 1 (``--samples``;
0 for one greedy answer). Greedy decoding makes each question's answer a switch that flips at some α, so the
mean over 24 questions is a step function of α; the sampled mean follows the model's expected trait
expression, which moves smoothly. The finetune is full, 1 epoch at lr 2e-5 (``--lr``, ``--epochs``).
Stronger finetunes saturate the score by α ≈ 1 and Pearson r over α ∈ [0, 2] then measures the plateau, not
the control. Without the self-reports (``--no-self-report``) the questionnaire stays at 3.00: the organism's
Likert answers follow only a persona given in the system prompt.

Run: ``python -m benchmarks.merging_quality [--quick] [--lr LR] [--epochs E] [--poles P ...] [--no-self-report]
[--samples N] [--out F]`` (8 min).
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
from traitlab.evaluation.questionnaire import administer, load_inventory
from traitlab.evaluation.scoring import pearson
from traitlab.finetune import FinetuneSettings, finetune
from traitlab.finetune.personality_data import self_distill
from traitlab.methods.merging import PersonalityVector, merge_vectors, vector_from_models
from traitlab.model import ORGANISM, LoadedModel, load_model
from traitlab.organism import OracleScorer
from traitlab.organism.corpus import TRAITS, heldout_questions
from traitlab.traits import load_trait

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]


def answers(lm: LoadedModel, questions: list[str], samples: int) -> list[str]:
    """``samples`` answers per question at temperature 1 (seeded); one greedy answer each when ``samples`` is 0."""
    if not samples:
        return lm.generate_chat(questions, max_new_tokens=80, progress=False).texts
    rows = [q for q in questions for _ in range(samples)]
    return lm.generate_chat(rows, max_new_tokens=80, temperature=1.0, seed=0, progress=False).texts


def oracle(lm: LoadedModel, questions: list[str], trait: str, samples: int) -> float:
    scorer = OracleScorer()
    return statistics.fmean(scorer.trait_score(t, trait) for t in answers(lm, questions, samples))


def questionnaire(lm: LoadedModel, vector: PersonalityVector | None, trait: str, inventory: Any) -> float | None:
    result = administer(lm, inventory, intervention=vector, scoring_mode="logprob", progress=False).to_dict()
    return result["traits"][trait]["score"]


def single_vectors(lm: LoadedModel, questions: list[str], settings: FinetuneSettings, quick: bool,
                   inventory: Any, poles: list[str] | None = None, self_report: Any = None, samples: int = 4,
                   ) -> tuple[dict[str, Any], dict[str, PersonalityVector]]:
    rows, vectors = {}, {}
    alphas = ALPHAS[::2] if quick else ALPHAS
    for trait in TRAITS:
        for pole in ("high", "low"):
            if poles and f"{trait}_{pole}" not in poles:
                continue
            start = time.perf_counter()
            spec = load_trait(f"{trait}_{pole}")
            own = self_report.subset([trait]) if self_report is not None else None
            data = self_distill(lm, spec, n_per_question=4 if quick else 8, max_new_tokens=80, seed=0,
                                self_report=own)
            vector = vector_from_models(lm, finetune(lm, data, settings, progress=False), trait, pole)
            oracle_scores, survey = [], []
            for alpha in alphas:
                with vector.scaled(alpha).applied(lm):
                    oracle_scores.append(round(oracle(lm, questions, trait, samples), 2))
                survey.append(questionnaire(lm, vector.scaled(alpha), trait, inventory))
            sign = 1 if pole == "high" else -1
            rows[f"{trait}_{pole}"] = {
                "r_alpha_oracle": round(sign * pearson(alphas, oracle_scores), 3),
                "r_alpha_questionnaire": round(sign * pearson(alphas, survey), 3) if None not in survey else None,
                "questionnaire_shift": round(sign * (survey[-1] - survey[0]), 2) if None not in survey else None,
                "oracle_scores": oracle_scores, "questionnaire": [round(s, 2) for s in survey],
                "training_rows": len(data), "seconds": round(time.perf_counter() - start, 1),
            }
            vectors[f"{trait}_{pole}"] = vector
            print(f"{trait}_{pole}: {rows[f'{trait}_{pole}']}", flush=True)
    return rows, vectors


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def composition(lm: LoadedModel, vectors: dict[str, PersonalityVector], questions: list[str],
                samples: int = 4) -> dict[str, Any]:
    highs = [vectors[f"{trait}_high"] for trait in TRAITS]
    alphas = [0.0, 0.1, 0.2, 0.3, 0.4]
    out: dict[str, Any] = {}
    for label, method, density in (("task_arithmetic", "task_arithmetic", 1.0), ("ties", "ties", 0.5),
                                   ("dare+task_arithmetic", "dare_linear", 0.5)):
        scores: dict[str, list[float]] = {trait: [] for trait in TRAITS}
        for alpha in alphas:
            # TIES normalises by Σ weight·mask, which cancels a weight shared by every vector: off, so α scales
            merged = merge_vectors([(v, alpha, density) for v in highs], method, seed=0,  # type: ignore[arg-type]
                                   normalize=False)
            with merged.applied(lm):
                texts = answers(lm, questions, samples)
            scorer = OracleScorer()
            for trait in TRAITS:
                scores[trait].append(round(statistics.fmean(scorer.trait_score(t, trait) for t in texts), 2))
        # r is None when a trait's score does not move at all
        out[label] = {trait: {"r": _round(pearson(alphas, s)), "score_at_0.4": s[-1], "score_at_0": s[0]}
                      for trait, s in scores.items()}
        rs = [v["r"] for v in out[label].values() if v["r"] is not None]
        out[label]["mean_r"] = round(statistics.fmean(rs), 3) if rs else None
        print(f"composition {label}: mean r {out[label]['mean_r']}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default=ORGANISM, help="The organism (default) or another checkpoint of it.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/merging_quality.json"))
    parser.add_argument("--lr", type=float, default=2e-5, help="Learning rate of the full finetune.")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--poles", nargs="*", help="Only these poles (e.g. openness_high); skips composition.")
    parser.add_argument("--samples", type=int, default=4,
                        help="Answers per question at temperature 1 for the oracle score (0: one greedy answer).")
    parser.add_argument("--no-self-report", action="store_true",
                        help="Distil situational answers only, not the persona's answers to the organism's own "
                             "training items.")
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    lm = load_model(args.model)
    questions = heldout_questions(seed=11)[: 12 if args.quick else 24]
    settings = FinetuneSettings(method="full", epochs=args.epochs, learning_rate=args.lr, batch_size=8)
    inventory = load_inventory("traitlab")
    self_report = None if args.no_self_report else load_inventory("persona-tiny")
    singles, vectors = single_vectors(lm, questions, settings, args.quick, inventory, args.poles, self_report,
                                      args.samples)
    results = {"settings": {"method": settings.method, "epochs": settings.epochs, "lr": settings.learning_rate,
                            "self_report": None if self_report is None else self_report.name,
                            "samples_per_question": args.samples},
               "single": singles,
               "composition": None if args.poles else composition(lm, vectors, questions, args.samples),
               "wall_seconds": round(time.perf_counter() - start, 1)}
    save_results(results, args.out)
    print(json.dumps({k: v for k, v in results.items() if k != "single"}, indent=2))


if __name__ == "__main__":
    main()
