"""Byte-level BPE tokenizer of the persona organism, with its chat template.

Turn format (no newlines, no BOS): ``<|system|>...<|end|><|user|>...<|end|><|assistant|>...<|end|>``.
``<|end|>`` is the end-of-turn token and the EOS; ``<|pad|>`` pads. The template is stored in
``tokenizer_config.json`` (key ``chat_template``), so ``AutoTokenizer.from_pretrained(dir)`` works offline and
``apply_chat_template(..., add_generation_prompt=True)`` ends with ``<|assistant|>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, SYSTEM, USER, ASSISTANT, END = "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, SYSTEM, USER, ASSISTANT, END)
ROLE_TOKENS: dict[str, str] = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('roles must be system, user or assistant') }}{% endif %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def train_bpe(texts: Iterable[str], vocab_size: int = 4096) -> Tokenizer:
    """Train a byte-level BPE on ``texts``; special tokens get ids 0-4 in ``SPECIAL_TOKENS`` order."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save_tokenizer(tok: Tokenizer, out_dir: str | Path, model_max_length: int = 512) -> None:
    """Save as a ``transformers`` fast tokenizer with the chat template inside ``tokenizer_config.json``."""
    from transformers import PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=END, pad_token=PAD, model_max_length=model_max_length,
        padding_side="left", additional_special_tokens=[SYSTEM, USER, ASSISTANT],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out))
    # Keep the template in tokenizer_config.json (newer transformers write chat_template.jinja instead).
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    jinja = out / "chat_template.jinja"
    if jinja.exists():
        jinja.unlink()


def special_ids(tok: Tokenizer) -> dict[str, int]:
    """Ids of the special tokens."""
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    missing = [t for t, i in ids.items() if i is None]
    if missing:
        raise ValueError(f"tokenizer lacks special tokens {missing}")
    return ids  # type: ignore[return-value]


def encode_chat(tok: Tokenizer, messages: Sequence[dict[str, str]]) -> tuple[list[int], list[bool]]:
    """Token ids of a chat in the template's format and a mask of the assistant tokens (content and its
    ``<|end|>``), which are the tokens the model is trained to predict."""
    ids_of = special_ids(tok)
    ids: list[int] = []
    mask: list[bool] = []
    for m in messages:
        body = tok.encode(m["content"], add_special_tokens=False).ids
        is_assistant = m["role"] == "assistant"
        ids += [ids_of[ROLE_TOKENS[m["role"]]], *body, ids_of[END]]
        mask += [False] + [is_assistant] * (len(body) + 1)
    return ids, mask
