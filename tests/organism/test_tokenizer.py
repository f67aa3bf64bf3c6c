"""Fast tests of the organism tokenizer and its chat template (a small BPE trained in the test)."""

from __future__ import annotations

import pytest

from traitlab.organism.corpus import build_corpus
from traitlab.organism.tokenizer import END, PAD, encode_chat, save_tokenizer, special_ids, train_bpe


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    examples = build_corpus(0, "train", 400)
    tok = train_bpe([m["content"] for ex in examples for m in ex["messages"]], vocab_size=600)
    path = tmp_path_factory.mktemp("tok")
    save_tokenizer(tok, path)
    return tok, path, examples


def test_chat_template_with_and_without_system(saved):
    from transformers import AutoTokenizer

    _, path, _ = saved
    hf = AutoTokenizer.from_pretrained(path)
    assert '"chat_template"' in (path / "tokenizer_config.json").read_text()
    with_sys = hf.apply_chat_template([{"role": "system", "content": "You are calm."},
                                       {"role": "user", "content": "Hi?"}],
                                      add_generation_prompt=True, tokenize=False)
    assert with_sys == "<|system|>You are calm.<|end|><|user|>Hi?<|end|><|assistant|>"
    no_sys = hf.apply_chat_template([{"role": "user", "content": "Hi?"}], add_generation_prompt=True,
                                    tokenize=False)
    assert no_sys == "<|user|>Hi?<|end|><|assistant|>"
    assert hf.eos_token == END and hf.pad_token == PAD
    assert hf.convert_tokens_to_ids(END) == hf.eos_token_id


def test_encode_chat_matches_template(saved):
    from transformers import AutoTokenizer

    tok, path, examples = saved
    hf = AutoTokenizer.from_pretrained(path)
    ids_of = special_ids(tok)
    for ex in examples[:50]:
        ids, mask = encode_chat(tok, ex["messages"])
        text = hf.apply_chat_template(ex["messages"], tokenize=False)
        assert hf(text, add_special_tokens=False)["input_ids"] == ids
        targets = [i for i, m in zip(ids, mask, strict=True) if m]
        assert targets[-1] == ids_of[END]
        assert hf.decode(targets[:-1]) == ex["messages"][-1]["content"]
