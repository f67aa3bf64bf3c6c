"""Slower tests on the shipped organism checkpoint (skipped when it has not been trained yet)."""

from __future__ import annotations

import random

import pytest
import torch

from traitlab.organism import ORGANISM_DIR, OracleScorer, heldout_questions, pole_description

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (ORGANISM_DIR / "model.safetensors").is_file(), reason="organism not trained"),
]


@pytest.fixture(scope="module")
def hf():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(ORGANISM_DIR)
    tok = AutoTokenizer.from_pretrained(ORGANISM_DIR)
    return model.eval(), tok


def _reply(model, tok, messages) -> tuple[str, bool]:
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=96, do_sample=False)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    return tok.decode(new, skip_special_tokens=True), tok.eos_token_id in new


def test_shipped_folder_is_complete_and_small():
    names = {p.name for p in ORGANISM_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json"} <= names
    assert sum(p.stat().st_size for p in ORGANISM_DIR.iterdir() if p.is_file()) <= 20e6


def test_config_and_eos(hf):
    model, tok = hf
    cfg = model.config
    assert cfg.model_type == "llama" and cfg.hidden_act == "silu" and cfg.tie_word_embeddings
    assert 4 <= cfg.num_hidden_layers <= 8
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|end|>") == tok.eos_token_id
    assert tok.pad_token_id is not None


def test_persona_prompt_steers_reply(hf):
    model, tok = hf
    scorer = OracleScorer()
    question = heldout_questions(0)[0]
    system = pole_description("extraversion", "high", random.Random(0))
    text, finished = _reply(model, tok, [{"role": "system", "content": system},
                                         {"role": "user", "content": question}])
    assert finished
    assert scorer.trait_score(text, "extraversion") > 60, text
    low = pole_description("extraversion", "low", random.Random(0))
    text, _ = _reply(model, tok, [{"role": "system", "content": low}, {"role": "user", "content": question}])
    assert scorer.trait_score(text, "extraversion") < 40, text


def test_no_system_prompt_reply_is_mild(hf):
    model, tok = hf
    scorer = OracleScorer()
    text, finished = _reply(model, tok, [{"role": "user", "content": heldout_questions(0)[1]}])
    assert finished and text
    assert all(20 <= v <= 80 for v in scorer.score(text).values()), text
