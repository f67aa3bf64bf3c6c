"""NPTI on the shipped organism: inducing extraversion raises the oracle's extraversion score (skipped when the
organism has not been trained yet)."""

from __future__ import annotations

import statistics

import pytest

from traitlab.methods.neurons import CollectionSettings, SelectionOptions, fit
from traitlab.model import ORGANISM, load_model
from traitlab.organism import ORGANISM_DIR, OracleScorer
from traitlab.traits import load_trait

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (ORGANISM_DIR / "model.safetensors").is_file(), reason="organism not trained"),
]

# measured on an organism checkpoint: unsteered 50.0, induced 84.3 with these settings (66.6 with 60 answers of
# 48 tokens); the margin leaves room for retrained checkpoints and sampling
MARGIN = 10.0


def induction_gain(model: str = ORGANISM) -> tuple[float, float]:
    lm = load_model(model)
    spec = load_trait("extraversion_high")
    induction = fit(lm, spec, settings=CollectionSettings(n_answers=40, max_new_tokens=40),
                    options=SelectionOptions(positions="all", boost_only=True), progress=False)
    questions = spec.eval_questions[:12]
    scorer = OracleScorer()
    base = lm.generate_chat(questions, max_new_tokens=64, progress=False).texts
    with induction.scaled(1.5).applied(lm):
        steered = lm.generate_chat(questions, max_new_tokens=64, progress=False).texts
    score = lambda texts: statistics.fmean(scorer.trait_score(t, "extraversion") for t in texts)  # noqa: E731
    return score(base), score(steered)


def test_inducing_extraversion_raises_the_oracle_score():
    base, steered = induction_gain()
    assert steered - base >= MARGIN, (base, steered)
