"""Scoring math on hand-computed cases: expected labels, reverse keying, both option orders, α, judge
aggregation, dose–response statistics."""

from __future__ import annotations

import math

import pytest
import torch

from traitlab.evaluation import questionnaire as qmod
from traitlab.evaluation import scoring
from traitlab.evaluation.dose import dose_response
from traitlab.evaluation.forward import label_token_ids
from traitlab.evaluation.questionnaire import Administration, Inventory, Item, QuestionnaireResult, administer


def test_expected_label_renormalises_over_labels():
    value, mass = scoring.expected_label({1: 0.1, 2: 0.1, 3: 0.0, 4: 0.2, 5: 0.1})
    assert mass == pytest.approx(0.5)
    assert value == pytest.approx((0.1 + 0.2 + 0.8 + 0.5) / 0.5)  # 3.2
    assert scoring.expected_label({1: 0.0, 2: 0.0}) == (None, 0.0)


def test_reverse_keying():
    assert scoring.keyed(4.2, 1) == 4.2
    assert scoring.keyed(4.2, -1) == pytest.approx(1.8)
    assert scoring.keyed(1, -1) == 5
    with pytest.raises(ValueError):
        scoring.keyed(3, 0)


def test_cronbach_alpha_by_hand():
    # 4 respondents × 3 items; item variances 1.0, 0.9167, 1.6667 (n-1); totals 6, 9, 12, 13 → var 10.0
    matrix = [[1, 2, 3], [3, 3, 3], [4, 4, 4], [5, 4, 4]]
    item_var = sum(scoring.variance([r[j] for r in matrix]) for j in range(3))
    total_var = scoring.variance([sum(r) for r in matrix])
    expected = 3 / 2 * (1 - item_var / total_var)
    assert scoring.cronbach_alpha(matrix) == pytest.approx(expected)
    assert scoring.cronbach_alpha([[1, 2, 3]]) is None
    assert scoring.cronbach_alpha([[3, 3], [3, 3]]) is None
    assert scoring.cronbach_alpha([[3.0, 3.01], [3.01, 3.0], [3.02, 3.0]]) is None  # respondents all but equal


def test_weighted_integer_score_and_low_mass():
    top = [("80", math.log(0.5)), (" 90", math.log(0.3)), ("Hello", math.log(0.2))]
    score, mass = scoring.weighted_integer_score(top)
    assert mass == pytest.approx(0.8)
    assert score == pytest.approx((80 * 0.5 + 90 * 0.3) / 0.8)
    low = [("Sure", math.log(0.8)), ("7", math.log(0.1)), ("8", math.log(0.1))]
    assert scoring.weighted_integer_score(low) == (None, pytest.approx(0.2))
    assert scoring.weighted_integer_score([("101", 0.0), ("-5", 0.0)])[0] is None
    split = [("4", math.log(0.2)), (" 4", math.log(0.2))]  # two tokenisations of one number add up
    assert scoring.weighted_integer_score(split) == (pytest.approx(4.0), pytest.approx(0.4))


def test_parse_first_integer():
    assert scoring.parse_first_integer("Score: 85/100") == 85
    assert scoring.parse_first_integer("I'd say 4.") == 4
    assert scoring.parse_first_integer("4", 1, 5) == 4
    assert scoring.parse_first_integer("7", 1, 5) is None
    assert scoring.parse_first_integer("REFUSAL") is None


def test_correlations_and_monotonicity():
    assert scoring.pearson([0, 1, 2], [1, 3, 5]) == pytest.approx(1.0)
    assert scoring.spearman([0, 1, 2, 3], [1, 10, 100, 1000]) == pytest.approx(1.0)
    assert scoring.spearman([0, 1, 2], [3, 2, 1]) == pytest.approx(-1.0)
    assert scoring.pearson([1, 1], [2, 3]) is None
    assert scoring.monotonicity([0, 1, 2, 3], [10, 20, 15, 30]) == pytest.approx(2 / 3)
    assert scoring.monotonicity([3, 2, 1, 0], [30, 20, 10, 0]) == 1.0


def test_dose_response_breakdown_scale():
    curve = dose_response([-2, 0, 1, 2, 4], [10, 50, 60, 80, 90], [40, 95, 90, 70, 30], threshold=50)
    assert curve["pearson_r"] > 0.9 and curve["spearman_rho"] == pytest.approx(1.0)
    assert curve["monotonicity"] == 1.0
    assert curve["breakdown_scale"] == -2.0  # smallest |scale| with coherence < 50
    assert dose_response([0, 1], [1, 2], [90, 90])["breakdown_scale"] is None


def test_result_scores_with_reverse_keys_by_hand():
    items = [Item("a", "extraversion", 1, "f1"), Item("b", "extraversion", -1, "f1"),
             Item("c", "extraversion", 1, "f2"), Item("d", "neuroticism", -1)]
    raw = [[4.0, 2.0, 5.0, 1.0], [5.0, 1.0, 4.0, 2.0]]
    result = QuestionnaireResult("t", "logprob", items, ["r0", "r1"], raw)
    # keyed: r0 = [4, 4, 5, 5], r1 = [5, 5, 4, 4]; item means 4.5, 4.5, 4.5, 4.5
    ext = result.traits["extraversion"]
    assert ext.score == pytest.approx(4.5) and ext.sd == pytest.approx(0.0) and ext.n_items == 3
    assert ext.facets == {"f1": pytest.approx(4.5), "f2": pytest.approx(4.5)}
    assert result.traits["neuroticism"].score == pytest.approx(4.5)
    # α over respondents r0 = [4, 4, 5], r1 = [5, 5, 4]: item vars 0.5 each, totals 13, 14 → var 0.5;
    # α = 3/2 · (1 − 1.5/0.5) = −3 (the items disagree across respondents)
    assert ext.alpha == pytest.approx(-3.0)
    partial = QuestionnaireResult("t", "generate", items[:2], ["r0", "r1"], [[4.0, None], [5.0, 1.0]], None, 1)
    assert partial.traits["extraversion"].score == pytest.approx((4.5 + 5.0) / 2)  # b: only r1, 6 − 1 = 5
    assert partial.parse_failure_rate == pytest.approx(0.25)


def _fake_logprobs(forward: dict[int, float], reverse: dict[int, float]):
    """A stand-in for next_token_logprobs: a fixed distribution per option order, read from the prompt."""

    def fake(lm, ids, batch_size, progress, description, columns):
        variants = label_token_ids(lm.tokenizer, (1, 2, 3, 4, 5))
        out = torch.full((len(ids), len(lm.tokenizer)), -30.0)
        for row, prompt in enumerate(ids):
            text = lm.tokenizer.decode(prompt)
            dist = forward if qmod.SCALES["forward"] in text else reverse
            other = 1.0 - sum(dist.values())
            out[row, 0] = math.log(other) if other > 0 else -30.0  # mass off the labels is ignored
            for label, p in dist.items():
                out[row, variants[label][0]] = math.log(p)
        return out[:, columns]

    return fake


@pytest.mark.parametrize("reverse, expected_plus", [("listing", (3.8 + 2.0) / 2), ("labels", (3.8 + 4.0) / 2),
                                                     ("none", 3.8)])
def test_administer_both_orders_by_hand(llama, monkeypatch, reverse, expected_plus):
    monkeypatch.setattr(qmod, "next_token_logprobs", _fake_logprobs({4: 0.3, 5: 0.1, 2: 0.1}, {2: 0.6}))
    inv = Inventory("hand", [Item("I like parties.", "extraversion", 1), Item("I like quiet.", "extraversion", -1)])
    result = administer(llama, inv, administration=Administration(reverse=reverse))
    # forward: (4·0.3 + 5·0.1 + 2·0.1) / 0.5 = 3.8; reversed listing: 2; reversed labels: 6 − 2 = 4
    assert len(result.respondents) == 2 * len(Administration(reverse=reverse).orders)
    assert result.item_means()[0] == pytest.approx(expected_plus)
    assert result.item_means()[1] == pytest.approx(6 - expected_plus)
    assert result.traits["extraversion"].score == pytest.approx((expected_plus + 6 - expected_plus) / 2)
    assert result.label_mass == pytest.approx(0.5 if reverse == "none" else 0.55)


def test_label_variants_add_up():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(alphabet)}
    merges = []
    for d in "12345":
        vocab[f"Ġ{d}"] = len(vocab)
        merges.append(("Ġ", d))
    raw = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw)
    ids = label_token_ids(tok, (1, 2, 3, 4, 5))
    assert all(len(v) == 2 for v in ids.values())
    assert {tok.decode([i]) for i in ids[4]} == {"4", " 4"}
