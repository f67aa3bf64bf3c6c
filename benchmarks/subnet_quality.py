"""Persona-subnetwork acceptance figures on the organism (issue 7), in one run:

1. for each of the 10 Big Five poles, calibrated on the organism's own answers under that pole's persona prompts
   (its built-in spec; response tokens; calibration context without the system prompt unless ``--with-system``):
   Wanda subnetworks at sparsity 0.1 / 0.3 / 0.5, with no system prompt at inference and with the persona
   prompt, vs the prompt-only baseline and the plain model: pole-oriented oracle score (100 = strongly this
   pole, 50 = no evidence), answer perplexity (geometric mean, under the unmasked model) and neutral held-out
   perplexity (under the intervention);
2. contrastive pruning for each Big Five pair (high vs low, sparsity 0.1 / 0.3 / 0.5): the separation
   ``trait score(high) − trait score(low)`` of masks alone, of masks + persona prompts, and of Wanda masks alone,
   vs that of the persona prompts alone;
3. bit-exact restore (hash of all weights after everything) and an exported checkpoint that reproduces the
   masked model's greedy outputs.

Run: ``python -m benchmarks.subnet_quality [--model traitlab/persona-tiny] [--quick] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tests.helpers import weights_hash
from traitlab.evaluation.capability import neutral_perplexity
from traitlab.evaluation.judges import PerplexityCoherenceJudge
from traitlab.interventions import Intervention, compose
from traitlab.methods.prompting import PromptIntervention
from traitlab.methods.subnet_calibration import GenerationSettings, collect_stats, from_spec
from traitlab.methods.subnet_fit import contrastive_masks, wanda_masks
from traitlab.methods.subnetworks import SubnetworkMask, export_checkpoint
from traitlab.model import LoadedModel, load_model
from traitlab.organism import OracleScorer
from traitlab.progress import set_quiet
from traitlab.traits import BIG_FIVE, load_trait

SPARSITIES = (0.1, 0.3, 0.5)
MAX_NEW_TOKENS = 64




class Evaluator:
    def __init__(self, lm: LoadedModel, neutral_n: int) -> None:
        self.lm = lm
        self.scorer = OracleScorer()
        self.ppl = PerplexityCoherenceJudge(lm)
        self.neutral_n = neutral_n

    def answers(self, questions: list[str], intervention: Intervention | None) -> list[str]:
        if intervention is None:
            return self.lm.generate_chat(questions, max_new_tokens=MAX_NEW_TOKENS, batch_size=64, progress=False).texts
        with intervention.applied(self.lm):
            return self.lm.generate_chat(questions, max_new_tokens=MAX_NEW_TOKENS, batch_size=64, progress=False).texts

    def run(self, questions: list[str], trait: str, intervention: Intervention | None,
            neutral: bool = True) -> dict[str, Any]:
        texts = self.answers(questions, intervention)
        raw = statistics.fmean(self.scorer.trait_score(t, trait) for t in texts)
        ppls = [p for p in self.ppl.perplexities(questions, texts) if p is not None]
        out = {"trait_score": raw, "answer_ppl": math.exp(statistics.fmean(math.log(p) for p in ppls)) if ppls
               else float("nan"), "empty": sum(not t.strip() for t in texts)}
        if neutral:
            out["neutral_ppl"] = neutral_perplexity(self.lm, n=self.neutral_n, intervention=intervention)
        return out


def pole_score(raw: float, pole: str) -> float:
    return raw if pole == "high" else 100.0 - raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="traitlab/persona-tiny")
    parser.add_argument("--quick", action="store_true", help="One trait, 8 questions (for development).")
    parser.add_argument("--out", type=Path, default=None, help="Write all figures as JSON.")
    parser.add_argument("--n-answers", type=int, default=1)
    parser.add_argument("--with-system", action="store_true", help="Calibrate with the persona system prompt.")
    args = parser.parse_args()
    set_quiet(True)
    torch.manual_seed(0)
    started = time.perf_counter()
    lm = load_model(args.model, device="cpu")
    before = weights_hash(lm.model)
    traits = BIG_FIVE[2:3] if args.quick else BIG_FIVE
    evaluator = Evaluator(lm, 16 if args.quick else 40)
    generation = GenerationSettings(n_answers=args.n_answers, max_new_tokens=MAX_NEW_TOKENS, temperature=1.0)
    results: dict[str, Any] = {"model": args.model, "with_system": args.with_system, "poles": {}, "pairs": {}}
    base_neutral = neutral_perplexity(lm, n=evaluator.neutral_n)
    results["base_neutral_ppl"] = base_neutral
    export_check = None
    for trait in traits:
        stats, prompts, masks = {}, {}, {}
        questions = load_trait(f"{trait}_high").held_out_questions[: 8 if args.quick else None]
        base = evaluator.run(questions, trait, None, neutral=False)
        for pole in ("high", "low"):
            spec = load_trait(f"{trait}_{pole}")
            calibration = from_spec(lm, spec, pole, args.with_system, generation)
            stats[pole] = collect_stats(lm, calibration, "response")
            prompts[pole] = PromptIntervention(spec.instruction[0].pos)
            rows = {"base": {**base, "neutral_ppl": base_neutral},
                    "prompt": evaluator.run(questions, trait, prompts[pole])}
            for sparsity in SPARSITIES:
                mask = SubnetworkMask.from_masks(wanda_masks(lm, stats[pole], sparsity), trait=trait, pole=pole,
                                                 fingerprint=lm.fingerprint)
                masks[(pole, sparsity)] = mask
                rows[f"subnet@{sparsity}"] = evaluator.run(questions, trait, mask)
                rows[f"subnet@{sparsity}+prompt"] = evaluator.run(questions, trait, compose([mask, prompts[pole]]))
            for row in rows.values():
                row["pole_score"] = pole_score(row["trait_score"], pole)
            results["poles"][f"{trait}_{pole}"] = rows
            if export_check is None:
                export_check = check_export(lm, masks[(pole, 0.5)], questions)
            print_pole(f"{trait}_{pole}", rows)
        pair: dict[str, Any] = {"prompt": separation(evaluator, questions, trait, prompts["high"], prompts["low"])}
        for sparsity in SPARSITIES:
            high_masks, low_masks = contrastive_masks(lm, stats["high"], stats["low"], sparsity, pair=True)
            high = SubnetworkMask.from_masks(high_masks, trait=trait, pole="high", fingerprint=lm.fingerprint)
            low = SubnetworkMask.from_masks(low_masks, trait=trait, pole="low", fingerprint=lm.fingerprint)
            pair[f"contrastive@{sparsity}"] = separation(evaluator, questions, trait, high, low)
            pair[f"contrastive@{sparsity}+prompt"] = separation(
                evaluator, questions, trait, compose([high, prompts["high"]]), compose([low, prompts["low"]]))
            pair[f"wanda@{sparsity}"] = separation(evaluator, questions, trait, masks[("high", sparsity)],
                                                   masks[("low", sparsity)])
        results["pairs"][trait] = pair
        print_pair(trait, pair)
    after = weights_hash(lm.model)
    results["bit_exact_restore"] = before == after
    results["export_reproduces_greedy"] = export_check
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(f"\nbase neutral perplexity {base_neutral:.2f}; bit-exact restore after all runs: {before == after}; "
          f"export reproduces greedy outputs: {export_check}; {results['seconds']:.0f}s")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


def separation(evaluator: Evaluator, questions: list[str], trait: str, high: Intervention,
               low: Intervention) -> dict[str, float]:
    h = evaluator.run(questions, trait, high, neutral=False)
    lo = evaluator.run(questions, trait, low, neutral=False)
    return {"high": h["trait_score"], "low": lo["trait_score"], "separation": h["trait_score"] - lo["trait_score"],
            "answer_ppl_high": h["answer_ppl"], "answer_ppl_low": lo["answer_ppl"]}


def check_export(lm: LoadedModel, mask: SubnetworkMask, questions: list[str]) -> bool:
    with mask.applied(lm):
        expected = lm.generate_chat(questions, max_new_tokens=MAX_NEW_TOKENS, progress=False).response_ids
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_checkpoint(lm, mask, Path(tmp) / "masked")
        reloaded = load_model(str(folder), device="cpu")
        got = reloaded.generate_chat(questions, max_new_tokens=MAX_NEW_TOKENS, progress=False).response_ids
    return got == expected


def print_pole(name: str, rows: dict[str, dict[str, float]]) -> None:
    print(f"\n{name}: condition | pole score | answer ppl | neutral ppl")
    for condition, row in rows.items():
        print(f"  {condition:<20} | {row['pole_score']:6.1f} | {row['answer_ppl']:7.2f} | {row['neutral_ppl']:7.2f}")


def print_pair(trait: str, pair: dict[str, dict[str, float]]) -> None:
    print(f"\n{trait} pair: condition | trait score high | low | separation")
    for condition, row in pair.items():
        print(f"  {condition:<24} | {row['high']:6.1f} | {row['low']:6.1f} | {row['separation']:+6.1f}")


if __name__ == "__main__":
    main()
