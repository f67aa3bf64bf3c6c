"""The harness on the persona organism: persona prompts move the self-report by ≥ 1.5 points between poles of
every trait, the oracle judge separates the poles' situational answers, and the default suite runs."""

from __future__ import annotations

import random

import pytest

from traitlab.organism import ORGANISM_DIR, TRAITS, pole_description

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (ORGANISM_DIR / "model.safetensors").is_file(),
                       reason=f"the persona organism is not trained yet ({ORGANISM_DIR} has no model.safetensors)"),
]


@pytest.fixture(scope="module")
def organism():
    from traitlab.model import ORGANISM, load_model

    return load_model(ORGANISM)


def _persona(trait: str, pole: str, k: int) -> str:
    return pole_description(trait, pole, random.Random(f"eval-test:{trait}:{pole}:{k}"))


def _pole_gap(organism, inventory, trait: str) -> tuple[float, dict[str, float]]:
    from traitlab.evaluation.questionnaire import administer

    score = {pole: sum(administer(organism, inventory, system=_persona(trait, pole, k)).scores()[trait]
                       for k in range(2)) / 2 for pole in ("high", "low")}
    return score["high"] - score["low"], score


@pytest.mark.parametrize("trait", TRAITS)
def test_persona_prompted_questionnaire_separates_poles(organism, trait):
    from traitlab.evaluation.questionnaire import load_inventory

    gap, score = _pole_gap(organism, load_inventory().subset([trait]), trait)
    if gap < 1.5:
        # Tell a harness problem from an organism that does not generalise to unseen items: on the Likert items
        # the organism was trained on, the same administration must separate the poles by 1.5.
        own = load_inventory("persona-tiny").subset([trait], max_per_trait=12)
        own_gap, own_score = _pole_gap(organism, own, trait)
        assert own_gap >= 1.5, ("the harness does not separate the poles even on the organism's training items",
                                own_score)
        pytest.xfail(f"the organism reads unseen items too weakly: traitlab inventory high - low = {gap:.2f} "
                     f"({score}); its own training items {own_gap:.2f}")
    assert gap >= 1.5, score


def test_oracle_judge_separates_situational_answers(organism):
    from traitlab.evaluation.judges import OracleJudge
    from traitlab.evaluation.situational import evaluate_situational, question_set
    from traitlab.methods import PromptIntervention
    from traitlab.traits import load_trait

    for trait in TRAITS:
        questions = question_set(load_trait(f"{trait}_high"), n=6)
        means = {}
        for pole in ("high", "low"):
            result = evaluate_situational(organism, questions, OracleJudge(trait, "high"), "", trait=trait,
                                          intervention=PromptIntervention(_persona(trait, pole, 0)),
                                          fluency=False, max_new_tokens=96)
            means[pole] = result.summary()["expression_mean"]
        assert means["high"] - means["low"] >= 30, (trait, means)


def test_default_suite_on_the_organism(organism):
    from traitlab.evaluation.config import Evaluations, JudgeConfig
    from traitlab.evaluation.suite import Judges, evaluate, headline
    from traitlab.traits import load_trait

    judges = Judges.from_config(JudgeConfig(), organism)
    assert judges.kind == "oracle"
    spec = load_trait("extraversion_high")
    evaluations = Evaluations.model_validate({"questionnaire": {}, "situational": {"n_questions": 4},
                                              "coherence": {}, "capability": {"max_questions": 8}})
    result = evaluate(organism, None, [spec], evaluations, judges)
    row = headline(result, spec)
    assert 1 <= row["questionnaire"] <= 5 and 0 <= row["trait_expression"] <= 100
    assert row["coherence"] > 50 and row["perplexity"] < 20 and "neutral_perplexity" in row
    assert result["questionnaire"]["label_mass"] > 0.9  # the organism answers self-reports with a digit
