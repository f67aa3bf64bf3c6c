"""Issue 8 on the organism at small scale: a self-distilled personality vector scaled by α moves both the oracle
score of the organism's answers and its questionnaire score (the traitlab inventory, unseen in training)."""

from __future__ import annotations

import statistics

import pytest

from traitlab.evaluation.questionnaire import administer, load_inventory
from traitlab.finetune import FinetuneSettings, finetune
from traitlab.finetune.personality_data import self_distill
from traitlab.methods.merging import vector_from_models
from traitlab.model import load_model
from traitlab.organism import OracleScorer
from traitlab.organism.corpus import heldout_questions
from traitlab.traits import load_trait


@pytest.fixture(scope="module")
def organism():
    return load_model("traitlab/persona-tiny")


def test_personality_vector_scales_oracle_and_questionnaire_with_alpha(organism):
    """Neuroticism high, distilled with the organism's own training items as the self-report instrument:
    α = 0 → 1 → 2 raises the oracle score by ≥ 10 points at each step, and the traitlab
    inventory score by ≥ 0.3 from α = 0 to α = 2."""
    spec = load_trait("neuroticism_high")
    own_items = load_inventory("persona-tiny").subset(["neuroticism"])
    data = self_distill(organism, spec, n_per_question=4, max_new_tokens=64, self_report=own_items)
    tuned = finetune(organism, data, FinetuneSettings(method="full", epochs=1.0, learning_rate=2e-5, batch_size=8),
                     progress=False)
    vector = vector_from_models(organism, tuned, "neuroticism", "high")
    questions, scorer = heldout_questions(seed=11)[:16], OracleScorer()
    inventory = load_inventory("traitlab").subset(["neuroticism"])
    oracle, survey = [], []
    for alpha in (0.0, 1.0, 2.0):
        with vector.scaled(alpha).applied(organism):
            texts = organism.generate_chat(questions, max_new_tokens=64).texts
        oracle.append(statistics.fmean(scorer.trait_score(t, "neuroticism") for t in texts))
        survey.append(administer(organism, inventory, intervention=vector.scaled(alpha)).scores()["neuroticism"])
    assert oracle[1] >= oracle[0] + 10 and oracle[2] >= oracle[1] + 10, (oracle, survey)
    assert survey[2] >= survey[0] + 0.3 and survey[1] >= survey[0], (oracle, survey)
