"""NPTI's plumbing on SmolLM2-135M-Instruct (issue 22): statistics on generated tokens under the pole prompts,
the δ-threshold selection and the induction, with tiny settings (one pole, 4 questions, greedy). The quality
figures are benchmarks/npti_smollm2.py's."""

from __future__ import annotations

import torch

from traitlab.methods.neurons import CollectionSettings, SelectionOptions, f_delta, fit
from traitlab.traits import load_trait

SETTINGS = CollectionSettings(n_answers=8, max_new_tokens=16, temperature=0.0, seed=0, batch_size=8)


def test_npti_statistics_selection_and_induction_on_smollm2(smollm2):
    spec = load_trait("extraversion_high")
    induction = fit(smollm2, spec, settings=SETTINGS, questions=spec.questions[:4], progress=False)
    stats = induction.stats
    assert stats.shape == (30, 1536)  # every neuron of every block, at act_fn(gate_proj(x))
    # generated tokens only: at most 8 answers × 16 tokens per pole
    assert 0 < stats.pos.tokens <= 128 and 0 < stats.neg.tokens <= 128
    assert (stats.pos.tokens, stats.neg.tokens) == EXPECTED_TOKENS
    delta = stats.delta("pos")
    boosted = sum(len(i) for i, _ in induction.boosts.values())
    clamped = sum(len(i) for i in induction.clamps.values())
    assert (boosted, clamped) == (int((delta >= 0.1).sum()), int((delta <= -0.1).sum())) == EXPECTED_COUNTS
    for block, (index, boost) in induction.boosts.items():  # boost = a95 (target pole, ≥ 0) · f(δ)
        expected = stats.pos.a95[block, index].clamp(min=0) * f_delta(delta[block, index])
        torch.testing.assert_close(boost, expected)
    # a stricter threshold re-derives a subset from the same statistics
    strict = induction.with_options(threshold=0.3)
    assert sum(len(i) for i, _ in strict.boosts.values()) < boosted
    assert isinstance(strict.options, SelectionOptions) and strict.options.threshold == 0.3

    questions = spec.eval_questions[:4]
    plain = smollm2.generate_chat(questions, max_new_tokens=24, progress=False).texts
    rows = [q for q in questions for _ in range(2)]
    with induction.applied(smollm2, row_scale=torch.tensor([0.0, 4.0] * 4)):
        steered = smollm2.generate_chat(rows, max_new_tokens=24, batch_size=8, progress=False).texts
    assert steered[0::2] == plain  # γ = 0 rows are untouched
    changed = sum(a != b for a, b in zip(steered[1::2], plain, strict=True))
    assert changed >= EXPECTED_MIN_CHANGED  # γ = 4 rewrites the replies


EXPECTED_TOKENS = (120, 120)
EXPECTED_COUNTS = (1324, 1339)
EXPECTED_MIN_CHANGED = 3
