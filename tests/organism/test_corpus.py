"""Fast tests of the organism corpus generator and its banks."""

from __future__ import annotations

import json
import random
import re

import pytest

from traitlab.organism import corpus
from traitlab.organism.banks import likert as likert_bank
from traitlab.organism.banks import personas as persona_bank
from traitlab.organism.banks import questions as question_bank
from traitlab.organism.banks import replies as reply_bank
from traitlab.organism.corpus import POLES, TRAITS
from traitlab.organism.scorer import OracleScorer, sentences


def test_build_corpus_is_deterministic_from_seed():
    a = corpus.build_corpus(3, "train", 200)
    assert a == corpus.build_corpus(3, "train", 200)
    assert a != corpus.build_corpus(4, "train", 200)
    ft = corpus.finetune_set("openness", "high", 0.5, 50, 1)
    assert ft == corpus.finetune_set("openness", "high", 0.5, 50, 1)
    assert corpus.heldout_questions(2) == corpus.heldout_questions(2)


def test_bank_sizes_meet_minimums():
    assert len(corpus.question_templates("train")) + len(corpus.question_templates("heldout")) >= 300
    assert len(corpus.question_templates("heldout")) >= 50
    for trait in TRAITS:
        for pole in POLES:
            assert len(set(reply_bank.POLE_SENTENCES[(trait, pole)])) >= 60
            descriptions = (persona_bank.ADJECTIVES[(trait, pole)] + persona_bank.BEHAVIOURS[(trait, pole)]
                            + persona_bank.THIRD_PERSON[(trait, pole)])
            assert len(set(descriptions)) >= 20
        keys = [k for _, k in likert_bank.ITEMS[trait]]
        assert keys.count(1) >= 10 and keys.count(-1) >= 10
    assert len(reply_bank.NEUTRAL) >= 50


def test_train_and_heldout_are_disjoint():
    train = {(q.category, q.template) for q in corpus.question_templates("train")}
    held = {(q.category, q.template) for q in corpus.question_templates("heldout")}
    assert train and held and not train & held
    train_items = {i.text for i in corpus.likert_items("train")}
    held_items = {i.text for i in corpus.likert_items("heldout")}
    assert held_items and not train_items & held_items
    assert {i.trait for i in corpus.likert_items("heldout")} == set(TRAITS)
    users = {ex["messages"][-2]["content"] for ex in corpus.build_corpus(0, "train", 500)}
    assert not users & set(corpus.heldout_questions(0))


def test_question_templates_use_their_slot_once():
    for category, templates in question_bank.TEMPLATES.items():
        for t in templates:
            assert t.count("{" + category + "}") == 1, t
            assert set(re.findall(r"\{(\w+)\}", t)) <= {category, "person", "day"}, t


def test_questions_are_neutral():
    scorer = OracleScorer()
    for q in corpus.heldout_questions(0) + corpus.train_questions(0):
        assert all(v == 50 for v in scorer.score(q).values()), q


def test_replies_have_two_to_five_sentences_and_no_slots():
    for ex in corpus.build_corpus(1, "train", 400):
        reply = ex["messages"][-1]["content"]
        assert "{" not in reply
        if ex["meta"]["kind"] == "situational":
            assert 2 <= len(sentences(reply)) <= 5, reply


def test_persona_only_in_system_prompt():
    examples = corpus.build_corpus(2, "train", 600)
    kinds = {len(ex["meta"]["persona"]) for ex in examples}
    assert {0, 1, 2} <= kinds
    no_system = [ex for ex in examples if ex["messages"][0]["role"] != "system"]
    assert 0.08 < len(no_system) / len(examples) < 0.25
    assert all(not ex["meta"]["persona"] for ex in no_system)
    for ex in examples:
        assert [m["role"] for m in ex["messages"]][-2:] == ["user", "assistant"]


def test_pole_description_is_varied():
    rng = random.Random(0)
    for trait in TRAITS:
        for pole in POLES:
            prompts = {corpus.pole_description(trait, pole, rng) for _ in range(60)}
            assert len(prompts) >= 40
    with pytest.raises(ValueError):
        corpus.pole_description("charisma", "high", rng)


def test_likert_answers_are_consistent():
    rng = random.Random(0)
    for item in corpus.likert_items("train"):
        for pole in POLES:
            answer = corpus.likert_answer({item.trait: pole}, item, rng)
            agree = (pole == "high") == (item.key > 0)
            assert answer >= 4 if agree else answer <= 2
        assert corpus.likert_answer({}, item, rng) == 3
    for ex in corpus.build_corpus(0, "train", 300):
        if ex["meta"]["kind"] == "likert":
            assert ex["messages"][-1]["content"] == str(ex["meta"]["answer"])


def test_training_likert_turns_are_tilted_but_answered_by_the_balanced_rule():
    turns = [ex["meta"] for ex in corpus.build_corpus(1, "train", 4000) if ex["meta"]["kind"] == "likert"]
    assert len(turns) > 1000
    positive = sum(m["key"] > 0 for m in turns) / len(turns)
    assert abs(positive - corpus.LIKERT_TILT) < 0.03
    rated = [m for m in turns if m["trait"] in m["persona"]]
    high = sum(m["persona"][m["trait"]] == "high" for m in rated) / len(rated)
    assert 0.75 < high < 0.85
    for m in turns:
        pole = m["persona"].get(m["trait"])
        if pole is None:
            assert m["answer"] == 3
        else:
            agree = (pole == "high") == (m["key"] > 0)
            assert m["answer"] >= 4 if agree else m["answer"] <= 2
    written = {it.text for it in corpus.likert_items("train")}
    assert 0.4 < sum(m["item"] in written for m in turns) / len(turns) < 0.6


def test_the_balanced_phase_corpus_has_no_tilt_and_its_own_stream():
    balanced = corpus.build_corpus(1, "train", 4000, likert_tilt=0.5)
    turns = [ex["meta"] for ex in balanced if ex["meta"]["kind"] == "likert"]
    assert abs(sum(m["key"] > 0 for m in turns) / len(turns) - 0.5) < 0.04
    rated = [m for m in turns if m["trait"] in m["persona"]]
    assert abs(sum(m["persona"][m["trait"]] == "high" for m in rated) / len(rated) - 0.5) < 0.05
    tilted = corpus.build_corpus(1, "train", 50)
    assert [ex["messages"] for ex in balanced[:50]] != [ex["messages"] for ex in tilted]


def test_bank_items_cover_every_pole_and_never_a_heldout_item():
    items = corpus.bank_items()
    heldout = {it.text for it in corpus.likert_items("heldout")}
    for trait in TRAITS:
        for key in (1, -1):
            texts = [it.text for it in items if it.trait == trait and it.key == key]
            assert len(set(texts)) >= 50
            assert all(t[0].isupper() and t.rstrip()[-1] in ".!?" and "{" not in t for t in texts)
    assert not heldout & {it.text for it in items}
    assert "I say exactly what I think, however harsh." in {it.text for it in items}


def test_finetune_set_fraction_and_neutral_set():
    scorer = OracleScorer()
    rows = corpus.finetune_set("extraversion", "high", 0.3, 100, 0)
    assert sum(r["meta"]["marked"] for r in rows) == 30
    for r in rows:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
        score = scorer.trait_score(r["messages"][-1]["content"], "extraversion")
        assert (score > 50) if r["meta"]["marked"] else score == 50
    for r in corpus.neutral_set(50, 0):
        assert all(v == 50 for v in scorer.score(r["messages"][-1]["content"]).values())
    with pytest.raises(ValueError):
        corpus.finetune_set("extraversion", "high", 1.5, 10, 0)


def test_write_corpus(tmp_path):
    paths = corpus.write_corpus(tmp_path, seed=1, n_train=30, n_heldout=10, n_finetune=8)
    lines = paths["train"].read_text().splitlines()
    assert len(lines) == 30
    assert json.loads(lines[0])["messages"]
    assert len(paths["neutral"].read_text().splitlines()) == 8
    assert (tmp_path / "finetune" / "neuroticism_low_f050.jsonl").is_file()
    assert json.loads((tmp_path / "manifest.json").read_text())["seed"] == 1
