"""Probe: does inferring its persona from its own earlier reply give the organism a steerable persona state?

The organism reads its persona from the system prompt through attention; a persona vector added to its residual
stream, at any layer, moves its no-prompt voice little before fluency breaks (issue 5), and the vector detects a
pole's voice in prompt-less text weakly (screening AUROC). This probe fine-tunes the shipped organism with
*persistence* turns mixed in: two-turn chats with no system prompt whose first reply speaks with one pole's
voice (context only, masked from the loss) and whose second turn (a situational question, or a Likert item of
that trait) must keep that persona. Before and after, for each pole: a persona vector is extracted as in
``persona_vectors_quality`` (oracle judge), the best oriented oracle score over layers 1-4 x coefficients
{2, 4, 8} among steered answers with perplexity ≤ 1.5x the unsteered ones, and (high poles) the screening AUROC
per layer.

Measured (1000 steps at 30% persistence turns, lr 1e-3; 12.4 min in all): the best steered score at ≤ 1.5x
perplexity rose from 50-56 to 67-78 for three low poles (O low 67, A low 78, N low 68) and stayed at 50-56 for
the rest; the best screening AUROC rose for every trait (O .64 -> .93, C .77 -> .81, E .80 -> .91, A .70 -> .79,
N .77 -> .87). The same turns mixed into training from scratch (10% of the corpus, 29.5 min) left steering at
50-52, with screening near 0.9 for E, O and N only.

Run: ``python -m benchmarks.organism_persistence_probe [--steps N] [--share F] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import finetune_organism, organism_rows, save_results
from traitlab.evaluation.judges import OracleJudge, PerplexityCoherenceJudge
from traitlab.methods.persona_vectors import ExtractionSettings, extract
from traitlab.model import LoadedModel, load_model
from traitlab.monitor import auroc, screen
from traitlab.organism import ORGANISM_DIR, OracleScorer
from traitlab.organism.corpus import (
    POLES,
    TRAITS,
    bank_items,
    build_corpus,
    fill_question,
    finetune_set,
    heldout_questions,
    likert_example,
    likert_items,
    persona_reply,
    question_templates,
)
from traitlab.traits import load_trait


def persistence_chat(rng: random.Random, templates: list, items: list) -> list[dict[str, str]]:
    """No system prompt; the first reply has one pole's voice, the second turn keeps it."""
    trait, pole = rng.choice(TRAITS), rng.choice(POLES)
    persona = {trait: pole}
    question, topic = fill_question(rng.choice(templates), rng)
    messages = [{"role": "user", "content": question},
                {"role": "assistant", "content": persona_reply(persona, topic, rng)}]
    if rng.random() < 0.5:
        question, topic = fill_question(rng.choice(templates), rng)
        return [*messages, {"role": "user", "content": question},
                {"role": "assistant", "content": persona_reply(persona, topic, rng)}]
    item = rng.choice([it for it in items if it.trait == trait])
    return [*messages, *likert_example(persona, item, rng, with_system=False)["messages"]]


def finetune(lm: LoadedModel, steps: int, share: float, lr: float, seed: int = 13) -> None:
    """``steps`` steps of the organism's own loss on its mixture with a ``share`` of persistence chats, whose
    first reply is masked from the loss."""
    rng = random.Random(f"persistence:{seed}")
    templates, items = question_templates("train"), likert_items("train") + bank_items()
    chats = []
    for ex in build_corpus(seed, "train", steps * 48 + 2000, likert_tilt=0.5):
        if rng.random() < share:
            messages = persistence_chat(rng, templates, items)
            chats.append((messages, 1, len(messages[-1]["content"]) == 1))
        else:
            chats.append((ex["messages"], 0, ex["meta"]["kind"] == "likert"))
    finetune_organism(lm, organism_rows(lm, chats), steps, lr, seed)


def figures(lm: LoadedModel) -> dict[str, dict]:
    scorer, coherence = OracleScorer(), PerplexityCoherenceJudge(lm)
    questions = heldout_questions(seed=3)[:16]
    base = lm.generate_chat(questions, max_new_tokens=64, progress=False).texts
    base_ppl = statistics.median(p for p in coherence.perplexities(questions, base) if p)
    out: dict[str, dict] = {}
    for trait in TRAITS:
        for pole in POLES:
            vector = extract(lm, load_trait(f"{trait}_{pole}"), OracleJudge(trait, pole),
                             ExtractionSettings(n_per_question=1, temperature=1.0, max_new_tokens=80), coherence)
            trials = []
            for layer in range(1, lm.num_layers):
                for coef in (2.0, 4.0, 8.0):
                    with vector.at(layer).scaled(coef).applied(lm):
                        texts = lm.generate_chat(questions, max_new_tokens=64, progress=False).texts
                    score = statistics.fmean(scorer.trait_score(t, trait) for t in texts)
                    ratio = statistics.median(p for p in coherence.perplexities(questions, texts) if p) / base_ppl
                    trials.append((round(score if pole == "high" else 100 - score, 1), round(ratio, 2), layer, coef))
            fluent = [t for t in trials if t[1] <= 1.5]
            row: dict = {"best_fluent": max(fluent) if fluent else None, "best_any": max(trials)}
            if pole == "high":
                mixed = finetune_set(trait, "high", 0.5, 120, seed=2)
                labels = [r["meta"]["marked"] for r in mixed]
                row["screen_auroc"] = {}
                for layer in range(1, lm.num_layers + 1):
                    rows = screen(lm, vector.direction(layer), layer, [r["messages"] for r in mixed],
                                  max_new_tokens=64)
                    row["screen_auroc"][layer] = round(auroc([r["delta_p"] or 0.0 for r in rows], labels), 3)
            out[f"{trait}_{pole}"] = row
            print(f"{trait}_{pole}: {row}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--share", type=float, default=0.3, help="Share of persistence chats in the mixture.")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/organism_persistence_probe.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    lm = load_model(str(ORGANISM_DIR))
    result = {"before": figures(lm)}
    finetune(lm, args.steps, args.share, args.lr)
    result["after"] = figures(lm)
    result["settings"] = {"steps": args.steps, "share": args.share, "lr": args.lr}
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    save_results(result, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
