"""Persona vectors on SmolLM2-135M-Instruct with tiny settings (issue 22): one pole (extraversion high), its first
short prompt pair, 4 extraction questions, greedy 24-token rollouts, the shipped embedding judge's filter, all
layers and three variants. Then the paper's monitoring claim in small: before any reply token, the last prompt
token under the extraverted prompt projects further along v̂ (layer 20) than under the introverted one, on 4
held-out questions, by a stated margin; and steering with the vector changes every reply. The full measurement
(ten poles, 40 held-out questions, sweep, dose-response, inhibition) is ``benchmarks/persona_vectors_smollm2.py``
(docs/persona-vectors.md, "On SmolLM2-135M-Instruct")."""

from __future__ import annotations

import torch

from traitlab.evaluation.embedding_judge import TraitView, default_judge
from traitlab.methods.persona_vectors import VARIANTS, ExtractionSettings, extract
from traitlab.monitor import project_conversations
from traitlab.traits import load_trait

LAYER = 20
MARGIN = 1.0  # projection units; measured margins 1.26, 4.05, 3.47, 3.06 (|v_20| ≈ 18)


def test_short_prompt_vector_monitors_and_steers_smollm2(smollm2):
    spec = load_trait("extraversion_high").with_short_instructions()
    assert len(spec.instruction) == 3 and spec.instruction[0].pos.startswith("You are very outgoing")
    spec = spec.model_copy(update={"questions": spec.questions[:4], "instruction": spec.instruction[:1]})
    judge = TraitView(default_judge(), "extraversion")
    settings = ExtractionSettings(temperature=0.0, max_new_tokens=24, min_pairs=1, batch_size=32)
    vector = extract(smollm2, spec, judge, settings)

    assert (vector.extra["pairs_total"], vector.extra["pairs_kept"]) == (4, 2)
    assert set(VARIANTS) <= set(vector.directions)
    assert all(t.shape == (31, 576) for t in vector.directions.values())
    assert abs(vector.extra["separation_per_layer"][LAYER] - 2.689) < 0.01

    questions = spec.eval_questions[:4]
    v = vector.direction(LAYER)

    def projections(system: str) -> torch.Tensor:
        conversations = [[{"role": "system", "content": system}, {"role": "user", "content": q}] for q in questions]
        return torch.tensor([r["last_prompt_projection"]
                             for r in project_conversations(smollm2, v, LAYER, conversations)])

    gap = projections(spec.instruction[0].pos) - projections(spec.instruction[0].neg)
    assert (gap > MARGIN).all(), gap

    base = smollm2.generate_chat(questions, max_new_tokens=24, progress=False).texts
    with vector.at(LAYER).scaled(2.0).applied(smollm2):
        steered = smollm2.generate_chat(questions, max_new_tokens=24, progress=False).texts
    assert all(a != b for a, b in zip(base, steered, strict=True))
    assert base[1].startswith("With a week off, I'd start by reviewing my current schedule")
    assert steered[1].startswith("With a week on the clock, I'd start by making sure I'm on my game")
