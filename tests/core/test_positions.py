"""Position modes by phase: prefill vs decode, padding never touched, per-row parameters."""

from __future__ import annotations

import pytest
import torch

from traitlab.errors import ConfigError
from traitlab.model import PAD, PROMPT, RESPONSE, capture_residual, residual_add
from traitlab.model.generation import pack
from traitlab.model.positions import select_positions

PROMPTS = ["hi", "what do you do at weekends?", "tell me about a time you were angry"]


def test_select_positions_by_role():
    roles = torch.tensor([[PAD, PROMPT, PROMPT, RESPONSE, RESPONSE], [PROMPT, PROMPT, PROMPT, RESPONSE, PAD]])
    assert select_positions(roles, "all").tolist() == [[0, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert select_positions(roles, "prompt").tolist() == [[0, 1, 1, 0, 0], [1, 1, 1, 0, 0]]
    assert select_positions(roles, "response").tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 1, 0]]
    assert select_positions(roles, "response+last_prompt").tolist() == [[0, 0, 1, 1, 1], [0, 0, 1, 1, 0]]
    assert select_positions(roles, "last_prompt").tolist() == [[0, 0, 1, 0, 0], [0, 0, 1, 0, 0]]


def test_response_mode_leaves_prefill_logits_and_changes_generated(llama):
    prompt_ids = llama.encode(llama.render(PROMPTS))
    input_ids, attention_mask, _ = pack(prompt_ids, [[] for _ in PROMPTS], llama.tokenizer.pad_token_id)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    vector = torch.randn(llama.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = llama.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
        with residual_add(llama, 2, vector, 8.0, positions="response"), llama.hooks.tracking():
            prefill = llama.model(input_ids=input_ids, attention_mask=attention_mask,
                                  position_ids=position_ids).logits
    assert torch.equal(base, prefill)
    plain = llama.generate_chat(PROMPTS, max_new_tokens=8)
    with residual_add(llama, 2, vector, 8.0, positions="response"):
        steered = llama.generate_chat(PROMPTS, max_new_tokens=8)
    for before, after in zip(plain.response_ids, steered.response_ids, strict=True):
        assert before[0] == after[0]  # the first token comes from the prefill
        assert before != after


def test_padding_positions_are_never_steered(llama):
    prompt_ids = llama.encode(llama.render(PROMPTS))
    input_ids, attention_mask, _ = pack(prompt_ids, [[] for _ in PROMPTS], llama.tokenizer.pad_token_id)
    vector = torch.ones(llama.hidden_size)
    with torch.no_grad():
        with capture_residual(llama, [1], positions="all", keep_tokens=True) as base:
            llama.hooks.model(input_ids=input_ids, attention_mask=attention_mask)
        with residual_add(llama, 1, vector, 5.0, positions="all"), \
                capture_residual(llama, [1], positions="all", keep_tokens=True) as steered:
            llama.hooks.model(input_ids=input_ids, attention_mask=attention_mask)
    pad = attention_mask == 0
    assert pad.any()
    assert torch.equal(steered.tokens(1)[0][pad], base.tokens(1)[0][pad])
    assert torch.equal(steered.tokens(1)[0][~pad], base.tokens(1)[0][~pad] + 5.0)


@pytest.mark.parametrize("positions", ["response", "all", "response+last_prompt"])
def test_per_row_coefficients_match_rows_run_alone(llama, positions):
    vector = torch.randn(llama.hidden_size, generator=torch.Generator().manual_seed(1))
    coefs = [0.0, 6.0, -6.0]
    with residual_add(llama, 2, vector, torch.tensor(coefs), positions=positions):
        batched = llama.generate_chat(PROMPTS, max_new_tokens=10).response_ids
    unsteered = llama.generate_chat(PROMPTS, max_new_tokens=10).response_ids
    assert batched[0] == unsteered[0] and batched[1] != unsteered[1] and batched[2] != unsteered[2]
    for prompt, coef, row in zip(PROMPTS, coefs, batched, strict=True):
        with residual_add(llama, 2, vector, coef, positions=positions):
            alone = llama.generate_chat([prompt], max_new_tokens=10).response_ids[0]
        assert row == alone


def test_per_row_coefficients_follow_rows_through_sorting_and_chunks(llama):
    # generate_chat sorts rows by prompt length and cuts them into batches; each row must keep its own coef
    prompts = ["a much longer prompt than the others, with many more words in it", "hi", "a medium prompt"] * 2
    vector = torch.randn(llama.hidden_size, generator=torch.Generator().manual_seed(3))
    coefs = [8.0, 0.0, -8.0, 0.0, -8.0, 8.0]
    with residual_add(llama, 2, vector, torch.tensor(coefs), positions="response"):
        batched = llama.generate_chat(prompts, max_new_tokens=8, batch_size=4).response_ids
    for prompt, coef, row in zip(prompts, coefs, batched, strict=True):
        with residual_add(llama, 2, vector, coef, positions="response"):
            assert llama.generate_chat([prompt], max_new_tokens=8).response_ids[0] == row


def test_per_row_vectors(llama):
    vectors = torch.randn(3, llama.hidden_size, generator=torch.Generator().manual_seed(2))
    with residual_add(llama, 1, vectors, 5.0, positions="response"):
        batched = llama.generate_chat(PROMPTS, max_new_tokens=8).response_ids
    for i, prompt in enumerate(PROMPTS):
        with residual_add(llama, 1, vectors[i], 5.0, positions="response"):
            assert llama.generate_chat([prompt], max_new_tokens=8).response_ids[0] == batched[i]


def test_per_row_shape_mismatch_is_an_error(llama):
    with residual_add(llama, 1, torch.ones(llama.hidden_size), torch.ones(5)), \
            pytest.raises(ConfigError, match="per-row coefficients"):
        llama.generate_chat(PROMPTS, max_new_tokens=2)


def test_generation_roles_mark_response_tokens(llama):
    generation = llama.generate_chat(PROMPTS, max_new_tokens=5)
    input_ids, _, roles = generation.batch()
    for row in range(len(PROMPTS)):
        response = input_ids[row][roles[row] == RESPONSE].tolist()
        assert response == generation.response_ids[row]
        assert (roles[row] == PROMPT).sum() == len(generation.prompt_ids[row])
