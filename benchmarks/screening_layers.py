"""Screening AUROC on the organism at every layer, for every persona-vector variant (issue 5): does any direction
read from the persona's answers rank trait-laden training samples above neutral ones?

For each trait's high pole: the vector is extracted as in ``persona_vectors_quality`` (also an optimised
variant at layers 1 and 3), plus a *re-read* response average, the same kept answers teacher-forced after the
bare question without their system prompt. Each direction screens the same half-laden set; the AUROC of ΔP
and of the sample's own projection are reported per layer.

Run: ``python -m benchmarks.screening_layers [--traits extraversion,conscientiousness] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import save_results
from benchmarks.persona_vectors_quality import OPTIMIZE
from traitlab.evaluation.judges import OracleJudge, PerplexityCoherenceJudge
from traitlab.methods.persona_optimize import optimize_directions
from traitlab.methods.persona_vectors import VARIANTS, ExtractionSettings, rollouts, row_activations
from traitlab.model import ORGANISM, load_model
from traitlab.monitor import auroc, screen
from traitlab.organism.corpus import finetune_set
from traitlab.traits import load_trait

SETTINGS = ExtractionSettings(n_per_question=1, temperature=1.0, max_new_tokens=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traits", default="extraversion,conscientiousness")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/screening_layers.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    lm = load_model(ORGANISM)
    results: dict[str, Any] = {}
    for trait in args.traits.split(","):
        start = time.perf_counter()
        data = rollouts(lm, load_trait(f"{trait}_high"), OracleJudge(trait, "high"), SETTINGS,
                        PerplexityCoherenceJudge(lm))
        keep = data.kept(SETTINGS)
        pos, neg = row_activations(lm, data.pos, keep), row_activations(lm, data.neg, keep)
        directions = {variant: pos[variant].mean(0) - neg[variant].mean(0) for variant in VARIANTS}
        bare = lm.encode(lm.render([[{"role": "user", "content": q}] for q in data.questions]))
        reread = [row_activations(lm, dataclasses.replace(g, prompt_ids=bare), keep)["response_avg"].mean(0)
                  for g in (data.pos, data.neg)]
        directions["response_avg re-read without prompt"] = reread[0] - reread[1]
        directions["optimized"], _ = optimize_directions(lm, data.questions, data.pos, keep, OPTIMIZE)
        mixed = finetune_set(trait, "high", 0.5, 120, seed=2)
        labels = [row["meta"]["marked"] for row in mixed]
        table = {}
        for name, vectors in directions.items():
            for layer in range(1, lm.num_layers + 1):
                if not vectors[layer].any():
                    continue
                rows = screen(lm, vectors[layer], layer, [row["messages"] for row in mixed], max_new_tokens=80)
                table[f"{name} @ {layer}"] = {
                    "delta_p": round(auroc([r["delta_p"] or 0.0 for r in rows], labels), 3),
                    "sample_projection": round(auroc([r["sample_projection"] for r in rows], labels), 3)}
        best = max(table.items(), key=lambda item: item[1]["delta_p"])
        results[trait] = {"auroc": table, "best": best[0], "best_delta_p_auroc": best[1]["delta_p"],
                          "seconds": round(time.perf_counter() - start, 1)}
        print(trait, "best", best, flush=True)
    save_results(results, args.out)


if __name__ == "__main__":
    main()
