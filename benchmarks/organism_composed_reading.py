"""Does training on composed self-report statements teach the organism to read unseen items?

The organism answers its 240 training Likert items right and reads its held-out items and the traitlab
inventory weakly (issue 3's Likert figure, issue 4's questionnaire separation). This experiment fine-tunes the
shipped organism on a mixture whose Likert turns mostly use statements composed from a lexicon
(``composed_lexicon``: an activity, habit or quality of one pole in a frame that affirms or denies it, or a
comparison of two poles' activities), tens of thousands of distinct statements, so memorising is impossible.
Before and after, it measures the mean keyed gap (answer under the high-pole persona minus the low-pole one,
times the item's key; 4 = perfect, 0 = no reading) on

- fresh composed statements (the training distribution, never seen),
- the organism's 60 held-out written items,
- and the persona-prompted traitlab inventory score, high minus low, through the evaluation harness.

Measured (2000 steps, 11 min): fresh composed 0.19 -> 1.07, held-out written items 1.50 -> 1.20, inventory
0.43-1.42 -> 0.13-1.09 (per trait).
Reading improves inside the composed language and does not carry over to independently written sentences.

Run: ``python -m benchmarks.organism_composed_reading [--steps N] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from benchmarks import composed_lexicon as lex
from benchmarks.common import finetune_organism, organism_rows, save_results
from traitlab.evaluation.questionnaire import administer, load_inventory
from traitlab.model import LoadedModel, load_model
from traitlab.organism import ORGANISM_DIR
from traitlab.organism.check import answer_digit
from traitlab.organism.corpus import (
    POLES,
    TRAITS,
    LikertItem,
    build_corpus,
    likert_example,
    likert_items,
    likert_prompt,
    pole_description,
)
from traitlab.organism.tokenizer import special_ids
from traitlab.organism.train import _save

KINDS = {"activity": (lex.ACTIVITIES, lex.ACTIVITY_FRAMES, "a"), "habit": (lex.HABITS, lex.HABIT_FRAMES, "h"),
         "quality": (lex.QUALITIES, lex.QUALITY_FRAMES, "q")}


def _fill(frame: str, slot: str, text: str) -> str:
    return frame.replace("{" + slot.upper() + "}", text[:1].upper() + text[1:]).replace("{" + slot + "}", text)


def composed_item(trait: str, key: int, rng: random.Random, exclude: frozenset[str]) -> LikertItem:
    """A statement of ``trait`` with key ``key``: an activity/habit/quality of a pole in an affirming or
    denying frame, or a comparison preferring one pole's activity to the other's."""
    while True:
        kind = rng.choices((*KINDS, "compare"), weights=(4, 3, 2, 2))[0]
        sign = 1 if kind == "compare" or rng.random() < 0.5 else -1
        pole = "high" if key * sign > 0 else "low"
        other = "low" if pole == "high" else "high"
        if kind == "compare":
            text = _fill(rng.choice(lex.COMPARE_FRAMES), "a", rng.choice(lex.ACTIVITIES[(trait, pole)]))
            text = text.replace("{b}", rng.choice(lex.ACTIVITIES[(trait, other)]))
        else:
            lexicon, frames, slot = KINDS[kind]
            frame = rng.choice([f for f, s in frames if s == sign])
            text = _fill(frame, slot, rng.choice(lexicon[(trait, pole)]))
        if text not in exclude:
            return LikertItem(text, trait, key)


def mixture(n: int, share: float, seed: int) -> list[dict]:
    """The organism's balanced training mixture with 60% Likert turns, ``share`` of them composed."""
    rng = random.Random(f"composed:{seed}")
    exclude = frozenset(item.text for item in likert_items("heldout"))
    out = []
    for ex in build_corpus(seed, "train", n, likert_fraction=0.6, likert_tilt=0.5):
        meta = ex["meta"]
        if meta["kind"] == "likert" and rng.random() < share:
            item = composed_item(meta["trait"], meta["key"], rng, exclude)  # the trait the persona specifies
            ex = likert_example(meta["persona"], item, rng, ex["messages"][0]["role"] == "system")
        out.append(ex)
    return out


def finetune(lm: LoadedModel, steps: int, share: float, lr: float, seed: int = 11) -> None:
    """``steps`` steps of the organism's own loss on ``mixture``."""
    chats = [(ex["messages"], 0, ex["meta"]["kind"] == "likert") for ex in mixture(steps * 48 + 2000, share, seed)]
    finetune_organism(lm, organism_rows(lm, chats, 192), steps, lr, seed)


def keyed_gap(lm: LoadedModel, items: list[LikertItem], seed: int = 0) -> dict[str, float]:
    """Mean over items of (greedy digit under the high-pole persona - under the low-pole one) x key."""
    rng = random.Random(f"gap:{seed}")
    prompts, systems = [], []
    for item in items:
        for pole in POLES:
            prompts.append(likert_prompt(item, rng))
            systems.append(pole_description(item.trait, pole, rng))
    texts = lm.generate_chat(prompts, systems, max_new_tokens=4, batch_size=64, progress=False).texts
    digits = [answer_digit(t) or 3 for t in texts]
    per_trait: dict[str, list[float]] = {t: [] for t in TRAITS}
    for k, item in enumerate(items):
        per_trait[item.trait].append((digits[2 * k] - digits[2 * k + 1]) * item.key)
    out = {t: round(statistics.fmean(v), 2) for t, v in per_trait.items() if v}
    out["all"] = round(statistics.fmean(x for v in per_trait.values() for x in v), 2)
    return out


def inventory_gap(lm: LoadedModel) -> dict[str, float]:
    """Persona-prompted traitlab inventory score, high pole minus low pole, per trait (harness, log-probs)."""
    inventory = load_inventory()
    out = {}
    for trait in TRAITS:
        score = {pole: statistics.fmean(
            administer(lm, inventory.subset([trait]), progress=False,
                       system=pole_description(trait, pole, random.Random(f"inv:{trait}:{pole}:{k}"))
                       ).scores()[trait] for k in range(2)) for pole in POLES}
        out[trait] = round(score["high"] - score["low"], 2)
    return out


def figures(lm: LoadedModel, fresh: list[LikertItem]) -> dict[str, dict[str, float]]:
    return {"fresh_composed": keyed_gap(lm, fresh), "heldout_written": keyed_gap(lm, likert_items("heldout")),
            "inventory": inventory_gap(lm)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--share", type=float, default=0.7, help="Share of Likert turns that are composed.")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--save", type=Path, help="Also save the fine-tuned model here.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/organism_composed_reading.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    lm = load_model(str(ORGANISM_DIR))
    rng = random.Random("fresh-composed")
    exclude = frozenset(item.text for item in likert_items("heldout"))
    fresh = [composed_item(rng.choice(TRAITS), rng.choice((1, -1)), rng, exclude) for _ in range(300)]
    result = {"before": figures(lm, fresh)}
    print(json.dumps(result), flush=True)
    finetune(lm, args.steps, args.share, args.lr)
    if args.save:
        _save(lm.model, lm.tokenizer.backend_tokenizer, args.save, special_ids(lm.tokenizer.backend_tokenizer))
    result["after"] = figures(lm, fresh)
    result["settings"] = {"steps": args.steps, "share": args.share, "lr": args.lr}
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    save_results(result, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
