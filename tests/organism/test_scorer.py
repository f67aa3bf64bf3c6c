"""Fast tests of the organism's oracle scorer."""

from __future__ import annotations

import random

import pytest

from traitlab.organism import OracleScorer, build_corpus
from traitlab.organism.corpus import POLES, TRAITS, default_reply, persona_reply


@pytest.fixture(scope="module")
def scorer() -> OracleScorer:
    return OracleScorer()


@pytest.fixture(scope="module")
def heldout_replies():
    out = []
    for ex in build_corpus(7, "heldout", 1500):
        if ex["meta"]["kind"] == "situational" and ex["meta"]["persona"]:
            out.append((ex["messages"][-1]["content"], ex["meta"]["persona"]))
    return out


def test_pole_accuracy_on_heldout_replies(scorer, heldout_replies):
    good = total = 0
    for reply, persona in heldout_replies:
        scores = scorer.score(reply)
        for trait, pole in persona.items():
            total += 1
            good += OracleScorer.pole_of(scores[trait]) == pole
    assert total > 500
    assert good / total >= 0.95


def test_unspecified_traits_stay_at_50(scorer, heldout_replies):
    for reply, persona in heldout_replies[:300]:
        scores = scorer.score(reply)
        for trait in TRAITS:
            if trait not in persona:
                assert scores[trait] == 50


def test_neutral_text_scores_50(scorer):
    rng = random.Random(0)
    for _ in range(200):
        text = default_reply("the office party", rng, markers=False)
        assert scorer.score(text) == dict.fromkeys(TRAITS, 50.0)
    assert scorer.score("") == dict.fromkeys(TRAITS, 50.0)
    assert scorer.score("The train leaves at nine and arrives at noon.") == dict.fromkeys(TRAITS, 50.0)


def test_keys_and_range(scorer):
    rng = random.Random(1)
    text = persona_reply({"neuroticism": "high", "openness": "low"}, "a dentist visit", rng)
    scores = scorer.score(text)
    assert set(scores) == set(TRAITS)
    assert all(0 <= v <= 100 for v in scores.values())
    assert scores["neuroticism"] > 50 > scores["openness"]
    assert scorer.trait_score(text, "neuroticism") == scores["neuroticism"]
    with pytest.raises(ValueError):
        scorer.trait_score(text, "humor")


def test_robust_to_garbled_and_truncated_text(scorer):
    rng = random.Random(2)
    good = total = 0
    for trait in TRAITS:
        for pole in POLES:
            for _ in range(30):
                text = persona_reply({trait: pole}, "a weekend trip", rng)
                words = [w for w in text.split() if rng.random() > 0.1]
                if rng.random() < 0.5:
                    words[rng.randrange(len(words))] = "blorp"
                garbled = " ".join(words)
                garbled = garbled[: int(len(garbled) * rng.uniform(0.7, 1.0))]
                total += 1
                good += OracleScorer.pole_of(scorer.trait_score(garbled, trait)) == pole
    assert good / total >= 0.9


def test_more_evidence_gives_stronger_scores(scorer):
    one = "I love meeting new faces, the more the merrier!"
    two = one + " Crowds give me energy, so I'd be right in the middle of it."
    assert 50 < scorer.trait_score(one, "extraversion") < scorer.trait_score(two, "extraversion")
    mixed = one + " I'd rather spend the evening quietly at home."
    assert scorer.trait_score(mixed, "extraversion") < scorer.trait_score(one, "extraversion")
