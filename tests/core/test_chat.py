"""Chat rendering: system prompts, templates without a system role, plain fallback."""

from __future__ import annotations

import warnings

import pytest

from traitlab.errors import ConfigError
from traitlab.model.loaded import LoadedModel
from traitlab.model.tiny import tiny_model, tiny_tokenizer


def test_template_without_system_role_folds_and_warns_once():
    lm = tiny_model("llama", system_role=False)
    assert not lm.renderer.supports_system
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = lm.render(["hello"], system="Be brief.")[0]
        lm.render(["again"], system="Be brief.")
    assert "<|im_start|>user\nBe brief.\n\nhello<|im_end|>" in first
    assert sum("folded" in str(w.message) for w in caught) == 1


def test_plain_layout_without_template(llama):
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = None
    lm = LoadedModel(llama.model, tokenizer)
    with pytest.warns(UserWarning, match="no chat template"):
        text = lm.render(["hello"], system="Be brief.")[0]
    assert text == "System: Be brief.\nUser: hello\nAssistant:"


def test_conversations_and_bad_messages(llama):
    convo = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": "and?"}]
    assert llama.render([convo])[0].endswith("<|im_start|>user\nand?<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(ConfigError, match="malformed chat message"):
        llama.render([[{"role": "robot", "content": "x"}]])
    with pytest.raises(ConfigError, match="2 system prompts for 1 prompts"):
        llama.render(["hi"], system=["a", "b"])
    with pytest.raises(ConfigError, match="temperature"):
        llama.generate_chat(["hi"], temperature=-1)
