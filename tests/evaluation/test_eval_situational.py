"""Situational questions (sets, PersonalityBench loader, N answers judged) and capability on tiny models."""

from __future__ import annotations

import json

import pytest

from traitlab.errors import ConfigError
from traitlab.evaluation.capability import load_mcq, mcq_accuracy
from traitlab.evaluation.judges import OracleJudge, PerplexityCoherenceJudge
from traitlab.evaluation.situational import evaluate_situational, load_personalitybench, question_set
from traitlab.methods import PromptIntervention
from traitlab.traits import TraitSpec


def _spec(**overrides):
    fields = dict(name="t_high", trait="extraversion", pole="high", instruction=[{"pos": "Be loud.", "neg": "Hush."}],
                  questions=["A?", "B?"], eval_questions=["C?", "D?", "E?"], eval_prompt="{question} {answer}")
    return TraitSpec.model_validate({**fields, **overrides})


def test_question_sets(tmp_path):
    assert question_set(_spec()) == ["C?", "D?", "E?"]
    assert question_set(_spec(eval_questions=[]), n=1) == ["A?"]
    folder = tmp_path / "pb"
    folder.mkdir()
    (folder / "Extraversion.json").write_text('{"question": "Party?"}\n{"question": "Crowd?"}\n')
    assert question_set(_spec(), folder) == ["Party?", "Crowd?"]
    assert load_personalitybench(folder / "Extraversion.json") == {"extraversion": ["Party?", "Crowd?"]}
    plain = tmp_path / "q.json"
    plain.write_text(json.dumps(["One?", {"question": "Two?"}]))
    assert question_set(_spec(), plain, n=5) == ["One?", "Two?"]
    with pytest.raises(ConfigError, match="no questions for 'openness'"):
        question_set(_spec(trait="openness"), folder)
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(ConfigError, match="line 1"):
        question_set(_spec(), tmp_path / "bad.jsonl")


def test_personalitybench_copy(shared_data):
    folder = shared_data / "npti_personalitybench" / "test"
    if not folder.is_dir():
        pytest.skip("PersonalityBench copy absent")
    sets = load_personalitybench(folder)
    assert set(sets) == {"openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism"}
    assert len(sets["neuroticism"]) == 100 and all(isinstance(q, str) and q for q in sets["openness"])


def test_n_answers_judged_for_trait_coherence_and_fluency(llama):
    coherence = PerplexityCoherenceJudge(llama)
    result = evaluate_situational(llama, ["Hi?", "Plans?"], OracleJudge("extraversion", "low"), "",
                                  trait="extraversion", pole="low", coherence_judge=coherence, samples=3,
                                  max_new_tokens=5, seed=1, intervention=PromptIntervention("Be loud."))
    assert result.questions == ["Hi?"] * 3 + ["Plans?"] * 3 and len(result.answers) == 6
    assert len(set(result.answers)) > 1  # sampled, not greedy
    assert all(v == 50.0 for v in result.expression)  # random bytes carry no pole markers
    summary = result.summary()
    assert summary["expression_var"] == 0.0 and summary["perplexity"] > 1 and summary["n_answers"] == 6
    assert all(0 <= c <= 100 for c in result.coherence)
    again = evaluate_situational(llama, ["Hi?", "Plans?"], OracleJudge("extraversion", "low"), "",
                                 trait="extraversion", samples=3, max_new_tokens=5, seed=1,
                                 intervention=PromptIntervention("Be loud."))
    assert again.answers == result.answers  # seeded


def test_capability(llama, tmp_path):
    questions = load_mcq()
    assert len(questions) >= 30 and {q.answer for q in questions} == {0, 1, 2, 3}
    result = mcq_accuracy(llama, questions[:6], batch_size=5)
    assert 0 <= result["accuracy"] <= 1 and result["n"] == 6
    assert mcq_accuracy(llama, questions[:6], batch_size=1) == result
    bad = tmp_path / "bad.csv"
    bad.write_text("question,A,B,C,D,answer\nQ?,a,b,c,d,E\n")
    with pytest.raises(ConfigError, match="answer must be A, B, C or D"):
        load_mcq(bad)
