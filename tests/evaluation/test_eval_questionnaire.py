"""Inventories, loaders and administration on tiny models."""

from __future__ import annotations

import pytest

from traitlab.errors import ConfigError
from traitlab.evaluation.questionnaire import (
    BIG_FIVE,
    Administration,
    Inventory,
    Item,
    administer,
    load_inventory,
)
from traitlab.methods import PromptIntervention


def test_builtin_inventory_shape():
    inv = load_inventory()
    assert len(inv.items) >= 50 and inv.traits == list(BIG_FIVE)
    reverse = sum(item.key == -1 for item in inv.items)
    assert 0.4 <= reverse / len(inv.items) <= 0.6
    for trait in BIG_FIVE:
        facets = {item.facet for item in inv.items if item.trait == trait}
        assert len(facets) >= 4 and None not in facets
    assert len({item.text for item in inv.items}) == len(inv.items)


@pytest.mark.parametrize("path, kwargs, n, minus", [
    ("ipip_neo_120/questions.json", {}, 120, 55),
    ("ipip_neo_300/questions.json", {}, 300, 148),
    ("mpi/mpi_120.csv", {}, 120, 55),
    ("psychobench/questionnaires.json", {}, 44, 16),
    ("big5chat/questionnaire_ipip_neo.json", {"name": "IPIP-NEO"}, 120, 55),
])
def test_external_loaders(shared_data, path, kwargs, n, minus):
    if not (shared_data / path).is_file():
        pytest.skip(f"{path} absent")
    inv = load_inventory(shared_data / path, **kwargs)
    assert len(inv.items) == n and sum(i.key == -1 for i in inv.items) == minus
    assert set(inv.traits) == set(BIG_FIVE)


def test_plain_csv_and_errors(tmp_path):
    good = tmp_path / "mine.csv"
    good.write_text("text,trait,key,facet\nI love parties.,extraversion,1,fun\nI avoid crowds.,E,-1,\n")
    inv = load_inventory(good)
    assert [(i.trait, i.key, i.facet) for i in inv.items] == [("extraversion", 1, "fun"), ("extraversion", -1, None)]
    bad = tmp_path / "bad.csv"
    bad.write_text("statement,trait\nx,extraversion\n")
    with pytest.raises(ConfigError, match="text,trait,key"):
        load_inventory(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("text,trait,key\nx,charisma,1\n")
    with pytest.raises(ConfigError, match="unknown trait 'charisma'"):
        load_inventory(wrong)
    with pytest.raises(ConfigError, match="not found"):
        load_inventory(tmp_path / "none.json")


def test_batched_equals_one_by_one(llama):
    inv = load_inventory().subset(max_per_trait=2)
    batched = administer(llama, inv, batch_size=64)
    single = administer(llama, inv, batch_size=1)
    for a, b in zip(batched.raw, single.raw, strict=True):
        assert a == pytest.approx(b, abs=1e-4)
    assert len(batched.respondents) == 4 and batched.label_mass is not None


def test_persona_prompt_and_intervention_change_the_prompt(llama, monkeypatch):
    seen = []
    from traitlab.evaluation import questionnaire as qmod

    real = qmod.next_token_logprobs

    def spy(lm, ids, *args, **kwargs):
        seen.append(lm.tokenizer.decode(ids[0]))
        return real(lm, ids, *args, **kwargs)

    monkeypatch.setattr(qmod, "next_token_logprobs", spy)
    inv = Inventory("one", [Item("I like parties.", "extraversion", 1)])
    administer(llama, inv, system="You are shy.")
    administer(llama, inv, intervention=PromptIntervention("You are loud."))
    assert "You are shy." in seen[0] and "You are loud." in seen[1]
    assert "I like parties." in seen[0] and "1 (very inaccurate) to 5 (very accurate)" in seen[0]


class FakeResponder:
    """Answers '4' to forward-order prompts, '2' to reversed ones, and nonsense to every third call."""

    def __init__(self):
        self.calls = 0

    def respond(self, conversations, max_tokens, temperature, seed):
        out = []
        for conv in conversations:
            self.calls += 1
            text = conv[-1]["content"]
            out.append("hmm" if self.calls % 3 == 0 else "4" if "1 (very inaccurate)" in text else "I pick 2.")
        return out


def test_generation_scoring_with_parse_failures():
    inv = Inventory("gen", [Item("a", "openness", 1), Item("b", "openness", -1), Item("c", "openness", 1)])
    result = administer(FakeResponder(), inv, scoring_mode="generate",
                        administration=Administration(reverse="labels"))
    # 2 wordings × 2 orders × 3 items = 12 answers, every third unparsable
    assert result.n_answers == 12 and result.parse_failures == 4
    assert result.parse_failure_rate == pytest.approx(1 / 3)
    # forward answers 4, reversed-label answers 2 → 6 − 2 = 4: every parsed answer is 4 on the forward scale
    assert all(v in (None, 4.0) for row in result.raw for v in row)
    with pytest.raises(ConfigError, match="local model"):
        administer(FakeResponder(), inv)


def test_generation_scoring_on_a_local_model(llama):
    inv = Inventory("gen", [Item("I like parties.", "extraversion", 1)])
    result = administer(llama, inv, scoring_mode="generate", max_tokens=2)
    assert result.scoring == "generate" and result.n_answers == 4
    assert 0.0 <= result.parse_failure_rate <= 1.0
