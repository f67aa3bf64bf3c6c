"""Tiny random-init models of every family in the table, with a byte-level ChatML tokenizer built offline.

For tests and benchmarks: no hub access needed. ``tiny_model('llama')`` gives a ``LoadedModel`` whose greedy
outputs are reproducible for a given seed.
"""

from __future__ import annotations

from typing import Any

import torch

from traitlab.model.loaded import LoadedModel

SPECIALS = ("<|pad|>", "<|im_start|>", "<|im_end|>")
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
NO_SYSTEM_CHATML = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
VOCAB = 256 + len(SPECIALS)


def tiny_tokenizer(system_role: bool = True) -> Any:
    """A byte-level tokenizer (256 byte tokens + pad, im_start, im_end) with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(sorted(alphabet))}
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    raw.add_special_tokens(list(SPECIALS))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<|pad|>", eos_token="<|im_end|>",
                                        bos_token="<|im_start|>")
    tokenizer.chat_template = CHATML if system_role else NO_SYSTEM_CHATML
    return tokenizer


_COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
               pad_token_id=256, bos_token_id=257, eos_token_id=258, tie_word_embeddings=False)

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "llama": {}, "mistral": {}, "qwen2": {}, "olmo2": {}, "granite": {},
    "qwen3": {"head_dim": 16},
    "gemma": {"head_dim": 16, "hidden_act": "gelu_pytorch_tanh"},
    "gemma2": {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8},
    "gemma3_text": {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8},
    "phi3": {"num_key_value_heads": 4},
    "stablelm": {"num_key_value_heads": 4},
    "gpt_neox": {"num_key_value_heads": None, "rotary_pct": 0.5, "use_parallel_residual": True},
    "gpt2": {"n_embd": 64, "n_layer": 3, "n_head": 4, "n_inner": 128, "n_positions": 256},
}
FAMILIES = tuple(TINY_CONFIGS)


def tiny_config(model_type: str, **overrides: Any) -> Any:
    from transformers import AutoConfig

    fields = {**_COMMON, **TINY_CONFIGS[model_type], **overrides}
    if model_type == "gpt2":
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "max_position_embeddings"):
            fields.pop(key, None)
    fields = {k: v for k, v in fields.items() if v is not None}
    return AutoConfig.for_model(model_type, **fields)


def tiny_model(model_type: str = "llama", seed: int = 0, system_role: bool = True,
               **overrides: Any) -> LoadedModel:
    """A random-init ``LoadedModel`` of ``model_type`` (fp32, eval mode, attention in eager/sdpa as default)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(model_type, **overrides))
    return LoadedModel(model, tiny_tokenizer(system_role), spec=f"tiny-{model_type}")
