"""NPTI on the shipped organism: inducing introversion (low extraversion) lowers the oracle's extraversion score
(skipped when the organism has not been trained yet)."""

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

# measured on the shipped organism: unsteered 50.0, induced 31.0 with these settings (the paper's method, boosting
# the pole's neurons and silencing the opposite pole's, gamma 1); inducing the high pole moves it by 3 or less on
# this organism (`python -m benchmarks.npti_quality` has every pole)
MARGIN = 10.0


def induced_scores(model: str = ORGANISM) -> tuple[float, float]:
    lm = load_model(model)
    spec = load_trait("extraversion_low")
    induction = fit(lm, spec, settings=CollectionSettings(n_answers=40, max_new_tokens=40),
                    options=SelectionOptions(positions="all", boost_only=False), progress=False)
    questions = spec.eval_questions[:12]
    scorer = OracleScorer()
    base = lm.generate_chat(questions, max_new_tokens=64, progress=False).texts
    with induction.scaled(1.0).applied(lm):
        steered = lm.generate_chat(questions, max_new_tokens=64, progress=False).texts
    score = lambda texts: statistics.fmean(scorer.trait_score(t, "extraversion") for t in texts)  # noqa: E731
    return score(base), score(steered)


def test_inducing_introversion_lowers_the_oracle_score():
    base, steered = induced_scores()
    assert base - steered >= MARGIN, (base, steered)
