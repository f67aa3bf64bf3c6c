"""The quick demo's fitted mechanisms before and after the answer bank (issue 24), on the project's held-out
questions rather than the demo's 4 per cell.

Loads the persona-vector, NPTI and personality-vector artifacts of two finished ``traitlab demo --quick`` work
folders (``--old``: fitted by main, ``--new``: fitted from the answer bank) exactly as the recipes use them
(persona vectors: the high pole's vector, the low pole at −1×; NPTI: the stored statistics, default selection,
the pole's side; personality vectors: one artifact per pole) and evaluates each at its fitted strength on the 40
held-out questions (the union of the ten Big Five specs' eval_questions, deduplicated, shuffled with seed 0),
greedy, 48 new tokens, judged by the offline embedding judge calibrated on SmolLM2's unsteered replies, coherence
by the Gemma-3-270m reference-LM judge (``benchmarks.npti_smollm2``'s ``Bench``, whose caches make a rerun free).
Per cell: expression toward the pole (mean ± 95% CI), the paired shift against the unsteered replies and its p,
coherence and its ratio to the unsteered replies'.

``--pv-seeds 1,2`` adds the demo's persona vector extracted from bank answers sampled at other seeds (one
random draw of 30 pairs against another). Run: ``OMP_NUM_THREADS=1 python -m benchmarks.answer_bank_effects
--old Q0/work --new Q1/work [--pv-seeds 1,2]``; figures in docs/demo.md ("Cost of the fits").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from benchmarks.npti_smollm2 import TRAITS, Bench, heldout_questions, summary


def artifacts(work: Path, lm: Any) -> dict[str, Any]:
    """{mechanism-pole: Intervention at its fitted strength}, as the recipes build them."""
    from traitlab.registry import load_intervention

    def one(pattern: str) -> Path:
        found = sorted(work.glob(pattern))
        if len(found) != 1:
            raise SystemExit(f"expected one {pattern} in {work}, found {len(found)}")
        return found[0]

    vector = load_intervention(one("persona_vectors/extraversion_high/persona_vectors-*.tl.safetensors"), lm)
    stats = load_intervention(one("npti/extraversion_high/npti-stats-*.tl.safetensors"), lm)
    out = {"persona_vectors-high": vector, "persona_vectors-low": vector.scaled(-1.0),
           "npti-high": stats.with_options(target="pos"), "npti-low": stats.with_options(target="neg")}
    for pole in ("high", "low"):
        out[f"personality_vector-{pole}"] = load_intervention(
            one(f"personality_vector/extraversion_{pole}/personality_vector-*.tl.safetensors"), lm)
    return out


def persona_vector_draws(lm: Any, seeds: list[int]) -> dict[str, Any]:
    """The demo's persona vector (extraversion_high, 6 questions × 5 prompt pairs, T=1, 48 tokens, layer 16,
    coef 4, no judge filter) extracted from the bank's answers sampled with other seeds (both sides one seed):
    how much the fitted vector's effect moves from one random draw of 30 pairs to another."""
    from traitlab.methods.persona_vectors import ExtractionSettings, extract
    from traitlab.methods.pole_answers import Sampling, pole_answers
    from traitlab.traits import load_trait

    high = load_trait("extraversion_high")
    spec = high.model_copy(update={"questions": high.questions[:6]})
    out = {}
    for seed in seeds:
        settings = ExtractionSettings(n_per_question=1, temperature=1.0, max_new_tokens=48, min_pairs=5,
                                      filter_pairs=False, seed=seed)
        sampling = Sampling(max_new_tokens=48, temperature=1.0, seed=seed)
        pos, neg = (pole_answers(lm, spec, side, 1, sampling) for side in ("pos", "neg"))
        vector = extract(lm, spec, None, settings, answers=(pos.generation, neg.generation)).at(16)
        vector.scale = 4.0
        out[f"persona_vectors-high seed {seed}"] = vector
        out[f"persona_vectors-low seed {seed}"] = vector.scaled(-1.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="work folder of the run before")
    parser.add_argument("--new", type=Path, required=True, help="work folder of the run after")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/results/answer_bank_effects"))
    parser.add_argument("--pv-seeds", default="", help="also persona vectors from the bank at these seeds, e.g. 1,2")
    args = parser.parse_args()
    from traitlab.model import load_model
    from traitlab.progress import set_quiet

    torch.set_num_threads(1)
    set_quiet(True)
    args.work.mkdir(parents=True, exist_ok=True)
    lm = load_model("smollm2-135m-instruct", device="cpu")
    bench = Bench(lm, args.work, max_new_tokens=48, batch_size=40)
    questions = heldout_questions(args.n)
    column = TRAITS.index("extraversion")
    base_scores, base_coh = bench.judge(questions, bench.generate("none", questions)[0.0])
    results: dict[str, Any] = {}
    runs = [(tag, work, artifacts(work, lm)) for tag, work in (("before", args.old), ("after", args.new))]
    if args.pv_seeds:
        runs.append(("draws", Path("draws"), persona_vector_draws(lm, [int(s) for s in args.pv_seeds.split(",")])))
    for tag, work, interventions in runs:
        for name, intervention in interventions.items():
            condition = f"bank-effects:{work.resolve()}:{name}"
            with intervention.applied(lm):
                replies = bench.generate(condition, questions)[0.0]
            scores, coh = bench.judge(questions, replies)
            sign = 1.0 if "-high" in name else -1.0
            row = summary(scores[:, column], base_scores[:, column], sign, coh, base_coh)
            results[f"{tag} {name}"] = row
            print(f"{tag:6s} {name:24s} {json.dumps(row)}", flush=True)
    (args.work / "summary.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
