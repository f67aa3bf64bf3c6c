"""Persona-vector extraction, steering and sweep selection at tiny scale."""

from __future__ import annotations

import pytest
import torch

from traitlab import load_intervention
from traitlab.errors import ConfigError
from traitlab.methods.persona_sweep import SweepCell, SweepResult, apply_sweep, best_cell, sweep
from traitlab.methods.persona_vectors import ExtractionSettings, PersonaVector, extract, rollouts
from traitlab.model import capture_residual, teacher_forced
from traitlab.traits import TraitSpec

SPEC = TraitSpec(name="loud", instruction=[{"pos": "Be loud.", "neg": "Be quiet."},
                                           {"pos": "Shout always.", "neg": "Whisper always."}],
                 questions=["hi", "how are you?", "what now?"], eval_questions=["tell me a story", "why?"],
                 eval_prompt="Q: {question} A: {answer}")
SETTINGS = ExtractionSettings(max_new_tokens=6, min_pairs=2, temperature=1.0, seed=3)


class SplitJudge:
    """Scores the positive batch ``pos`` and the negative batch ``neg`` (calls alternate pos, neg)."""

    def __init__(self, pos: float = 80.0, neg: float = 20.0) -> None:
        self.values, self.calls = [pos, neg], 0

    def score_many(self, triples):
        value = self.values[self.calls % 2]
        self.calls += 1
        return [value] * len(triples)


def _reference_means(lm, generation, rows):
    """persona_vectors' own method: one example per forward with output_hidden_states=True."""
    response_avg, prompt_avg, prompt_last = [], [], []
    with torch.no_grad():
        for row in rows:
            prompt, response = generation.prompt_ids[row], generation.response_ids[row]
            out = lm.model(torch.tensor([prompt + response]), output_hidden_states=True)
            hidden = torch.stack(out.hidden_states[:-1])[:, 0]  # [L, T, d], layers 0..L-1
            response_avg.append(hidden[:, len(prompt):].mean(1))
            prompt_avg.append(hidden[:, :len(prompt)].mean(1))
            prompt_last.append(hidden[:, len(prompt) - 1])
    return {"response_avg": torch.stack(response_avg).mean(0), "prompt_avg": torch.stack(prompt_avg).mean(0),
            "prompt_last": torch.stack(prompt_last).mean(0)}


def test_extraction_matches_the_per_example_reference(llama):
    vector = extract(llama, SPEC, SplitJudge(), SETTINGS)
    data = rollouts(llama, SPEC, SplitJudge(), SETTINGS)
    keep = data.kept(SETTINGS)
    assert vector.extra["pairs_kept"] == len(keep) == 6
    pos, neg = _reference_means(llama, data.pos, keep), _reference_means(llama, data.neg, keep)
    for variant in ("response_avg", "prompt_avg", "prompt_last"):
        expected = pos[variant] - neg[variant]
        torch.testing.assert_close(vector.directions[variant][:-1], expected, rtol=0, atol=1e-5)
    assert vector.directions["response_avg"].shape == (llama.num_layers + 1, llama.hidden_size)
    assert 1 <= next(iter(vector.vectors)) < llama.num_layers
    assert len(vector.extra["separation_per_layer"]) == llama.num_layers + 1


def test_too_few_surviving_pairs_is_a_clear_error(llama):
    with pytest.raises(ConfigError, match=r"only 0 of 6 answer pairs for 'loud' passed the filter"):
        extract(llama, SPEC, SplitJudge(pos=40, neg=20), SETTINGS)
    with pytest.raises(ConfigError, match="coherence ≥ 50"):
        extract(llama, SPEC, SplitJudge(), SETTINGS, coherence_judge=SplitJudge(pos=10, neg=10))


def test_steering_adds_alpha_v_at_the_chosen_layer_and_round_trips(llama, tmp_path):
    vector = extract(llama, SPEC, SplitJudge(), SETTINGS).at(2, positions="all").scaled(3.0)
    ids = torch.randint(0, 256, (1, 6))
    mask = torch.ones_like(ids)
    with capture_residual(llama, [2], keep_tokens=True) as base:
        teacher_forced(llama, ids, mask)
    with vector.applied(llama), capture_residual(llama, [2], keep_tokens=True) as steered:
        teacher_forced(llama, ids, mask)
    torch.testing.assert_close(steered.tokens(2)[0], base.tokens(2)[0] + 3.0 * vector.direction(2), rtol=0,
                               atol=1e-6)
    loaded = load_intervention(vector.save(tmp_path / "loud.tl.safetensors"), llama)
    assert isinstance(loaded, PersonaVector) and loaded.scale == 3.0 and list(loaded.vectors) == [2]
    torch.testing.assert_close(loaded.directions["prompt_last"], vector.directions["prompt_last"])
    with loaded.applied(llama), capture_residual(llama, [2], keep_tokens=True) as again:
        teacher_forced(llama, ids, mask)
    assert torch.equal(again.tokens(2)[0], steered.tokens(2)[0])
    ablated = vector.at(mode="ablate").scaled(1 / 3.0)
    with ablated.applied(llama), capture_residual(llama, [2], keep_tokens=True) as removed:
        teacher_forced(llama, ids, mask)
    unit = vector.direction(2) / vector.direction(2).norm()
    assert (removed.tokens(2)[0] @ unit).abs().max() < 1e-4


def test_best_cell_respects_coherence():
    cells = [SweepCell(1, 2.0, 90.0, 30.0, 5), SweepCell(2, 2.0, 70.0, 80.0, 5), SweepCell(3, 1.0, 70.0, 90.0, 5)]
    assert best_cell(cells, 50.0) == cells[2]
    assert best_cell(cells, 10.0) == cells[0]
    assert best_cell(cells, 95.0) == cells[0]  # none coherent enough: the best trait score overall


class LengthJudge:
    def score(self, question, answer, rubric):
        return float(len(answer))


def test_sweep_runs_one_batch_per_layer_and_records_the_choice(llama):
    vector = extract(llama, SPEC, SplitJudge(), SETTINGS)
    result = sweep(llama, vector, SPEC, LengthJudge(), layers=[1, 2], coefs=[2.0, 8.0], max_new_tokens=5)
    assert [(c.layer, c.coef) for c in result.cells] == [(1, 2.0), (1, 8.0), (2, 2.0), (2, 8.0)]
    assert result.best == max(result.cells, key=lambda c: (c.trait, -abs(c.coef)))
    chosen = apply_sweep(vector, result)
    assert list(chosen.vectors) == [result.best.layer] and chosen.scale == result.best.coef
    assert chosen.extra["sweep"]["plot_png_base64"].startswith("iVBOR")
    assert len(chosen.extra["sweep"]["table"]) == 4


def test_sweep_per_row_coefficients_equal_separate_runs(llama):
    vector = extract(llama, SPEC, SplitJudge(), SETTINGS)
    seen: list[list[str]] = []

    class Recorder:
        def score_many(self, triples):
            seen.append([answer for _, answer, _ in triples])
            return [0.0] * len(triples)

    sweep(llama, vector, SPEC, Recorder(), layers=[2], coefs=[6.0], max_new_tokens=5)
    batched = seen[0]
    with vector.at(2).scaled(6.0).applied(llama):
        alone = llama.generate_chat(SPEC.eval_questions, max_new_tokens=5).texts
    assert batched[1::2] == alone
    assert batched[0::2] == llama.generate_chat(SPEC.eval_questions, max_new_tokens=5).texts


def test_sweep_result_table_shape():
    result = SweepResult([SweepCell(1, 1.0, 60.0, None, 3)], SweepCell(1, 1.0, 60.0, None, 3), 50.0, 50.0)
    assert result.table() == [{"layer": 1, "coef": 1.0, "trait": 60.0, "coherence": None, "n": 3,
                               "variant": "response_avg", "positions": "response"}]


def test_sweep_over_variants_and_positions_steers_each_cell_as_chosen(llama):
    vector = extract(llama, SPEC, SplitJudge(), SETTINGS)
    seen: list[list[str]] = []

    class Recorder:
        def score_many(self, triples):
            seen.append([answer for _, answer, _ in triples])
            return [float(len(seen))] * len(triples)  # later runs score higher: the last cell wins

    result = sweep(llama, vector, SPEC, Recorder(), layers=[1, 2], coefs=[6.0], max_new_tokens=5,
                   variants=["response_avg", "prompt_avg"], positions=["response", "prompt"])
    assert [(c.variant, c.positions, c.layer) for c in result.cells] == [
        (v, p, layer) for v in ("response_avg", "prompt_avg") for p in ("response", "prompt") for layer in (1, 2)]
    with vector.at(2, variant="prompt_avg", positions="prompt").scaled(6.0).applied(llama):
        alone = llama.generate_chat(SPEC.eval_questions, max_new_tokens=5).texts
    assert seen[-1][1::2] == alone
    assert alone != seen[-1][0::2]  # steering the prompt changed the greedy answers
    chosen = apply_sweep(vector, result, with_plot=False)
    assert (chosen.variant, chosen.positions, list(chosen.vectors)) == ("prompt_avg", "prompt", [2])
    assert chosen.extra["sweep"]["best_variant"] == "prompt_avg"
    with pytest.raises(ConfigError, match="variant 'nope'"):
        sweep(llama, vector, SPEC, Recorder(), layers=[1], coefs=[1.0], variants=["nope"])
    with pytest.raises(ConfigError, match="positions 'middle'"):
        sweep(llama, vector, SPEC, Recorder(), layers=[1], coefs=[1.0], positions=["middle"])
