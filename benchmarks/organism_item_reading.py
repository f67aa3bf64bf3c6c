"""How much of a self-report item's meaning its words alone carry, in the organism's world.

A naive Bayes reader is fitted on the organism's pole texts (reply sentences, persona adjectives and behaviours,
self-descriptions of each of the 10 poles): p(pole | item) ∝ Π_w p(w | pole), add-0.1 smoothing, stop words and
negations dropped. It then names the pole of each item (trait and direction). Where it reads training items well
and held-out items near chance on direction, the direction of the held-out items lives in composition (negation,
"instead of", "more than"), not in words the corpus ties to a pole: what the organism has to learn to generalise.

Run: ``python -m benchmarks.organism_item_reading``.
"""

from __future__ import annotations

import collections
import json
import math
import re

from traitlab.evaluation.questionnaire import load_inventory
from traitlab.organism.banks import personas, selfdesc
from traitlab.organism.corpus import POLES, TRAITS, likert_items, pole_sentences

STOP = {"i", "a", "an", "the", "to", "of", "and", "or", "in", "on", "at", "for", "with", "my", "me", "is", "am",
        "are", "be", "it", "that", "this", "when", "than", "do", "don't", "not", "no", "never", "rarely"}


def words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z']+", text.lower()) if w not in STOP]


def pole_counts() -> dict[tuple[str, str], collections.Counter]:
    counts: dict[tuple[str, str], collections.Counter] = {}
    for trait in TRAITS:
        for pole in POLES:
            texts = [*pole_sentences(trait, pole), *personas.ADJECTIVES[(trait, pole)],
                     *personas.BEHAVIOURS[(trait, pole)], *selfdesc.SUMMARIES[(trait, pole)]]
            counts[(trait, pole)] = collections.Counter(w for t in texts for w in words(t))
    return counts


def read(text: str, counts: dict[tuple[str, str], collections.Counter], vocab: set[str]) -> tuple[str, str] | None:
    known = [w for w in words(text) if w in vocab]
    if not known:
        return None

    def log_likelihood(pole: tuple[str, str]) -> float:
        c = counts[pole]
        total = sum(c.values()) + 0.1 * len(vocab)
        return sum(math.log((c[w] + 0.1) / total) for w in known)

    return max(counts, key=log_likelihood)


def accuracy(items: list[tuple[str, str, int]]) -> dict[str, float]:
    counts = pole_counts()
    vocab = set().union(*counts.values())
    trait_ok = both_ok = 0
    for text, trait, key in items:
        guess = read(text, counts, vocab)
        if guess and guess[0] == trait:
            trait_ok += 1
            both_ok += (guess[1] == "high") == (key > 0)
    return {"items": len(items), "trait": round(trait_ok / len(items), 3),
            "trait_and_direction": round(both_ok / len(items), 3)}


def main() -> None:
    sets = {
        "organism train items": [(i.text, i.trait, i.key) for i in likert_items("train")],
        "organism held-out items": [(i.text, i.trait, i.key) for i in likert_items("heldout")],
        "traitlab inventory": [(i.text, i.trait, i.key) for i in load_inventory().items],
    }
    print(json.dumps({name: accuracy(items) for name, items in sets.items()}, indent=2))


if __name__ == "__main__":
    main()
